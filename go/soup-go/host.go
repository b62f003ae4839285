package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

const (
	noCertMsg       = "plugin did not return a certificate; refusing plaintext"
	reattachAutoMsg = "--reattach cannot use --tls-mode auto: a plugin in debug mode got no PLUGIN_CLIENT_CERT from a host; " +
		"use --tls-mode manual (TLS with your cert files) or --tls-mode disabled, as the plugin was started"
	// shutdownMethod is go-plugin's controller RPC that go-plugin's Kill sends.
	shutdownMethod = "/plugin.GRPCController/Shutdown"
	// killWatchdog bounds go-plugin's Kill: Shutdown (bounded), 2 s to exit, SIGKILL.
	killWatchdog = shutdownBound + exitWait + 2*time.Second
)

// hostOptions say how to launch (argv) or reach (reattach) and talk to the plugin.
type hostOptions struct {
	argv        []string
	reattach    *plugin.ReattachConfig
	keepRunning bool
	multiplex   bool // GRPCBrokerMultiplex
	hs          handshake
	tls         tlsFlags
	timeout     time.Duration
}

// host is one go-plugin client session: a plugin process (or a reattached
// plugin) and its connection.
type host struct {
	opts      hostOptions
	cmd       *exec.Cmd // nil on reattach
	socketDir string    // the plugin's private PLUGIN_UNIX_SOCKET_DIR
	cfg       *plugin.ClientConfig
	client    *plugin.Client
	stderr    *tailBuffer
	ident     *identityWriter // the plugin's stderr, scanned for who serves
	addr      net.Addr
	kv        *kvClient
	hung      atomic.Bool // the plugin did not answer Shutdown in time
	scan      lineTooLong // go-plugin's stdout scanner gave up on a long line
}

// newHost prepares the go-plugin ClientConfig: handshake, bounded dialing,
// and either the plugin's command (launch) or its address (reattach).
func newHost(opts hostOptions, logOut io.Writer) (*host, error) {
	h := &host{opts: opts, stderr: newTailBuffer(stderrTail)}
	h.ident = &identityWriter{next: h.stderr}
	h.cfg = &plugin.ClientConfig{
		HandshakeConfig:  opts.hs.config(),
		VersionedPlugins: opts.hs.pluginSets(&kvPlugin{}),
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		StartTimeout:     opts.timeout,
		Stderr:           h.ident,
		Logger:           hostLogger(logOut, &h.scan),
	}
	// The plugin's stdout/stderr after the handshake (GRPCStdio) become log
	// lines at info, as a go-plugin host that sets SyncStdout/SyncStderr shows them.
	h.cfg.SyncStdout = h.cfg.Logger.Named("plugin.stdout").StandardWriter(&hclog.StandardLoggerOptions{ForceLevel: hclog.Info})
	h.cfg.SyncStderr = h.cfg.Logger.Named("plugin.stderr").StandardWriter(&hclog.StandardLoggerOptions{ForceLevel: hclog.Info})
	// gRPC-Go waits at least 20 s for a connection attempt that hangs (an
	// address that accepts and never answers), and go-plugin's Client()
	// waits for it (its stdio stream); connect's bound is the limit instead.
	setDialOptions(h.cfg,
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: backoff.DefaultConfig, MinConnectTimeout: h.connectBound()}),
		grpc.WithChainUnaryInterceptor(h.boundShutdown))
	if opts.reattach != nil {
		return h, h.configureReattach()
	}
	return h, h.configureLaunch()
}

// configureReattach: connect to a running (debug) plugin's address. There is
// no field 6 to pin, so TLS is manual (own files) or disabled.
func (h *host) configureReattach() error {
	h.cfg.Reattach = h.opts.reattach
	// go-plugin only picks a versioned plugin set in the handshake; a
	// reattached client dispenses from Plugins.
	h.cfg.Plugins = plugin.PluginSet{pluginName: &kvPlugin{}}
	switch h.opts.tls.mode {
	case "auto":
		return errors.New(reattachAutoMsg)
	case "manual":
		cert, ca, err := loadPair(h.opts.tls.certFile, h.opts.tls.keyFile, h.opts.tls.caFile)
		if err != nil {
			return err
		}
		h.cfg.TLSConfig = manualClientTLS(cert, ca)
	}
	return nil
}

// configureLaunch prepares the plugin's command for the TLS mode:
//   - auto + ec-p521: stock AutoMTLS, exactly what Terraform does;
//   - auto + other key: the same protocol done by hand. soup-go makes a
//     go-plugin style cert of that type, sends it in PLUGIN_CLIENT_CERT and
//     passes TLSConfig with it. go-plugin's Start then decodes the plugin's
//     field-6 cert and stores it in that TLSConfig's RootCAs (loadServerCert
//     in client.go v1.8.0 runs whenever field 6 is longer than 50 chars and
//     writes through the TLSConfig pointer), so the plugin cert is pinned;
//   - manual: TLSConfig with own cert and RootCAs from --ca-file;
//   - disabled: no TLS, and no PLUGIN_CLIENT_CERT.
//
// The plugin gets a private PLUGIN_UNIX_SOCKET_DIR, removed by stop whether
// the plugin exited, crashed or was killed.
func (h *host) configureLaunch() error {
	cmd := exec.Command(h.opts.argv[0], h.opts.argv[1:]...)
	// Own process group, so the last-resort kill reaches the plugin's children.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Env = hostEnviron()
	h.cmd = cmd
	h.cfg.Cmd = cmd
	// cmd.Env already holds the parent's environment, minus the variables
	// that only this host may set.
	setHostEnv(h.cfg)
	if h.opts.multiplex {
		if err := setBrokerMultiplex(h.cfg); err != nil {
			return err
		}
	}
	switch h.opts.tls.mode {
	case "auto":
		if h.opts.tls.keyType == goPluginKeyType {
			h.cfg.AutoMTLS = true
			break
		}
		cert, certPEM, err := selfSignedCert(h.opts.tls.keyType)
		if err != nil {
			return err
		}
		cmd.Env = append(cmd.Env, envClientCert+"="+string(certPEM))
		h.cfg.TLSConfig = &tls.Config{
			Certificates: []tls.Certificate{cert},
			ServerName:   "localhost",
			MinVersion:   tls.VersionTLS12,
		}
	case "manual":
		cert, ca, err := loadPair(h.opts.tls.certFile, h.opts.tls.keyFile, h.opts.tls.caFile)
		if err != nil {
			return err
		}
		h.cfg.TLSConfig = manualClientTLS(cert, ca)
	}
	dir, err := privateTempDir("", hostSocketPattern)
	if err != nil {
		return err
	}
	h.socketDir = dir
	cmd.Env = append(cmd.Env, envUnixSocketDir+"="+dir)
	return nil
}

// hostEnviron is the parent's environment without the variables this host
// sets itself: a stray PLUGIN_CLIENT_CERT would ask for TLS we don't want.
// go-plugin appends the cookie, versions and ports.
func hostEnviron() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, envClientCert+"=") && !strings.HasPrefix(kv, envUnixSocketDir+"=") &&
			!strings.HasPrefix(kv, envMultiplexGRPC+"=") {
			env = append(env, kv)
		}
	}
	return env
}

// hostLogger is go-plugin's logger on the host side. Always stderr: stdout
// carries only the result. Quiet by default (the plugin's stderr is kept
// for the result); SOUP_LOG_LEVEL=debug shows everything. Its errors also go
// to errs, whatever the level.
func hostLogger(w io.Writer, errs io.Writer) hclog.Logger {
	l := hclog.NewInterceptLogger(&hclog.LoggerOptions{Name: "soup.host", Level: logLevel(hclog.Error), Output: w})
	l.RegisterSink(hclog.NewSinkAdapter(&hclog.LoggerOptions{Level: hclog.Error, Output: errs}))
	return l
}

// lineTooLong watches go-plugin's error log for its stdout scanner giving
// up (bufio.Scanner's 64 KiB line limit): go-plugin then reports "Failed to
// read any lines" as if the plugin had printed nothing.
type lineTooLong struct{ seen atomic.Bool }

func (l *lineTooLong) Write(p []byte) (int, error) {
	if bytes.Contains(p, []byte(bufio.ErrTooLong.Error())) {
		l.seen.Store(true)
	}
	return len(p), nil
}

// connectBound bounds the connection (TLS handshake included): --timeout,
// at most rpcTimeout.
func (h *host) connectBound() time.Duration {
	return min(h.opts.timeout, rpcTimeout)
}

// boundShutdown gives go-plugin's Shutdown (sent without a deadline by Kill)
// one: a plugin that does not answer (SIGSTOPped, wedged) is SIGKILLed.
func (h *host) boundShutdown(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn,
	invoke grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	if method != shutdownMethod {
		return invoke(ctx, method, req, reply, cc, opts...)
	}
	ctx, cancel := context.WithTimeout(ctx, shutdownBound)
	defer cancel()
	err := invoke(ctx, method, req, reply, cc, opts...)
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		h.hung.Store(true)
		h.killGroup()
	}
	return err
}

// start launches the plugin and reads its handshake line (go-plugin's Start
// does both; they cannot be timed apart without racing on its state), or
// checks the reattach config.
func (h *host) start() (err error) {
	if rc := h.opts.reattach; rc != nil && !h.opts.hs.serves(rc.ProtocolVersion) {
		return incompatibleVersion(rc.ProtocolVersion, h.opts.hs.versions)
	}
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
	case h.scan.seen.Load():
		msg = "the plugin's first line on stdout is longer than 64 KiB (go-plugin's limit), so it is no handshake line"
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
	if h.cmd == nil {
		return fmt.Errorf("reattach to pid %d at %s %s: %s", h.opts.reattach.Pid,
			h.opts.reattach.Addr.Network(), h.opts.reattach.Addr, msg)
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
	if h.cmd == nil {
		if h.opts.reattach != nil {
			return h.opts.reattach.Pid
		}
		return 0
	}
	if h.cmd.Process == nil {
		return 0
	}
	return h.cmd.Process.Pid
}

// connect checks that TLS was not silently lost, dispenses the KV client and
// establishes the gRPC connection (TLS handshake included) within connectBound.
func (h *host) connect() error {
	if h.opts.tls.mode == "auto" && (h.cfg.TLSConfig == nil || h.cfg.TLSConfig.RootCAs == nil) {
		// No field-6 cert: go-plugin would go on and fail later with an
		// unknown-authority error; say what happened instead.
		return errors.New(noCertMsg)
	}
	// The bound starts here: go-plugin's Client() already waits for the connection.
	bound := h.connectBound()
	ctx, cancel := context.WithTimeout(context.Background(), bound)
	defer cancel()
	rpc, err := h.client.Client()
	if err != nil {
		return err
	}
	raw, err := rpc.Dispense(pluginName)
	if err != nil {
		return err
	}
	h.kv = raw.(*kvClient)
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
			if dl, _ := ctx.Deadline(); time.Until(dl) < bound/10 {
				// gRPC's own connect timeout (set to bound) ended the attempt.
				return fmt.Errorf("no connection to the plugin at %s %s within %s: it accepted the connection but did not answer",
					h.addr.Network(), h.addr, bound)
			}
			return fmt.Errorf("connecting to the plugin at %s %s failed: %s", h.addr.Network(), h.addr, status.Convert(err).Message())
		}
		if !conn.WaitForStateChange(ctx, st) {
			return fmt.Errorf("no connection to the plugin at %s %s within %s (state %s)", h.addr.Network(), h.addr, bound, st)
		}
	}
}

// rpcCtx bounds one RPC: --timeout, at most rpcTimeout (every host wait is
// bounded by --timeout; a stopped plugin is given up on within it).
func (h *host) rpcCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), min(h.opts.timeout, rpcTimeout))
}

// stop ends the plugin and reports whether it exited by itself, then removes
// the plugin's socket directory. go-plugin's Kill does Controller.Shutdown
// (bounded by boundShutdown), closes the connection, waits 2 s and then
// SIGKILLs the process (logging "plugin failed to exit gracefully"). Rather
// than parse that log line, stop reads the process's wait status, which
// cmd holds once Kill has returned: killed by a signal = did not exit by
// itself. Kill is bounded by a watchdog, and the process group gets a
// SIGKILL at the end for anything the plugin left behind.
func (h *host) stop() (exitedByItself bool, detail string) {
	defer h.removeSocketDir()
	if h.client == nil {
		return false, "plugin not started"
	}
	if h.cmd == nil {
		return h.detach()
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
	if h.hung.Load() {
		return false, fmt.Sprintf("did not answer Shutdown within %s (stopped or hung); killed (%s)", shutdownBound, ps)
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return false, fmt.Sprintf("did not exit within 2 s of Shutdown; killed (%s)", ps)
	}
	return true, fmt.Sprintf("exited by itself after Shutdown (%s)", ps)
}

// detach ends a reattached session: Shutdown (go-plugin's Kill does nothing
// for a test-mode plugin, so it is sent here) and a bounded wait until the
// plugin stops serving, or with --keep-running only the connection closes.
func (h *host) detach() (bool, string) {
	if h.opts.keepRunning {
		if h.kv != nil {
			_ = h.kv.conn.Close()
		}
		return true, "skipped: --keep-running, the plugin keeps running"
	}
	rpc, err := h.client.Client()
	if err != nil {
		return false, "no connection for Shutdown: " + err.Error()
	}
	_ = rpc.Close() // Shutdown, then close the connection
	if h.hung.Load() {
		return false, fmt.Sprintf("did not answer Shutdown within %s (stopped or hung)", shutdownBound)
	}
	addr := h.opts.reattach.Addr
	deadline := time.Now().Add(exitWait)
	for time.Now().Before(deadline) {
		c, err := net.DialTimeout(addr.Network(), addr.String(), 100*time.Millisecond)
		if err != nil {
			return true, fmt.Sprintf("stopped serving after Shutdown (%s %s closed)", addr.Network(), addr)
		}
		_ = c.Close()
		time.Sleep(20 * time.Millisecond)
	}
	return false, fmt.Sprintf("still serving at %s %s %s after Shutdown", addr.Network(), addr, exitWait)
}

func (h *host) removeSocketDir() {
	if h.socketDir != "" {
		_ = os.RemoveAll(h.socketDir)
	}
}

// terminate sends SIGTERM to the plugin's process group when there is no
// usable connection: go-plugin's Kill would wait 2 s for a Shutdown that
// cannot arrive and then SIGKILL, leaving the plugin no chance to clean up.
func (h *host) terminate() {
	if h.cmd != nil && h.pid() > 0 {
		_ = syscall.Kill(-h.pid(), syscall.SIGTERM)
	}
}

// killGroup SIGKILLs the plugin's process group (ESRCH when it is empty);
// never a reattached plugin, which this host did not start.
func (h *host) killGroup() {
	if h.cmd != nil && h.pid() > 0 {
		_ = syscall.Kill(-h.pid(), syscall.SIGKILL)
	}
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
	if err := fn(h); err != nil {
		return h.explain(err)
	}
	return nil
}

// explain adds to a failed call's error, when the plugin died meanwhile, its
// exit status and last stderr line: gRPC only says the connection broke.
func (h *host) explain(err error) error {
	if h.cmd == nil {
		return err
	}
	for deadline := time.Now().Add(deathWait); !h.client.Exited() && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if !h.client.Exited() || h.cmd.ProcessState == nil {
		return err
	}
	status := fmt.Sprintf("exit code %d", h.cmd.ProcessState.ExitCode())
	if ws, ok := h.cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		status = fmt.Sprintf("signal %d", ws.Signal())
	}
	last := h.stderr.lastLine()
	if last == "" {
		last = "(empty)"
	}
	return fmt.Errorf("%w; plugin exited (%s); its last stderr line: %s", err, status, last)
}
