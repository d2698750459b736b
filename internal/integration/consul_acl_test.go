package integration

import (
	"context"
	"errors"
	"os"
	"testing"

	"github.com/hashicorp/consul/api"

	"github.com/shoalrpc/shoal/consumer"
	"github.com/shoalrpc/shoal/internal/consultest"
	"github.com/shoalrpc/shoal/naming/consul"
)

// TestConsulACLNewClientProxyWithoutToken: with Consul's ACLs on (default
// deny) and a provider registered with a token, a consumer without one is
// refused at NewClientProxy with ErrPermissionDenied, not told that the
// service has no instance (Consul answers its query with an empty list).
func TestConsulACLNewClientProxyWithoutToken(t *testing.T) {
	if os.Getenv("CONSUL_HTTP_TOKEN") != "" || os.Getenv("CONSUL_HTTP_TOKEN_FILE") != "" {
		t.Skip("CONSUL_HTTP_TOKEN or CONSUL_HTTP_TOKEN_FILE is set: no anonymous request to test")
	}
	agent, mgmt := consultest.StartWithACL(t)
	provReg, err := consul.New(&api.Config{Address: agent.Addr()}, consul.WithToken(mgmt))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { provReg.Close() })
	newCluster(t, provReg, 1)
	anon, err := consul.New(&api.Config{Address: agent.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { anon.Close() })
	p, err := consumer.NewClientProxy("arith", anon, consumer.WithWaitForInstances(0))
	if err == nil {
		p.Close()
	}
	if !errors.Is(err, consul.ErrPermissionDenied) {
		t.Fatalf("NewClientProxy without a token = %v; want ErrPermissionDenied", err)
	}
	t.Logf("NewClientProxy without a token: %v", err)
	// With the token, the same consumer works.
	tokReg, err := consul.New(&api.Config{Address: agent.Addr()}, consul.WithToken(mgmt))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tokReg.Close() })
	if err := newProxy(t, tokReg).Call(context.Background(), "Arith.Who", WhoArgs{}, new(string)); err != nil {
		t.Fatal(err)
	}
}
