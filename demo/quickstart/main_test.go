package main

import (
	"bytes"
	"context"
	"io"
	"regexp"
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
	}
	for _, m := range loadbalance.Modes() {
		wants = append(wants, "  "+m.String()+" ")
	}
	for _, want := range wants {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	checkNoCallLost(t, text)
}

// checkNoCallLost reads the numbers of the quickstart's second stage: the
// summary line and the per-provider table, and checks them against each
// other rather than against the format string.
func checkNoCallLost(t *testing.T, text string) {
	t.Helper()
	summary := regexp.MustCompile(`(?m)^No call lost: (\d+) calls, (\d+) answered, (\d+) failed\.$`).FindStringSubmatch(text)
	if summary == nil {
		t.Errorf("output lacks the line \"No call lost: N calls, N answered, 0 failed.\"")
		return
	}
	calls, answered, failed := atoi(t, summary[1]), atoi(t, summary[2]), atoi(t, summary[3])
	if calls == 0 || answered != calls || failed != 0 {
		t.Errorf("summary: %d calls, %d answered, %d failed; want every call answered", calls, answered, failed)
	}
	// "  arith-1    <calls it ran> <replies received>", once per provider.
	rows := regexp.MustCompile(`(?m)^  (arith-\d) +(\d+) +(\d+)$`).FindAllStringSubmatch(text, -1)
	if len(rows) != 3 {
		t.Errorf("found %d provider rows in the stage-2 table, want 3", len(rows))
		return
	}
	received := 0
	for _, r := range rows {
		id, ran, got := r[1], atoi(t, r[2]), atoi(t, r[3])
		received += got
		switch {
		case got > ran:
			t.Errorf("%s: %d replies received from %d calls it ran", id, got, ran)
		case id != "arith-3" && got != ran:
			// Only the killed provider may run calls whose replies never arrive.
			t.Errorf("%s ran %d calls but %d replies arrived", id, ran, got)
		case got == 0:
			t.Errorf("%s answered no call", id)
		}
	}
	if received != answered {
		t.Errorf("the providers' replies add up to %d, the summary says %d answered", received, answered)
	}
	killed := regexp.MustCompile(`arith-3 ran (\d+) calls whose replies died with it`).FindStringSubmatch(text)
	if killed == nil {
		t.Errorf("output lacks the killed provider's line")
	} else if lost := atoi(t, killed[1]); lost != atoi(t, rows[2][2])-atoi(t, rows[2][3]) {
		t.Errorf("arith-3: %d replies said lost, the table says %s ran and %s arrived", lost, rows[2][2], rows[2][3])
	}
}

func atoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
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
