package loadbalance

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/shoalrpc/shoal/naming"
)

// wrrBalancer implements WeightedRoundRobin with nginx's smooth weighted round
// robin (ngx_http_upstream_get_peer, nginx 1.3.1+): on each pick every
// instance's current weight grows by its weight, the instance with the largest
// current weight is chosen (the first one on a tie) and its current weight
// falls by the total weight. Weights 5, 1, 1 give a a b a c a a in each cycle
// of 7 picks rather than a a a a a b c.
//
// Starting from zero current weights the choices repeat every Σweight picks
// (with the weights divided by their greatest common divisor, which changes
// no choice), and each cycle picks every instance exactly its weight's
// times. So Update works the cycle out once and Pick reads it: one atomic
// add, O(1) whatever the number of instances, no lock. An Update with the
// same instances and weights (new objects, the registry's next poll) keeps
// the cycle and its position; a changed set starts a new cycle, whose first
// Σweight picks already give every instance its share. A cycle longer than
// maxCycle picks (very large, coprime weights) is not stored: Pick then runs
// nginx's O(n) step under a mutex, as nginx does.
type wrrBalancer struct {
	cfg      *config
	updateMu sync.Mutex // serialises Update
	snap     atomic.Pointer[wrrSnapshot]
}

// maxCycle bounds the picks stored for one cycle (4 bytes each).
const maxCycle = 1 << 16

// wrrSnapshot is one set of instances with their weights and cycle.
type wrrSnapshot struct {
	instances []*naming.Instance
	weights   []int64
	total     int64
	cycle     []int32        // the choices of one cycle; nil when longer than maxCycle
	next      *atomic.Uint64 // picks so far, the position in cycle; shared by snapshots of the same cycle

	mu      *sync.Mutex // guards current, for a snapshot without a cycle
	current []int64
}

func newWeightedRoundRobin(cfg *config) *wrrBalancer {
	return &wrrBalancer{cfg: cfg}
}

// Update implements Balancer.
func (b *wrrBalancer) Update(instances []*naming.Instance) {
	ins := normalize(instances)
	s := &wrrSnapshot{instances: ins, weights: make([]int64, len(ins))}
	for i, in := range ins {
		s.weights[i] = weightOf(in)
		s.total += s.weights[i]
	}
	b.updateMu.Lock()
	defer b.updateMu.Unlock()
	if old := b.snap.Load(); old != nil && old.sameAs(s) {
		// The same IDs and weights: keep the cycle and its position (and,
		// without a cycle, the current weights), with the new objects.
		s.cycle, s.next, s.current = old.cycle, old.next, old.current
		s.mu = old.mu
		b.snap.Store(s)
		return
	}
	s.next, s.mu = new(atomic.Uint64), new(sync.Mutex)
	s.current = make([]int64, len(ins))
	if g := gcdOf(s.weights); s.total/g <= maxCycle {
		s.cycle = smoothCycle(s.weights, g)
	}
	b.snap.Store(s)
}

// sameAs reports whether s and t hold the same instance keys with the same
// weights, in the same order.
func (s *wrrSnapshot) sameAs(t *wrrSnapshot) bool {
	return slices.Equal(s.weights, t.weights) && slices.EqualFunc(s.instances, t.instances, func(a, b *naming.Instance) bool {
		return instanceKey(a) == instanceKey(b)
	})
}

// Pick implements Balancer.
func (b *wrrBalancer) Pick(context.Context) (*naming.Instance, func(error), error) {
	s := b.snap.Load()
	if s == nil || len(s.instances) == 0 {
		return nil, noopDone, b.cfg.emptyPick
	}
	if s.cycle != nil {
		i := (s.next.Add(1) - 1) % uint64(len(s.cycle))
		return s.instances[s.cycle[i]], noopDone, nil
	}
	s.mu.Lock()
	best := smoothStep(s.weights, s.current, s.total)
	s.mu.Unlock()
	return s.instances[best], noopDone, nil
}

// smoothStep is one choice of nginx's smooth weighted round robin: it moves
// the current weights and returns the index chosen.
func smoothStep(weights, current []int64, total int64) int {
	best := 0
	for i, w := range weights {
		current[i] += w
		if current[i] > current[best] {
			best = i
		}
	}
	current[best] -= total
	return best
}

// smoothCycle returns one cycle of smooth weighted round robin over weights
// divided by g, from zero current weights.
func smoothCycle(weights []int64, g int64) []int32 {
	reduced := make([]int64, len(weights))
	var total int64
	for i, w := range weights {
		reduced[i] = w / g
		total += reduced[i]
	}
	current := make([]int64, len(weights))
	cycle := make([]int32, total)
	for k := range cycle {
		cycle[k] = int32(smoothStep(reduced, current, total))
	}
	return cycle
}

// gcdOf returns the greatest common divisor of ws (all at least 1).
func gcdOf(ws []int64) int64 {
	var g int64
	for _, w := range ws {
		a, b := g, w
		for b != 0 {
			a, b = b, a%b
		}
		g = a
	}
	return max(g, 1)
}
