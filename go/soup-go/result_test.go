package main

import (
	"bytes"
	"encoding/json"
	"reflect"
	"sort"
	"strings"
	"testing"
)

func keysOf(m map[string]any) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

func TestResultJSONFieldNames(t *testing.T) {
	r := newResult("auto")
	r.addStep("spawn", true, 1.23456, "pid 1")
	var buf bytes.Buffer
	if err := r.writeJSON(&buf); err != nil {
		t.Fatal(err)
	}
	if strings.Count(buf.String(), "\n") != 1 {
		t.Fatalf("not one line: %q", buf.String())
	}
	var m map[string]any
	if err := json.Unmarshal(buf.Bytes(), &m); err != nil {
		t.Fatal(err)
	}
	want := []string{"address", "app_protocol_version", "client", "error", "mutual_tls", "ok", "plugin_stderr_tail", "protocol_version", "server", "steps", "tls", "transport"}
	if got := keysOf(m); !reflect.DeepEqual(got, want) {
		t.Errorf("top-level keys %v", got)
	}
	tlsWant := []string{"alpn", "backend", "client_fingerprint", "client_key", "mode", "server_fingerprint", "server_key", "version", "version_source"}
	if got := keysOf(m["tls"].(map[string]any)); !reflect.DeepEqual(got, tlsWant) {
		t.Errorf("tls keys %v", got)
	}
	if got := keysOf(m["client"].(map[string]any)); !reflect.DeepEqual(got, []string{"impl", "version"}) {
		t.Errorf("client keys %v", got)
	}
	server := m["server"].(map[string]any)
	if server["impl"] != nil || server["version"] != nil {
		t.Errorf("server must be null/null: %v", server)
	}
	step := m["steps"].([]any)[0].(map[string]any)
	if got := keysOf(step); !reflect.DeepEqual(got, []string{"detail", "ms", "name", "ok"}) {
		t.Errorf("step keys %v", got)
	}
	if step["ms"].(float64) != 1.235 {
		t.Errorf("ms %v", step["ms"])
	}
	if m["error"] != nil || m["transport"] != nil {
		t.Errorf("unknowns must be null")
	}
}

func TestTailBuffer(t *testing.T) {
	tb := newTailBuffer(8)
	_, _ = tb.Write([]byte("0123456789\nabc\n"))
	if tb.String() != "789\nabc\n" || tb.lastLine() != "abc" {
		t.Fatalf("%q %q", tb.String(), tb.lastLine())
	}
}

func TestStats(t *testing.T) {
	s := stats([]float64{5, 1, 4, 2, 3})
	if s["min"] != 1 || s["max"] != 5 || s["mean"] != 3 || s["p50"] != 3 || s["p99"] != 5 {
		t.Fatalf("%v", s)
	}
}

func TestIdentityWriterReadsTheFirstLineThatSaysWhoServes(t *testing.T) {
	var next bytes.Buffer
	w := &identityWriter{next: &next}
	// go-plugin writes a line and its newline separately; lines may come in pieces
	chunks := []string{
		"not json\n",
		`{"@level":"debug","@message":"x","version":"no impl here"}`, "\n",
		`{"@level":"info","@message":"starting","im`, `pl":"python","version":"soup 0.1.0 (x)"}`, "\n",
		`{"@level":"info","@message":"later","impl":"go","version":"other"}` + "\n",
	}
	for _, c := range chunks {
		if n, err := w.Write([]byte(c)); err != nil || n != len(c) {
			t.Fatalf("write %q: %d %v", c, n, err)
		}
	}
	if next.String() != strings.Join(chunks, "") {
		t.Fatalf("passed on %q", next.String())
	}
	id := w.identity()
	if id.Impl == nil || *id.Impl != "python" || id.Version == nil || *id.Version != "soup 0.1.0 (x)" {
		t.Fatalf("identity %v %v", id.Impl, id.Version)
	}
	if got := (&identityWriter{next: &next}).identity(); got.Impl != nil || got.Version != nil {
		t.Fatalf("identity of a silent plugin: %+v", got)
	}
}
