package harness

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shoalrpc/shoal/bench/peer"
)

// TestRunStreamEndToEnd runs a small stream benchmark (both peers in their
// own processes, both messages, 1 and 20 streams, two counted rounds) and
// checks the points, the ratios, the table, the JSON and that no server is
// left.
func TestRunStreamEndToEnd(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var progress bytes.Buffer
	rep, err := RunStream(ctx, StreamConfig{
		Peers: peer.StreamPeers(), Msgs: []peer.StreamMsg{peer.Blob1K, peer.BenchMsg}, Streams: []int{1, 20},
		Rounds: 2, Duration: 100 * time.Millisecond, Warmup: 20 * time.Millisecond,
		Exe: testExe(t), ServerArgs: serverArgs, Progress: &progress,
	})
	if err != nil {
		t.Fatalf("%v\n%s", err, progress.String())
	}
	if len(rep.Points) != 8 {
		t.Fatalf("%d points, want 8 (2 peers × 2 messages × 2 stream counts): %+v", len(rep.Points), rep.Points)
	}
	for _, p := range rep.Points {
		if p.Rounds != 2 || p.Calls == 0 || p.Errors != 0 || p.CallsPerSec <= 0 {
			t.Errorf("%s msg=%s streams=%d: %d rounds, %d messages, %d errors", p.Peer, p.Msg, p.Streams, p.Rounds, p.Calls, p.Errors)
		}
		g := rep.find("grpc-stream", p.Msg, p.Streams)
		switch {
		case g == nil:
			t.Errorf("no grpc-stream point for msg=%s streams=%d", p.Msg, p.Streams)
		case p.Peer == "shoal-stream" && p.VsGRPC != p.CallsPerSec/g.CallsPerSec:
			t.Errorf("shoal-stream msg=%s streams=%d: ×grpc %v, want %v", p.Msg, p.Streams, p.VsGRPC, p.CallsPerSec/g.CallsPerSec)
		case p.Peer == "grpc-stream" && p.VsGRPC != 0:
			t.Errorf("grpc-stream has a ratio to itself: %v", p.VsGRPC)
		}
	}
	if len(rep.Rounds) != 16 {
		t.Errorf("%d rounds, want 16", len(rep.Rounds))
	}
	if left := children(t); len(left) > 0 {
		t.Errorf("server processes left after RunStream: %v", left)
	}
	var table bytes.Buffer
	if err := rep.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"1 KiB of bytes", "the benchmark message", "| shoal-stream |", "| grpc-stream  |", "msgs/s", rep.Machine.CPU} {
		if !strings.Contains(table.String(), s) {
			t.Errorf("table lacks %q:\n%s", s, table.String())
		}
	}
	t.Logf("\n%s", table.String())
	path := filepath.Join(t.TempDir(), "stream.json")
	if err := rep.WriteJSON(path); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var back StreamReport
	if err := json.Unmarshal(b, &back); err != nil || len(back.Points) != len(rep.Points) {
		t.Errorf("JSON round trip: %v, %d points", err, len(back.Points))
	}
}

// TestRunStreamRefusesBadConfig checks the config is checked before any
// server starts.
func TestRunStreamRefusesBadConfig(t *testing.T) {
	good := StreamConfig{Peers: peer.StreamPeers(), Msgs: []peer.StreamMsg{peer.Blob1K}, Streams: []int{1}, Rounds: 1, Duration: time.Second, Exe: "x", ServerArgs: serverArgs}
	for name, mutate := range map[string]func(*StreamConfig){
		"no peers":    func(c *StreamConfig) { c.Peers = nil },
		"no streams":  func(c *StreamConfig) { c.Streams = nil },
		"too many":    func(c *StreamConfig) { c.Streams = []int{5000} },
		"no rounds":   func(c *StreamConfig) { c.Rounds = 0 },
		"no exe":      func(c *StreamConfig) { c.Exe = "" },
		"neg warm-up": func(c *StreamConfig) { c.Warmup = -1 },
	} {
		c := good
		mutate(&c)
		if _, err := RunStream(context.Background(), c); err == nil || !strings.HasPrefix(err.Error(), "config: ") {
			t.Errorf("%s: %v, want a config error before anything starts", name, err)
		}
	}
}
