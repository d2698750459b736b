// Package servetest starts providers for tests: on a fresh loopback port,
// closed when the test ends.
package servetest

import (
	"net"
	"testing"

	"github.com/shoalrpc/shoal/provider"
)

// Start serves srv (its services already registered) on a fresh loopback
// TCP port until the test ends, and returns the port's "host:port". A
// provider that cannot start fails the test.
func Start(t testing.TB, srv *provider.Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(ln); err != nil {
		ln.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}
