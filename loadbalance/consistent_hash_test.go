package loadbalance

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/shoalrpc/shoal/naming"
)

const chKeys = 10_000

// route maps chKeys keys to instance IDs.
func route(t *testing.T, b Balancer) []string {
	t.Helper()
	out := make([]string, chKeys)
	for i := range out {
		id, done := pick(t, b, WithHashKey(context.Background(), fmt.Sprintf("user-%d", i)))
		done(nil)
		out[i] = id
	}
	return out
}

func newCH(ins []*naming.Instance, opts ...ConsistentHashOption) Balancer {
	b := NewConsistentHash(opts...)
	b.Update(ins)
	return b
}

// TestHashVectors pins the hash functions: changing them would make two
// versions of shoal route keys differently.
func TestHashVectors(t *testing.T) {
	for s, want := range map[string]uint64{"": 0xcbf29ce484222325, "a": 0xaf63dc4c8601ec8c, "foobar": 0x85944171f73967e8} {
		if got := fnv1a(s); got != want {
			t.Errorf("fnv1a(%q) = %#x, want %#x", s, got, want)
		}
	}
	if got := hashString("user-1"); got != fmix64(fnv1a("user-1")) || got == fnv1a("user-1") {
		t.Errorf("hashString is not fmix64∘fnv1a")
	}
	// A golden routing: 8 instances, fixed keys.
	b := newCH(makeInstances(8))
	got := ""
	for i := range 8 {
		id, _ := pick(t, b, WithHashKey(context.Background(), fmt.Sprintf("golden-%d", i)))
		got += id + " "
	}
	const golden = "i1 i5 i4 i5 i4 i0 i4 i3 "
	if got != golden {
		t.Errorf("golden routing changed:\n got %q\nwant %q", got, golden)
	}
}

// TestConsistentHashOrderIndependent: the same set, given in any order, with
// other Instance objects and with duplicate IDs, routes every key alike.
func TestConsistentHashOrderIndependent(t *testing.T) {
	ins := makeInstances(20, 1, 2, 1, 3, 1, 1, 2, 1, 1, 1, 4, 1, 1, 2, 1, 1, 1, 3, 1, 1)
	dup := &naming.Instance{ID: "i5", Addr: "tcp@zz:1"} // loses to i5's smaller Addr
	want := route(t, newCH(append(clone(ins), dup)))
	r := rand.New(rand.NewPCG(1, 2))
	for trial := range 4 {
		perm := append(clone(ins), dup)
		r.Shuffle(len(perm), func(i, j int) { perm[i], perm[j] = perm[j], perm[i] })
		got := route(t, newCH(perm))
		for k := range want {
			if got[k] != want[k] {
				t.Fatalf("trial %d: key %d goes to %s, was %s", trial, k, got[k], want[k])
			}
		}
	}
	b := newCH([]*naming.Instance{dup, ins[5]})
	for range 20 {
		in, _, _ := b.Pick(WithHashKey(context.Background(), "k"))
		if in != ins[5] {
			t.Fatalf("duplicate ID resolved to %v, want the smaller Addr", in)
		}
	}
}

// TestConsistentHashBalance: 4 equal instances share 10,000 keys within ±25 %
// of the mean.
func TestConsistentHashBalance(t *testing.T) {
	ins := makeInstances(4)
	counts := make(map[string]int)
	for _, id := range route(t, newCH(ins)) {
		counts[id]++
	}
	mean := chKeys / len(ins)
	for _, in := range ins {
		if c := counts[in.ID]; c < mean*3/4 || c > mean*5/4 {
			t.Errorf("counts %v: %s outside %d ± 25 %%", counts, in.ID, mean)
		}
	}
}

// TestConsistentHashWeights: virtual nodes follow the weight.
func TestConsistentHashWeights(t *testing.T) {
	ins := makeInstances(0, 1, 1, 2)
	counts := make(map[string]int)
	for _, id := range route(t, newCH(ins)) {
		counts[id]++
	}
	if c := counts["i2"]; c < chKeys*40/100 || c > chKeys*60/100 {
		t.Errorf("counts %v: the instance of weight 2 should own about half the keys", counts)
	}
}

// TestConsistentHashMovement: adding an instance to n moves about 1/(n+1) of
// the keys, all onto it; removing it moves exactly its keys back.
func TestConsistentHashMovement(t *testing.T) {
	for _, n := range []int{4, 10, 30} {
		all := makeInstances(n + 1)
		added := all[n]
		before := route(t, newCH(all[:n]))
		after := route(t, newCH(all))
		moved := 0
		for k := range before {
			if before[k] != after[k] {
				moved++
				if after[k] != added.ID {
					t.Fatalf("n=%d: key %d moved from %s to %s, not to the new instance", n, k, before[k], after[k])
				}
			}
		}
		ideal := float64(chKeys) / float64(n+1)
		if f := float64(moved); f < 0.6*ideal || f > 1.4*ideal {
			t.Errorf("n=%d: adding one instance moved %d keys, want about %.0f", n, moved, ideal)
		}

		// Remove another instance from the n+1: only its keys move.
		removed := all[0]
		rest := route(t, newCH(all[1:]))
		for k := range after {
			if after[k] != removed.ID && rest[k] != after[k] {
				t.Fatalf("n=%d: removing %s moved key %d from %s to %s", n, removed.ID, k, after[k], rest[k])
			}
			if rest[k] == removed.ID {
				t.Fatalf("n=%d: key %d still routed to the removed instance", n, k)
			}
		}
	}
}

// TestConsistentHashIdentity: without a key the caller's identity is the key,
// so one caller always gets the same instance.
func TestConsistentHashIdentity(t *testing.T) {
	ins := makeInstances(16)
	b := newCH(ins, WithIdentity("client-7"))
	want, _ := pick(t, b, WithHashKey(context.Background(), "client-7"))
	for range 50 {
		if id, _ := pick(t, b, context.Background()); id != want {
			t.Fatalf("no key: got %s, want %s (the identity's instance)", id, want)
		}
	}
	// Different identities spread over instances.
	seen := make(map[string]bool)
	for i := range 64 {
		id, _ := pick(t, newCH(ins, WithIdentity(fmt.Sprintf("client-%d", i))), context.Background())
		seen[id] = true
	}
	if len(seen) < 8 {
		t.Errorf("64 identities reached only %d of 16 instances", len(seen))
	}
	// The default identity is the process's.
	def := newCH(ins)
	byID, _ := pick(t, def, WithHashKey(context.Background(), defaultIdentity()))
	if id, _ := pick(t, def, context.Background()); id != byID {
		t.Errorf("default identity routes to %s, %q routes to %s", id, defaultIdentity(), byID)
	}
}

// TestConsistentHashRingCap: huge weights are scaled down to a bounded ring.
func TestConsistentHashRingCap(t *testing.T) {
	ins := makeInstances(0, MaxWeight, MaxWeight, 1)
	s := buildRing(ins, DefaultReplicas)
	if len(s.points) > maxRingPoints+len(ins) || len(s.points) < maxRingPoints/2 {
		t.Fatalf("ring has %d points, cap %d", len(s.points), maxRingPoints)
	}
	if got := buildRing(makeInstances(3, 0, 2, 1), 10); len(got.points) != 10+20+10 {
		t.Errorf("ring of weights 1,2,1 × 10 replicas has %d points, want 40", len(got.points))
	}
}

// TestRingSuccessor: the lookup table finds the same point as a binary search,
// including at the edges and on the points themselves.
func TestRingSuccessor(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, n := range []int{1, 2, 3, 30, 300} {
		s := buildRing(makeInstances(n), 1+r.IntN(DefaultReplicas))
		hashes := []uint64{0, 1, ^uint64(0), s.points[0], s.points[0] - 1, s.points[len(s.points)-1], s.points[len(s.points)-1] + 1}
		for range 2000 {
			hashes = append(hashes, r.Uint64(), s.points[r.IntN(len(s.points))])
		}
		for _, h := range hashes {
			want, _ := slices.BinarySearch(s.points, h)
			if want == len(s.points) {
				want = 0
			}
			if got := s.successor(h); got != want {
				t.Fatalf("n=%d: successor(%#x) = %d, want %d", n, h, got, want)
			}
		}
	}
}
