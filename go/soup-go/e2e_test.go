package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The test binary doubles as soup-go: with SOUP_GO_TEST_MAIN=1 it runs the
// CLI instead of the tests, so end-to-end tests launch it as the plugin
// without building anything else.
const testMainEnv = "SOUP_GO_TEST_MAIN"

func TestMain(m *testing.M) {
	switch os.Getenv(testMainEnv) {
	case "1":
		os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
	case "linger":
		// A plugin that does not exit after Shutdown, for the forced-kill path.
		run(os.Args[1:], os.Stdout, os.Stderr)
		time.Sleep(time.Minute)
		os.Exit(0)
	case "sigterm-after-run":
		// A SIGTERM after the plugin is done, before it exits: still its own
		// (queued, not the default action), so the exit code stays run's.
		// To this thread, which takes it before Tgkill returns: a signal to
		// the process could come after the exit.
		code := run(os.Args[1:], os.Stdout, os.Stderr)
		runtime.LockOSThread()
		_ = syscall.Tgkill(os.Getpid(), syscall.Gettid(), syscall.SIGTERM)
		os.Exit(code)
	case "spawner":
		// A stand-in host that starts a plugin and can then be SIGKILLed.
		os.Exit(spawnPlugin(os.Args[1:]))
	}
	os.Exit(m.Run())
}

// pluginCmd is a --server value that starts this test binary as soup-go.
func pluginCmd(t *testing.T, args string) string {
	t.Helper()
	t.Setenv(testMainEnv, "1")
	return "'" + os.Args[0] + "' rpc server-start " + args
}

func clientTestJSON(t *testing.T, args ...string) (int, *Result) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(append([]string{"rpc", "client", "test", "--json"}, args...), &out, &errb)
	var r Result
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		t.Fatalf("stdout is not one JSON object: %v\n%s\nstderr: %s", err, out.String(), errb.String())
	}
	return code, &r
}

func mustPass(t *testing.T, code int, r *Result) {
	t.Helper()
	if code != 0 || !r.OK {
		b, _ := json.MarshalIndent(r, "", "  ")
		t.Fatalf("exit %d, result:\n%s", code, b)
	}
	var names []string
	for _, s := range r.Steps {
		names = append(names, s.Name)
	}
	if got := strings.Join(names, ","); got != "spawn,handshake,put,get,get_missing,health,shutdown" {
		t.Fatalf("steps %s", got)
	}
}

func deref(p *string) string {
	if p == nil {
		return "<nil>"
	}
	return *p
}

func TestE2EAutoMTLSUnix(t *testing.T) {
	code, r := clientTestJSON(t, "--server", pluginCmd(t, ""))
	mustPass(t, code, r)
	if deref(r.TLS.Version) != "TLSv1.3" || deref(r.TLS.ServerKey) != "ec-p521" || deref(r.TLS.ClientKey) != "ec-p521" ||
		deref(r.TLS.ALPN) != "h2" || deref(r.TLS.Backend) != "go" || deref(r.Transport) != "unix" {
		t.Fatalf("tls %+v transport %s", r.TLS, deref(r.Transport))
	}
	// who served, as the plugin's first log line said
	if deref(r.Server.Impl) != "go" || deref(r.Server.Version) != versionString() {
		t.Fatalf("server %s %s", deref(r.Server.Impl), deref(r.Server.Version))
	}
}

func TestE2ETCPFront(t *testing.T) {
	code, r := clientTestJSON(t, "--server", pluginCmd(t, "--transport tcp"))
	mustPass(t, code, r)
	if deref(r.Transport) != "tcp" || !strings.HasPrefix(deref(r.Address), "127.0.0.1:") || deref(r.TLS.Version) != "TLSv1.3" {
		t.Fatalf("transport %s %s tls %s", deref(r.Transport), deref(r.Address), deref(r.TLS.Version))
	}
}

func TestE2EDisabled(t *testing.T) {
	code, r := clientTestJSON(t, "--tls-mode", "disabled", "--server", pluginCmd(t, "--tls-mode disabled"))
	mustPass(t, code, r)
	if r.TLS.Version != nil || r.TLS.ServerKey != nil || r.TLS.ClientKey != nil {
		t.Fatalf("disabled mode reported TLS: %+v", r.TLS)
	}
}

func TestE2EClientKeyType(t *testing.T) {
	code, r := clientTestJSON(t, "--key-type", "ed25519", "--server", pluginCmd(t, ""))
	mustPass(t, code, r)
	if deref(r.TLS.ClientKey) != "ed25519" || deref(r.TLS.ServerKey) != "ec-p521" {
		t.Fatalf("keys %s %s", deref(r.TLS.ClientKey), deref(r.TLS.ServerKey))
	}
}

func TestE2ERefusals(t *testing.T) {
	cases := []struct {
		name, client, server, want string
	}{
		{"auto host, disabled plugin", "", "--tls-mode disabled", disabledButCertMsg},
		{"disabled host, auto plugin", "--tls-mode disabled", "", "host sent no PLUGIN_CLIENT_CERT"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			args := append(strings.Fields(c.client), "--server", pluginCmd(t, c.server))
			code, r := clientTestJSON(t, args...)
			if code != 1 || r.OK || !strings.Contains(deref(r.Error), c.want) {
				t.Fatalf("exit %d error %q; want 1 and %q", code, deref(r.Error), c.want)
			}
		})
	}
}

// A plugin with its own TLS config (manual mode) sends no field-6 cert; a
// host in auto mode must refuse rather than go on.
func TestE2EAutoHostNoCert(t *testing.T) {
	dir := t.TempDir()
	files := writeManualPKI(t, dir)
	server := pluginCmd(t, "--tls-mode manual --cert-file "+files["srv.pem"]+" --key-file "+files["srv.key"]+" --ca-file "+files["ca.pem"])
	code, r := clientTestJSON(t, "--server", server)
	if code != 1 || deref(r.Error) != noCertMsg || len(r.Steps) != 2 || r.Steps[1].Name != "handshake" {
		t.Fatalf("exit %d error %q steps %+v", code, deref(r.Error), r.Steps)
	}
	// And the same plugin passes with a manual host.
	code, r = clientTestJSON(t, "--tls-mode", "manual", "--cert-file", files["cli.pem"], "--key-file", files["cli.key"],
		"--ca-file", files["ca.pem"], "--server", server)
	mustPass(t, code, r)
	if deref(r.TLS.ServerKey) != "ec-p384" || deref(r.TLS.ClientKey) != "rsa-2048" {
		t.Fatalf("keys %+v", r.TLS)
	}
}

func TestE2EKV(t *testing.T) {
	kv := t.TempDir()
	server := pluginCmd(t, "--tls-mode disabled --kv-dir "+kv)
	code, out, errs := runCLI("rpc", "kv", "put", "greeting", "hello", "--tls-mode", "disabled", "--server", server)
	if code != 0 || out != "" {
		t.Fatalf("put: %d %q %q", code, out, errs)
	}
	code, out, errs = runCLI("rpc", "kv", "get", "greeting", "--tls-mode", "disabled", "--server", server)
	if code != 0 || out != "hello" {
		t.Fatalf("get: %d %q %q", code, out, errs)
	}
	code, _, errs = runCLI("rpc", "kv", "get", "nope", "--tls-mode", "disabled", "--server", server)
	if code != 1 || !strings.Contains(errs, "error: NOT_FOUND: key not found\n") {
		t.Fatalf("get missing: %d %q", code, errs)
	}
}

// plugin runs the test binary as `soup-go rpc server-start` with env.
func pluginProcess(t *testing.T, env ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "rpc", "server-start")
	cmd.Env = append([]string{testMainEnv + "=1", "PATH=" + os.Getenv("PATH")}, env...)
	var errb bytes.Buffer
	cmd.Stderr = &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return code, errb.String()
}

func TestServerCookieAndTLSChecks(t *testing.T) {
	code, errs := pluginProcess(t)
	if code != 1 || !strings.HasPrefix(errs, "This binary is a plugin.") {
		t.Errorf("no cookie: %d %q", code, errs)
	}
	// The cookie check comes first, whatever else is wrong.
	code, errs = pluginProcess(t, "PLUGIN_CLIENT_CERT=x", "BASIC_PLUGIN=wrong")
	if code != 1 || !strings.HasPrefix(errs, "This binary is a plugin.") {
		t.Errorf("wrong cookie: %d %q", code, errs)
	}
	code, errs = pluginProcess(t, "BASIC_PLUGIN=hello")
	if code != 1 || !strings.Contains(errs, autoNoCertMsg) {
		t.Errorf("auto without client cert: %d %q", code, errs)
	}
}

// go-plugin's Kill SIGKILLs a plugin that is still there 2 s after Shutdown;
// the shutdown step must then fail.
func TestE2EShutdownForcedKill(t *testing.T) {
	server := pluginCmd(t, "")
	t.Setenv(testMainEnv, "linger")
	code, r := clientTestJSON(t, "--server", server)
	last := r.Steps[len(r.Steps)-1]
	if code != 1 || last.Name != "shutdown" || last.OK || !strings.Contains(deref(r.Error), "signal: killed") {
		t.Fatalf("exit %d error %q last step %+v", code, deref(r.Error), last)
	}
	if last.MS < 1900 {
		t.Fatalf("shutdown took %.0f ms; go-plugin waits 2 s before SIGKILL", last.MS)
	}
}

func TestE2EBench(t *testing.T) {
	code, out, errs := runCLI("rpc", "client", "bench", "--json", "--count", "20", "--warmup", "2", "--server", pluginCmd(t, ""))
	var r BenchResult
	if err := json.Unmarshal([]byte(out), &r); err != nil || code != 0 || !r.OK {
		t.Fatalf("bench: %d %q %q %v", code, out, errs, err)
	}
	if r.Count != 20 || r.RoundTripUS["p50"] <= 0 || deref(r.TLS.Version) != "TLSv1.3" {
		t.Fatalf("bench result %+v", r)
	}
}
