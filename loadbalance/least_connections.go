package loadbalance

import (
	"context"
	"math"
	"sync"
	"sync/atomic"

	"github.com/shoalrpc/shoal/naming"
)

// lcBalancer implements LeastConnections: the instance with the fewest calls
// in flight (nginx's least_conn and HAProxy's leastconn, without the weights:
// weights are ignored). Pick counts a call in flight; its done callback
// uncounts it. Ties are broken uniformly at random: a first pass finds the
// minimum and how many instances share it, a second pass takes the k-th of
// them for a random k. Pick is O(n) and takes no lock.
//
// The counters live in a peer per instance ID that survives Update, so done
// stays correct after the set changed, and a removed instance keeps its peer
// while it still has calls in flight, in case it comes back.
type lcBalancer struct {
	cfg   *config
	mu    sync.Mutex         // serialises Update
	peers map[string]*lcPeer // by instance key; guarded by mu
	snap  atomic.Pointer[[]lcEntry]
}

// lcEntry pairs an instance of the snapshot with its peer.
type lcEntry struct {
	in   *naming.Instance
	peer *lcPeer
}

// lcPeer is the state of one instance ID.
type lcPeer struct {
	inflight atomic.Int64
	done     func(error) // p.release, built once so that Pick allocates nothing
}

func newLCPeer() *lcPeer {
	p := &lcPeer{}
	p.done = p.release
	return p
}

// release uncounts one call; it never takes the count below zero.
func (p *lcPeer) release(error) {
	for {
		v := p.inflight.Load()
		if v <= 0 || p.inflight.CompareAndSwap(v, v-1) {
			return
		}
	}
}

func newLeastConnections(cfg *config) *lcBalancer {
	return &lcBalancer{cfg: cfg, peers: make(map[string]*lcPeer)}
}

// Update implements Balancer.
func (b *lcBalancer) Update(instances []*naming.Instance) {
	ins := normalize(instances)
	b.mu.Lock()
	defer b.mu.Unlock()
	entries := make([]lcEntry, len(ins))
	live := make(map[string]*lcPeer, len(ins))
	for i, in := range ins {
		k := instanceKey(in)
		p := b.peers[k]
		if p == nil {
			p = newLCPeer()
		}
		live[k] = p
		entries[i] = lcEntry{in: in, peer: p}
	}
	for k, p := range b.peers {
		if _, ok := live[k]; !ok && p.inflight.Load() > 0 {
			live[k] = p
		}
	}
	b.peers = live
	b.snap.Store(&entries)
}

// Pick implements Balancer.
func (b *lcBalancer) Pick(context.Context) (*naming.Instance, func(error), error) {
	p := b.snap.Load()
	if p == nil || len(*p) == 0 {
		return nil, noopDone, b.cfg.emptyPick
	}
	es := *p
	least, ties, first := int64(math.MaxInt64), 0, 0
	for i := range es {
		switch v := es[i].peer.inflight.Load(); {
		case v < least:
			least, ties, first = v, 1, i
		case v == least:
			ties++
		}
	}
	chosen := first
	if ties > 1 {
		// Counts may have moved since the first pass; then first is kept.
		k := b.cfg.rng.IntN(ties)
		for i := first; i < len(es); i++ {
			if es[i].peer.inflight.Load() == least {
				if k == 0 {
					chosen = i
					break
				}
				k--
			}
		}
	}
	e := es[chosen]
	e.peer.inflight.Add(1)
	return e.in, e.peer.done, nil
}
