package loadbalance

import (
	"context"
	"encoding"
	"errors"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/shoalrpc/shoal/naming"
)

var (
	_ encoding.TextMarshaler   = Mode(0)
	_ encoding.TextUnmarshaler = (*Mode)(nil)
)

func TestParseModeRoundTrip(t *testing.T) {
	want := map[Mode]string{
		Random:             "random",
		RoundRobin:         "roundrobin",
		WeightedRoundRobin: "weighted_roundrobin",
		WeightedRandom:     "weighted_random",
		ConsistentHash:     "consistent_hash",
		LeastConnections:   "least_connections",
		P2CEWMA:            "p2c_ewma",
	}
	if got := len(Modes()); got != len(want) {
		t.Fatalf("Modes() has %d modes, want %d", got, len(want))
	}
	for _, m := range Modes() {
		if m.String() != want[m] {
			t.Errorf("Mode(%d).String() = %q, want %q", int(m), m.String(), want[m])
		}
		for _, name := range []string{want[m], strings.ToUpper(want[m]), " " + want[m] + "\n"} {
			got, err := ParseMode(name)
			if err != nil || got != m {
				t.Errorf("ParseMode(%q) = %v, %v; want %v", name, got, err, m)
			}
		}
		text, err := m.MarshalText()
		if err != nil {
			t.Fatal(err)
		}
		var back Mode
		if err := back.UnmarshalText(text); err != nil || back != m {
			t.Errorf("UnmarshalText(%q) = %v, %v", text, back, err)
		}
	}
}

func TestParseModeUnknown(t *testing.T) {
	for _, name := range []string{"", "round_robin", "p2c", "least-connections"} {
		_, err := ParseMode(name)
		if !errors.Is(err, ErrUnknownMode) {
			t.Fatalf("ParseMode(%q) error = %v, want ErrUnknownMode", name, err)
		}
		for _, m := range Modes() {
			if !strings.Contains(err.Error(), m.String()) {
				t.Errorf("ParseMode(%q) error %q does not list %q", name, err, m)
			}
		}
	}
	var m Mode
	if err := m.UnmarshalText([]byte("nope")); !errors.Is(err, ErrUnknownMode) {
		t.Errorf("UnmarshalText(nope) = %v", err)
	}
	if _, err := Mode(99).MarshalText(); !errors.Is(err, ErrUnknownMode) {
		t.Errorf("MarshalText(Mode(99)) = %v", err)
	}
}

func TestNewInvalidMode(t *testing.T) {
	for _, m := range []Mode{-1, Mode(len(Modes())), 1000} {
		b := New(m)
		b.Update(makeInstances(3))
		in, done, err := b.Pick(context.Background())
		if !errors.Is(err, ErrUnknownMode) || in != nil || done == nil {
			t.Fatalf("New(%d).Pick = %v, done nil %v, %v; want ErrUnknownMode", int(m), in, done == nil, err)
		}
		if !strings.Contains(err.Error(), m.String()) {
			t.Errorf("error %q does not name %s", err, m)
		}
		done(nil)
	}
}

func TestEmptySet(t *testing.T) {
	for _, m := range Modes() {
		t.Run(m.String(), func(t *testing.T) {
			b := New(m)
			check := func(when string) {
				t.Helper()
				in, done, err := b.Pick(context.Background())
				if !errors.Is(err, ErrNoInstances) || in != nil || done == nil {
					t.Fatalf("%s: Pick = %v, done nil %v, %v; want ErrNoInstances", when, in, done == nil, err)
				}
				if !strings.Contains(err.Error(), m.String()) {
					t.Errorf("%s: error %q does not name the mode", when, err)
				}
				done(nil)
			}
			check("before Update")
			b.Update(nil)
			check("after Update(nil)")
			b.Update([]*naming.Instance{nil, nil})
			check("after Update of nils")
			b.Update(makeInstances(2))
			if _, _, err := b.Pick(context.Background()); err != nil {
				t.Fatalf("Pick on 2 instances: %v", err)
			}
			b.Update([]*naming.Instance{})
			check("after Update to empty")
		})
	}
}

// TestNormalize: nil entries and later duplicates are dropped, ID falls back
// to Addr, the caller's slice is copied.
func TestNormalize(t *testing.T) {
	a := &naming.Instance{ID: "a", Addr: "tcp@a:1"}
	a2 := &naming.Instance{ID: "a", Addr: "tcp@a:2"}
	noID := &naming.Instance{Addr: "tcp@c:1"}
	noID2 := &naming.Instance{Addr: "tcp@c:1", Weight: 3}
	got := normalize([]*naming.Instance{nil, a, a2, noID, nil, noID2})
	if len(got) != 2 || got[0] != a || got[1] != noID {
		t.Fatalf("normalize = %v", got)
	}
	in := makeInstances(3)
	b := New(RoundRobin, seeded(1))
	b.Update(in)
	in[0], in[1], in[2] = nil, nil, nil // must not affect the balancer
	if _, _, err := b.Pick(context.Background()); err != nil {
		t.Fatalf("Pick after the caller cleared its slice: %v", err)
	}
}

// TestAllOptionsAndOddInputs: no panic on strange but legal input.
func TestAllOptionsAndOddInputs(t *testing.T) {
	common := []Option{nil, WithRand(nil)}
	hash := []ConsistentHashOption{nil, WithRand(nil), WithIdentity(""), WithReplicas(-1), WithReplicas(1 << 30)}
	p2c := []P2COption{nil, WithRand(nil), WithDecay(-1), WithErrorPenalty(-1), WithInitialLatency(0), WithClock(nil)}
	huge := []*naming.Instance{{ID: "big", Weight: int(^uint(0) >> 1)}, {ID: "neg", Weight: -5}, {}}
	for _, m := range Modes() {
		b := New(m, common...)
		switch m {
		case ConsistentHash:
			b = NewConsistentHash(hash...)
		case P2CEWMA:
			b = NewP2CEWMA(p2c...)
		}
		b.Update(huge)
		for range 10 {
			//lint:ignore SA1012 a nil context must not panic
			in, done, err := b.Pick(nil)
			if err != nil || in == nil {
				t.Fatalf("%s: Pick = %v, %v", m, in, err)
			}
			done(errors.New("boom"))
			done(nil) // a second call must not corrupt the state either
		}
	}
	//lint:ignore SA1012 a nil context must not panic
	if k, ok := hashKeyFrom(WithHashKey(nil, "k")); !ok || k != "k" {
		t.Errorf("WithHashKey(nil, k) = %q, %v", k, ok)
	}
}

// TestPickAllocs proves that Pick and done allocate nothing for the policies
// that promise it.
func TestPickAllocs(t *testing.T) {
	ins := makeInstances(30, 1, 2, 3, 4, 5, 1, 2, 3, 4, 5, 1, 2, 3, 4, 5, 1, 2, 3, 4, 5, 1, 2, 3, 4, 5, 1, 2, 3, 4, 5)
	keyed := WithHashKey(context.Background(), "user-42")
	cases := []struct {
		name string
		mode Mode
		ctx  context.Context
		max  float64
	}{
		{"random", Random, context.Background(), 0},
		{"roundrobin", RoundRobin, context.Background(), 0},
		{"weighted_roundrobin", WeightedRoundRobin, context.Background(), 0},
		{"weighted_random", WeightedRandom, context.Background(), 0},
		{"consistent_hash/key", ConsistentHash, keyed, 0},
		{"consistent_hash/identity", ConsistentHash, context.Background(), 0},
		{"least_connections", LeastConnections, context.Background(), 0},
		{"p2c_ewma", P2CEWMA, context.Background(), 0},
	}
	for _, c := range cases {
		b := New(c.mode)
		b.Update(ins)
		allocs := testing.AllocsPerRun(1000, func() {
			_, done, err := b.Pick(c.ctx)
			if err != nil {
				panic(err)
			}
			done(nil)
		})
		if allocs > c.max {
			t.Errorf("%s: %.1f allocations per Pick, want <= %v", c.name, allocs, c.max)
		}
	}
	empty := New(Random)
	if allocs := testing.AllocsPerRun(100, func() { _, _, _ = empty.Pick(context.Background()) }); allocs != 0 {
		t.Errorf("empty Pick: %.1f allocations", allocs)
	}
}

// TestConcurrentPickUpdate: 8 goroutines pick (and call done, half of the time
// from another goroutine) while another goroutine keeps replacing the set.
// Run with -race.
func TestConcurrentPickUpdate(t *testing.T) {
	all := makeInstances(24, 1, 2, 3, 1, 2, 3, 1, 2, 3, 1, 2, 3, 1, 2, 3, 1, 2, 3, 1, 2, 3, 1, 2, 3)
	known := make(map[*naming.Instance]bool)
	for _, in := range all {
		known[in] = true
	}
	sets := [][]*naming.Instance{all[:8], all[4:20], nil, all, all[20:], {nil, all[3], all[3]}, all[:1]}
	for _, m := range Modes() {
		t.Run(m.String(), func(t *testing.T) {
			b := New(m)
			b.Update(all)
			var (
				stop    atomic.Bool
				pickers sync.WaitGroup
				others  sync.WaitGroup
				dones   = make(chan func(error), 64)
				bad     atomic.Value
			)
			others.Go(func() { // calls done from another goroutine
				for d := range dones {
					d(nil)
				}
			})
			updates := 0
			others.Go(func() {
				for i := 0; !stop.Load(); i++ {
					b.Update(sets[i%len(sets)])
					updates++
				}
			})
			for g := range 8 {
				pickers.Go(func() {
					ctx := WithHashKey(context.Background(), string(rune('a'+g)))
					for i := range 2000 {
						in, done, err := b.Pick(ctx)
						switch {
						case err != nil && !errors.Is(err, ErrNoInstances):
							bad.Store(err.Error())
						case err == nil && !known[in]:
							bad.Store("unknown instance picked")
						}
						if i%2 == 0 {
							dones <- done
						} else {
							done(errors.New("x"))
						}
					}
				})
			}
			pickers.Wait()
			stop.Store(true)
			close(dones)
			others.Wait()
			if v := bad.Load(); v != nil {
				t.Fatal(v)
			}
			if updates == 0 {
				t.Fatal("the set was never updated")
			}
			// Every call is done: no instance may still count one in flight.
			b.Update(all)
			for _, n := range inflightCounts(b) {
				if n != 0 {
					t.Fatalf("calls in flight after every done: %v", inflightCounts(b))
				}
			}
		})
	}
}

// inflightCounts returns the in-flight count per instance ID of the policies
// that keep one.
func inflightCounts(b Balancer) map[string]int64 {
	out := make(map[string]int64)
	switch b := b.(type) {
	case *lcBalancer:
		b.mu.Lock()
		for _, p := range b.heap {
			out[p.in.ID] = p.inflight
		}
		b.mu.Unlock()
	case *p2cBalancer:
		for _, e := range *b.snap.Load() {
			out[e.in.ID] = e.peer.inflight.Load()
		}
	}
	return out
}

// TestEachPolicyHasItsConstructor: a policy's own constructor makes the same
// balancer New does for its Mode.
func TestEachPolicyHasItsConstructor(t *testing.T) {
	for m, b := range map[Mode]Balancer{
		Random: NewRandom(), RoundRobin: NewRoundRobin(), WeightedRoundRobin: NewWeightedRoundRobin(),
		WeightedRandom: NewWeightedRandom(), ConsistentHash: NewConsistentHash(), LeastConnections: NewLeastConnections(),
		P2CEWMA: NewP2CEWMA(),
	} {
		if got, want := reflect.TypeOf(b), reflect.TypeOf(New(m)); got != want {
			t.Errorf("%s: constructor makes %v, New makes %v", m, got, want)
		}
	}
}
