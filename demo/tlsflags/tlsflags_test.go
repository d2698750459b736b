package tlsflags

import (
	"context"
	"errors"
	"flag"
	"io"
	"net"
	"testing"

	"go.uber.org/goleak"

	"github.com/shoalrpc/shoal/consumer"
	"github.com/shoalrpc/shoal/internal/testcert"
	"github.com/shoalrpc/shoal/provider"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// Echo is a one-method service for the test.
type Echo struct{}

// Say returns its argument.
func (Echo) Say(s string, out *string) error { *out = s; return nil }

func parseServer(t *testing.T, args ...string) *Server {
	t.Helper()
	fs := flag.NewFlagSet("server", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	s := RegisterServer(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return s
}

func parseClient(t *testing.T, args ...string) *Client {
	t.Helper()
	fs := flag.NewFlagSet("client", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	c := RegisterClient(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return c
}

func TestMutualTLSFromFlags(t *testing.T) {
	f := testcert.New(t).WritePEM(t, t.TempDir())
	srvFlags := parseServer(t, "-tls-cert", f.ServerCert, "-tls-key", f.ServerKey, "-tls-client-ca", f.CA)
	serverTLS, err := srvFlags.Config()
	if err != nil || serverTLS == nil {
		t.Fatalf("server config: %v", err)
	}
	srv := provider.NewServer(provider.WithTLS(serverTLS))
	srv.Register(Echo{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	defer func() { srv.Close(); <-served }()

	withCert := parseClient(t, "-tls-ca", f.CA, "-tls-cert", f.ClientCert, "-tls-key", f.ClientKey)
	cfg, err := withCert.Config()
	if err != nil {
		t.Fatal(err)
	}
	c, err := consumer.Dial(ln.Addr().String(), consumer.WithTLS(cfg))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var out string
	if err := c.Call(context.Background(), "Echo.Say", "over mutual TLS", &out); err != nil || out != "over mutual TLS" {
		t.Fatalf("call: %q, %v", out, err)
	}
	noCert := parseClient(t, "-tls-ca", f.CA)
	cfg, _ = noCert.Config()
	if _, err := consumer.Dial(ln.Addr().String(), consumer.WithTLS(cfg)); !errors.Is(err, consumer.ErrDial) {
		t.Fatalf("dial without a client certificate: %v, want ErrDial", err)
	}
}

func TestFlagErrors(t *testing.T) {
	if mustNil(t, parseServer(t).Config) || mustNil(t, parseClient(t).Config) {
		t.Fatal("TLS on without flags")
	}
	for _, args := range [][]string{{"-tls-cert", "x.pem"}, {"-tls-key", "k.pem"}} {
		s, c := parseServer(t, args...), parseClient(t, args...)
		if _, err := s.Config(); err == nil {
			t.Fatalf("server %v: no error", args)
		}
		if _, err := c.Config(); err == nil {
			t.Fatalf("client %v: no error", args)
		}
	}
	c := parseClient(t, "-tls-ca", "/nonexistent.pem")
	if _, err := c.Config(); err == nil {
		t.Fatal("a missing CA file was accepted")
	}
	c = parseClient(t, "-tls")
	if cfg, err := c.Config(); err != nil || cfg == nil || cfg.RootCAs != nil {
		t.Fatalf("-tls alone: %v, %v (want the system roots)", cfg, err)
	}
}

func mustNil[T any](t *testing.T, f func() (*T, error)) bool {
	v, err := f()
	if err != nil {
		t.Fatal(err)
	}
	return v != nil
}
