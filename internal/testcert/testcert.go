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
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// Bundle is a CA with a server certificate for 127.0.0.1 and localhost and
// a client certificate, both signed by it.
type Bundle struct {
	Pool   *x509.CertPool  // trusts the CA
	Server tls.Certificate // for 127.0.0.1, ::1 and localhost
	Client tls.Certificate // for client authentication
	caDER  []byte
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
	b := &Bundle{Pool: x509.NewCertPool(), caDER: caDER}
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

// Files names the PEM files WritePEM writes.
type Files struct {
	CA, ServerCert, ServerKey, ClientCert, ClientKey string
}

// WritePEM writes the CA certificate and the server and client pairs as PEM
// files into dir.
func (b *Bundle) WritePEM(t testing.TB, dir string) Files {
	t.Helper()
	f := Files{
		CA:         filepath.Join(dir, "ca.pem"),
		ServerCert: filepath.Join(dir, "server.pem"),
		ServerKey:  filepath.Join(dir, "server-key.pem"),
		ClientCert: filepath.Join(dir, "client.pem"),
		ClientKey:  filepath.Join(dir, "client-key.pem"),
	}
	write := func(name, kind string, der []byte) {
		if err := os.WriteFile(name, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	key := func(c tls.Certificate) []byte {
		der, err := x509.MarshalPKCS8PrivateKey(c.PrivateKey)
		if err != nil {
			t.Fatal(err)
		}
		return der
	}
	write(f.CA, "CERTIFICATE", b.caDER)
	write(f.ServerCert, "CERTIFICATE", b.Server.Certificate[0])
	write(f.ServerKey, "PRIVATE KEY", key(b.Server))
	write(f.ClientCert, "CERTIFICATE", b.Client.Certificate[0])
	write(f.ClientKey, "PRIVATE KEY", key(b.Client))
	return f
}
