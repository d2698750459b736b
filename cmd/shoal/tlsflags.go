package main

import (
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"os"

	"github.com/shoalrpc/shoal/consumer"
)

// tlsFlags are the flags that make a command connect with TLS.
type tlsFlags struct {
	on         bool
	ca         string
	cert, key  string
	serverName string
	insecure   bool

	cfg *tls.Config // built once, by dialOptions
}

func (f *tlsFlags) register(fs *flag.FlagSet) {
	fs.BoolVar(&f.on, "tls", false, "connect with TLS, trusting the system's CAs (implied by the other TLS flags)")
	fs.StringVar(&f.ca, "cacert", "", "PEM `file` of the CA certificates to trust instead of the system's")
	fs.StringVar(&f.cert, "cert", "", "PEM `file` of a client certificate, for mutual TLS (with -key)")
	fs.StringVar(&f.key, "key", "", "PEM `file` of the client certificate's private key")
	fs.StringVar(&f.serverName, "servername", "", "the `name` the server's certificate must have (default: the TARGET's host)")
	fs.BoolVar(&f.insecure, "insecure", false, "do not verify the server's certificate (testing only)")
}

// dialOptions returns consumer.WithTLS with the configuration the flags
// describe, or nothing when no TLS flag was given. A file that cannot be
// read or holds no certificate is a usage error.
func (f *tlsFlags) dialOptions() ([]consumer.DialOption, error) {
	if f.cfg == nil {
		if !f.on && f.ca == "" && f.cert == "" && f.key == "" && f.serverName == "" && !f.insecure {
			return nil, nil
		}
		cfg := &tls.Config{ServerName: f.serverName, InsecureSkipVerify: f.insecure, MinVersion: tls.VersionTLS12}
		if f.ca != "" {
			pem, err := os.ReadFile(f.ca)
			if err != nil {
				return nil, &usageError{fmt.Errorf("-cacert: %w", err)}
			}
			cfg.RootCAs = x509.NewCertPool()
			if !cfg.RootCAs.AppendCertsFromPEM(pem) {
				return nil, usagef("-cacert %s: no PEM certificate in it", f.ca)
			}
		}
		switch {
		case f.cert != "" && f.key != "":
			pair, err := tls.LoadX509KeyPair(f.cert, f.key)
			if err != nil {
				return nil, &usageError{fmt.Errorf("-cert %s -key %s: %w", f.cert, f.key, err)}
			}
			cfg.Certificates = []tls.Certificate{pair}
		case f.cert != "" || f.key != "":
			return nil, usagef("-cert and -key go together: a client certificate and its private key")
		}
		f.cfg = cfg
	}
	return []consumer.DialOption{consumer.WithTLS(f.cfg)}, nil
}
