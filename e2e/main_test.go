// Package e2e tests shoal with real processes: the demo server and client
// binaries, built once per run, against a real Consul dev agent. The
// scenario of issue 6 is in sigterm_test.go; the server's exit statuses
// per signal are in signals_test.go; process helpers are in proc_test.go.
package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"go.uber.org/goleak"
)

// Paths of the binaries TestMain builds.
var (
	serverBin string
	clientBin string
)

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	dir, err := os.MkdirTemp("", "shoal-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	serverBin = filepath.Join(dir, "server")
	clientBin = filepath.Join(dir, "client")
	for bin, pkg := range map[string]string{serverBin: "./demo/server", clientBin: "./demo/client"} {
		// Plain builds, not -race: the servers should not be the slow part.
		cmd := exec.Command("go", "build", "-o", bin, pkg)
		cmd.Dir = ".."
		if out, err := cmd.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "e2e: go build %s: %v\n%s", pkg, err, out)
			return 1
		}
	}
	code := m.Run()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "e2e: goroutines leaked:", err)
			return 1
		}
	}
	return code
}
