package loadbalance

import (
	"context"
	"sync/atomic"

	"github.com/shoalrpc/shoal/naming"
)

// roundRobinBalancer implements RoundRobin: i = (i + 1) mod n, each instance
// in turn in the order given to Update. The counter starts at a random offset
// so that many clients started together do not all begin with the first
// instance, and it survives updates. Weights are ignored.
type roundRobinBalancer struct {
	cfg  *config
	next atomic.Uint64
	snap atomic.Pointer[[]*naming.Instance]
}

func newRoundRobin(cfg *config) *roundRobinBalancer {
	b := &roundRobinBalancer{cfg: cfg}
	// A 32-bit start keeps the counter far from wrapping around 2^64, where
	// the cycle would skip when n does not divide 2^64.
	b.next.Store(uint64(cfg.rng.Uint32()))
	return b
}

// Update implements Balancer.
func (b *roundRobinBalancer) Update(instances []*naming.Instance) {
	s := normalize(instances)
	b.snap.Store(&s)
}

// Pick implements Balancer.
func (b *roundRobinBalancer) Pick(context.Context) (*naming.Instance, func(error), error) {
	p := b.snap.Load()
	if p == nil || len(*p) == 0 {
		return nil, noopDone, b.cfg.emptyPick
	}
	s := *p
	i := b.next.Add(1) - 1
	return s[i%uint64(len(s))], noopDone, nil
}
