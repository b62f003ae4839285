package main

import (
	"bytes"
	"context"
	"net"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-plugin"
)

func TestParseVersions(t *testing.T) {
	good := map[string][]int{"1": {1}, "5,6": {5, 6}, "6,5,6": {5, 6}, " 7 , 2": {2, 7}, "2147483647": {2147483647}}
	for in, want := range good {
		if got, err := parseVersions(in); err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("parseVersions(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	bad := map[string]string{
		"": "empty entry", "5,": "empty entry", "0": "positive integer", "-1": "not a positive integer",
		"x": "not a positive integer", "1.5": "not a positive integer", "2147483648": "at most 2147483647",
		strings.Repeat("9", 5000): "(5000 characters)", "+3": "not a positive integer",
	}
	for in, want := range bad {
		if _, err := parseVersions(in); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("parseVersions(%.30q) = %v; want an error with %q", in, err, want)
		}
	}
}

func TestHandshakeFlags(t *testing.T) {
	hs, err := (&handshakeFlags{cookieKey: "K", cookieValue: "V", versions: "6,5"}).parse()
	if err != nil || hs.cookieKey != "K" || hs.cookieValue != "V" || !reflect.DeepEqual(hs.versions, []int{5, 6}) {
		t.Fatalf("parse = %+v, %v", hs, err)
	}
	if sets := hs.pluginSets(&kvPlugin{}); len(sets) != 2 || sets[5][pluginName] == nil || sets[6][pluginName] == nil {
		t.Fatalf("pluginSets = %v", sets)
	}
	if !hs.serves(6) || hs.serves(7) {
		t.Fatal("serves")
	}
	if cfg := hs.config(); cfg.MagicCookieKey != "K" || cfg.MagicCookieValue != "V" || cfg.ProtocolVersion != 0 {
		t.Fatalf("config = %+v", cfg)
	}
	for _, f := range []handshakeFlags{
		{cookieKey: "", cookieValue: "V", versions: "1"},
		{cookieKey: "A=B", cookieValue: "V", versions: "1"},
		{cookieKey: "K", cookieValue: "", versions: "1"},
		{cookieKey: "K", cookieValue: "V", versions: "one"},
	} {
		if _, err := f.parse(); err == nil {
			t.Errorf("%+v: no error", f)
		} else if _, ok := err.(usageError); !ok {
			t.Errorf("%+v: %v is not a usage error", f, err)
		}
	}
	// go-plugin's own wording, as the contract quotes it.
	if got := incompatibleVersion(5, []int{7}).Error(); got != "incompatible API version with plugin. Plugin version: 5, Client versions: [7]" {
		t.Fatalf("incompatibleVersion = %q", got)
	}
}

func TestReattachJSON(t *testing.T) {
	rc := &plugin.ReattachConfig{
		Protocol: plugin.ProtocolGRPC, ProtocolVersion: 6, Pid: 1234, Test: true,
		Addr: &net.UnixAddr{Name: "/tmp/x/plugin1", Net: "unix"},
	}
	line, err := formatReattach(rc)
	want := `{"Protocol":"grpc","ProtocolVersion":6,"Pid":1234,"Test":true,"Addr":{"Network":"unix","String":"/tmp/x/plugin1"}}`
	if err != nil || line != want {
		t.Fatalf("formatReattach = %s, %v", line, err)
	}
	back, err := parseReattach(line)
	if err != nil || back.Addr.String() != "/tmp/x/plugin1" || back.Addr.Network() != "unix" || back.Pid != 1234 ||
		back.ProtocolVersion != 6 || !back.Test || back.Protocol != plugin.ProtocolGRPC {
		t.Fatalf("parseReattach = %+v, %v", back, err)
	}
	tcp, err := parseReattach(`{"Protocol":"grpc","ProtocolVersion":1,"Pid":1,"Addr":{"Network":"tcp","String":"127.0.0.1:5"}}`)
	if err != nil || tcp.Addr.String() != "127.0.0.1:5" || tcp.Addr.Network() != "tcp" {
		t.Fatalf("tcp: %+v, %v", tcp, err)
	}
	bad := map[string]string{
		`nope`: "not a JSON reattach config",
		`{"Protocol":"netrpc","ProtocolVersion":1,"Pid":1,"Addr":{"Network":"unix","String":"/s"}}`: `unsupported plugin protocol "netrpc"`,
		`{"Protocol":"grpc","ProtocolVersion":0,"Pid":1,"Addr":{"Network":"unix","String":"/s"}}`:   "ProtocolVersion",
		`{"Protocol":"grpc","ProtocolVersion":1,"Pid":0,"Addr":{"Network":"unix","String":"/s"}}`:   "Pid",
		`{"Protocol":"grpc","ProtocolVersion":1,"Pid":1,"Addr":{"Network":"udp","String":"/s"}}`:    `unknown Addr.Network "udp"`,
		`{"Protocol":"grpc","ProtocolVersion":1,"Pid":1,"Addr":{"Network":"unix","String":""}}`:     "Addr.String is empty",
		`{"Protocol":"grpc","ProtocolVersion":1,"Pid":1,"Addr":{"Network":"tcp","String":"x"}}`:     "Addr:",
	}
	for in, want := range bad {
		if _, err := parseReattach(in); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("parseReattach(%s) = %v; want %q", in, err, want)
		}
	}
}

func TestHostFlagsServerOrReattach(t *testing.T) {
	const rc = `{"Protocol":"grpc","ProtocolVersion":1,"Pid":1,"Test":true,"Addr":{"Network":"unix","String":"/s"}}`
	cases := []struct {
		f    hostFlags
		want string
	}{
		{hostFlags{server: "x", reattach: rc}, "cannot be used together"},
		{hostFlags{}, "--server or --reattach is required"},
		{hostFlags{server: "x", keepRunning: true}, "--keep-running needs --reattach"},
		{hostFlags{reattach: "{"}, "--reattach: not a JSON reattach config"},
		{hostFlags{reattach: rc, keepRunning: true}, ""},
		{hostFlags{server: "a 'b c'"}, ""},
	}
	for _, c := range cases {
		c.f.timeout = 1
		c.f.tls = tlsFlags{mode: "disabled", keyType: goPluginKeyType}
		c.f.hs = handshakeFlags{cookieKey: "K", cookieValue: "V", versions: "1"}
		checkUsage(t, c.f, c.f.validate(), c.want)
	}
	f := hostFlags{server: "a 'b c'", timeout: 1, tls: tlsFlags{mode: "disabled", keyType: goPluginKeyType},
		hs: handshakeFlags{cookieKey: "K", cookieValue: "V", versions: "1"}}
	if err := f.validate(); err != nil || !reflect.DeepEqual(f.options().argv, []string{"a", "b c"}) {
		t.Fatalf("argv %q, %v", f.options().argv, err)
	}
}

func TestPutValue(t *testing.T) {
	big := bytes.Repeat([]byte{0, 0xff, 'x'}, 1<<20)
	if v, err := putValue([]string{"k", "-"}, "", bytes.NewReader(big)); err != nil || !bytes.Equal(v, big) {
		t.Fatalf("stdin: %d bytes, %v", len(v), err)
	}
	if v, err := putValue([]string{"k", "plain"}, "", strings.NewReader("ignored")); err != nil || string(v) != "plain" {
		t.Fatalf("argv: %q, %v", v, err)
	}
	if _, err := putValue([]string{"k"}, "/no/such/file", nil); err == nil || !strings.Contains(err.Error(), "reading --value-file") {
		t.Fatalf("missing file: %v", err)
	}
	code, _, errs := runCLI("rpc", "kv", "put", "k", "v", "--value-file", "f", "--server", "x")
	if code != 2 || !strings.Contains(errs, "VALUE and --value-file cannot be used together") {
		t.Fatalf("both: %d %q", code, errs)
	}
}

func TestWatchParent(t *testing.T) {
	var ppid atomic.Int64
	ppid.Store(100)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	gone := watchParent(ctx, func() int { return int(ppid.Load()) }, time.Millisecond)
	select {
	case <-gone:
		t.Fatal("reported gone while the parent is the same")
	case <-time.After(20 * time.Millisecond):
	}
	ppid.Store(1) // re-parented: the host died
	select {
	case <-gone:
	case <-time.After(5 * time.Second):
		t.Fatal("parent change not seen within 5 s")
	}
}

func TestPluginTLSPolicy(t *testing.T) {
	auto := tlsFlags{mode: "auto", keyType: goPluginKeyType}
	disabled := tlsFlags{mode: "disabled", keyType: goPluginKeyType}
	_, certPEM, err := selfSignedCert("ec-p256")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		tf   tlsFlags
		cert string
		want string
	}{
		{auto, "", autoNoCertMsg},
		{auto, "garbage", badClientCertMsg},
		{auto, string(certPEM), ""},
		{disabled, string(certPEM), disabledButCertMsg},
		{disabled, "", ""},
		{tlsFlags{mode: "manual", certFile: "/no/c", keyFile: "/no/k", caFile: "/no/ca"}, "", "loading --cert-file/--key-file"},
	}
	for _, c := range cases {
		provider, err := pluginTLS(c.tf, c.cert)
		if c.want == "" {
			if err != nil || provider != nil {
				t.Errorf("%s: %v (provider %v)", c.tf.mode, err, provider != nil)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s with %.10q: %v; want %q", c.tf.mode, c.cert, err, c.want)
		}
	}
}
