package loadbalance

import (
	"context"
	"testing"
	"time"

	"github.com/shoalrpc/shoal/naming"
)

// TestLeastConnectionsPrefersIdle: a call to the slow instance never ends, the
// others end at once: once the slow one has a call in flight it is never
// picked again.
func TestLeastConnectionsPrefersIdle(t *testing.T) {
	ins := makeInstances(3)
	b := New(LeastConnections, seeded(1))
	b.Update(ins)
	slow := 0
	for range 1000 {
		id, done := pick(t, b, context.Background())
		if id == "i0" {
			slow++ // held: its done is never called
			continue
		}
		done(nil)
	}
	if slow != 1 {
		t.Errorf("the busy instance was picked %d times, want exactly 1", slow)
	}
}

// TestLeastConnectionsSlowInstance: with closed-loop clients, the instance
// whose calls last 20 times longer gets far fewer calls.
func TestLeastConnectionsSlowInstance(t *testing.T) {
	ins := makeInstances(3)
	b := New(LeastConnections, seeded(2))
	b.Update(ins)
	lat := map[string]time.Duration{"i0": 40 * time.Millisecond, "i1": 2 * time.Millisecond, "i2": 2 * time.Millisecond}
	counts := simulate(t, b, &fakeClock{}, 8, 5*time.Second, lat)
	total := counts["i0"] + counts["i1"] + counts["i2"]
	t.Logf("counts %v", counts)
	if counts["i0"]*10 > total {
		t.Errorf("counts %v: the slow instance got more than 10 %%", counts)
	}
	if d := counts["i1"] - counts["i2"]; d*10 > total || -d*10 > total {
		t.Errorf("counts %v: the fast instances should share evenly", counts)
	}
}

// TestLeastConnectionsTies: among idle instances the choice is uniform.
func TestLeastConnectionsTies(t *testing.T) {
	ins := makeInstances(5)
	b := New(LeastConnections, seeded(3))
	b.Update(ins)
	counts := countPicks(t, b, 25_000)
	assertChiSquare(t, ins, counts, []float64{1, 1, 1, 1, 1})

	// With two instances busy, the three idle ones share uniformly.
	_, d0 := pick(t, b, context.Background())
	_, d1 := pick(t, b, context.Background())
	counts = countPicks(t, b, 15_000)
	busy := 0
	for _, in := range ins {
		if counts[in.ID] == 0 {
			busy++
		}
	}
	if busy != 2 {
		t.Errorf("counts %v: the two busy instances should get nothing", counts)
	}
	d0(nil)
	d1(nil)
}

// TestLeastConnectionsDoneAfterUpdate: done works after the instance left the
// set; a removed instance with calls in flight keeps its count if it comes
// back; extra done calls do not take the count below zero.
func TestLeastConnectionsDoneAfterUpdate(t *testing.T) {
	ins := makeInstances(2)
	b := New(LeastConnections, seeded(4))
	b.Update(ins[:1])
	_, held := pick(t, b, context.Background()) // i0, in flight
	b.Update(ins[1:])                           // i0 removed
	b.Update(clone(ins))                        // and back, as new objects
	if got := inflightCounts(b); got["i0"] != 1 || got["i1"] != 0 {
		t.Fatalf("in flight after remove and re-add = %v, want i0:1 i1:0", got)
	}
	for range 10 { // i1 is idle, i0 busy: always i1
		if id, done := pick(t, b, context.Background()); id != "i1" {
			t.Fatalf("picked busy %s", id)
		} else {
			done(nil)
		}
	}
	held(nil)
	held(nil) // a second done must not go below zero
	if got := inflightCounts(b); got["i0"] != 0 || got["i1"] != 0 {
		t.Fatalf("in flight after done = %v, want zeros", got)
	}

	// A removed instance without calls in flight is forgotten.
	b.Update([]*naming.Instance{ins[1]})
	if n := len(b.(*lcBalancer).peers); n != 1 {
		t.Errorf("%d peers kept, want 1", n)
	}
	_, done := pick(t, b, context.Background())
	b.Update(nil)
	done(nil) // after the set became empty
}
