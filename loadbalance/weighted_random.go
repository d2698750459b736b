package loadbalance

import (
	"context"
	"slices"
	"sync/atomic"

	"github.com/shoalrpc/shoal/naming"
)

// wrandomBalancer implements WeightedRandom: instance i is chosen with
// probability weight_i / Σ weight. Update computes the prefix sums of the
// weights; Pick draws r uniformly in [0, Σ) and binary-searches the first
// prefix sum greater than r (inverse transform sampling), O(log n).
type wrandomBalancer struct {
	cfg  *config
	snap atomic.Pointer[wrandomSnapshot]
}

// wrandomSnapshot is one immutable set of instances with their prefix sums.
type wrandomSnapshot struct {
	instances []*naming.Instance
	prefix    []int64 // prefix[i] = weight_0 + … + weight_i
}

func newWeightedRandom(cfg *config) *wrandomBalancer {
	return &wrandomBalancer{cfg: cfg}
}

// Update implements Balancer.
func (b *wrandomBalancer) Update(instances []*naming.Instance) {
	ins := normalize(instances)
	s := &wrandomSnapshot{instances: ins, prefix: make([]int64, len(ins))}
	var sum int64
	for i, in := range ins {
		sum += weightOf(in)
		s.prefix[i] = sum
	}
	b.snap.Store(s)
}

// Pick implements Balancer.
func (b *wrandomBalancer) Pick(context.Context) (*naming.Instance, func(error), error) {
	s := b.snap.Load()
	if s == nil || len(s.instances) == 0 {
		return nil, noopDone, b.cfg.emptyPick
	}
	r := b.cfg.rng.Int64N(s.prefix[len(s.prefix)-1])
	// The first prefix sum >= r+1 is the first one > r.
	i, _ := slices.BinarySearch(s.prefix, r+1)
	return s.instances[i], noopDone, nil
}
