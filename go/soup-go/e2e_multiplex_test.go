package main

import (
	"context"
	"net"
	"os/exec"
	"strings"
	"syscall"
	"testing"

	"github.com/hashicorp/go-plugin"
	"github.com/hashicorp/yamux"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health/grpc_health_v1"
)

// multiplexPlugin starts soup-go (TestMain in the given mode) with
// PLUGIN_MULTIPLEX_GRPC=true in a TMPDIR of its own and returns it, its
// socket (from the handshake line) and the TMPDIR.
func multiplexPlugin(t *testing.T, mode string) (cmd *exec.Cmd, socket, tmp string) {
	t.Helper()
	tmp = shortTempDir(t)
	cmd = groupCmd(t, []string{testMainEnv + "=" + mode, "TMPDIR=" + tmp, "BASIC_PLUGIN=hello", envMultiplexGRPC + "=true"},
		"rpc", "server-start", "--tls-mode", "disabled")
	line := firstLine(t, cmd)
	fields := strings.Split(line, "|")
	if len(fields) != 7 || fields[2] != "unix" || fields[6] != "true" {
		t.Fatalf("handshake line %q: expected 7 fields, a unix socket and multiplexing", line)
	}
	return cmd, fields[3], tmp
}

// stopsCleanly: after SIGTERM the plugin exits 0 and leaves nothing in tmp.
// The signal may find it stopped already (a zombie still takes it).
func stopsCleanly(t *testing.T, cmd *exec.Cmd, tmp string) {
	t.Helper()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	exitsCleanly(t, cmd, tmp)
}

func exitsCleanly(t *testing.T, cmd *exec.Cmd, tmp string) {
	t.Helper()
	if code := waitExit(t, cmd, stopBound+processBound); code != 0 {
		t.Fatalf("exit %d, expected 0", code)
	}
	mustBeEmpty(t, tmp)
}

// yamuxHealth is a go-plugin host's muxer in miniature: one connection to
// the plugin's socket, a yamux session on it, a health Check on one stream.
// The session stays open until the caller closes it.
func yamuxHealth(t *testing.T, socket string) *yamux.Session {
	t.Helper()
	conn, err := net.DialTimeout("unix", socket, processBound)
	if err != nil {
		t.Fatal(err)
	}
	sess, err := yamux.Client(conn, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sess.Close() })
	cc, err := grpc.NewClient("passthrough:///yamux",
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(context.Context, string) (net.Conn, error) { return sess.Open() }))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), processBound)
	defer cancel()
	resp, err := grpc_health_v1.NewHealthClient(cc).Check(ctx, &grpc_health_v1.HealthCheckRequest{Service: plugin.GRPCServiceName})
	if err != nil {
		t.Fatalf("health Check over a yamux stream: %v", err)
	}
	if resp.GetStatus() != grpc_health_v1.HealthCheckResponse_SERVING {
		t.Fatalf("health Check over a yamux stream: %s, expected SERVING", resp.GetStatus())
	}
	return sess
}

// With PLUGIN_MULTIPLEX_GRPC=true go-plugin's Serve waits for its first
// connection (the yamux session) even to stop, and never removes its socket.
// soup-go stops as it does without: exit 0, its socket and run directory gone.
func TestE2EMultiplexedPluginStops(t *testing.T) {
	t.Run("SIGTERM before any host connected", func(t *testing.T) {
		cmd, _, tmp := multiplexPlugin(t, "1")
		stopsCleanly(t, cmd, tmp)
	})
	t.Run("--debug: SIGTERM before any host connected", func(t *testing.T) {
		// go-plugin's test mode closes the muxer itself on the cancel.
		tmp := shortTempDir(t)
		t.Setenv("TMPDIR", tmp)
		t.Setenv(envMultiplexGRPC, "true")
		cmd, _ := debugPlugin(t, "--tls-mode", "disabled")
		stopsCleanly(t, cmd, tmp)
	})
	t.Run("SIGTERM with a yamux session open", func(t *testing.T) {
		cmd, socket, tmp := multiplexPlugin(t, "1")
		yamuxHealth(t, socket)
		stopsCleanly(t, cmd, tmp)
	})
	t.Run("the host closes its yamux session, a SIGTERM follows", func(t *testing.T) {
		// go-plugin's Serve ends with the session it serves, and soup-go
		// stops; a SIGTERM then (here: once it is done, before it exits)
		// must not kill it by the default action.
		cmd, socket, tmp := multiplexPlugin(t, "sigterm-after-run")
		if err := yamuxHealth(t, socket).Close(); err != nil {
			t.Fatal(err)
		}
		exitsCleanly(t, cmd, tmp)
	})
}
