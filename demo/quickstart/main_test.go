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
		"3. A stream through a graceful shutdown",
	}
	for _, m := range loadbalance.Modes() {
		wants = append(wants, "  "+m.String()+" ")
	}
	for _, want := range wants {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	stage2, stage3, ok := strings.Cut(text, "\n3. ")
	if !ok {
		t.Fatalf("output lacks part 3")
	}
	checkNoCallLost(t, stage2)
	checkStreamSurvived(t, stage3)
}

// checkStreamSurvived reads the numbers of the quickstart's third part: the
// stream through the shutdown of its provider. What the providers' stream
// interceptors counted (the table) is checked against what the client
// received (the summary lines).
func checkStreamSurvived(t *testing.T, text string) {
	t.Helper()
	find := func(re string) []string {
		t.Helper()
		m := regexp.MustCompile(re).FindStringSubmatch(text)
		if m == nil {
			t.Fatalf("part 3 lacks %s:\n%s", re, text)
		}
		return m
	}
	n := atoi(t, find(`Arith\.Count\(N=(\d+), every \d+ ms\)`)[1])
	g := find(`stream open on (arith-\d); message 1 received`)[1]
	if got := atoi(t, find(`the stream ended cleanly \(io\.EOF\) after messages 1\.\.(\d+), in order`)[1]); got != n {
		t.Errorf("the stream received 1..%d, want 1..%d", got, n)
	}
	find(g + `: Shutdown returned nil after`)
	news := find(`(\d+) new Arith\.Count\((\d+)\) streams, (\d+) of them opened while ` + g + ` drained`)
	opened, each, meanwhile := atoi(t, news[1]), atoi(t, news[2]), atoi(t, news[3])
	if meanwhile == 0 {
		t.Errorf("no new stream was opened during the shutdown")
	}
	lost := find(`No message lost: the providers sent (\d+), the client received (\d+)\.`)
	sent, received := atoi(t, lost[1]), atoi(t, lost[2])
	if received != n+opened*each {
		t.Errorf("the client received %d messages, want %d (the stream's %d and %d × %d)", received, n+opened*each, n, opened, each)
	}
	// "  arith-1   <streams> <messages sent>", once per provider.
	rows := regexp.MustCompile(`(?m)^  (arith-\d) +(\d+) +(\d+)$`).FindAllStringSubmatch(text, -1)
	if len(rows) != 3 {
		t.Fatalf("found %d provider rows in part 3's table, want 3", len(rows))
	}
	var tableSent, elsewhere int
	for _, r := range rows {
		id, streams, msgs := r[1], atoi(t, r[2]), atoi(t, r[3])
		tableSent += msgs
		if id == g {
			// The provider shutting down ran the stream and nothing new.
			if streams != 1 || msgs != n {
				t.Errorf("%s (shut down) ran %d streams and sent %d messages, want 1 stream of %d", id, streams, msgs, n)
			}
			continue
		}
		elsewhere += streams
		if msgs != streams*each {
			t.Errorf("%s ran %d streams of %d but sent %d messages", id, streams, each, msgs)
		}
	}
	if elsewhere != opened {
		t.Errorf("the other providers ran %d streams, the client opened %d", elsewhere, opened)
	}
	if tableSent != sent || sent != received {
		t.Errorf("the table adds up to %d messages sent, the summary says %d sent and %d received", tableSent, sent, received)
	}
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
