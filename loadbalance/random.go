package loadbalance

import (
	"context"
	"sync/atomic"

	"github.com/shoalrpc/shoal/naming"
)

// randomBalancer implements Random: every instance has the same probability,
// 1/n, drawn with Lemire's nearly-divisionless bounded random integer
// (math/rand/v2 IntN). Weights are ignored.
type randomBalancer struct {
	cfg  *config
	snap atomic.Pointer[[]*naming.Instance]
}

func newRandom(cfg *config) *randomBalancer {
	return &randomBalancer{cfg: cfg}
}

// Update implements Balancer.
func (b *randomBalancer) Update(instances []*naming.Instance) {
	s := normalize(instances)
	b.snap.Store(&s)
}

// Pick implements Balancer.
func (b *randomBalancer) Pick(context.Context) (*naming.Instance, func(error), error) {
	p := b.snap.Load()
	if p == nil || len(*p) == 0 {
		return nil, noopDone, b.cfg.emptyPick
	}
	s := *p
	return s[b.cfg.rng.IntN(len(s))], noopDone, nil
}
