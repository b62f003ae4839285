package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strings"
	"sync"
)

// Result is the one JSON object `rpc client test --json` prints. Field names
// are the shared contract; pointers are JSON null when unknown.
type Result struct {
	OK                 bool       `json:"ok"`
	Error              *string    `json:"error"`
	Client             ImplInfo   `json:"client"`
	Server             ImplInfo   `json:"server"`
	TLS                TLSResult  `json:"tls"`
	Transport          *string    `json:"transport"`
	Address            *string    `json:"address"`
	AppProtocolVersion *int       `json:"app_protocol_version"`
	Steps              []Step     `json:"steps"`
	PluginStderrTail   string     `json:"plugin_stderr_tail"`
	MutualTLS          *MutualTLS `json:"mutual_tls"`
}

// ImplInfo names an implementation. The server's is not on the wire: the host
// fills it from the plugin's own hclog line with "impl" and "version" fields
// (null if the plugin never said).
type ImplInfo struct {
	Impl    *string `json:"impl"`
	Version *string `json:"version"`
}

// TLSResult is the TLS evidence of the live connection.
type TLSResult struct {
	Mode              string  `json:"mode"`
	Version           *string `json:"version"`
	VersionSource     *string `json:"version_source"`
	Backend           *string `json:"backend"`
	ClientKey         *string `json:"client_key"`
	ServerKey         *string `json:"server_key"`
	ClientFingerprint *string `json:"client_fingerprint"`
	ServerFingerprint *string `json:"server_fingerprint"`
	ALPN              *string `json:"alpn"`
}

// Step is one timed phase of the test.
type Step struct {
	Name   string  `json:"name"`
	OK     bool    `json:"ok"`
	MS     float64 `json:"ms"`
	Detail string  `json:"detail"`
}

func strp(s string) *string { return &s }

func newResult(mode string) *Result {
	r := &Result{Steps: []Step{}}
	r.Client = ImplInfo{Impl: strp("go"), Version: strp(versionString())}
	r.TLS.Mode = mode
	return r
}

// fail records the first error; later ones are consequences.
func (r *Result) fail(err string) {
	r.OK = false
	if r.Error == nil {
		r.Error = &err
	}
}

func (r *Result) addStep(name string, ok bool, ms float64, detail string) {
	r.Steps = append(r.Steps, Step{Name: name, OK: ok, MS: math.Round(ms*1000) / 1000, Detail: detail})
}

func (r *Result) writeJSON(w io.Writer) error {
	// One line; no HTML escaping, so details read as written ("->").
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return enc.Encode(r)
}

// writeHuman prints evidence lines: a header, one line per step, a verdict.
func (r *Result) writeHuman(w io.Writer, serverCmd string) {
	s := func(p *string) string {
		if p == nil {
			return "-"
		}
		return *p
	}
	fmt.Fprintf(w, "client     go  %s\n", *r.Client.Version)
	fmt.Fprintf(w, "server     %s\n", serverCmd)
	fmt.Fprintf(w, "tls        mode=%s version=%s (%s) backend=%s alpn=%s\n",
		r.TLS.Mode, s(r.TLS.Version), s(r.TLS.VersionSource), s(r.TLS.Backend), s(r.TLS.ALPN))
	fmt.Fprintf(w, "client key %s %s\n", s(r.TLS.ClientKey), s(r.TLS.ClientFingerprint))
	fmt.Fprintf(w, "server key %s %s\n", s(r.TLS.ServerKey), s(r.TLS.ServerFingerprint))
	fmt.Fprintf(w, "transport  %s %s\n", s(r.Transport), s(r.Address))
	for _, st := range r.Steps {
		verdict := "PASS"
		if !st.OK {
			verdict = "FAIL"
		}
		fmt.Fprintf(w, "%s %-11s %8.1f ms  %s\n", verdict, st.Name, st.MS, st.Detail)
	}
	if r.OK {
		fmt.Fprintln(w, "RESULT: PASS")
		return
	}
	if r.PluginStderrTail != "" {
		fmt.Fprintln(w, "plugin stderr (tail):")
		for _, line := range strings.Split(strings.TrimRight(r.PluginStderrTail, "\n"), "\n") {
			fmt.Fprintf(w, "  | %s\n", line)
		}
	}
	fmt.Fprintf(w, "RESULT: FAIL: %s\n", s(r.Error))
}

// tailBuffer keeps the last max bytes written to it (the plugin's stderr).
type tailBuffer struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func newTailBuffer(max int) *tailBuffer { return &tailBuffer{max: max} }

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > t.max {
		t.buf = append([]byte(nil), t.buf[len(t.buf)-t.max:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.ToValidUTF8(string(t.buf), "\uFFFD")
}

// lastLine is the last non-empty line, for one-line error messages; an hclog
// JSON line is shown as "[level] message" (as the Python host does).
func (t *tailBuffer) lastLine() string {
	lines := strings.Split(strings.TrimSpace(t.String()), "\n")
	last := strings.TrimSpace(lines[len(lines)-1])
	var rec struct {
		Level   string  `json:"@level"`
		Message *string `json:"@message"`
	}
	if json.Unmarshal([]byte(last), &rec) == nil && rec.Message != nil {
		return fmt.Sprintf("[%s] %s", rec.Level, *rec.Message)
	}
	return last
}

// identityWriter passes the plugin's stderr on to next and remembers the
// first hclog JSON line with a string "impl" field (and its "version"): who
// serves, as the plugin says. go-plugin writes each line and its newline in
// separate calls, so bytes are collected up to each newline.
type identityWriter struct {
	next    io.Writer
	mu      sync.Mutex
	partial []byte
	impl    *string
	version *string
}

const maxIdentityLine = 64 * 1024

func (w *identityWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	rest := p
	for w.impl == nil && len(rest) > 0 {
		i := bytes.IndexByte(rest, '\n')
		if i < 0 {
			if len(w.partial)+len(rest) <= maxIdentityLine {
				w.partial = append(w.partial, rest...)
			}
			break
		}
		line := append(w.partial, rest[:i]...)
		w.partial = nil
		rest = rest[i+1:]
		w.impl, w.version = identityOf(line)
	}
	w.mu.Unlock()
	return w.next.Write(p)
}

// identity is what the plugin said about itself (nil, nil if nothing).
func (w *identityWriter) identity() ImplInfo {
	w.mu.Lock()
	defer w.mu.Unlock()
	return ImplInfo{Impl: w.impl, Version: w.version}
}

// identityOf reads impl and version from one hclog JSON line.
func identityOf(line []byte) (impl, version *string) {
	var rec map[string]any
	if json.Unmarshal(bytes.TrimSpace(line), &rec) != nil {
		return nil, nil
	}
	if _, ok := rec["@message"]; !ok {
		return nil, nil
	}
	i, ok := rec["impl"].(string)
	if !ok || i == "" {
		return nil, nil
	}
	if v, ok := rec["version"].(string); ok && v != "" {
		version = &v
	}
	return &i, version
}
