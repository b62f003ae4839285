package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strings"
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
	ProtocolVersion    *int       `json:"protocol_version"` // the negotiated version (contract name)
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
	return writeOneJSON(w, r)
}

// writeOneJSON prints v as one JSON line; no HTML escaping, so details read
// as written ("->").
func writeOneJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// writeSteps prints one PASS/FAIL line per step, names padded to nameWidth.
func writeSteps(w io.Writer, steps []Step, nameWidth int) {
	for _, st := range steps {
		verdict := "PASS"
		if !st.OK {
			verdict = "FAIL"
		}
		fmt.Fprintf(w, "%s %-*s %8.1f ms  %s\n", verdict, nameWidth, st.Name, st.MS, st.Detail)
	}
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
	writeSteps(w, r.Steps, 11)
	writeMutualTLS(w, r.MutualTLS)
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

// writeMutualTLS prints who verified whom with the probes' evidence (the
// Python CLI prints the same lines).
func writeMutualTLS(w io.Writer, m *MutualTLS) {
	if m == nil {
		return
	}
	said := func(b *bool) string {
		switch {
		case b == nil:
			return "-"
		case *b:
			return "yes"
		default:
			return "NO"
		}
	}
	fmt.Fprintf(w, "mutual TLS: plugin verified the host: %s (%s)\n", said(m.PluginVerifiedClient), m.PluginEvidence)
	fmt.Fprintf(w, "mutual TLS: host verified the plugin: %s (%s)\n", said(m.HostVerifiedPlugin), m.HostEvidence)
}
