// Package tlsflags gives the demo binaries their certificate flags.
//
// Server: -tls-cert and -tls-key serve TLS; -tls-client-ca also requires
// client certificates signed by that CA (mutual TLS). Client: -tls-ca trusts
// a CA (default: the system's), -tls-cert and -tls-key present a client
// certificate, -tls-server-name overrides the name checked; any of them, or
// -tls, turns TLS on.
package tlsflags

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"os"
)

// Server holds the server's certificate flags.
type Server struct{ cert, key, clientCA string }

// RegisterServer adds the server's flags to fs.
func RegisterServer(fs *flag.FlagSet) *Server {
	s := &Server{}
	fs.StringVar(&s.cert, "tls-cert", "", "serve TLS with this PEM certificate `file` (needs -tls-key)")
	fs.StringVar(&s.key, "tls-key", "", "PEM private key `file` of -tls-cert")
	fs.StringVar(&s.clientCA, "tls-client-ca", "", "require client certificates signed by this PEM CA `file` (mutual TLS)")
	return s
}

// Config returns the server's TLS configuration, or nil when TLS is off.
func (s *Server) Config() (*tls.Config, error) {
	if s.cert == "" && s.key == "" && s.clientCA == "" {
		return nil, nil
	}
	if s.cert == "" || s.key == "" {
		return nil, errors.New("-tls-cert and -tls-key go together")
	}
	pair, err := tls.LoadX509KeyPair(s.cert, s.key)
	if err != nil {
		return nil, fmt.Errorf("load -tls-cert/-tls-key: %w", err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}
	if s.clientCA != "" {
		pool, err := loadPool(s.clientCA)
		if err != nil {
			return nil, fmt.Errorf("-tls-client-ca: %w", err)
		}
		cfg.ClientAuth, cfg.ClientCAs = tls.RequireAndVerifyClientCert, pool
	}
	return cfg, nil
}

// Client holds the client's certificate flags.
type Client struct {
	on                     bool
	ca, cert, key, srvName string
}

// RegisterClient adds the client's flags to fs.
func RegisterClient(fs *flag.FlagSet) *Client {
	c := &Client{}
	fs.BoolVar(&c.on, "tls", false, "dial with TLS (implied by the other -tls flags)")
	fs.StringVar(&c.ca, "tls-ca", "", "trust servers whose certificates this PEM CA `file` signed (default: the system's roots)")
	fs.StringVar(&c.cert, "tls-cert", "", "present this PEM client certificate `file` (mutual TLS; needs -tls-key)")
	fs.StringVar(&c.key, "tls-key", "", "PEM private key `file` of -tls-cert")
	fs.StringVar(&c.srvName, "tls-server-name", "", "server `name` to verify (default: the host of each address)")
	return c
}

// Config returns the client's TLS configuration, or nil when TLS is off.
func (c *Client) Config() (*tls.Config, error) {
	if !c.on && c.ca == "" && c.cert == "" && c.key == "" && c.srvName == "" {
		return nil, nil
	}
	cfg := &tls.Config{ServerName: c.srvName, MinVersion: tls.VersionTLS12}
	if c.ca != "" {
		pool, err := loadPool(c.ca)
		if err != nil {
			return nil, fmt.Errorf("-tls-ca: %w", err)
		}
		cfg.RootCAs = pool
	}
	if c.cert != "" || c.key != "" {
		if c.cert == "" || c.key == "" {
			return nil, errors.New("-tls-cert and -tls-key go together")
		}
		pair, err := tls.LoadX509KeyPair(c.cert, c.key)
		if err != nil {
			return nil, fmt.Errorf("load -tls-cert/-tls-key: %w", err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg, nil
}

func loadPool(file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s: no PEM certificate in it", file)
	}
	return pool, nil
}
