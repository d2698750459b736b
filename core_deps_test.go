package shoal_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestCoreLinksNoRegistryClientOrTelemetry: a program that uses provider,
// consumer, loadbalance and protocol links no registry client (Consul, etcd,
// DNS) and no telemetry library; those live in packages of their own.
func TestCoreLinksNoRegistryClientOrTelemetry(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	out, err := exec.Command("go", "list", "-deps", "./provider", "./consumer", "./loadbalance", "./protocol", "./naming", "./stats").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 20 || !strings.Contains(string(out), "github.com/shoalrpc/shoal/provider") {
		t.Fatalf("go list printed %d packages, not the core's dependencies:\n%s", len(deps), out)
	}
	for _, dep := range deps {
		for _, banned := range []string{"github.com/hashicorp/", "go.etcd.io/", "github.com/miekg/", "go.opentelemetry.io/", "github.com/prometheus/"} {
			if strings.HasPrefix(dep, banned) {
				t.Errorf("the core links %s", dep)
			}
		}
	}
}
