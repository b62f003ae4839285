package main

// Both-ways mutual-TLS evidence for `rpc client test` (the same probes and
// wording as python/soup/verify.py). After the test's RPCs, while the plugin
// still serves, the host opens extra TLS connections to the plugin's address:
// without a client certificate, with a foreign (never announced) one, and
// trusting a foreign certificate instead of the plugin's. A plugin that
// requires and verifies the host's certificate refuses the first two (in TLS
// 1.3 the alert arrives when the first bytes are read); the host's own
// verifier must refuse the third.

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"
)

const (
	probeTimeout = 5 * time.Second
	alertWait    = time.Second // a refusing plugin alerts right after the handshake
)

// h2Preface is the HTTP/2 client preface and an empty SETTINGS frame.
var h2Preface = []byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")

// Go's alert texts spelled as OpenSSL's reason codes read in verify.py.
var alertNames = map[string]string{
	"unknown certificate authority": "unknown ca",
	"unknown certificate":           "certificate unknown",
}

// Probe is one extra connection: refused or served, and how.
type Probe struct {
	Name    string `json:"name"`
	Refused bool   `json:"refused"`
	Detail  string `json:"detail"`
}

// MutualTLS is the result's "mutual_tls" object.
type MutualTLS struct {
	PluginVerifiedClient *bool   `json:"plugin_verified_client"`
	HostVerifiedPlugin   *bool   `json:"host_verified_plugin"`
	PluginEvidence       string  `json:"plugin_evidence"`
	HostEvidence         string  `json:"host_evidence"`
	Probes               []Probe `json:"probes"`
}

func boolp(b bool) *bool { return &b }

// alertName turns "remote error: tls: bad certificate" into "alert bad certificate".
func alertName(err error) string {
	text := err.Error()
	const remote = "remote error: tls: "
	if i := strings.Index(text, remote); i >= 0 {
		name := text[i+len(remote):]
		if mapped, ok := alertNames[name]; ok {
			name = mapped
		}
		return "alert " + name
	}
	return text
}

// firstAnswer reads first (a refusing plugin's alert is already on its way),
// then sends the preface: writing first can make the plugin close before its
// alert is read.
func firstAnswer(conn *tls.Conn, buf []byte) (int, error) {
	if err := conn.Handshake(); err != nil {
		return 0, err
	}
	_ = conn.SetReadDeadline(time.Now().Add(alertWait))
	n, err := conn.Read(buf)
	var nerr net.Error
	if n > 0 || !errors.As(err, &nerr) || !nerr.Timeout() {
		return n, err
	}
	_ = conn.SetDeadline(time.Now().Add(probeTimeout))
	if _, err := conn.Write(h2Preface); err != nil {
		return 0, err
	}
	return conn.Read(buf)
}

// attempt handshakes, sends the HTTP/2 preface and reads one answer.
func attempt(name string, addr net.Addr, cfg *tls.Config) Probe {
	raw, err := net.DialTimeout(addr.Network(), addr.String(), probeTimeout)
	if err != nil {
		return Probe{name, true, "refused: connection closed (" + err.Error() + ")"}
	}
	conn := tls.Client(raw, cfg)
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(probeTimeout))
	buf := make([]byte, 64)
	n, err := firstAnswer(conn, buf)
	var verr *tls.CertificateVerificationError
	var nerr net.Error
	switch {
	case n > 0:
		return Probe{name, false, fmt.Sprintf("served: the plugin answered HTTP/2 (%d bytes)", n)}
	case errors.As(err, &verr):
		return Probe{name, true, "refused by the host's verifier: " + verr.Err.Error()}
	case errors.As(err, &nerr) && nerr.Timeout():
		return Probe{name, false, fmt.Sprintf("no answer within %s (not refused)", probeTimeout)}
	case err != nil && strings.Contains(err.Error(), "remote error: tls: "):
		return Probe{name, true, "refused: " + alertName(err)}
	case err != nil:
		return Probe{name, true, "refused: connection closed (" + err.Error() + ")"}
	}
	return Probe{name, true, "refused: connection closed without an alert"}
}

// probeConfig is the host's TLS config with other own certificates or roots.
func probeConfig(base *tls.Config, own []tls.Certificate, roots *x509.CertPool) *tls.Config {
	cfg := &tls.Config{
		RootCAs:    roots,
		ServerName: "localhost",
		NextProtos: []string{"h2"},
		MinVersion: base.MinVersion,
	}
	if len(own) > 0 {
		// Always present it: Go's default picks only a certificate matching the
		// plugin's acceptable CAs, and would send none for a foreign one.
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return &own[0], nil
		}
	}
	return cfg
}

// probePlugin runs the three probes against the plugin at addr.
func probePlugin(addr net.Addr, base *tls.Config) ([]Probe, error) {
	leaf, err := leafOf(base.Certificates[0])
	if err != nil {
		return nil, err
	}
	foreign, foreignPEM, err := selfSignedCert(keyTypeOf(leaf))
	if err != nil {
		return nil, err
	}
	foreignRoots := x509.NewCertPool()
	foreignRoots.AppendCertsFromPEM(foreignPEM)
	return []Probe{
		attempt("no_client_cert", addr, probeConfig(base, nil, base.RootCAs)),
		attempt("foreign_client_cert", addr, probeConfig(base, []tls.Certificate{foreign}, base.RootCAs)),
		attempt("foreign_trust", addr, probeConfig(base, base.Certificates, foreignRoots)),
	}, nil
}

// judgeMutualTLS builds the evidence from the probes (pure).
func judgeMutualTLS(mode string, probes []Probe) *MutualTLS {
	if mode == "disabled" {
		return &MutualTLS{PluginEvidence: "tls disabled: no certificates", HostEvidence: "tls disabled: no certificates", Probes: []Probe{}}
	}
	m := &MutualTLS{Probes: probes}
	if m.Probes == nil {
		m.Probes = []Probe{}
	}
	var plugin []string
	pluginOK, refusedByPlugin, hostOK := true, 0, false
	host := "trusting a foreign certificate: not probed"
	for _, p := range probes {
		switch p.Name {
		case "no_client_cert", "foreign_client_cert":
			plugin = append(plugin, p.Name+": "+p.Detail)
			pluginOK = pluginOK && p.Refused
			refusedByPlugin++
		case "foreign_trust":
			hostOK = p.Refused && strings.Contains(p.Detail, "host's verifier")
			host = "trusting a foreign certificate: " + p.Detail
		}
	}
	m.PluginVerifiedClient = boolp(pluginOK && refusedByPlugin == 2)
	m.HostVerifiedPlugin = boolp(hostOK)
	m.PluginEvidence = strings.Join(plugin, "; ")
	if m.PluginEvidence == "" {
		m.PluginEvidence = "not probed"
	}
	m.HostEvidence = host
	return m
}

const (
	pluginDidNotVerify = "plugin did not verify the host's certificate"
	hostDidNotVerify   = "host did not verify the plugin's certificate"
)

// mutualTLSProblems is what is missing for both-ways verification (empty:
// both sides verified, or TLS is disabled); the verdict of `client test`
// needs it empty, as verify.py's problems() says in the same words.
func mutualTLSProblems(mode string, m *MutualTLS) []string {
	if mode == "disabled" {
		return nil
	}
	if m == nil {
		return []string{"no mutual_tls evidence in the result (cannot tell mutual from one-way TLS)"}
	}
	var out []string
	if m.PluginVerifiedClient == nil || !*m.PluginVerifiedClient {
		out = append(out, pluginDidNotVerify+": "+m.PluginEvidence)
	}
	if m.HostVerifiedPlugin == nil || !*m.HostVerifiedPlugin {
		out = append(out, hostDidNotVerify+": "+m.HostEvidence)
	}
	return out
}

// checkMutualTLS is the evidence for a connected host (call while the plugin serves).
func checkMutualTLS(h *host) *MutualTLS {
	cfg := h.cfg.TLSConfig
	if h.opts.tls.mode == "disabled" || h.addr == nil || cfg == nil || len(cfg.Certificates) == 0 {
		return judgeMutualTLS(h.opts.tls.mode, nil)
	}
	probes, err := probePlugin(h.addr, cfg)
	if err != nil {
		probes = []Probe{{Name: "setup", Refused: false, Detail: "cannot probe: " + err.Error()}}
	}
	if h.opts.multiplex {
		probes = unansweredWhileMultiplexed(probes)
	}
	return judgeMutualTLS(h.opts.tls.mode, probes)
}

// muxProbeCause is why a probe gets no answer from a go-plugin plugin under
// --grpc-broker-multiplex: the probes are connections of their own, and
// go-plugin's muxer serves only the host's yamux session, which go-plugin's
// client keeps to itself (the Python host probes over that session's streams).
const muxProbeCause = "with --grpc-broker-multiplex a go-plugin plugin accepts no connection but the host's yamux session, which go-plugin does not let soup-go probe over; run without it for the evidence"

// unansweredWhileMultiplexed names that cause on every probe that got no answer.
func unansweredWhileMultiplexed(probes []Probe) []Probe {
	out := make([]Probe, len(probes))
	for i, p := range probes {
		if !p.Refused && strings.HasPrefix(p.Detail, "no answer within") {
			p.Detail += " (" + muxProbeCause + ")"
		}
		out[i] = p
	}
	return out
}
