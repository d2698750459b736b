// Package testcert makes a throw-away certificate authority and server and
// client certificates for tests, in memory.
package testcert

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"testing"
	"time"
)

// Bundle is a CA with a server certificate for 127.0.0.1 and localhost and
// a client certificate, both signed by it.
type Bundle struct {
	Pool   *x509.CertPool  // trusts the CA
	Server tls.Certificate // for 127.0.0.1, ::1 and localhost
	Client tls.Certificate // for client authentication
}

// New makes a fresh Bundle.
func New(t testing.TB) *Bundle {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ca := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "shoal test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	b := &Bundle{Pool: x509.NewCertPool()}
	b.Pool.AddCert(caCert)
	leaf := func(serial int64, usage x509.ExtKeyUsage) tls.Certificate {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial),
			Subject:      pkix.Name{CommonName: "shoal test"},
			NotBefore:    time.Now().Add(-time.Hour),
			NotAfter:     time.Now().Add(24 * time.Hour),
			KeyUsage:     x509.KeyUsageDigitalSignature,
			ExtKeyUsage:  []x509.ExtKeyUsage{usage},
			IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
			DNSNames:     []string{"localhost"},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	}
	b.Server = leaf(2, x509.ExtKeyUsageServerAuth)
	b.Client = leaf(3, x509.ExtKeyUsageClientAuth)
	return b
}

// ServerConfig serves the server certificate; with mutual, clients must
// present a certificate signed by the CA.
func (b *Bundle) ServerConfig(mutual bool) *tls.Config {
	cfg := &tls.Config{Certificates: []tls.Certificate{b.Server}, MinVersion: tls.VersionTLS12}
	if mutual {
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
		cfg.ClientCAs = b.Pool
	}
	return cfg
}

// ClientConfig trusts the CA and, with cert, presents the client certificate.
func (b *Bundle) ClientConfig(cert bool) *tls.Config {
	cfg := &tls.Config{RootCAs: b.Pool, MinVersion: tls.VersionTLS12}
	if cert {
		cfg.Certificates = []tls.Certificate{b.Client}
	}
	return cfg
}
