package loadbalance

import (
	"context"
	"strings"
	"testing"

	"github.com/shoalrpc/shoal/naming"
)

// wrrSequence picks n times and returns the picked IDs, space-separated.
func wrrSequence(t *testing.T, b Balancer, n int) string {
	t.Helper()
	ids := make([]string, n)
	for i := range ids {
		id, done := pick(t, b, context.Background())
		done(nil)
		ids[i] = id
	}
	return strings.Join(ids, " ")
}

// TestSmoothWRRSequence: weights 5, 1, 1 give a a b a c a a in every cycle.
func TestSmoothWRRSequence(t *testing.T) {
	ins := makeInstances(0, 5, 1, 1)
	b := New(WeightedRoundRobin)
	b.Update(ins)
	cycle := "i0 i0 i1 i0 i2 i0 i0"
	want := strings.Repeat(cycle+" ", 3)
	if got := wrrSequence(t, b, 21); got+" " != want {
		t.Fatalf("sequence\n got %s\nwant %s", got, want)
	}
}

// TestSmoothWRRCounts: every cycle of Σweight picks gives each instance
// exactly its weight (0 counts as 1).
func TestSmoothWRRCounts(t *testing.T) {
	weights := []int{4, 3, 0, 2, 7}
	ins := makeInstances(0, weights...)
	b := New(WeightedRoundRobin)
	b.Update(ins)
	for cycle := range 5 {
		counts := countPicks(t, b, 4+3+1+2+7)
		for _, in := range ins {
			if counts[in.ID] != in.EffectiveWeight() {
				t.Fatalf("cycle %d: counts %v, want weights %v", cycle, counts, weights)
			}
		}
	}
}

// TestSmoothWRRStateSurvivesUpdate: current weights are kept per ID, so an
// Update with the same set (new objects) does not restart the cycle.
func TestSmoothWRRStateSurvivesUpdate(t *testing.T) {
	ins := makeInstances(0, 5, 1, 1)
	b := New(WeightedRoundRobin)
	b.Update(ins)
	got := wrrSequence(t, b, 3)
	b.Update(clone(ins))
	got += " " + wrrSequence(t, b, 4)
	if want := "i0 i0 i1 i0 i2 i0 i0"; got != want {
		t.Fatalf("sequence across Update\n got %s\nwant %s", got, want)
	}
}

// TestSmoothWRRAfterChange: after instances come and go, the shares converge
// to the new weights (currents stay bounded).
func TestSmoothWRRAfterChange(t *testing.T) {
	ins := makeInstances(0, 5, 1, 1, 3)
	b := New(WeightedRoundRobin)
	b.Update(ins)
	countPicks(t, b, 5)
	next := []*naming.Instance{ins[0], ins[2], ins[3]} // weights 5, 1, 3: total 9
	b.Update(next)
	counts := countPicks(t, b, 900)
	for _, in := range next {
		if d := counts[in.ID] - 100*in.EffectiveWeight(); d < -9 || d > 9 {
			t.Errorf("counts %v, want 500/100/300 ± 9", counts)
		}
	}
	if counts["i1"] != 0 {
		t.Errorf("removed instance picked %d times", counts["i1"])
	}
}

// TestSmoothWRRLongCycle: weights whose cycle is too long to store are
// picked by nginx's step, with the same shares and the same start.
func TestSmoothWRRLongCycle(t *testing.T) {
	ins := makeInstances(0, MaxWeight, MaxWeight-1, 1)
	b := New(WeightedRoundRobin)
	b.Update(ins)
	if s := b.(*wrrBalancer).snap.Load(); s.cycle != nil {
		t.Fatalf("a cycle of %d picks was stored", len(s.cycle))
	}
	counts := countPicks(t, b, 2*MaxWeight)
	if counts["i0"] != MaxWeight || counts["i1"] != MaxWeight-1 || counts["i2"] != 1 {
		t.Fatalf("counts over one cycle %v, want the weights", counts)
	}
	// The same picks as the stored cycle would give, on a short example.
	short := New(WeightedRoundRobin)
	short.Update(makeInstances(0, 5, 1, 1))
	long := &wrrBalancer{cfg: short.(*wrrBalancer).cfg}
	long.Update(makeInstances(0, 5, 1, 1))
	long.snap.Load().cycle = nil
	if a, b := wrrSequence(t, short, 14), wrrSequence(t, long, 14); a != b {
		t.Fatalf("stored cycle %s, stepped %s", a, b)
	}
}
