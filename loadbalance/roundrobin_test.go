package loadbalance

import (
	"context"
	"testing"
)

// TestRoundRobinExact: each pick is the next instance, mod n, in Update order.
func TestRoundRobinExact(t *testing.T) {
	ins := makeInstances(5)
	pos := make(map[string]int)
	for i, in := range ins {
		pos[in.ID] = i
	}
	b := New(RoundRobin, seeded(3))
	b.Update(ins)
	first, _ := pick(t, b, context.Background())
	prev := pos[first]
	counts := map[string]int{first: 1}
	for range 5*40 - 1 {
		id, done := pick(t, b, context.Background())
		done(nil)
		if want := (prev + 1) % len(ins); pos[id] != want {
			t.Fatalf("picked %s after %s, want %s", id, ins[prev].ID, ins[want].ID)
		}
		prev = pos[id]
		counts[id]++
	}
	for _, in := range ins {
		if counts[in.ID] != 40 {
			t.Errorf("counts = %v, want 40 each", counts)
		}
	}
}

// TestRoundRobinRandomStart: independent balancers do not all start on the
// same instance.
func TestRoundRobinRandomStart(t *testing.T) {
	ins := makeInstances(3)
	starts := make(map[string]int)
	for range 60 {
		b := New(RoundRobin)
		b.Update(ins)
		id, _ := pick(t, b, context.Background())
		starts[id]++
	}
	if len(starts) < 2 {
		t.Errorf("60 balancers all started on the same instance: %v", starts)
	}
	seededStart := func(seed uint64) string {
		b := New(RoundRobin, seeded(seed))
		b.Update(ins)
		id, _ := pick(t, b, context.Background())
		return id
	}
	for seed := range uint64(20) {
		if a, b := seededStart(seed), seededStart(seed); a != b {
			t.Fatal("the start does not follow the seed")
		}
	}
}

// TestRoundRobinUpdate: after the set changes the cycle covers the new set.
func TestRoundRobinUpdate(t *testing.T) {
	b := New(RoundRobin, seeded(5))
	b.Update(makeInstances(3))
	countPicks(t, b, 7)
	ins := makeInstances(4)
	b.Update(ins[1:])
	counts := countPicks(t, b, 30)
	if counts["i0"] != 0 || counts["i1"] != 10 || counts["i2"] != 10 || counts["i3"] != 10 {
		t.Errorf("counts after Update = %v", counts)
	}
}
