package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
)

// tcpFront gives a plugin a TCP address on Linux.
//
// Why it exists: go-plugin's serverListener listens on TCP only on Windows and
// on a unix socket everywhere else, with no option to choose. The matrix has a
// tcp transport axis, so soup-go puts a byte-for-byte TCP relay in front of
// go-plugin's unix socket and rewrites the handshake line to point at it.
// The relay never looks into the bytes: TLS stays end to end between the host
// and go-plugin's own listener, which terminates it.
//
// How: plugin.Serve prints the handshake line with fmt.Printf, i.e. to
// whatever os.Stdout is at that moment. Before Serve, os.Stdout is swapped for
// a pipe; the front reads the first line from it, opens 127.0.0.1:0, and
// prints the rewritten line (network "tcp", that address) to the real stdout.
// Right after printing, Serve points os.Stdout at its own stdio pipe, so the
// front never assigns os.Stdout while Serve runs (that would race); Close
// restores it once Serve has returned.
//
// In debug mode no handshake line is printed: the plugin opens the front for
// the address in go-plugin's reattach config instead (open).
type tcpFront struct {
	logger hclog.Logger
	stdout *os.File // the real stdout
	r, w   *os.File // the pipe plugin.Serve prints into (nil in debug mode)
	failed chan error

	mu    sync.Mutex
	ln    net.Listener
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

var errFrontClosed = errors.New("tcp front closed")

// startTCPFront starts the front; with handshake it swaps os.Stdout and
// waits for the handshake line to rewrite.
func startTCPFront(logger hclog.Logger, handshake bool) (*tcpFront, error) {
	f := &tcpFront{logger: logger.Named("tcpfront"), stdout: os.Stdout, conns: map[net.Conn]struct{}{}, failed: make(chan error, 1)}
	if !handshake {
		return f, nil
	}
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	f.r, f.w = r, w
	os.Stdout = w
	f.wg.Add(1)
	go f.relayHandshake()
	return f, nil
}

// Failed delivers the error that keeps the front from serving: a plugin
// asked for tcp must not hand out a unix address instead, so it stops.
func (f *tcpFront) Failed() <-chan error { return f.failed }

func (f *tcpFront) relayHandshake() {
	defer f.wg.Done()
	br := bufio.NewReader(f.r)
	line, err := br.ReadString('\n')
	if err != nil {
		// Serve returned without printing (it logged why); Close ends us.
		return
	}
	out, err := f.rewrite(strings.TrimSpace(line))
	if errors.Is(err, errFrontClosed) {
		return
	}
	if err != nil {
		f.failed <- fmt.Errorf("tcp front: %w", err)
		return
	}
	fmt.Fprintf(f.stdout, "%s\n", out)
	_ = f.stdout.Sync()
	// Nothing else is printed into this pipe, but drain it until Close.
	_, _ = io.Copy(io.Discard, br)
}

// rewrite returns the handshake line with the front's TCP address.
func (f *tcpFront) rewrite(line string) (string, error) {
	parts := strings.Split(line, "|")
	if len(parts) < 5 || parts[2] != "unix" {
		return "", fmt.Errorf("unexpected handshake line from plugin.Serve: %q", line)
	}
	addr, err := f.open(parts[3])
	if err != nil {
		return "", err
	}
	parts[2], parts[3] = "tcp", addr.String()
	return strings.Join(parts, "|"), nil
}

// open listens on 127.0.0.1 and relays every connection to the unix socket backend.
func (f *tcpFront) open(backend string) (net.Addr, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	closed := f.conns == nil
	if !closed {
		f.ln = ln
	}
	f.mu.Unlock()
	if closed {
		_ = ln.Close()
		return nil, errFrontClosed
	}
	// Not "backend": in the plugin's log that key names the TLS stack (reports read it).
	f.logger.Debug("relaying tcp to go-plugin's unix socket", "address", ln.Addr().String(), "unix_socket", backend)
	f.wg.Add(1)
	go f.accept(ln, backend)
	return ln.Addr(), nil
}

func (f *tcpFront) accept(ln net.Listener, backend string) {
	defer f.wg.Done()
	for {
		c, err := ln.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				f.logger.Error("accept", "error", err)
			}
			return
		}
		f.wg.Add(1)
		go f.relay(c, backend)
	}
}

// relay copies bytes both ways until both directions are done, passing on
// half-closes so that TLS close_notify and EOF arrive as sent.
func (f *tcpFront) relay(c net.Conn, backend string) {
	defer f.wg.Done()
	b, err := net.DialTimeout("unix", backend, rpcTimeout)
	if err != nil {
		f.logger.Error("dial go-plugin's socket", "error", err)
		_ = c.Close()
		return
	}
	if !f.track(c, b) {
		return
	}
	defer f.untrack(c, b)
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		if cw, ok := dst.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
		}
		done <- struct{}{}
	}
	go pipe(b, c)
	go pipe(c, b)
	<-done
	<-done
}

// track registers a live pair; false if the front is already closed.
func (f *tcpFront) track(cs ...net.Conn) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.conns == nil {
		for _, c := range cs {
			_ = c.Close()
		}
		return false
	}
	for _, c := range cs {
		f.conns[c] = struct{}{}
	}
	return true
}

func (f *tcpFront) untrack(cs ...net.Conn) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range cs {
		_ = c.Close()
		delete(f.conns, c)
	}
}

// Close stops the front after plugin.Serve returned: restore stdout, stop
// listening, cut live relays, wait (bounded) for its goroutines.
func (f *tcpFront) Close() {
	if f.w != nil {
		os.Stdout = f.stdout
		_ = f.w.Close()
	}
	f.mu.Lock()
	if f.ln != nil {
		_ = f.ln.Close()
	}
	for c := range f.conns {
		_ = c.Close()
	}
	f.conns = nil
	f.mu.Unlock()
	done := make(chan struct{})
	go func() { f.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(stopBound):
		f.logger.Warn("tcp front goroutines did not stop in time", "bound", stopBound)
	}
	if f.r != nil {
		_ = f.r.Close()
	}
}
