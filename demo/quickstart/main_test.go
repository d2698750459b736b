package main

import (
	"bytes"
	"context"
	"io"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/shoalrpc/shoal/loadbalance"
	"github.com/shoalrpc/shoal/naming"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestQuickstart runs the whole quickstart, faster than a person would.
func TestQuickstart(t *testing.T) {
	var out bytes.Buffer
	start := time.Now()
	if err := run(context.Background(), &out, options{perMode: 100 * time.Millisecond, perStage: 300 * time.Millisecond}); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	t.Logf("%v:\n%s", time.Since(start).Round(time.Millisecond), out.String())
	text := out.String()
	wants := []string{
		"Arith.Add(40, 2) = 42",
		`Arith.Div(1, 0) failed with "divide by zero"`,
		"each key always went to the same provider",
		"arith-2: Shutdown with",
		"arith-3: killed (Close)",
		"No call lost:",
		", 0 failed.",
	}
	for _, m := range loadbalance.Modes() {
		wants = append(wants, "  "+m.String()+" ")
	}
	for _, want := range wants {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q", want)
		}
	}
}

// TestSpreadFollowsTheModes checks the numbers behind the quickstart's table.
func TestSpreadFollowsTheModes(t *testing.T) {
	reg := naming.NewMemory()
	defer reg.Close()
	var nodes []*node
	for i, w := range []int{1, 2, 3} {
		n, err := startNode(reg, "arith-"+strconv.Itoa(i+1), w)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { n.srv.Close(); <-n.done }()
		nodes = append(nodes, n)
	}
	all, err := spread(io.Discard, reg, nodes, 150*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	share := func(m loadbalance.Mode, i int) float64 {
		s := all[m]
		return float64(s.Instances[nodes[i].id]) / float64(s.Calls)
	}
	for i, want := range []float64{1.0 / 6, 2.0 / 6, 3.0 / 6} {
		if got := share(loadbalance.WeightedRoundRobin, i); got < want-0.03 || got > want+0.03 {
			t.Errorf("weighted_roundrobin: %s got %.3f of the calls, want %.3f", nodes[i].id, got, want)
		}
		if got := share(loadbalance.RoundRobin, i); got < 1.0/3-0.03 || got > 1.0/3+0.03 {
			t.Errorf("roundrobin: %s got %.3f of the calls, want 1/3", nodes[i].id, got)
		}
	}
	for _, m := range loadbalance.Modes() {
		if s := all[m]; s.Calls == 0 || s.Failed() != 0 {
			t.Errorf("%s: %d calls, %d failed", m, s.Calls, s.Failed())
		}
	}
}
