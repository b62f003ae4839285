package main

// The test script of `rpc client test` and the TLS evidence it reports.

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"soup-go/kvpb"
)

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
// plugin; a reattached one only with Shutdown, and with --keep-running not
// at all (the shutdown step then passes as "skipped"). With TLS the verdict
// also needs both-ways mutual-TLS evidence, gathered before the shutdown: a
// plugin that never verifies the host fails although every step passed.
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
		res.ProtocolVersion = &v
		res.Transport = strp(h.addr.Network())
		res.Address = strp(h.addr.String())
		h.ownCertEvidence(res)
		if opts.reattach != nil {
			return fmt.Sprintf("reattached to pid %d at %s %s (no process started)", h.pid(), h.addr.Network(), h.addr), nil
		}
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
		ctx, cancel := h.rpcCtx()
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
		ctx, cancel := h.rpcCtx()
		defer cancel()
		resp, err := h.kv.kv.Get(ctx, &kvpb.GetRequest{Key: "soup-test-key"})
		if err != nil {
			return "", rpcError(err)
		}
		return checkGet("soup-test-key", value, resp.GetValue()) // kvprofile.go
	})
	step("get_missing", func() (string, error) {
		key := "soup-missing-key-" + randHex(8)
		ctx, cancel := h.rpcCtx()
		defer cancel()
		_, err := h.kv.kv.Get(ctx, &kvpb.GetRequest{Key: key})
		return checkMissing(key, err) // kvprofile.go
	})
	step("health", func() (string, error) {
		ctx, cancel := h.rpcCtx()
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
	if oneWay := mutualTLSProblems(opts.tls.mode, res.MutualTLS); ok && len(oneWay) > 0 {
		res.fail("mutual_tls: " + strings.Join(oneWay, "; "))
	}
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
