package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
)

const (
	// autoNoCertMsg: plugin.Serve would serve plaintext when the host sent no
	// client cert; the contract says a plugin in auto mode refuses instead.
	autoNoCertMsg = "tls-mode auto: the host sent no PLUGIN_CLIENT_CERT; refusing to serve plaintext " +
		"(start the host with AutoMTLS, or pass --tls-mode disabled explicitly)"
	badClientCertMsg   = "PLUGIN_CLIENT_CERT is not a PEM certificate; refusing to serve"
	disabledButCertMsg = "tls-mode disabled but the host asked for TLS (PLUGIN_CLIENT_CERT set)"
	autoKeyTypeMsg     = "in --tls-mode auto soup-go uses go-plugin's own AutoMTLS certificate, which is always ec-p521; " +
		"use --tls-mode manual for other key types"
)

func serverCommand() *command {
	c := newCommand("rpc server-start", "[flags]", `
Run as a go-plugin KV plugin (plugin.Serve from hashicorp/go-plugin): check the
magic cookie BASIC_PLUGIN=hello, listen, print the handshake line on stdout and
serve /proto.KV/Get and /proto.KV/Put over a file store until the host shuts it
down. A host starts this command; running it by hand only prints go-plugin's
"This binary is a plugin" message.

TLS modes: auto = go-plugin AutoMTLS (ec-p521, host must send PLUGIN_CLIENT_CERT,
otherwise the plugin refuses to serve plaintext); manual = own cert/key, client
certs required and verified against --ca-file; disabled = plaintext (refused if
the host asked for TLS).`,
		"BASIC_PLUGIN=hello PLUGIN_PROTOCOL_VERSIONS=1 soup-go rpc server-start --tls-mode disabled --kv-dir /tmp/kv")
	return c
}

// serverStart is `rpc server-start`.
func serverStart(args []string, stdout, stderr io.Writer) int {
	c := serverCommand()
	var (
		tf        tlsFlags
		transport string
		kvDir     string
	)
	tf.register(c.fs, goPluginKeyType)
	c.fs.StringVar(&transport, "transport", "unix", "unix (what go-plugin does on Linux) or tcp (127.0.0.1, through a front; see tcpfront.go)")
	c.fs.StringVar(&kvDir, "kv-dir", "", "directory of the KV store (default: a fresh temporary directory removed at exit)")
	return c.run(args, stdout, stderr, func(pos []string) (int, error) {
		if len(pos) > 0 {
			return 2, usagef("unexpected argument %q", pos[0])
		}
		if err := tf.validate(); err != nil {
			return 2, err
		}
		if tf.mode == "auto" && tf.keyType != goPluginKeyType {
			return 2, usageError{autoKeyTypeMsg}
		}
		if transport != "unix" && transport != "tcp" {
			return 2, usagef("invalid --transport %q (choose from unix, tcp)", transport)
		}
		code, err := servePlugin(tf, transport, kvDir)
		if err != nil {
			// Like every other plugin log line (and the Python plugin): hclog JSON
			// on stderr, which a go-plugin host re-logs at its level.
			pluginLogger(stderr).Error(err.Error())
		}
		return code, nil
	})
}

// servePlugin runs plugin.Serve. The order matters: the magic cookie comes
// first so that running the binary by hand gives go-plugin's own message and
// exit code whatever the other flags and variables say.
func servePlugin(tf tlsFlags, transport, kvDir string) (int, error) {
	kv := &kvPlugin{}
	// Serve only builds the server once it has a listener and TLS, so a nil
	// server after Serve means it bailed out early.
	var server atomic.Pointer[grpc.Server]
	cfg := &plugin.ServeConfig{
		HandshakeConfig: Handshake,
		Plugins:         plugin.PluginSet{pluginName: kv, counterPluginName: &counterPlugin{}}, // broker hook: callback demo
		GRPCServer: func(opts []grpc.ServerOption) *grpc.Server {
			s := plugin.DefaultGRPCServer(opts)
			server.Store(s)
			return s
		},
	}
	if os.Getenv(Handshake.MagicCookieKey) != Handshake.MagicCookieValue {
		plugin.Serve(cfg) // prints go-plugin's message and exits 1
		return 1, nil
	}

	clientCert := os.Getenv("PLUGIN_CLIENT_CERT")
	switch tf.mode {
	case "auto":
		if clientCert == "" {
			return 1, fmt.Errorf("%s", autoNoCertMsg)
		}
		// plugin.Serve would only log this and then serve TLS that no client
		// can pass; refuse at once, as the Python plugin does.
		if !x509.NewCertPool().AppendCertsFromPEM([]byte(clientCert)) {
			return 1, fmt.Errorf("%s", badClientCertMsg)
		}
	case "disabled":
		if clientCert != "" {
			return 1, fmt.Errorf("%s", disabledButCertMsg)
		}
	case "manual":
		cert, ca, err := loadPair(tf.certFile, tf.keyFile, tf.caFile)
		if err != nil {
			return 1, err
		}
		// With a TLSProvider go-plugin ignores PLUGIN_CLIENT_CERT and sends
		// no cert in the handshake line: the host trusts --ca-file instead.
		cfg.TLSProvider = func() (*tls.Config, error) { return manualServerTLS(cert, ca), nil }
	}

	logger := pluginLogger(os.Stderr)
	cfg.Logger = logger

	cleanup := func() {}
	if kvDir == "" {
		dir, err := os.MkdirTemp("", "soup-go-kv-")
		if err != nil {
			return 1, err
		}
		cleanup = func() { _ = os.RemoveAll(dir) }
		defer cleanup()
		kvDir = dir
	}
	kv.store = newFileStore(kvDir)
	// "backend" names who terminates TLS, like the Python plugin's log, so that reports can
	// show both sides' TLS stacks; it is null in disabled mode.
	var backend any
	if tf.mode != "disabled" {
		backend = "go"
	}
	// impl and version tell the host who serves (identity is not on the wire);
	// both soup hosts read them from this first line, as from the Python plugin's.
	logger.Info("soup-go plugin starting", "impl", "go", "version", versionString(), "tls_mode", tf.mode,
		"backend", backend, "transport", transport, "kv_dir", kvDir, "pid", os.Getpid())

	if transport == "tcp" {
		front, err := startTCPFront(logger)
		if err != nil {
			return 1, err
		}
		defer front.Close()
	}

	// SIGTERM stops the gRPC server, which makes Serve return normally: the
	// socket and a temporary --kv-dir are removed. go-plugin hosts never send
	// it (they use Shutdown, then SIGKILL); soup-go's host does when the
	// connection failed and Shutdown cannot arrive.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM)
	defer signal.Stop(sig)
	go func() {
		<-sig
		logger.Info("SIGTERM: stopping")
		if s := server.Load(); s != nil {
			s.Stop()
			return
		}
		cleanup()
		os.Exit(1)
	}()

	plugin.Serve(cfg)
	if server.Load() == nil {
		return 1, fmt.Errorf("plugin.Serve failed before serving (see the log above)")
	}
	logger.Info("soup-go plugin stopped")
	return 0, nil
}

// pluginLogger logs hclog JSON lines, which a go-plugin host parses and
// re-logs with their levels. UTC, so the timestamp ends in "Z" with exactly
// six fractional digits as the go-plugin host expects.
func pluginLogger(w io.Writer) hclog.Logger {
	level := hclog.LevelFromString(os.Getenv("SOUP_GO_LOG_LEVEL"))
	if level == hclog.NoLevel {
		level = hclog.Debug
	}
	return hclog.New(&hclog.LoggerOptions{
		Name:       "soup.plugin",
		Level:      level,
		Output:     w,
		JSONFormat: true,
		TimeFn:     func() time.Time { return time.Now().UTC() },
	})
}
