package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
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
// The front's port is go-plugin's choice on Windows (serverListener_tcp): the
// first free port of PLUGIN_MIN_PORT..PLUGIN_MAX_PORT (unset: 0, any free port),
// so a host's range means the same as with a stock go-plugin TCP plugin.
//
// In debug mode no handshake line is printed: the plugin opens the front for
// the address in go-plugin's reattach config instead (open).
type tcpFront struct {
	logger hclog.Logger
	ports  portRange
	stdout *os.File // the real stdout
	r, w   *os.File // the pipe plugin.Serve prints into (nil in debug mode)
	failed chan error

	mu    sync.Mutex
	ln    net.Listener
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

var errFrontClosed = errors.New("tcp front closed")

// portRange is the ports the front may listen on, both ends included.
type portRange struct{ low, high int }

// tcpPortRange reads PLUGIN_MIN_PORT and PLUGIN_MAX_PORT the way go-plugin's
// serverListener_tcp does (an empty value is 0), and refuses what it refuses.
// The messages are soup's (python/soup/listen.py), which extend go-plugin's.
func tcpPortRange(getenv func(string) string) (portRange, error) {
	var ends [2]int
	for i, name := range []string{envMinPort, envMaxPort} {
		text := getenv(name)
		if text == "" {
			continue
		}
		v, err := strconv.ParseInt(text, 10, 32)
		if err != nil {
			return portRange{}, fmt.Errorf("couldn't get value from %s: %q is not an integer", name, text)
		}
		ends[i] = int(v)
	}
	r := portRange{low: ends[0], high: ends[1]}
	if r.low > r.high {
		return portRange{}, fmt.Errorf("%s value of %d is greater than %s value of %d", envMinPort, r.low, envMaxPort, r.high)
	}
	if r.low < 0 || r.high > 65535 {
		return portRange{}, fmt.Errorf("port range %d..%d is outside 0..65535", r.low, r.high)
	}
	return r, nil
}

// listen opens the first port of the range that can be listened on.
func (r portRange) listen() (net.Listener, error) {
	var last error
	for port := r.low; port <= r.high; port++ {
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err == nil {
			return ln, nil
		}
		last = err
	}
	return nil, fmt.Errorf("couldn't bind plugin TCP listener on 127.0.0.1:%d..%d: %w", r.low, r.high, last)
}

// startTCPFront starts the front; with handshake it swaps os.Stdout and
// waits for the handshake line to rewrite. A bad port range is refused here,
// before plugin.Serve runs.
func startTCPFront(logger hclog.Logger, handshake bool) (*tcpFront, error) {
	ports, err := tcpPortRange(os.Getenv)
	if err != nil {
		return nil, err
	}
	f := &tcpFront{logger: logger.Named("tcpfront"), ports: ports, stdout: os.Stdout, conns: map[net.Conn]struct{}{}, failed: make(chan error, 1)}
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
	ln, err := f.ports.listen()
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
