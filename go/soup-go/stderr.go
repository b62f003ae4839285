package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"sync"
)

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
