package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
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
	debugAutoMsg = "--debug cannot use --tls-mode auto: no host sends PLUGIN_CLIENT_CERT to a plugin started by hand; " +
		"use --tls-mode manual (TLS with your cert files) or --tls-mode disabled"
	debugHint = "plugin running in debug mode; reattach with: --reattach '%s'\n"
)

func serverCommand() *command {
	return newCommand("rpc server-start", "[flags]", `
Run as a go-plugin KV plugin (plugin.Serve from hashicorp/go-plugin): check the
magic cookie (--magic-cookie-key=--magic-cookie-value), negotiate one of
--protocol-versions, listen, print the handshake line on stdout and serve
/proto.KV/Get and /proto.KV/Put over a file store until the host shuts it down
(or SIGTERM, or the host process dies). Running it by hand without the cookie
prints go-plugin's "This binary is a plugin" message.

--debug: serve without a host (go-plugin's test mode, no cookie), print the
reattach config as one JSON line on stdout and serve until Shutdown or SIGTERM;
a host connects with --reattach.

TLS modes: auto = go-plugin AutoMTLS (ec-p521, host must send PLUGIN_CLIENT_CERT,
otherwise the plugin refuses to serve plaintext); manual = own cert/key, client
certs required and verified against --ca-file; disabled = plaintext (refused if
the host asked for TLS).`,
		"BASIC_PLUGIN=hello PLUGIN_PROTOCOL_VERSIONS=1 soup-go rpc server-start --tls-mode disabled --kv-dir /tmp/kv")
}

// pluginOptions is everything `rpc server-start` was asked to do.
type pluginOptions struct {
	tls       tlsFlags
	hs        handshake
	transport string
	kvDir     string
	debug     bool
}

// serverStart is `rpc server-start`.
func serverStart(args []string, stdout, stderr io.Writer) int {
	c := serverCommand()
	var (
		opts pluginOptions
		hf   handshakeFlags
	)
	opts.tls.register(c.fs, goPluginKeyType)
	hf.register(c.fs)
	c.fs.StringVar(&opts.transport, "transport", "unix", "unix (what go-plugin does on Linux) or tcp (127.0.0.1, through a front; see tcpfront.go)")
	c.fs.StringVar(&opts.kvDir, "kv-dir", "", "directory of the KV store (default: a temporary one in the plugin's run directory, removed at exit)")
	c.fs.BoolVar(&opts.debug, "debug", false, "debug mode: no host, print the reattach config (JSON) on stdout, serve until Shutdown or SIGTERM")
	return c.run(args, stdout, stderr, func(pos []string) (int, error) {
		if len(pos) > 0 {
			return 2, usagef("unexpected argument %q", pos[0])
		}
		if err := opts.tls.validate(); err != nil {
			return 2, err
		}
		if opts.tls.mode == "auto" && opts.tls.keyType != goPluginKeyType {
			return 2, usageError{autoKeyTypeMsg}
		}
		if opts.transport != "unix" && opts.transport != "tcp" {
			return 2, usagef("invalid --transport %q (choose from unix, tcp)", opts.transport)
		}
		var err error
		if opts.hs, err = hf.parse(); err != nil {
			return 2, err
		}
		code, err := servePlugin(opts, stdout, stderr)
		if err != nil {
			// Like every other plugin log line (and the Python plugin): hclog JSON
			// on stderr, which a go-plugin host re-logs at its level.
			pluginLogger(stderr).Error(err.Error())
		}
		return code, nil
	})
}

// servePlugin checks the cookie and the TLS policy, makes the plugin's
// temporary directories and serves. The cookie comes first so that running
// the binary by hand gives go-plugin's own message and exit code whatever the
// other flags and variables say. Every directory made here is removed by a
// deferred call on every return path.
func servePlugin(opts pluginOptions, stdout, stderr io.Writer) (int, error) {
	kv := &kvPlugin{}
	cfg := &plugin.ServeConfig{
		HandshakeConfig:  opts.hs.config(),
		VersionedPlugins: opts.hs.pluginSets(kv),
	}
	if opts.debug && opts.tls.mode == "auto" {
		return 1, errors.New(debugAutoMsg)
	}
	if !opts.debug && os.Getenv(opts.hs.cookieKey) != opts.hs.cookieValue {
		plugin.Serve(cfg) // prints go-plugin's message and exits 1
		return 1, nil
	}
	provider, err := pluginTLS(opts.tls, os.Getenv(envClientCert))
	if err != nil {
		return 1, err
	}
	cfg.TLSProvider = provider

	// stderr is the real fd 2 (main's os.Stderr): Serve points os.Stderr at
	// its stdio pipe later.
	logger := pluginLogger(stderr)
	cfg.Logger = logger

	// SIGTERM is handled from here to the process's exit, never handed back to
	// the default action: a SIGTERM that comes while the directories are being
	// removed (after Serve returned by itself) must neither kill the plugin
	// half-way through its cleanup nor turn its exit 0 into death by signal.
	sigterm := make(chan os.Signal, 1)
	signal.Notify(sigterm, syscall.SIGTERM)

	hostDir, parent := os.Getenv(envUnixSocketDir), os.Getppid()
	runDir, err := privateRunDir()
	if err != nil {
		return 1, err
	}
	defer func() {
		removeAll(logger, runDir)
		if os.Getppid() != parent {
			removeOrphanedHostDir(hostDir)
		}
	}()
	if opts.kvDir == "" {
		// Inside the run directory: a host that hands out a private
		// PLUGIN_UNIX_SOCKET_DIR removes it even after a SIGKILL.
		opts.kvDir = filepath.Join(runDir, "kv")
	}
	if kv.store, err = openFileStore(opts.kvDir); err != nil {
		return 1, err
	}
	// "backend" names who terminates TLS, like the Python plugin's log, so that reports can
	// show both sides' TLS stacks; it is null in disabled mode.
	var backend any
	if opts.tls.mode != "disabled" {
		backend = "go"
	}
	// impl and version tell the host who serves (identity is not on the wire);
	// both soup hosts read them from this first line, as from the Python plugin's.
	logger.Info("soup-go plugin starting", "impl", "go", "version", versionString(), "tls_mode", opts.tls.mode,
		"backend", backend, "transport", opts.transport, "kv_dir", opts.kvDir, "pid", os.Getpid(), "debug", opts.debug)
	return runPlugin(cfg, opts, pluginRun{dir: runDir, sigterm: sigterm}, logger, stdout, stderr)
}

// pluginTLS is the TLS policy: nil provider = go-plugin's own AutoMTLS (auto)
// or plaintext (disabled), after the checks that make the plugin refuse.
func pluginTLS(tf tlsFlags, clientCert string) (func() (*tls.Config, error), error) {
	switch tf.mode {
	case "auto":
		if clientCert == "" {
			return nil, errors.New(autoNoCertMsg)
		}
		// plugin.Serve would only log this and then serve TLS that no client
		// can pass; refuse at once, as the Python plugin does.
		if !x509.NewCertPool().AppendCertsFromPEM([]byte(clientCert)) {
			return nil, errors.New(badClientCertMsg)
		}
	case "disabled":
		if clientCert != "" {
			return nil, errors.New(disabledButCertMsg)
		}
	case "manual":
		cert, ca, err := loadPair(tf.certFile, tf.keyFile, tf.caFile)
		if err != nil {
			return nil, err
		}
		// With a TLSProvider go-plugin ignores PLUGIN_CLIENT_CERT and sends
		// no cert in the handshake line: the host trusts --ca-file instead.
		return func() (*tls.Config, error) { return manualServerTLS(cert, ca), nil }, nil
	}
	return nil, nil
}

// privateRunDir makes the plugin's own directory (inside the host's
// PLUGIN_UNIX_SOCKET_DIR if it gave one) for go-plugin's socket and a
// temporary KV store, and points PLUGIN_UNIX_SOCKET_DIR at it. go-plugin does
// not remove its socket on every path (an unknown PLUGIN_UNIX_SOCKET_GROUP, a
// stop with the gRPC muxer), so removing this directory at exit removes
// whatever it left.
func privateRunDir() (string, error) {
	dir, err := privateTempDir(os.Getenv(envUnixSocketDir), runDirPattern)
	if err != nil {
		return "", err
	}
	// go-plugin's socket goes in here: say why its bind would fail before it does.
	if err := unixPathTooLong(dir, len(dir)+goPluginSocketName); err != nil {
		_ = os.RemoveAll(dir)
		return "", err
	}
	// A host in another user's group must reach the socket in here too.
	if group := os.Getenv(envUnixSocketGroup); group != "" {
		if gid, ok := lookupGID(group); ok {
			_ = os.Chown(dir, -1, gid)
			_ = os.Chmod(dir, 0o770)
		}
		// An unknown group: go-plugin refuses with its own message.
	}
	if err := os.Setenv(envUnixSocketDir, dir); err != nil {
		_ = os.RemoveAll(dir)
		return "", err
	}
	return dir, nil
}

// lookupGID resolves a group name or number as go-plugin does.
func lookupGID(group string) (int, bool) {
	if gid, err := strconv.Atoi(group); err == nil {
		return gid, true
	}
	g, err := user.LookupGroup(group)
	if err != nil {
		return 0, false
	}
	gid, err := strconv.Atoi(g.Gid)
	return gid, err == nil
}

// removeOrphanedHostDir removes, after the host died, the socket directory a
// soup host made for this plugin alone, if empty: a SIGKILLed host cannot, and
// this plugin is its last user. A directory the user named is left alone.
func removeOrphanedHostDir(dir string) {
	base := filepath.Base(dir)
	if dir != "" && (strings.HasPrefix(base, hostSocketPattern) || strings.HasPrefix(base, pythonHostSocketPattern)) {
		_ = os.Remove(dir) // fails on a non-empty directory, as it should
	}
}

func removeAll(logger hclog.Logger, dir string) {
	if err := os.RemoveAll(dir); err != nil {
		logger.Warn("could not remove a temporary directory", "dir", dir, "error", err)
	}
}

// pluginLogger logs hclog JSON lines, which a go-plugin host parses and
// re-logs with their levels. UTC, so the timestamp ends in "Z" with exactly
// six fractional digits as the go-plugin host expects. Info unless
// SOUP_LOG_LEVEL says otherwise, as the Python plugin: every line costs the
// host a parse even when it drops it.
func pluginLogger(w io.Writer) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{
		Name:       "soup.plugin",
		Level:      logLevel(hclog.Info),
		Output:     w,
		JSONFormat: true,
		TimeFn:     func() time.Time { return time.Now().UTC() },
	})
}

// logLevel is SOUP_LOG_LEVEL, or def when it is unset or unknown.
func logLevel(def hclog.Level) hclog.Level {
	level := hclog.LevelFromString(os.Getenv(envLogLevel))
	if level == hclog.NoLevel {
		return def
	}
	return level
}

// printReattach prints the debug plugin's reattach line and the hint.
func printReattach(stdout, stderr io.Writer, rc *plugin.ReattachConfig) error {
	line, err := formatReattach(rc)
	if err != nil {
		return err
	}
	if _, err := fmt.Fprintln(stdout, line); err != nil {
		return err
	}
	if f, ok := stdout.(*os.File); ok {
		_ = f.Sync()
	}
	fmt.Fprintf(stderr, debugHint, line)
	return nil
}
