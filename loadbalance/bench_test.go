package loadbalance

import (
	"context"
	"fmt"
	"testing"
)

// benchContexts returns contexts with distinct hash keys for consistent_hash
// (the key is set outside the timed loop, as a caller would).
func benchContexts() []context.Context {
	ctxs := make([]context.Context, 1024)
	for i := range ctxs {
		ctxs[i] = WithHashKey(context.Background(), fmt.Sprintf("user-%d", i))
	}
	return ctxs
}

// benchBalancer returns a balancer of mode m over n instances of weights
// 1..5.
func benchBalancer(m Mode, n int) Balancer {
	ws := make([]int, n)
	for i := range ws {
		ws[i] = 1 + i%5
	}
	b := New(m)
	b.Update(makeInstances(0, ws...))
	return b
}

// BenchmarkPick measures one Pick and its done, per policy and set size.
func BenchmarkPick(b *testing.B) {
	ctxs := benchContexts()
	for _, m := range Modes() {
		for _, n := range []int{3, 30, 300} {
			b.Run(fmt.Sprintf("%s/n=%d", m, n), func(b *testing.B) {
				bal := benchBalancer(m, n)
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					_, done, err := bal.Pick(ctxs[i&1023])
					if err != nil {
						b.Fatal(err)
					}
					done(nil)
					i++
				}
			})
		}
	}
}

// BenchmarkPickParallel is BenchmarkPick from GOMAXPROCS goroutines sharing
// one balancer.
func BenchmarkPickParallel(b *testing.B) {
	ctxs := benchContexts()
	for _, m := range Modes() {
		for _, n := range []int{3, 30, 300} {
			b.Run(fmt.Sprintf("%s/n=%d", m, n), func(b *testing.B) {
				bal := benchBalancer(m, n)
				b.ReportAllocs()
				b.RunParallel(func(pb *testing.PB) {
					i := 0
					for pb.Next() {
						_, done, err := bal.Pick(ctxs[i&1023])
						if err != nil {
							b.Error(err)
							return
						}
						done(nil)
						i++
					}
				})
			})
		}
	}
}

// BenchmarkPickHeld is BenchmarkPick with calls held in flight, as under
// load: each Pick's done is called 256 picks later, so the policies that
// count calls in flight (and p2c_ewma's slots) work with many busy.
func BenchmarkPickHeld(b *testing.B) {
	const held = 256
	for _, m := range []Mode{LeastConnections, P2CEWMA} {
		for _, n := range []int{3, 300} {
			b.Run(fmt.Sprintf("%s/n=%d", m, n), func(b *testing.B) {
				bal := benchBalancer(m, n)
				ring := make([]func(error), held)
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					_, done, err := bal.Pick(context.Background())
					if err != nil {
						b.Fatal(err)
					}
					if prev := ring[i%held]; prev != nil {
						prev(nil)
					}
					ring[i%held] = done
					i++
				}
				for _, done := range ring {
					if done != nil {
						done(nil)
					}
				}
			})
		}
	}
}
