package loadbalance

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shoalrpc/shoal/naming"
)

// makeInstances returns instances i0, i1, … with the given weights (n of
// weight 0 when no weight is given).
func makeInstances(n int, weights ...int) []*naming.Instance {
	if len(weights) > 0 {
		n = len(weights)
	}
	ins := make([]*naming.Instance, n)
	for i := range ins {
		ins[i] = &naming.Instance{
			ID:      fmt.Sprintf("i%d", i),
			Service: "arith",
			Addr:    fmt.Sprintf("tcp@10.0.%d.%d:9000", i/256, i%256),
		}
		if len(weights) > 0 {
			ins[i].Weight = weights[i]
		}
	}
	return ins
}

// clone returns copies of the instances (new pointers, same fields).
func clone(ins []*naming.Instance) []*naming.Instance {
	out := make([]*naming.Instance, len(ins))
	for i, in := range ins {
		c := *in
		out[i] = &c
	}
	return out
}

// seeded makes a balancer's random choices reproducible.
func seeded(seed uint64) Option {
	return WithRand(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
}

// pick calls b.Pick, fails the test on error and returns the instance's ID
// and its done callback.
func pick(t testing.TB, b Balancer, ctx context.Context) (string, func(error)) {
	t.Helper()
	in, done, err := b.Pick(ctx)
	if err != nil {
		t.Fatalf("Pick: %v", err)
	}
	if in == nil || done == nil {
		t.Fatalf("Pick returned instance %v, done nil = %v", in, done == nil)
	}
	return in.ID, done
}

// countPicks picks n times, calling done at once, and counts the picks per ID.
func countPicks(t testing.TB, b Balancer, n int) map[string]int {
	t.Helper()
	counts := make(map[string]int)
	for range n {
		id, done := pick(t, b, context.Background())
		done(nil)
		counts[id]++
	}
	return counts
}

// assertChiSquare checks that counts (per instance of ins) fit the
// probabilities proportional to expected, at the 0.1 % significance level.
func assertChiSquare(t *testing.T, ins []*naming.Instance, counts map[string]int, expected []float64) {
	t.Helper()
	var total, sumExp float64
	for _, in := range ins {
		total += float64(counts[in.ID])
	}
	for _, e := range expected {
		sumExp += e
	}
	var chi2 float64
	for i, in := range ins {
		want := total * expected[i] / sumExp
		d := float64(counts[in.ID]) - want
		chi2 += d * d / want
	}
	df := len(ins) - 1
	if crit := chiSquareCritical(df); chi2 > crit {
		t.Errorf("chi-square %.1f > %.1f (df %d, p 0.001): counts %v, expected proportions %v", chi2, crit, df, counts, expected)
	}
}

// chiSquareCritical approximates the 99.9th percentile of the chi-square
// distribution with df degrees of freedom (Wilson–Hilferty).
func chiSquareCritical(df int) float64 {
	const z = 3.0902 // 99.9th percentile of the standard normal
	k := float64(df)
	a := 2 / (9 * k)
	return k * math.Pow(1-a+z*math.Sqrt(a), 3)
}

// fakeClock is a manual clock for WithClock.
type fakeClock struct{ ns atomic.Int64 }

func (c *fakeClock) now() time.Duration      { return time.Duration(c.ns.Load()) }
func (c *fakeClock) set(t time.Duration)     { c.ns.Store(int64(t)) }
func (c *fakeClock) advance(d time.Duration) { c.ns.Add(int64(d)) }

// simulate runs clients closed-loop virtual clients against b for dur of
// virtual time, in steps of 1 ms: a call to instance id lasts latency[id]
// and its done is called when it ends. It returns the picks per ID.
func simulate(t *testing.T, b Balancer, clock *fakeClock, clients int, dur time.Duration, latency map[string]time.Duration) map[string]int {
	t.Helper()
	type call struct {
		until time.Duration
		done  func(error)
	}
	calls := make([]call, clients)
	counts := make(map[string]int)
	start := clock.now()
	for now := start; now < start+dur; now += time.Millisecond {
		clock.set(now)
		for i := range calls {
			if c := &calls[i]; c.done != nil && now >= c.until {
				c.done(nil)
				c.done = nil
			}
		}
		for i := range calls {
			if c := &calls[i]; c.done == nil {
				id, done := pick(t, b, context.Background())
				counts[id]++
				c.until, c.done = now+latency[id], done
			}
		}
	}
	for _, c := range calls {
		if c.done != nil {
			c.done(nil)
		}
	}
	return counts
}
