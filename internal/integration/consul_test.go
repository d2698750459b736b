package integration

import (
	"testing"

	"github.com/hashicorp/consul/api"

	"github.com/shoalrpc/shoal/internal/consultest"
	"github.com/shoalrpc/shoal/naming"
	"github.com/shoalrpc/shoal/naming/consul"
)

// consulRegistry starts a real Consul dev agent for the test and returns a
// registry on it. Without a consul binary the test is skipped, or fails
// under CI=true (see internal/consultest).
func consulRegistry(t *testing.T) naming.Registry {
	t.Helper()
	agent := consultest.Start(t)
	reg, err := consul.New(&api.Config{Address: agent.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close() })
	return reg
}

func TestConsulProxyJoinAndLeaveUnderLoad(t *testing.T) {
	testJoinAndLeave(t, consulRegistry(t))
}

func TestConsulProxyGracefulShutdownLosesNoCallInAnyFailMode(t *testing.T) {
	testGracefulShutdownEveryMode(t, consulRegistry(t))
}
