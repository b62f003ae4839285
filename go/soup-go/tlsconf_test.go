package main

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"testing"
	"time"
)

func TestSelfSignedCertAllKeyTypes(t *testing.T) {
	certs := map[string]tls.Certificate{}
	for _, kt := range keyTypes {
		cert, certPEM, err := selfSignedCert(kt)
		if err != nil {
			t.Fatalf("%s: %v", kt, err)
		}
		leaf := cert.Leaf
		if got := keyTypeOf(leaf); got != kt {
			t.Errorf("%s: keyTypeOf = %s", kt, got)
		}
		if !leaf.IsCA || len(leaf.DNSNames) != 1 || leaf.DNSNames[0] != "localhost" ||
			leaf.Subject.CommonName != "localhost" || leaf.Subject.Organization[0] != "soup" {
			t.Errorf("%s: wrong shape: CA=%v SAN=%v subject=%v", kt, leaf.IsCA, leaf.DNSNames, leaf.Subject)
		}
		if len(leaf.ExtKeyUsage) != 2 || leaf.KeyUsage&x509.KeyUsageCertSign == 0 {
			t.Errorf("%s: EKU %v KU %v", kt, leaf.ExtKeyUsage, leaf.KeyUsage)
		}
		if age := time.Since(leaf.NotBefore); age < 29*time.Second || age > time.Minute {
			t.Errorf("%s: NotBefore %v", kt, leaf.NotBefore)
		}
		if leaf.SerialNumber.BitLen() < 64 {
			t.Errorf("%s: serial too short", kt)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(certPEM) {
			t.Fatalf("%s: PEM does not parse", kt)
		}
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: "localhost",
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
			t.Errorf("%s: pinned verify: %v", kt, err)
		}
		if len(fingerprint(leaf.Raw)) != 64 {
			t.Errorf("%s: fingerprint", kt)
		}
		certs[kt] = cert
	}
	// Mutual TLS as go-plugin does it (each side pins the other's cert),
	// for every key type on both sides.
	for _, kt := range keyTypes {
		mutualTLS(t, certs[kt], certs["ec-p521"])
		mutualTLS(t, certs["ec-p521"], certs[kt])
	}
}

func mutualTLS(t *testing.T, srv, cli tls.Certificate) {
	t.Helper()
	pin := func(c tls.Certificate) *x509.CertPool {
		p := x509.NewCertPool()
		p.AddCert(c.Leaf)
		return p
	}
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	s := tls.Server(a, &tls.Config{Certificates: []tls.Certificate{srv}, ClientAuth: tls.RequireAndVerifyClientCert,
		ClientCAs: pin(cli), MinVersion: tls.VersionTLS12})
	c := tls.Client(b, &tls.Config{Certificates: []tls.Certificate{cli}, RootCAs: pin(srv), ServerName: "localhost",
		MinVersion: tls.VersionTLS12})
	errc := make(chan error, 1)
	go func() { errc <- s.Handshake() }()
	if err := c.Handshake(); err != nil {
		t.Errorf("%s<-%s client handshake: %v", keyTypeOf(srv.Leaf), keyTypeOf(cli.Leaf), err)
	}
	if err := <-errc; err != nil {
		t.Errorf("%s<-%s server handshake: %v", keyTypeOf(srv.Leaf), keyTypeOf(cli.Leaf), err)
	}
	if v := c.ConnectionState().Version; v != tls.VersionTLS13 {
		t.Errorf("version %s", tlsVersionName(v))
	}
}

func TestGenerateKeyUnknown(t *testing.T) {
	if _, err := generateKey("dsa-1024"); err == nil {
		t.Fatal("no error for unknown key type")
	}
}
