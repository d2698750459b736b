package loadbalance

import (
	"context"
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
// The set is an immutable snapshot; the current weights are the only mutable
// state. They live in one slice beside the snapshot, are changed under a
// per-balancer mutex during the O(n) pick (nginx locks too), and are carried
// over by instance ID when the set changes.
type wrrBalancer struct {
	cfg      *config
	updateMu sync.Mutex // serialises Update
	pickMu   sync.Mutex // guards the current weights of every snapshot
	snap     atomic.Pointer[wrrSnapshot]
}

// wrrSnapshot is one set of instances with their weights.
type wrrSnapshot struct {
	instances []*naming.Instance
	weights   []int64
	total     int64
	index     map[string]int // instance key → position
	current   []int64        // guarded by wrrBalancer.pickMu
}

func newWeightedRoundRobin(cfg *config) *wrrBalancer {
	return &wrrBalancer{cfg: cfg}
}

// Update implements Balancer.
func (b *wrrBalancer) Update(instances []*naming.Instance) {
	ins := normalize(instances)
	s := &wrrSnapshot{
		instances: ins,
		weights:   make([]int64, len(ins)),
		index:     make(map[string]int, len(ins)),
		current:   make([]int64, len(ins)),
	}
	for i, in := range ins {
		s.weights[i] = weightOf(in)
		s.total += s.weights[i]
		s.index[instanceKey(in)] = i
	}

	b.updateMu.Lock()
	defer b.updateMu.Unlock()
	old := b.snap.Load()
	b.pickMu.Lock()
	if old != nil {
		for i, in := range ins {
			if j, ok := old.index[instanceKey(in)]; ok {
				s.current[i] = old.current[j]
			}
		}
	}
	b.snap.Store(s)
	b.pickMu.Unlock()
}

// Pick implements Balancer.
func (b *wrrBalancer) Pick(context.Context) (*naming.Instance, func(error), error) {
	b.pickMu.Lock()
	s := b.snap.Load()
	if s == nil || len(s.instances) == 0 {
		b.pickMu.Unlock()
		return nil, noopDone, b.cfg.emptyPick
	}
	best := 0
	cur := s.current
	for i, w := range s.weights {
		cur[i] += w
		if cur[i] > cur[best] {
			best = i
		}
	}
	cur[best] -= s.total
	in := s.instances[best]
	b.pickMu.Unlock()
	return in, noopDone, nil
}
