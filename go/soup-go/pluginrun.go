package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
)

// pluginRun is what servePlugin made for the run: the private directory
// that holds go-plugin's socket, and SIGTERM, which it already handles.
type pluginRun struct {
	dir     string
	sigterm <-chan os.Signal
}

// runPlugin runs plugin.Serve in a goroutine and returns (so that the
// caller's deferred cleanup runs) when Serve returns after Shutdown, or
// after stopping it on SIGTERM, on the death of the host process (stock
// go-plugin leaves the plugin running for good) or when the tcp front fails.
func runPlugin(cfg *plugin.ServeConfig, opts pluginOptions, run pluginRun, logger hclog.Logger, stdout, stderr io.Writer) (int, error) {
	// Serve only builds the server once it has a listener and TLS, so a nil
	// server after Serve means it bailed out early.
	var server atomic.Pointer[grpc.Server]
	cfg.GRPCServer = func(o []grpc.ServerOption) *grpc.Server {
		s := plugin.DefaultGRPCServer(o)
		server.Store(s)
		return s
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	reattach := make(chan *plugin.ReattachConfig, 1)
	if opts.debug {
		setDebugServe(cfg, ctx, reattach, nil)
	}
	var frontFailed <-chan error
	var front *tcpFront
	if opts.transport == "tcp" {
		var err error
		if front, err = startTCPFront(logger, !opts.debug); err != nil {
			return 1, err
		}
		defer front.Close()
		frontFailed = front.Failed()
	}
	// Once the host is dead, a log line to its stderr pipe would kill the plugin
	// with SIGPIPE before it removes its files: let the write fail instead.
	signal.Ignore(syscall.SIGPIPE)
	var hostGone <-chan struct{}
	if !opts.debug {
		// A debug plugin's parent is whoever started it by hand, not a host.
		hostGone = watchParent(ctx, os.Getppid, parentPoll)
	}
	var wake func()
	if multiplex, _ := strconv.ParseBool(os.Getenv(envMultiplexGRPC)); multiplex {
		wake = func() { wakeMuxer(logger, run.dir) }
	}

	served := make(chan struct{})
	go func() { plugin.Serve(cfg); close(served) }()
	stop := func(why string) error {
		logger.Info(why + ": stopping")
		return stopServe(cancel, &server, wake, served)
	}
	for {
		select {
		case <-served:
			if server.Load() == nil {
				return 1, errors.New("plugin.Serve failed before serving (see the log above)")
			}
			logger.Info("soup-go plugin stopped")
			return 0, nil
		case rc := <-reattach:
			if err := announce(rc, front, stdout, stderr); err != nil {
				return 1, errors.Join(err, stop("no reattach config"))
			}
		case <-run.sigterm:
			// go-plugin hosts never send SIGTERM (they use Shutdown, then SIGKILL);
			// soup-go's host does when the connection failed and Shutdown cannot arrive.
			return stopCode(stop("SIGTERM"))
		case <-hostGone:
			return stopCode(stop("the host process exited"))
		case err := <-frontFailed:
			return 1, errors.Join(err, stop("tcp front failed"))
		}
	}
}

func stopCode(err error) (int, error) {
	if err != nil {
		return 1, err
	}
	return 0, nil
}

// announce prints the debug plugin's reattach config, with the tcp front's
// address in place of go-plugin's socket when the front is on.
func announce(rc *plugin.ReattachConfig, front *tcpFront, stdout, stderr io.Writer) error {
	if front != nil {
		addr, err := front.open(rc.Addr.String())
		if err != nil {
			return fmt.Errorf("tcp front: %w", err)
		}
		rc.Addr = addr
	}
	return printReattach(stdout, stderr, rc)
}

// stopServe ends Serve: cancel ends it in debug mode, Stop on the gRPC server
// otherwise (once Serve has built it), and wake (with PLUGIN_MULTIPLEX_GRPC)
// the muxer that both wait for. Bounded: Serve may be stuck before it has a
// server, and then the process exits without it.
func stopServe(cancel context.CancelFunc, server *atomic.Pointer[grpc.Server], wake func(), served <-chan struct{}) error {
	cancel()
	deadline := time.After(stopBound)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	stopped := false
	for {
		if s := server.Load(); s != nil && !stopped {
			// In a goroutine: go-plugin's muxer blocks closing its listener
			// until it has a yamux session.
			go s.Stop()
			if wake != nil {
				wake()
			}
			stopped = true
		}
		select {
		case <-served:
			return nil
		case <-deadline:
			return fmt.Errorf("plugin.Serve did not return within %s of the stop", stopBound)
		case <-tick.C:
		}
	}
}

// wakeMuxer connects to go-plugin's socket in dir once and hangs up. With
// PLUGIN_MULTIPLEX_GRPC go-plugin's muxer takes the first connection as its
// yamux session, and until it has one (for 5 s) its Accept and Close wait, so
// neither Stop nor a cancelled debug Serve could return sooner. A session that
// is hung up at once ends at once, and with it Serve. If a host's session came
// first, this connection waits unaccepted until the listener goes.
func wakeMuxer(logger hclog.Logger, dir string) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		logger.Warn("cannot find go-plugin's socket to end its muxer", "dir", dir, "error", err)
		return
	}
	for _, e := range entries {
		if e.Type()&fs.ModeSocket == 0 {
			continue
		}
		path := filepath.Join(dir, e.Name())
		conn, err := net.DialTimeout("unix", path, stopBound)
		if err != nil {
			logger.Debug("muxer wake-up connection failed", "socket", path, "error", err)
			continue
		}
		_ = conn.Close()
	}
}

// watchParent closes the returned channel when the parent process changes
// (the host died and the plugin was re-parented), checked every interval.
func watchParent(ctx context.Context, getppid func() int, interval time.Duration) <-chan struct{} {
	gone := make(chan struct{})
	parent := getppid()
	go func() {
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				if getppid() != parent {
					close(gone)
					return
				}
			}
		}
	}()
	return gone
}
