package peer

import (
	"context"
	"fmt"
	"net"
	"runtime"
	"sync"
	"testing"
	"time"
)

// TestPeersAnswer serves every peer in this process and checks that its
// client answers one call, then many concurrent calls on the one connection.
func TestPeersAnswer(t *testing.T) {
	for _, p := range All() {
		t.Run(p.Name(), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			srvCtx, stop := context.WithCancel(ctx)
			c, served := startPeer(t, srvCtx, p)
			if err := c.NewCaller()(ctx); err != nil {
				t.Fatalf("first call: %v", err)
			}
			var wg sync.WaitGroup
			errs := make(chan error, 50)
			for range 50 {
				wg.Go(func() {
					call := c.NewCaller()
					for range 20 {
						if err := call(ctx); err != nil {
							errs <- err
							return
						}
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Errorf("concurrent call: %v", err)
			}
			if err := c.Close(); err != nil {
				t.Errorf("close: %v", err)
			}
			stop()
			select {
			case err := <-served:
				if err != nil {
					t.Errorf("serve: %v", err)
				}
			case <-time.After(5 * time.Second):
				t.Error("server did not stop within 5 s")
			}
		})
	}
}

// startPeer serves p in this process on a loopback port until ctx ends,
// and dials its client; Serve's result arrives on served.
func startPeer(tb testing.TB, ctx context.Context, p Peer) (c Client, served <-chan error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- p.Serve(ctx, ln) }()
	c, err = p.Dial(ctx, ln.Addr().String())
	if err != nil {
		tb.Fatal(err)
	}
	return c, errc
}

func TestByName(t *testing.T) {
	for _, name := range Names(All()) {
		if p, err := ByName(name); err != nil || p.Name() != name {
			t.Errorf("ByName(%q) = %v, %v", name, p, err)
		}
	}
	if _, err := ByName("nope"); err == nil {
		t.Error("ByName(nope): no error")
	}
}

// BenchmarkSay runs each peer's Say in this process, server and client
// together, from 100 and from 1000 caller goroutines (b.SetParallelism over
// GOMAXPROCS), so a CPU profile (-cpuprofile) shows one stack's whole cost.
// The shoalbench command is the comparison: there the server has its own
// process.
func BenchmarkSay(b *testing.B) {
	for _, p := range All() {
		for _, callers := range []int{100, 1000} {
			b.Run(fmt.Sprintf("%s/c=%d", p.Name(), callers), func(b *testing.B) {
				benchSay(b, p, callers)
			})
		}
	}
}

func benchSay(b *testing.B, p Peer, callers int) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c, served := startPeer(b, ctx, p)
	b.ReportAllocs()
	b.SetParallelism(max(1, callers/runtime.GOMAXPROCS(0)))
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		call := c.NewCaller()
		for pb.Next() {
			if err := call(ctx); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	c.Close()
	cancel()
	if err := <-served; err != nil {
		b.Fatal(err)
	}
}
