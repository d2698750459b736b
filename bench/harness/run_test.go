package harness

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shoalrpc/shoal/bench/peer"
)

// TestRunEndToEnd runs every peer, each server in its own process, for a
// short round, and checks the report, the files and that no server is left.
func TestRunEndToEnd(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var progress bytes.Buffer
	rep, err := Run(ctx, Config{
		Peers: peer.All(), Concurrency: []int{2, 8}, Rounds: 1,
		Duration: 150 * time.Millisecond, Warmup: 50 * time.Millisecond,
		Exe: testExe(t), ServerArgs: serverArgs, Progress: &progress,
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := len(rep.Results); got != 2*len(peer.All()) {
		t.Fatalf("%d results, want %d", got, 2*len(peer.All()))
	}
	for _, s := range rep.Results {
		if s.Calls == 0 || s.Errors != 0 || s.CallsPerSec <= 0 || s.P99ms <= 0 {
			t.Errorf("%s c=%d: %d calls, %d errors, %.0f calls/s, p99 %.3f ms", s.Peer, s.Concurrency, s.Calls, s.Errors, s.CallsPerSec, s.P99ms)
		}
		if s.VsNetRPC == nil || s.VsCeiling == nil {
			t.Errorf("%s c=%d: no ratios", s.Peer, s.Concurrency)
		}
		if runtime.GOOS == "linux" && (s.ClientCPUusPerCall < 0 || s.ServerCPUusPerCall < 0) {
			t.Errorf("%s c=%d: CPU per call unknown", s.Peer, s.Concurrency)
		}
	}
	if n := rep.find(NetRPC, 2); n == nil || n.VsNetRPC.CallsPerSec != 1 {
		t.Errorf("net/rpc's own ratio is not 1: %+v", n)
	}
	if len(rep.Targets) != 2*(6+2) { // two concurrencies: six goals for shoal, two for shoal-gen
		t.Errorf("%d targets, want 16", len(rep.Targets))
	}
	genGoal := false
	for _, g := range rep.Targets {
		genGoal = genGoal || g.Goal == "shoal-gen: calls/s ≥ 0.5× ceiling"
	}
	if !genGoal {
		t.Errorf("no goal for shoal-gen against the ceiling: %+v", rep.Targets)
	}
	if !strings.Contains(progress.String(), "round 1/1  shoal") {
		t.Errorf("progress has no round line:\n%s", progress.String())
	}
	if left := children(t); len(left) > 0 {
		t.Errorf("server processes left after Run: %v", left)
	}

	var table bytes.Buffer
	if err := rep.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"| calls/s", "| shoal ", "| raw", "Tuned path", "| shoal-gen", "| rpcx-array", "shoal's targets", rep.Machine.CPU} {
		if !strings.Contains(table.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, table.String())
		}
	}
	t.Logf("\n%s", table.String())

	jsonPath := filepath.Join(t.TempDir(), "out", "latest.json")
	png, err := rep.WriteFiles(jsonPath, true)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(jsonPath)
	if err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatalf("JSON does not read back: %v", err)
	}
	if len(back.Results) != len(rep.Results) || len(back.Rounds) != len(rep.Rounds) {
		t.Errorf("JSON round trip: %d results, %d rounds", len(back.Results), len(back.Rounds))
	}
	img, err := os.ReadFile(png)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(img, []byte("\x89PNG\r\n\x1a\n")) || filepath.Dir(png) != filepath.Dir(jsonPath) {
		t.Errorf("chart %s is not a PNG next to the JSON", png)
	}
}

// TestRunRefusesBadConfig checks the config is checked before anything
// starts.
func TestRunRefusesBadConfig(t *testing.T) {
	good := Config{Peers: peer.All(), Concurrency: []int{1}, Rounds: 1, Duration: time.Second, Exe: "x", ServerArgs: serverArgs}
	for name, mutate := range map[string]func(*Config){
		"no peers":    func(c *Config) { c.Peers = nil },
		"no rounds":   func(c *Config) { c.Rounds = 0 },
		"concurrency": func(c *Config) { c.Concurrency = []int{0} },
		"duration":    func(c *Config) { c.Duration = 0 },
		"no exe":      func(c *Config) { c.Exe = "" },
	} {
		c := good
		mutate(&c)
		if _, err := Run(context.Background(), c); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

// TestServerExitsWhenRunnerPipeCloses checks the fallback that takes a
// server down with its runner: the end of its standard input.
func TestServerExitsWhenRunnerPipeCloses(t *testing.T) {
	s, err := startServer(context.Background(), testExe(t), serverArgs("raw"), "raw")
	if err != nil {
		t.Fatal(err)
	}
	defer s.stop()
	if err := s.alive(); err != nil {
		t.Fatal(err)
	}
	s.stdin.Close()
	select {
	case <-s.done:
	case <-time.After(5 * time.Second):
		t.Fatal("server still running 5 s after its stdin closed")
	}
}

// TestStartServerFailure checks that a server that cannot start is
// reported with its stderr, promptly.
func TestStartServerFailure(t *testing.T) {
	start := time.Now()
	_, err := startServer(context.Background(), testExe(t), serverArgs("nope"), "nope")
	if err == nil || !strings.Contains(err.Error(), "unknown peer") {
		t.Errorf("error %v, want one that quotes the server's stderr", err)
	}
	if time.Since(start) > 5*time.Second {
		t.Errorf("took %v", time.Since(start))
	}
	if left := children(t); len(left) > 0 {
		t.Errorf("processes left: %v", left)
	}
}

// children lists the processes whose parent is this one (Linux only).
func children(t *testing.T) []int {
	t.Helper()
	if runtime.GOOS != "linux" {
		return nil
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	self := strconv.Itoa(os.Getpid())
	var out []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		s := string(b)
		if i := strings.LastIndexByte(s, ')'); i >= 0 {
			if f := strings.Fields(s[i+1:]); len(f) > 1 && f[1] == self {
				out = append(out, pid)
			}
		}
	}
	return out
}
