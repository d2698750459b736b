package loadbalance

import (
	"context"
	"errors"
	"math"
	"testing"
	"time"
)

func newP2C(t *testing.T, n int, clock *fakeClock, opts ...P2COption) *p2cBalancer {
	t.Helper()
	b := NewP2CEWMA(append([]P2COption{seeded(9), WithClock(clock.now)}, opts...)...).(*p2cBalancer)
	b.Update(makeInstances(n))
	return b
}

func estimate(b *p2cBalancer, id string, now time.Duration) time.Duration {
	for _, e := range *b.snap.Load() {
		if e.in.ID == id {
			return time.Duration(e.peer.decayed(int64(now), b.tau))
		}
	}
	return -1
}

// TestP2CSlowInstance: closed-loop clients, one instance 20 times slower: it
// gets only a small share, the fast ones share the rest.
func TestP2CSlowInstance(t *testing.T) {
	clock := &fakeClock{}
	b := newP2C(t, 3, clock)
	lat := map[string]time.Duration{"i0": 40 * time.Millisecond, "i1": 2 * time.Millisecond, "i2": 2 * time.Millisecond}
	counts := simulate(t, b, clock, 8, 5*time.Second, lat)
	total := counts["i0"] + counts["i1"] + counts["i2"]
	t.Logf("counts %v", counts)
	if counts["i0"]*20 > total {
		t.Errorf("counts %v: the slow instance got more than 5 %%", counts)
	}
	if d := counts["i1"] - counts["i2"]; d*5 > total || -d*5 > total {
		t.Errorf("counts %v: the fast instances should share the load", counts)
	}
	if e := estimate(b, "i0", clock.now()); e < 10*time.Millisecond {
		t.Errorf("slow instance's estimate %v, want near 40ms", e)
	}
}

// TestP2CPrefersIdle: on equal latency, calls in flight decide.
func TestP2CPrefersIdle(t *testing.T) {
	clock := &fakeClock{}
	b := newP2C(t, 2, clock)
	held := 0
	for range 100 {
		id, done := pick(t, b, context.Background())
		if id == "i0" {
			held++ // never done
			continue
		}
		done(nil) // ends at once, latency 0
	}
	if held > 2 {
		t.Errorf("the instance with calls in flight was picked %d times", held)
	}
}

// TestP2CErrorPenaltyAndRecovery: a failure makes the instance expensive; it
// is avoided until the penalty has decayed below the others' latency, then
// picked again.
func TestP2CErrorPenaltyAndRecovery(t *testing.T) {
	clock := &fakeClock{}
	b := newP2C(t, 2, clock)
	// call makes one call lasting 1 ms, failing if it goes to failID.
	call := func(failID string) string {
		id, done := pick(t, b, context.Background())
		clock.advance(time.Millisecond)
		var err error
		if id == failID {
			err = errors.New("connection reset")
		}
		done(err)
		return id
	}
	for range 200 { // measured at 1 ms
		call("")
	}
	for i := 0; call("i0") != "i0"; i++ { // the next call to i0 fails
		if i > 1e6 {
			t.Fatal("i0 never picked")
		}
	}
	if e := estimate(b, "i0", clock.now()); e < 900*time.Millisecond {
		t.Fatalf("estimate after a failure = %v, want about the 1 s penalty", e)
	}
	// One call a second. The penalty decays as exp(-t/10s): below i1's 1 ms
	// after about 10s·ln(1000) ≈ 69 s.
	var back time.Duration
	for sec := 1; sec <= 120; sec++ {
		clock.advance(time.Second)
		if call("") == "i0" {
			back = time.Duration(sec) * time.Second
			break
		}
	}
	t.Logf("back after %v", back)
	if back < 55*time.Second || back > 85*time.Second {
		t.Errorf("the failed instance came back after %v, want about 69 s", back)
	}
}

// TestP2CCanceledIsNotPenalised: a caller giving up says nothing about the
// instance.
func TestP2CCanceledIsNotPenalised(t *testing.T) {
	clock := &fakeClock{}
	b := newP2C(t, 1, clock, WithInitialLatency(5*time.Millisecond))
	_, done := pick(t, b, context.Background())
	clock.advance(time.Millisecond)
	done(context.Canceled)
	if e := estimate(b, "i0", clock.now()); e > 5*time.Millisecond || e < 4*time.Millisecond {
		t.Errorf("estimate %v after a canceled call, want the initial 5ms barely decayed", e)
	}
	if n := inflightCounts(b)["i0"]; n != 0 {
		t.Errorf("in flight = %d after done", n)
	}
}

// TestP2CEWMA checks the estimate's arithmetic: peak on a slower sample,
// exp(-dt/τ) weighting on a faster one, decay toward zero at read time.
func TestP2CEWMA(t *testing.T) {
	const tau = float64(10 * time.Second)
	p := &p2cPeer{}
	p.est.Store(math.Float64bits(float64(10 * time.Millisecond)))
	p.observe(float64(50*time.Millisecond), 0, tau) // peak
	if got := p.decayed(0, tau); got != float64(50*time.Millisecond) {
		t.Fatalf("after a peak: %v", time.Duration(got))
	}
	dt := 5 * time.Second
	w := math.Exp(-float64(dt) / tau)
	want := float64(50*time.Millisecond)*w + float64(10*time.Millisecond)*(1-w)
	p.observe(float64(10*time.Millisecond), int64(dt), tau)
	if got := p.decayed(int64(dt), tau); math.Abs(got-want) > 1 {
		t.Fatalf("after a faster sample: %v, want %v", time.Duration(got), time.Duration(want))
	}
	if got := p.decayed(int64(dt+10*time.Second), tau); math.Abs(got-want/math.E) > 1 {
		t.Fatalf("decay over τ: %v, want %v", time.Duration(got), time.Duration(want/math.E))
	}
	p.observe(0, int64(time.Second), tau) // a late, older reading
	if p.stamp.Load() != int64(dt) {
		t.Errorf("a late observation moved the stamp back")
	}
}

// TestP2CNewInstance: an unmeasured instance is assumed to have the initial
// latency, and its state survives updates.
func TestP2CNewInstance(t *testing.T) {
	clock := &fakeClock{}
	b := newP2C(t, 2, clock)
	if e := estimate(b, "i1", 0); e != DefaultInitialLatency {
		t.Errorf("new instance estimate %v, want %v", e, DefaultInitialLatency)
	}
	_, done := pick(t, b, context.Background())
	clock.advance(100 * time.Millisecond)
	b.Update(nil)
	done(nil) // after removal
	b.Update(makeInstances(2))
	if got := inflightCounts(b); got["i0"] != 0 || got["i1"] != 0 {
		t.Errorf("in flight = %v", got)
	}
}

// TestP2CDoneTwiceIsHarmless: a second done of the same pick neither
// uncounts another call nor records a second latency, whether it comes at
// once or after the instance was picked again; each call's latency is its
// own, from its own pick (the start time lives in the pick's slot).
func TestP2CDoneTwiceIsHarmless(t *testing.T) {
	clock := &fakeClock{}
	b := newP2C(t, 1, clock, WithInitialLatency(time.Millisecond))
	_, first := pick(t, b, context.Background())
	clock.advance(100 * time.Millisecond)
	first(nil) // a peak: the estimate becomes 100ms
	if e := estimate(b, "i0", clock.now()); e != 100*time.Millisecond {
		t.Fatalf("estimate %v after a 100ms call, want 100ms", e)
	}
	first(errors.New("again")) // would record the 1 s error penalty
	if e := estimate(b, "i0", clock.now()); e != 100*time.Millisecond {
		t.Errorf("estimate %v after a second done, want the 100ms of the first", e)
	}
	if n := inflightCounts(b)["i0"]; n != 0 {
		t.Errorf("in flight = %d after done twice, want 0", n)
	}

	_, second := pick(t, b, context.Background()) // in flight now
	clock.advance(10 * time.Second)
	first(errors.New("stale")) // the first pick's done, a third time
	if n := inflightCounts(b)["i0"]; n != 1 {
		t.Errorf("in flight = %d after a stale done, want the second pick's 1", n)
	}
	second(nil) // a 10 s call: a peak
	if e := estimate(b, "i0", clock.now()); e != 10*time.Second {
		t.Errorf("estimate %v after the second call, want its 10s", e)
	}
	if n := inflightCounts(b)["i0"]; n != 0 {
		t.Errorf("in flight = %d at the end, want 0", n)
	}
}

// TestP2CManyInFlight: more calls in flight on one instance than it keeps
// slots for are still counted, and all uncounted by their dones.
func TestP2CManyInFlight(t *testing.T) {
	clock := &fakeClock{}
	b := newP2C(t, 1, clock)
	dones := make([]func(error), p2cMaxSlots+10)
	for i := range dones {
		_, dones[i] = pick(t, b, context.Background())
	}
	if n := inflightCounts(b)["i0"]; n != int64(len(dones)) {
		t.Fatalf("in flight = %d, want %d", n, len(dones))
	}
	if n := len(*(*b.snap.Load())[0].peer.slots.Load()); n > p2cMaxSlots {
		t.Errorf("%d slots, want at most %d", n, p2cMaxSlots)
	}
	for _, done := range dones {
		done(nil)
		done(nil)
	}
	if n := inflightCounts(b)["i0"]; n != 0 {
		t.Errorf("in flight = %d after every done, want 0", n)
	}
}
