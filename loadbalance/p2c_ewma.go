package loadbalance

import (
	"context"
	"errors"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shoalrpc/shoal/naming"
)

// p2cBalancer implements P2CEWMA: the power of two random choices
// (Mitzenmacher, "The Power of Two Choices in Randomized Load Balancing",
// 2001) on a peak-EWMA load estimate, as in Finagle's and linkerd/tower's
// PeakEwma balancers and Kratos' selector/p2c + selector/ewma.
//
// Pick draws two distinct instances at random and keeps the one with the lower
// cost = latency estimate × (calls in flight + 1). The latency estimate is a
// time-weighted EWMA of the observed latencies, updated by done: after dt,
// with w = exp(-dt/τ) (τ = WithDecay, 10 s by default),
//
//	estimate = estimate·w + rtt·(1 − w),   or rtt itself if rtt > estimate·w (peak).
//
// Between observations the estimate decays toward zero at read time, as
// tower's does, so an instance nobody picks is probed again in time. A failed
// call is recorded with a latency of at least WithErrorPenalty (1 s by
// default), which makes the instance expensive until the penalty has decayed:
// it recovers over time, faster if it answers well. A done(err) where err is
// context.Canceled only uncounts the call: the caller gave up, which says
// nothing about the instance. A new instance starts at WithInitialLatency.
// Weights are ignored.
//
// Pick takes no lock; the state of an instance ID (atomics) survives Update,
// and a removed instance keeps it while it still has calls in flight.
//
// Pick allocates nothing in the steady state: a call's start time lives in a
// slot of its instance, one atomic word that is 0 when the slot is free, and
// done is the slot's own closure, built once when the slot was made. An
// instance has two slots in itself and grows more up to its peak of calls in
// flight (p2cMaxSlots more at most; beyond that a pick falls back to a
// closure of its own). done is
// safe to call twice: the first frees the slot (a compare-and-swap from the
// start time it read), a second finds it free and does nothing. Slots are
// handed out in rotation, so a freed slot is reused as late as possible; only
// a second done that comes after its slot was taken again would end that
// newer call's accounting early, and even then no count goes below zero or
// stays up: the calls in flight are the busy slots.
type p2cBalancer struct {
	cfg     *config
	tau     float64             // ns
	penalty float64             // ns
	initial float64             // ns
	mu      sync.Mutex          // serialises Update
	peers   map[string]*p2cPeer // by instance key; guarded by mu
	snap    atomic.Pointer[[]p2cEntry]
}

// p2cEntry pairs an instance of the snapshot with its peer.
type p2cEntry struct {
	in   *naming.Instance
	peer *p2cPeer
}

// p2cPeer is the state of one instance ID.
type p2cPeer struct {
	inflight atomic.Int64
	est      atomic.Uint64 // math.Float64bits of the latency estimate, ns
	stamp    atomic.Int64  // clock reading (ns) at which est was computed
	mu       sync.Mutex    // serialises observe and growing slots; readers use the atomics

	first [2]p2cSlot                 // the slots of the first two calls in flight, in the peer itself
	slots atomic.Pointer[[]*p2cSlot] // more, grown copy-on-write under mu, never shrunk
	next  atomic.Uint32              // rotating cursor into first and slots
}

// p2cSlot holds one call in flight to a peer between Pick and done.
type p2cSlot struct {
	start atomic.Int64 // clock reading (ns) at the pick + 1; 0: free
	done  func(error)  // this slot's done, built once
}

const (
	// p2cProbes is how many slots a pick tries before it grows a new one.
	p2cProbes = 4
	// p2cMaxSlots bounds the slots an instance grows beyond its first two: a
	// caller that never calls done cannot make it grow without end.
	p2cMaxSlots = 4096
)

// acquire takes a free slot for a call started at now and returns its done,
// or nil when the instance has p2cMaxSlots busy ones.
func (p *p2cPeer) acquire(b *p2cBalancer, now time.Duration) func(error) {
	v := int64(now) + 1
	if v == 0 { // a clock reading of -1 ns: record it as 0
		v = 1
	}
	i := p.next.Add(1)
	for k := range uint32(2) {
		if s := &p.first[(i+k)&1]; s.start.Load() == 0 && s.start.CompareAndSwap(0, v) {
			return s.done
		}
	}
	if ss := p.slots.Load(); ss != nil {
		n := uint32(len(*ss))
		for k := range min(p2cProbes, n) {
			s := (*ss)[(i+k)%n]
			if s.start.Load() == 0 && s.start.CompareAndSwap(0, v) {
				return s.done
			}
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	var old []*p2cSlot
	if ss := p.slots.Load(); ss != nil {
		old = *ss
	}
	if len(old) >= p2cMaxSlots {
		return nil
	}
	// Two slots at a time: with one call at a time a freed slot is then not
	// the next one handed out, so a second done right after the first finds
	// its slot still free.
	a, c := new(p2cSlot), new(p2cSlot)
	p.initSlot(a, b)
	p.initSlot(c, b)
	grown := append(old[:len(old):len(old)], a, c)
	s := grown[len(old)]
	s.start.Store(v)
	p.slots.Store(&grown)
	return s.done
}

// initSlot builds the done of s, a free slot of p, which finishes its call
// once.
func (p *p2cPeer) initSlot(s *p2cSlot, b *p2cBalancer) {
	s.done = func(err error) {
		start := s.start.Load()
		if start == 0 || !s.start.CompareAndSwap(start, 0) {
			return // done called again: the slot is free already
		}
		b.finish(p, time.Duration(start-1), err)
	}
}

func newP2CEWMA(cfg *config) *p2cBalancer {
	return &p2cBalancer{
		cfg:     cfg,
		tau:     float64(cfg.decay),
		penalty: float64(cfg.penalty),
		initial: float64(cfg.initial),
		peers:   make(map[string]*p2cPeer),
	}
}

// Update implements Balancer.
func (b *p2cBalancer) Update(instances []*naming.Instance) {
	ins := normalize(instances)
	b.mu.Lock()
	defer b.mu.Unlock()
	now := int64(b.cfg.now())
	entries := make([]p2cEntry, len(ins))
	live := make(map[string]*p2cPeer, len(ins))
	for i, in := range ins {
		k := instanceKey(in)
		p := b.peers[k]
		if p == nil {
			p = &p2cPeer{}
			p.initSlot(&p.first[0], b)
			p.initSlot(&p.first[1], b)
			p.est.Store(math.Float64bits(b.initial))
			p.stamp.Store(now)
		}
		live[k] = p
		entries[i] = p2cEntry{in: in, peer: p}
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
func (b *p2cBalancer) Pick(context.Context) (*naming.Instance, func(error), error) {
	p := b.snap.Load()
	if p == nil || len(*p) == 0 {
		return nil, noopDone, b.cfg.emptyPick
	}
	es := *p
	now := b.cfg.now()
	e := es[0]
	if n := len(es); n > 1 {
		i := b.cfg.rng.IntN(n)
		j := b.cfg.rng.IntN(n - 1)
		if j >= i {
			j++
		}
		e = es[i]
		if es[j].peer.cost(int64(now), b.tau) < e.peer.cost(int64(now), b.tau) {
			e = es[j]
		}
	}
	peer := e.peer
	peer.inflight.Add(1)
	if done := peer.acquire(b, now); done != nil {
		return e.in, done, nil
	}
	return e.in, func(err error) { b.finish(peer, now, err) }, nil
}

// finish is done: it uncounts the call and records its latency.
func (b *p2cBalancer) finish(p *p2cPeer, start time.Duration, err error) {
	for {
		v := p.inflight.Load()
		if v <= 0 || p.inflight.CompareAndSwap(v, v-1) {
			break
		}
	}
	if errors.Is(err, context.Canceled) {
		return
	}
	now := b.cfg.now()
	rtt := float64(max(now-start, 0))
	if err != nil {
		rtt = max(rtt, b.penalty)
	}
	p.observe(rtt, int64(now), b.tau)
}

// decayed returns the latency estimate at time now.
func (p *p2cPeer) decayed(now int64, tau float64) float64 {
	est := math.Float64frombits(p.est.Load())
	if dt := now - p.stamp.Load(); dt > 0 {
		est *= math.Exp(-float64(dt) / tau)
	}
	return est
}

// cost is the peer's load at time now: its latency estimate (at least 1 ns, so
// that calls in flight always count) times its calls in flight plus one.
func (p *p2cPeer) cost(now int64, tau float64) float64 {
	return max(p.decayed(now, tau), 1) * float64(p.inflight.Load()+1)
}

// observe folds a latency of rtt ns, measured at now, into the estimate.
func (p *p2cPeer) observe(rtt float64, now int64, tau float64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	old := math.Float64frombits(p.est.Load())
	last := p.stamp.Load()
	w := 1.0
	if now > last {
		w = math.Exp(-float64(now-last) / tau)
	} else {
		now = last // a late reading must not move the stamp back
	}
	next := old*w + rtt*(1-w)
	if rtt > old*w {
		next = rtt
	}
	p.est.Store(math.Float64bits(next))
	p.stamp.Store(now)
}
