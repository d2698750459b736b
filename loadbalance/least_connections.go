package loadbalance

import (
	"context"
	"sync"

	"github.com/shoalrpc/shoal/naming"
)

// lcBalancer implements LeastConnections: the instance with the fewest calls
// in flight (nginx's least_conn and HAProxy's leastconn, without the weights:
// weights are ignored). Pick counts a call in flight; its done callback
// uncounts it. Ties are broken at random.
//
// The instances of the set are a binary min-heap ordered by calls in flight,
// then by when each was last picked, so that instances with equally few calls
// take turns; a new instance starts with a random place in that order, so
// that clients do not all begin with the same one. Pick takes the root and
// sifts it down; done sifts its instance up: O(log n) each, under one small
// mutex (HAProxy's leastconn keeps its servers in a tree the same way).
//
// The counters live in a peer per instance ID that survives Update, so done
// stays correct after the set changed, and a removed instance keeps its peer
// while it still has calls in flight, in case it comes back.
type lcBalancer struct {
	cfg   *config
	mu    sync.Mutex         // guards every field below and every peer's state
	peers map[string]*lcPeer // by instance key: the set, and removed ones with calls in flight
	heap  []*lcPeer          // the set, a min-heap on (inflight, ticket)
	picks uint64             // picks so far, from firstTicket: the next ticket
}

// firstTicket is above every new peer's random ticket, so that an instance
// never picked comes before one already picked, at equal calls in flight.
const firstTicket = 1 << 32

// lcPeer is the state of one instance ID.
type lcPeer struct {
	b        *lcBalancer
	in       *naming.Instance
	inflight int64
	ticket   uint64      // when it was last picked (random before); orders peers with the same inflight
	idx      int         // position in b.heap; -1 when not in the set
	done     func(error) // p.release, built once so that Pick allocates nothing
}

// less orders the heap.
func (p *lcPeer) less(q *lcPeer) bool {
	return p.inflight < q.inflight || (p.inflight == q.inflight && p.ticket < q.ticket)
}

// release uncounts one call; it never takes the count below zero.
func (p *lcPeer) release(error) {
	b := p.b
	b.mu.Lock()
	if p.inflight > 0 {
		p.inflight--
		if p.idx >= 0 {
			b.up(p.idx)
		}
	}
	b.mu.Unlock()
}

func newLeastConnections(cfg *config) *lcBalancer {
	return &lcBalancer{cfg: cfg, peers: make(map[string]*lcPeer)}
}

// Update implements Balancer.
func (b *lcBalancer) Update(instances []*naming.Instance) {
	ins := normalize(instances)
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, p := range b.heap {
		p.idx = -1
	}
	heap := make([]*lcPeer, len(ins))
	live := make(map[string]*lcPeer, len(ins))
	for i, in := range ins {
		k := instanceKey(in)
		p := b.peers[k]
		if p == nil {
			p = &lcPeer{b: b, ticket: b.cfg.rng.Uint64() % firstTicket}
			p.done = p.release
		}
		p.in, p.idx = in, i
		live[k] = p
		heap[i] = p
	}
	for k, p := range b.peers {
		if _, ok := live[k]; !ok && p.inflight > 0 {
			live[k] = p
		}
	}
	b.peers, b.heap = live, heap
	for i := len(heap)/2 - 1; i >= 0; i-- {
		b.down(i)
	}
}

// Pick implements Balancer.
func (b *lcBalancer) Pick(context.Context) (*naming.Instance, func(error), error) {
	b.mu.Lock()
	if len(b.heap) == 0 {
		b.mu.Unlock()
		return nil, noopDone, b.cfg.emptyPick
	}
	p := b.heap[0]
	p.inflight++
	b.picks++
	p.ticket = firstTicket + b.picks
	b.down(0)
	in := p.in
	b.mu.Unlock()
	return in, p.done, nil
}

// up moves the peer at i toward the root while it is less than its parent.
func (b *lcBalancer) up(i int) {
	h := b.heap
	for i > 0 {
		parent := (i - 1) / 2
		if !h[i].less(h[parent]) {
			break
		}
		b.swap(i, parent)
		i = parent
	}
}

// down moves the peer at i toward the leaves while a child is less.
func (b *lcBalancer) down(i int) {
	h := b.heap
	for {
		least := i
		if l := 2*i + 1; l < len(h) && h[l].less(h[least]) {
			least = l
		}
		if r := 2*i + 2; r < len(h) && h[r].less(h[least]) {
			least = r
		}
		if least == i {
			return
		}
		b.swap(i, least)
		i = least
	}
}

func (b *lcBalancer) swap(i, j int) {
	h := b.heap
	h[i], h[j] = h[j], h[i]
	h[i].idx, h[j].idx = i, j
}
