package main

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"strings"
	"time"
)

// keyTypes are the key types of the shared contract, in its order.
var keyTypes = []string{"rsa-2048", "rsa-4096", "ec-p256", "ec-p384", "ec-p521", "ed25519"}

func validKeyType(kt string) bool {
	for _, k := range keyTypes {
		if k == kt {
			return true
		}
	}
	return false
}

// generateKey makes a private key of a contract key type.
func generateKey(kt string) (crypto.Signer, error) {
	switch kt {
	case "rsa-2048":
		return rsa.GenerateKey(rand.Reader, 2048)
	case "rsa-4096":
		return rsa.GenerateKey(rand.Reader, 4096)
	case "ec-p256":
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "ec-p384":
		return ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case "ec-p521":
		return ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	case "ed25519":
		_, k, err := ed25519.GenerateKey(rand.Reader)
		return k, err
	}
	return nil, fmt.Errorf("unknown key type %q (valid: %s)", kt, strings.Join(keyTypes, ", "))
}

// selfSignedCert makes a certificate shaped like go-plugin's AutoMTLS one
// (see mtls.go), but of any key type and with O=soup. It is pinned as the
// only trusted root by the peer, hence CA=true and both EKUs.
func selfSignedCert(kt string) (tls.Certificate, []byte, error) {
	key, err := generateKey(kt)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	sn, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: sn,
		Subject:      pkix.Name{CommonName: "localhost", Organization: []string{"soup"}},
		DNSNames:     []string{"localhost"},
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
		// keyEncipherment only means something for RSA; set for all, as go-plugin does.
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment |
			x509.KeyUsageKeyAgreement | x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		NotBefore:             now.Add(-30 * time.Second),
		NotAfter:              now.Add(30 * 365 * 24 * time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, certPEM, nil
}

// keyTypeOf names the key type of a certificate's public key: one of keyTypes
// or something descriptive such as "rsa-3072" or "ec-P-224".
func keyTypeOf(c *x509.Certificate) string {
	switch k := c.PublicKey.(type) {
	case *rsa.PublicKey:
		return fmt.Sprintf("rsa-%d", k.N.BitLen())
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return "ec-p256"
		case elliptic.P384():
			return "ec-p384"
		case elliptic.P521():
			return "ec-p521"
		}
		return "ec-" + k.Curve.Params().Name
	case ed25519.PublicKey:
		return "ed25519"
	}
	return fmt.Sprintf("unknown-%T", c.PublicKey)
}

// fingerprint is the lowercase hex SHA-256 of the DER certificate.
func fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:])
}

// leafOf returns the parsed leaf of a tls.Certificate.
func leafOf(c tls.Certificate) (*x509.Certificate, error) {
	if c.Leaf != nil {
		return c.Leaf, nil
	}
	if len(c.Certificate) == 0 {
		return nil, fmt.Errorf("empty certificate")
	}
	return x509.ParseCertificate(c.Certificate[0])
}

// loadPair loads own cert/key and the CA pool used to verify the peer.
func loadPair(certFile, keyFile, caFile string) (tls.Certificate, *x509.CertPool, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("loading --cert-file/--key-file: %w", err)
	}
	caPEM, err := os.ReadFile(caFile)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("reading --ca-file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return tls.Certificate{}, nil, fmt.Errorf("--ca-file %s holds no PEM certificate", caFile)
	}
	return cert, pool, nil
}

// manualServerTLS is what the plugin's TLSProvider returns in manual mode:
// mutual TLS, client certs required and verified against the CA.
func manualServerTLS(cert tls.Certificate, ca *x509.CertPool) *tls.Config {
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    ca,
		MinVersion:   tls.VersionTLS12,
		// gRPC-Go adds h2 itself, but non-Go peers enforce ALPN: say it explicitly.
		NextProtos: []string{"h2"},
		// broker hook: go-plugin's broker Dial uses this config too (plugin -> host
		// callbacks), with the dial target "unused" as the name unless ServerName says.
		RootCAs:    ca,
		ServerName: "localhost",
	}
}

// manualClientTLS is the host's TLSConfig in manual mode.
func manualClientTLS(cert tls.Certificate, ca *x509.CertPool) *tls.Config {
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		RootCAs:      ca,
		ServerName:   "localhost",
		MinVersion:   tls.VersionTLS12,
	}
}

// tlsVersionName spells a TLS version the way Python's ssl does ("TLSv1.3").
func tlsVersionName(v uint16) string {
	switch v {
	case tls.VersionTLS10:
		return "TLSv1"
	case tls.VersionTLS11:
		return "TLSv1.1"
	case tls.VersionTLS12:
		return "TLSv1.2"
	case tls.VersionTLS13:
		return "TLSv1.3"
	}
	return fmt.Sprintf("0x%04x", v)
}
