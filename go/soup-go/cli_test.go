package main

import (
	"bytes"
	"reflect"
	"strings"
	"testing"
)

func TestSplitShell(t *testing.T) {
	// Expected values are what Python's shlex.split returns.
	cases := []struct {
		in   string
		want []string
	}{
		{"a b  c", []string{"a", "b", "c"}},
		{"'a b' c", []string{"a b", "c"}},
		{`"a b" c`, []string{"a b", "c"}},
		{`a\ b`, []string{"a b"}},
		{`"a\"b"`, []string{`a"b`}},
		{`"a\xb"`, []string{`a\xb`}},
		{`'a\b'`, []string{`a\b`}},
		{`x="" y`, []string{"x=", "y"}},
		{"''", []string{""}},
		{`a"b c"d`, []string{"ab cd"}},
		{"\tfoo\nbar\r", []string{"foo", "bar"}},
		{`"\\"`, []string{`\`}},
		{`"$HOME"`, []string{"$HOME"}},
		{"a#b #c", []string{"a#b", "#c"}},
		{"", nil},
		{"/path/soup-go rpc server-start --kv-dir '/tmp/my dir'", []string{"/path/soup-go", "rpc", "server-start", "--kv-dir", "/tmp/my dir"}},
	}
	for _, c := range cases {
		got, err := splitShell(c.in)
		if err != nil || !reflect.DeepEqual(got, c.want) {
			t.Errorf("splitShell(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
	for _, bad := range []string{`"abc`, `abc\`, "'a"} {
		if _, err := splitShell(bad); err == nil {
			t.Errorf("splitShell(%q): no error", bad)
		}
	}
}

func TestTLSFlagsValidate(t *testing.T) {
	cases := []struct {
		f    tlsFlags
		want string // "" = valid
	}{
		{tlsFlags{mode: "auto", keyType: "ec-p521"}, ""},
		{tlsFlags{mode: "disabled", keyType: "ec-p256"}, ""},
		{tlsFlags{mode: "bogus", keyType: "ec-p521"}, `invalid --tls-mode "bogus"`},
		{tlsFlags{mode: "auto", keyType: "dsa"}, `invalid --key-type "dsa"`},
		{tlsFlags{mode: "manual", keyType: "ec-p521"}, "requires --cert-file"},
		{tlsFlags{mode: "manual", keyType: "ec-p521", certFile: "c"}, "requires --key-file"},
		{tlsFlags{mode: "manual", keyType: "ec-p521", certFile: "c", keyFile: "k"}, "requires --ca-file"},
		{tlsFlags{mode: "manual", keyType: "ec-p521", certFile: "c", keyFile: "k", caFile: "a"}, ""},
	}
	for _, c := range cases {
		checkUsage(t, c.f, c.f.validate(), c.want)
	}
}

// checkUsage: want "" means no error, else a usage error containing want.
func checkUsage(t *testing.T, input any, err error, want string) {
	t.Helper()
	if want == "" {
		if err != nil {
			t.Errorf("%+v: %v", input, err)
		}
		return
	}
	if _, ok := err.(usageError); !ok || !strings.Contains(err.Error(), want) {
		t.Errorf("%+v: got %v, want a usage error containing %q", input, err, want)
	}
}

// runCLI runs the CLI in process (only for paths that never reach plugin.Serve).
func runCLI(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := run(args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestUsageErrors(t *testing.T) {
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"rpc", "server-start", "--key-type", "ec-p256"}, autoKeyTypeMsg},
		{[]string{"rpc", "server-start", "--tls-mode", "nope"}, "invalid --tls-mode"},
		{[]string{"rpc", "server-start", "--tls-mode", "manual", "--cert-file", "c"}, "requires --key-file"},
		{[]string{"rpc", "server-start", "--transport", "udp"}, "invalid --transport"},
		{[]string{"rpc", "server-start", "--bogus"}, "flag provided but not defined"},
		{[]string{"rpc", "client", "test"}, "--server or --reattach is required"},
		{[]string{"rpc", "client", "test", "--server", "x", "--key-type", "rsa-1024"}, "invalid --key-type"},
		{[]string{"rpc", "client", "test", "--server", "'x"}, "no closing quotation"},
		{[]string{"rpc", "kv", "put", "k", "--server", "x"}, "expected 2 argument(s), got 1"},
		{[]string{"rpc", "kv", "get", "--server", "x"}, "expected 1 argument(s), got 0"},
		{[]string{"rpc", "nope"}, "unknown command"},
	}
	for _, c := range cases {
		code, out, errs := runCLI(c.args...)
		if code != 2 || out != "" || !strings.Contains(errs, c.want) {
			t.Errorf("%q: code %d, stdout %q, stderr %q; want 2 and %q", c.args, code, out, errs, c.want)
		}
	}
}

func TestHelp(t *testing.T) {
	for _, args := range [][]string{
		{"--help"}, {"rpc", "server-start", "--help"}, {"rpc", "client", "test", "-h"},
		{"rpc", "client", "bench", "--help"}, {"rpc", "kv", "put", "--help"}, {"rpc", "kv", "get", "--help"},
	} {
		code, out, _ := runCLI(args...)
		if code != 0 || !strings.Contains(out, "usage: soup-go") {
			t.Errorf("%q: code %d, out %q", args, code, out)
		}
	}
}

func TestInterleavedArgs(t *testing.T) {
	c := newCommand("x", "", "", "")
	var server string
	c.fs.StringVar(&server, "server", "", "")
	pos, err := c.parse([]string{"k", "--server", "cmd a", "v", "--", "--not-a-flag"})
	if err != nil || server != "cmd a" || !reflect.DeepEqual(pos, []string{"k", "v", "--not-a-flag"}) {
		t.Fatalf("parse = %q, %v (server %q)", pos, err, server)
	}
}

func TestVersionString(t *testing.T) {
	v := versionString()
	if !strings.HasPrefix(v, "soup-go 0.1.0 (go1.") || !strings.HasSuffix(v, ", go-plugin v1.8.0)") {
		t.Fatalf("versionString() = %q", v)
	}
}

func TestCodeNames(t *testing.T) {
	for c, n := range codeNames {
		if n != strings.ToUpper(n) || (c.String() != "Canceled" && strings.ReplaceAll(n, "_", "") != strings.ToUpper(c.String())) {
			t.Errorf("%v -> %q", c, n)
		}
	}
}
