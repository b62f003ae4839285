package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"soup-go/kvpb"
)

const (
	rpcTimeout   = 5 * time.Second
	stderrTail   = 4096
	noCertMsg    = "plugin did not return a certificate; refusing plaintext"
	killWatchdog = 10 * time.Second
)

// hostOptions say how to launch and talk to the plugin.
type hostOptions struct {
	argv    []string
	tls     tlsFlags
	timeout time.Duration
}

// host is one go-plugin client session: a plugin process and its connection.
type host struct {
	opts   hostOptions
	cmd    *exec.Cmd
	cfg    *plugin.ClientConfig
	client *plugin.Client
	stderr *tailBuffer
	ident  *identityWriter // the plugin's stderr, scanned for who serves
	addr   net.Addr
	kv     *kvClient
}

// newHost prepares the go-plugin ClientConfig for the TLS mode:
//   - auto + ec-p521: stock AutoMTLS, exactly what Terraform does;
//   - auto + other key: the same protocol done by hand. soup-go makes a
//     go-plugin style cert of that type, sends it in PLUGIN_CLIENT_CERT and
//     passes TLSConfig with it. go-plugin's Start then decodes the plugin's
//     field-6 cert and stores it in that TLSConfig's RootCAs (loadServerCert
//     in client.go v1.8.0 runs whenever field 6 is longer than 50 chars and
//     writes through the TLSConfig pointer), so the plugin cert is pinned;
//   - manual: TLSConfig with own cert and RootCAs from --ca-file;
//   - disabled: no TLS, and no PLUGIN_CLIENT_CERT.
func newHost(opts hostOptions, logOut io.Writer) (*host, error) {
	cmd := exec.Command(opts.argv[0], opts.argv[1:]...)
	// Own process group, so the last-resort kill reaches the plugin's children.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Env = hostEnviron()
	h := &host{opts: opts, cmd: cmd, stderr: newTailBuffer(stderrTail)}
	h.ident = &identityWriter{next: h.stderr}
	h.cfg = &plugin.ClientConfig{
		HandshakeConfig:  Handshake,
		Plugins:          plugin.PluginSet{pluginName: &kvPlugin{}},
		Cmd:              cmd,
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		StartTimeout:     opts.timeout,
		Stderr:           h.ident,
		Logger:           hostLogger(logOut),
		// cmd.Env already holds the parent's environment, minus a stray
		// PLUGIN_CLIENT_CERT that would otherwise ask for TLS we don't want.
		SkipHostEnv: true,
	}
	switch opts.tls.mode {
	case "auto":
		if opts.tls.keyType == goPluginKeyType {
			h.cfg.AutoMTLS = true
			break
		}
		cert, certPEM, err := selfSignedCert(opts.tls.keyType)
		if err != nil {
			return nil, err
		}
		cmd.Env = append(cmd.Env, "PLUGIN_CLIENT_CERT="+string(certPEM))
		h.cfg.TLSConfig = &tls.Config{
			Certificates: []tls.Certificate{cert},
			ServerName:   "localhost",
			MinVersion:   tls.VersionTLS12,
		}
	case "manual":
		cert, ca, err := loadPair(opts.tls.certFile, opts.tls.keyFile, opts.tls.caFile)
		if err != nil {
			return nil, err
		}
		h.cfg.TLSConfig = manualClientTLS(cert, ca)
	}
	return h, nil
}

// hostEnviron is the parent's environment without PLUGIN_CLIENT_CERT;
// go-plugin appends the cookie, versions and ports itself.
func hostEnviron() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PLUGIN_CLIENT_CERT=") {
			env = append(env, kv)
		}
	}
	return env
}

// hostLogger is go-plugin's logger on the host side. Always stderr: stdout
// carries only the result. Quiet by default (the plugin's stderr is kept
// for the result); SOUP_GO_LOG_LEVEL=debug shows everything.
func hostLogger(w io.Writer) hclog.Logger {
	level := hclog.LevelFromString(os.Getenv("SOUP_GO_LOG_LEVEL"))
	if level == hclog.NoLevel {
		level = hclog.Error
	}
	return hclog.New(&hclog.LoggerOptions{Name: "soup.host", Level: level, Output: w})
}

// start launches the plugin and reads its handshake line (go-plugin's Start
// does both; they cannot be timed apart without racing on its state).
func (h *host) start() (err error) {
	h.client = plugin.NewClient(h.cfg)
	defer func() {
		// go-plugin dereferences a nil TLSConfig when a plugin sends a cert
		// to a host that asked for none; report instead of crashing.
		if r := recover(); r != nil {
			err = fmt.Errorf("plugin sent a certificate although the host asked for no TLS (go-plugin: %v)", r)
		}
	}()
	h.addr, err = h.client.Start()
	if err != nil {
		return h.startError(err)
	}
	return nil
}

// startError makes go-plugin's start errors say what the contract says,
// with the plugin's exit status and last stderr line.
func (h *host) startError(err error) error {
	msg := err.Error()
	switch {
	case strings.Contains(msg, "Failed to read any lines from plugin's stdout"):
		// go-plugin appends generic notes (architecture, permissions) that
		// hide the real reason: the exit status and stderr below.
		msg = "plugin exited before printing its handshake line on stdout"
	case strings.HasPrefix(msg, "Unrecognized remote plugin message"):
		msg, _, _ = strings.Cut(msg, "\n")
	case strings.HasPrefix(msg, "timeout while waiting for plugin to start"):
		msg = fmt.Sprintf("timed out after %s s waiting for the plugin's handshake line on stdout",
			strconv.FormatFloat(h.opts.timeout.Seconds(), 'f', -1, 64))
	}
	h.stop() // so that the exit status and all of stderr are in
	if ps := h.cmd.ProcessState; ps != nil {
		msg += "; plugin process: " + ps.String()
	}
	if last := h.stderr.lastLine(); last != "" {
		msg += "; plugin stderr: " + last
	}
	return errors.New(msg)
}

func (h *host) pid() int {
	if h.cmd.Process == nil {
		return 0
	}
	return h.cmd.Process.Pid
}

// connect checks that TLS was not silently lost, dispenses the KV client and
// establishes the gRPC connection (TLS handshake included) within 5 s.
func (h *host) connect() error {
	if h.opts.tls.mode == "auto" && (h.cfg.TLSConfig == nil || h.cfg.TLSConfig.RootCAs == nil) {
		// No field-6 cert: go-plugin would go on and fail later with an
		// unknown-authority error; say what happened instead.
		return errors.New(noCertMsg)
	}
	rpc, err := h.client.Client()
	if err != nil {
		return err
	}
	raw, err := rpc.Dispense(pluginName)
	if err != nil {
		return err
	}
	h.kv = raw.(*kvClient)
	ctx, cancel := context.WithTimeout(context.Background(), rpcTimeout)
	defer cancel()
	conn := h.kv.conn
	conn.Connect()
	for {
		st := conn.GetState()
		switch st {
		case connectivity.Ready:
			return nil
		case connectivity.TransientFailure, connectivity.Shutdown:
			// The state has no reason attached; an RPC that fails fast does.
			_, err := grpc_health_v1.NewHealthClient(conn).Check(ctx, &grpc_health_v1.HealthCheckRequest{Service: plugin.GRPCServiceName})
			if err == nil {
				return nil
			}
			return fmt.Errorf("connecting to the plugin at %s %s failed: %s", h.addr.Network(), h.addr, status.Convert(err).Message())
		}
		if !conn.WaitForStateChange(ctx, st) {
			return fmt.Errorf("no connection to the plugin at %s %s within %s (state %s)", h.addr.Network(), h.addr, rpcTimeout, st)
		}
	}
}

func rpcCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), rpcTimeout)
}

// stop ends the plugin and reports whether it exited by itself. go-plugin's
// Kill does Controller.Shutdown, closes the connection, waits 2 s and then
// SIGKILLs the process (logging "plugin failed to exit gracefully"). Rather
// than parse that log line, stop reads the process's wait status, which
// cmd holds once Kill has returned: killed by a signal = did not exit by
// itself. Kill is bounded by a watchdog, and the process group gets a
// SIGKILL at the end for anything the plugin left behind.
func (h *host) stop() (exitedByItself bool, detail string) {
	if h.client == nil {
		return false, "plugin not started"
	}
	done := make(chan struct{})
	go func() { h.client.Kill(); close(done) }()
	select {
	case <-done:
	case <-time.After(killWatchdog):
		h.killGroup()
		select {
		case <-done:
		case <-time.After(killWatchdog):
			return false, "go-plugin's Kill did not return even after SIGKILL"
		}
	}
	h.killGroup()
	ps := h.cmd.ProcessState
	if ps == nil {
		return false, "plugin process was never waited for"
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return false, fmt.Sprintf("did not exit within 2 s of Shutdown; killed (%s)", ps)
	}
	return true, fmt.Sprintf("exited by itself after Shutdown (%s)", ps)
}

// terminate sends SIGTERM to the plugin's process group when there is no
// usable connection: go-plugin's Kill would wait 2 s for a Shutdown that
// cannot arrive and then SIGKILL, leaving the plugin no chance to clean up.
func (h *host) terminate() {
	if pid := h.pid(); pid > 0 {
		_ = syscall.Kill(-pid, syscall.SIGTERM)
	}
}

// killGroup SIGKILLs the plugin's process group (ESRCH when it is empty).
func (h *host) killGroup() {
	if pid := h.pid(); pid > 0 {
		_ = syscall.Kill(-pid, syscall.SIGKILL)
	}
}

// ownCertEvidence fills the client key and fingerprint from the TLSConfig
// go-plugin uses (for AutoMTLS it only exists after Start).
func (h *host) ownCertEvidence(r *Result) {
	if h.cfg.TLSConfig == nil || len(h.cfg.TLSConfig.Certificates) == 0 {
		return
	}
	if leaf, err := leafOf(h.cfg.TLSConfig.Certificates[0]); err == nil {
		r.TLS.ClientKey = strp(keyTypeOf(leaf))
		r.TLS.ClientFingerprint = strp(fingerprint(leaf.Raw))
	}
}

// peerEvidence fills the TLS facts of the live connection from a grpc.Peer
// captured on an RPC. An error if TLS was asked for but is not there.
func peerEvidence(p *peer.Peer, r *Result) error {
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok {
		if r.TLS.Mode == "disabled" {
			return nil
		}
		return fmt.Errorf("tls-mode %s but the connection to the plugin is not TLS", r.TLS.Mode)
	}
	st := info.State
	r.TLS.Version = strp(tlsVersionName(st.Version))
	r.TLS.VersionSource = strp("live")
	if st.NegotiatedProtocol != "" {
		r.TLS.ALPN = strp(st.NegotiatedProtocol)
	}
	if len(st.PeerCertificates) > 0 {
		c := st.PeerCertificates[0]
		r.TLS.ServerKey = strp(keyTypeOf(c))
		r.TLS.ServerFingerprint = strp(fingerprint(c.Raw))
	}
	return nil
}

// runTest is `rpc client test`: spawn, handshake, put, get, get_missing,
// health, shutdown. It stops at the first failing step and always ends the
// plugin.
func runTest(opts hostOptions, logOut io.Writer) *Result {
	res := newResult(opts.tls.mode)
	if opts.tls.mode != "disabled" {
		res.TLS.Backend = strp("go")
	}
	h, err := newHost(opts, logOut)
	if err != nil {
		res.fail(err.Error())
		return res
	}
	stopped := false
	defer func() {
		if !stopped {
			h.stop()
		}
		res.PluginStderrTail = h.stderr.String()
		res.Server = h.ident.identity()
	}()

	ok := true
	step := func(name string, fn func() (string, error)) {
		if !ok {
			return
		}
		t0 := time.Now()
		detail, err := fn()
		ms := float64(time.Since(t0).Microseconds()) / 1000
		if err != nil {
			ok = false
			if detail != "" {
				detail += ": "
			}
			res.addStep(name, false, ms, detail+err.Error())
			res.fail(err.Error())
			return
		}
		res.addStep(name, true, ms, detail)
	}

	step("spawn", func() (string, error) {
		err := h.start()
		if err != nil {
			if h.pid() > 0 {
				return fmt.Sprintf("pid %d", h.pid()), err
			}
			return "", err
		}
		v := h.client.NegotiatedVersion()
		res.AppProtocolVersion = &v
		res.Transport = strp(h.addr.Network())
		res.Address = strp(h.addr.String())
		h.ownCertEvidence(res)
		return fmt.Sprintf("pid %d, handshake line read: %s %s", h.pid(), h.addr.Network(), h.addr), nil
	})
	step("handshake", func() (string, error) {
		if err := h.connect(); err != nil {
			h.terminate()
			return "", err
		}
		return fmt.Sprintf("grpc connected, app protocol %d, tls-mode %s", h.client.NegotiatedVersion(), opts.tls.mode), nil
	})
	value := []byte("hello from soup" + randHex(8))
	step("put", func() (string, error) {
		ctx, cancel := rpcCtx()
		defer cancel()
		var p peer.Peer
		if _, err := h.kv.kv.Put(ctx, &kvpb.PutRequest{Key: "soup-test-key", Value: value}, grpc.Peer(&p)); err != nil {
			return "", rpcError(err)
		}
		if err := peerEvidence(&p, res); err != nil {
			return "", err
		}
		return fmt.Sprintf("key=soup-test-key bytes=%d", len(value)), nil
	})
	step("get", func() (string, error) {
		ctx, cancel := rpcCtx()
		defer cancel()
		resp, err := h.kv.kv.Get(ctx, &kvpb.GetRequest{Key: "soup-test-key"})
		if err != nil {
			return "", rpcError(err)
		}
		return checkGet("soup-test-key", value, resp.GetValue()) // kvprofile.go
	})
	step("get_missing", func() (string, error) {
		key := "soup-missing-key-" + randHex(8)
		ctx, cancel := rpcCtx()
		defer cancel()
		_, err := h.kv.kv.Get(ctx, &kvpb.GetRequest{Key: key})
		return checkMissing(key, err) // kvprofile.go
	})
	step("health", func() (string, error) {
		ctx, cancel := rpcCtx()
		defer cancel()
		resp, err := grpc_health_v1.NewHealthClient(h.kv.conn).Check(ctx,
			&grpc_health_v1.HealthCheckRequest{Service: plugin.GRPCServiceName})
		if err != nil {
			return "", rpcError(err)
		}
		if resp.GetStatus() != grpc_health_v1.HealthCheckResponse_SERVING {
			return "", fmt.Errorf("health of service %q is %s, expected SERVING", plugin.GRPCServiceName, resp.GetStatus())
		}
		return fmt.Sprintf("service=%s SERVING", plugin.GRPCServiceName), nil
	})
	if ok {
		res.MutualTLS = checkMutualTLS(h) // while the plugin still serves (verify.go)
	}
	step("shutdown", func() (string, error) {
		stopped = true
		byItself, detail := h.stop()
		if !byItself {
			return "", errors.New("shutdown: plugin " + detail)
		}
		return detail, nil
	})
	res.OK = ok
	return res
}

// rpcError spells a gRPC error as the kv commands print it: "CODE: message".
func rpcError(err error) error {
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	return fmt.Errorf("%s: %s", codeName(st.Code()), st.Message())
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// withPlugin launches the plugin, connects, runs fn and always ends the
// plugin: the common path of `rpc kv` and `rpc client bench`.
func withPlugin(opts hostOptions, logOut io.Writer, fn func(h *host) error) error {
	h, err := newHost(opts, logOut)
	if err != nil {
		return err
	}
	defer h.stop()
	if err := h.start(); err != nil {
		return err
	}
	if err := h.connect(); err != nil {
		h.terminate()
		return err
	}
	return fn(h)
}
