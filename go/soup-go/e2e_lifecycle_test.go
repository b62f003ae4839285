package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"soup-go/kvpb"
)

// processBound bounds every wait for a process in these tests.
const processBound = 10 * time.Second

// groupCmd is a command in its own process group that the test always ends.
func groupCmd(t *testing.T, env []string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	t.Cleanup(func() {
		if cmd.Process != nil {
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			_, _ = cmd.Process.Wait()
		}
	})
	return cmd
}

// firstLine starts cmd and returns its first stdout line (bounded).
func firstLine(t *testing.T, cmd *exec.Cmd) string {
	t.Helper()
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(out).ReadString('\n')
		lines <- strings.TrimSpace(line)
		_, _ = io.Copy(io.Discard, out)
	}()
	select {
	case line := <-lines:
		if line == "" {
			t.Fatal("no first line on stdout")
		}
		return line
	case <-time.After(processBound):
		t.Fatalf("no line on stdout within %s", processBound)
	}
	return ""
}

// waitExit waits (bounded) for cmd to exit and returns its exit code.
func waitExit(t *testing.T, cmd *exec.Cmd, bound time.Duration) int {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode()
		}
		if err != nil {
			t.Fatal(err)
		}
		return 0
	case <-time.After(bound):
		t.Fatalf("process %d still running after %s", cmd.Process.Pid, bound)
	}
	return -1
}

// procState is the state letter of /proc/PID/stat ("" if there is no such process).
func procState(pid int) string {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ""
	}
	fields := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
	if len(fields) == 0 {
		return ""
	}
	return fields[0]
}

// gone: no such process, or a zombie nobody reaped yet (it has exited).
func gone(pid int) bool {
	st := procState(pid)
	return st == "" || st == "Z"
}

// shortTempDir is a TMPDIR for a plugin: t.TempDir's long names would push
// the socket path (host dir, plugin dir, socket) over the unix limit.
func shortTempDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("/tmp", "sgt")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	return dir
}

func mustBeEmpty(t *testing.T, dir string) {
	t.Helper()
	entries, _ := os.ReadDir(dir)
	if len(entries) > 0 {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Fatalf("left behind in %s: %v", dir, names)
	}
}

func debugPlugin(t *testing.T, args ...string) (*exec.Cmd, string) {
	t.Helper()
	cmd := groupCmd(t, []string{testMainEnv + "=1"}, append([]string{"rpc", "server-start", "--debug"}, args...)...)
	var errb bytes.Buffer
	cmd.Stderr = &errb
	line := firstLine(t, cmd)
	if !strings.HasPrefix(line, `{"Protocol":"grpc","ProtocolVersion":1,"Pid":`+strconv.Itoa(cmd.Process.Pid)+`,"Test":true,"Addr":{"Network":"unix","String":"`) {
		t.Fatalf("reattach line %q", line)
	}
	return cmd, line
}

func TestE2EDebugReattach(t *testing.T) {
	tmp := shortTempDir(t)
	t.Setenv("TMPDIR", tmp)
	cmd, rc := debugPlugin(t, "--tls-mode", "disabled")
	for i := 0; i < 2; i++ {
		code, r := clientTestJSON(t, "--tls-mode", "disabled", "--reattach", rc, "--keep-running")
		mustPass(t, code, r)
		if last := r.Steps[len(r.Steps)-1]; !strings.HasPrefix(last.Detail, "skipped") || *r.ProtocolVersion != 1 {
			t.Fatalf("shutdown step %+v, version %d", last, *r.ProtocolVersion)
		}
		if gone(cmd.Process.Pid) {
			t.Fatal("--keep-running: the plugin exited")
		}
	}
	code, r := clientTestJSON(t, "--tls-mode", "disabled", "--reattach", rc)
	mustPass(t, code, r)
	if exit := waitExit(t, cmd, processBound); exit != 0 {
		t.Fatalf("debug plugin exit %d after Shutdown", exit)
	}
	mustBeEmpty(t, tmp)
}

func TestE2EDebugReattachManualTLS(t *testing.T) {
	files := writeManualPKI(t, t.TempDir())
	cmd, rc := debugPlugin(t, "--tls-mode", "manual", "--cert-file", files["srv.pem"], "--key-file", files["srv.key"], "--ca-file", files["ca.pem"])
	code, r := clientTestJSON(t, "--tls-mode", "manual", "--cert-file", files["cli.pem"], "--key-file", files["cli.key"],
		"--ca-file", files["ca.pem"], "--reattach", rc)
	mustPass(t, code, r)
	if deref(r.TLS.ServerKey) != "ec-p384" || deref(r.TLS.Version) != "TLSv1.3" {
		t.Fatalf("tls %+v", r.TLS)
	}
	waitExit(t, cmd, processBound)
	// A host in auto mode cannot reattach: nothing was exchanged to pin.
	code, r = clientTestJSON(t, "--reattach", rc)
	if code != 1 || !strings.HasPrefix(deref(r.Error), "--reattach cannot use --tls-mode auto") {
		t.Fatalf("auto reattach: exit %d, %q", code, deref(r.Error))
	}
}

func TestE2EDebugRefusesAutoTLS(t *testing.T) {
	cmd := groupCmd(t, []string{testMainEnv + "=1"}, "rpc", "server-start", "--debug")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if code := waitExit(t, cmd, processBound); code != 1 || out.Len() != 0 || !strings.Contains(errb.String(), debugAutoMsg) {
		t.Fatalf("exit %d stdout %q stderr %q", code, out.String(), errb.String())
	}
}

func TestE2EVersionNegotiation(t *testing.T) {
	server := pluginCmd(t, "--protocol-versions 5,6")
	for asked, want := range map[string]int{"5": 5, "6": 6, "5,6": 6, "6,5": 6} {
		code, r := clientTestJSON(t, "--protocol-versions", asked, "--server", server)
		mustPass(t, code, r)
		if *r.ProtocolVersion != want || *r.AppProtocolVersion != want {
			t.Errorf("asked %s: got %d, want %d", asked, *r.ProtocolVersion, want)
		}
	}
	code, r := clientTestJSON(t, "--protocol-versions", "7", "--server", server)
	if code != 1 || !strings.HasPrefix(deref(r.Error), "incompatible API version with plugin. Plugin version: 5, Client versions: [7]") {
		t.Fatalf("asked 7: exit %d, %q", code, deref(r.Error))
	}
}

func TestE2ECustomCookie(t *testing.T) {
	cookie := []string{"--magic-cookie-key", "SOUP_TEST_COOKIE", "--magic-cookie-value", "s3cret"}
	code, r := clientTestJSON(t, append(cookie, "--server", pluginCmd(t, strings.Join(cookie, " ")))...)
	mustPass(t, code, r)
	code, r = clientTestJSON(t, append(cookie, "--server", pluginCmd(t, ""))...)
	if code != 1 || !strings.Contains(deref(r.Error), "plugin exited before printing its handshake line") ||
		!strings.Contains(r.PluginStderrTail, "This binary is a plugin.") {
		t.Fatalf("cookie mismatch: exit %d, %q, stderr %q", code, deref(r.Error), r.PluginStderrTail)
	}
}

// A 3 MiB value from stdin and from --value-file reads back byte for byte.
func TestE2EKVPutLargeValue(t *testing.T) {
	kvDir := t.TempDir()
	server := pluginCmd(t, "--tls-mode disabled --kv-dir "+kvDir)
	value := bytes.Repeat([]byte("soup\x00\xff"), 3<<20/6)
	put := groupCmd(t, []string{testMainEnv + "=1"}, "rpc", "kv", "put", "big", "-", "--tls-mode", "disabled", "--server", server)
	put.Stdin = bytes.NewReader(value)
	var errb bytes.Buffer
	put.Stderr = &errb
	if err := put.Start(); err != nil {
		t.Fatal(err)
	}
	if code := waitExit(t, put, processBound); code != 0 {
		t.Fatalf("put from stdin: exit %d: %s", code, errb.String())
	}
	file := filepath.Join(t.TempDir(), "value")
	if err := os.WriteFile(file, value[1:], 0o600); err != nil {
		t.Fatal(err)
	}
	if code, _, errs := runCLI("rpc", "kv", "put", "big2", "--value-file", file, "--tls-mode", "disabled", "--server", server); code != 0 {
		t.Fatalf("put --value-file: %d %s", code, errs)
	}
	for key, want := range map[string][]byte{"big": value, "big2": value[1:]} {
		code, out, errs := runCLI("rpc", "kv", "get", key, "--tls-mode", "disabled", "--server", server)
		if code != 0 || out != string(want) {
			t.Fatalf("get %s: exit %d, %d bytes (want %d): %s", key, code, len(out), len(want), errs)
		}
	}
}

// The plugin notices its host's death and exits within 2 s, removing its
// run directory; stock go-plugin plugins keep running for good.
func TestE2EPluginExitsWhenHostDies(t *testing.T) {
	tmp := shortTempDir(t)
	spawner := groupCmd(t, []string{testMainEnv + "=spawner", "TMPDIR=" + tmp})
	pid, err := strconv.Atoi(firstLine(t, spawner))
	if err != nil {
		t.Fatal(err)
	}
	if gone(pid) {
		t.Fatal("plugin not running")
	}
	if err := spawner.Process.Kill(); err != nil { // the host only; the plugin is in its group
		t.Fatal(err)
	}
	deadline := time.Now().Add(exitWait + time.Second)
	for !gone(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("plugin %d still running %s after its host died", pid, exitWait+time.Second)
		}
		time.Sleep(20 * time.Millisecond)
	}
	mustBeEmpty(t, tmp)
}

// spawnPlugin is the "spawner" stand-in host: start the plugin, print its
// pid once it printed its handshake line, then wait to be killed.
func spawnPlugin([]string) int {
	cmd := exec.Command(os.Args[0], "rpc", "server-start", "--tls-mode", "disabled")
	cmd.Env = append(os.Environ(), testMainEnv+"=1", defaultCookieKey+"="+defaultCookieValue)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return 1
	}
	if err := cmd.Start(); err != nil {
		return 1
	}
	if _, err := bufio.NewReader(out).ReadString('\n'); err != nil {
		return 1
	}
	fmt.Println(cmd.Process.Pid)
	time.Sleep(time.Minute)
	return 0
}

// Cleanup on the paths the plugin survives: go-plugin itself leaves its
// socket behind for an unknown PLUGIN_UNIX_SOCKET_GROUP (and with
// PLUGIN_MULTIPLEX_GRPC=true: e2e_multiplex_test.go).
func TestE2EPluginCleanup(t *testing.T) {
	t.Run("unknown socket group", func(t *testing.T) {
		tmp := shortTempDir(t)
		cmd := groupCmd(t, []string{testMainEnv + "=1", "TMPDIR=" + tmp, "BASIC_PLUGIN=hello", envUnixSocketGroup + "=soup-no-such-group"},
			"rpc", "server-start", "--tls-mode", "disabled")
		var errb bytes.Buffer
		cmd.Stderr = &errb
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		code, errs := waitExit(t, cmd, processBound), errb.String()
		if code != 1 || !strings.Contains(errs, `failed to find gid from \"soup-no-such-group\"`) {
			t.Fatalf("exit %d: %s", code, errs)
		}
		mustBeEmpty(t, tmp)
	})
	t.Run("host removes a killed plugin's directories", func(t *testing.T) {
		tmp := shortTempDir(t)
		t.Setenv("TMPDIR", tmp)
		server := pluginCmd(t, "")
		t.Setenv(testMainEnv, "linger") // SIGKILLed 2 s after Shutdown
		code, r := clientTestJSON(t, "--server", server)
		if code != 1 || !strings.Contains(deref(r.Error), "signal: killed") {
			t.Fatalf("exit %d, %q", code, deref(r.Error))
		}
		mustBeEmpty(t, tmp)
	})
}

// A SIGSTOPped plugin: the RPC fails at its deadline and stop() is done
// within 2 s more (go-plugin's Kill alone waits for Shutdown forever).
func TestE2EStoppedPluginIsDetected(t *testing.T) {
	opts := hostOptions{
		argv: []string{os.Args[0], "rpc", "server-start", "--tls-mode", "disabled"},
		hs:   handshake{cookieKey: defaultCookieKey, cookieValue: defaultCookieValue, versions: []int{1}},
		tls:  tlsFlags{mode: "disabled", keyType: goPluginKeyType}, timeout: processBound,
	}
	t.Setenv(testMainEnv, "1")
	h, err := newHost(opts, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	// On every path: the plugin's group killed, the host's socket directory removed.
	t.Cleanup(func() { h.killGroup(); h.stop() })
	if err := h.start(); err != nil {
		t.Fatal(err)
	}
	if err := h.connect(); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(h.pid(), syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	// The stop takes effect asynchronously: wait (bounded) until the kernel says so.
	for deadline := time.Now().Add(processBound); procState(h.pid()) != "T"; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("plugin not stopped within %s (state %q)", processBound, procState(h.pid()))
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if _, err := h.kv.kv.Get(ctx, &kvpb.GetRequest{Key: "k"}); !strings.Contains(rpcError(err).Error(), "DEADLINE_EXCEEDED") {
		t.Fatalf("Get on a stopped plugin: %v", err)
	}
	t0 := time.Now()
	byItself, detail := h.stop()
	if byItself || !strings.Contains(detail, "did not answer Shutdown within 1s (stopped or hung); killed (signal: killed)") {
		t.Fatalf("stop = %v, %q", byItself, detail)
	}
	if took := time.Since(t0); took > exitWait {
		t.Fatalf("stop took %s, bound %s", took, exitWait)
	}
}

// An address that accepts and never answers: the host gives up at --timeout
// (gRPC-Go alone waits at least 20 s), then ends the plugin.
func TestE2EAddressThatNeverAnswers(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "s")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ln.Close() }()
	go func() {
		var held []net.Conn
		for {
			c, err := ln.Accept()
			if err != nil {
				for _, c := range held {
					_ = c.Close()
				}
				return
			}
			held = append(held, c)
		}
	}()
	fake := fmt.Sprintf(`sh -c 'echo "1|1|unix|%s|grpc"; exec sleep 30'`, sock)
	t0 := time.Now()
	code, r := clientTestJSON(t, "--tls-mode", "disabled", "--timeout", "1", "--server", fake)
	took := time.Since(t0)
	if code != 1 || !strings.Contains(deref(r.Error), "no connection to the plugin at unix "+sock+" within 1s") {
		t.Fatalf("exit %d, %q", code, deref(r.Error))
	}
	if took > 1*time.Second+exitWait {
		t.Fatalf("took %s with --timeout 1", took)
	}
}

// A first stdout line over 64 KiB is named as such, not as an early exit.
func TestE2EHandshakeLineTooLong(t *testing.T) {
	fake := `sh -c 'head -c 70000 /dev/zero | tr "\0" x; echo; exec sleep 30'`
	code, r := clientTestJSON(t, "--tls-mode", "disabled", "--timeout", "5", "--server", fake)
	if code != 1 || !strings.HasPrefix(deref(r.Error), "the plugin's first line on stdout is longer than 64 KiB") {
		t.Fatalf("exit %d, %q", code, deref(r.Error))
	}
}
