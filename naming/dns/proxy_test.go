package dns

import (
	"context"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shoalrpc/shoal/consumer"
	"github.com/shoalrpc/shoal/naming"
	"github.com/shoalrpc/shoal/provider"
)

// Counter is the test service; each instance counts the calls it ran.
type Counter struct{ ran atomic.Int64 }

// Hit sleeps ms milliseconds and counts the call.
func (c *Counter) Hit(ctx context.Context, ms int, reply *int) error {
	c.ran.Add(1)
	select {
	case <-time.After(time.Duration(ms) * time.Millisecond):
	case <-ctx.Done():
		return ctx.Err()
	}
	*reply = ms
	return nil
}

type backend struct {
	port    uint16
	counter *Counter
}

// startBackend serves a Counter on a loopback port, without a registry: the
// DNS zone lists it.
func startBackend(t *testing.T) *backend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &Counter{}
	srv := provider.NewServer(provider.WithLogger(slog.New(slog.DiscardHandler)))
	if err := srv.Register(c); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close(); <-done })
	return &backend{port: uint16(ln.Addr().(*net.TCPAddr).Port), counter: c}
}

func waitInstances(t *testing.T, p *consumer.ClientProxy, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for len(p.Instances()) != n {
		if time.Now().After(deadline) {
			t.Fatalf("proxy knows %d instances, want %d", len(p.Instances()), n)
		}
		time.Sleep(10 * time.Millisecond) // polling the proxy's view of DNS, an outside event
	}
}

// TestProxyFollowsChangingRecordsUnderLoad: SRV records change while 8
// callers run. An added instance gets calls; a removed one stops getting new
// calls (its calls in flight finish); no call fails.
func TestProxyFollowsChangingRecordsUnderLoad(t *testing.T) {
	z := startZone(t)
	const name = "_shoal._tcp.counter.shoal.test"
	z.setHosts("n.shoal.test", "127.0.0.1")
	b := []*backend{startBackend(t), startBackend(t), startBackend(t)}
	rec := func(i int) srv { return srv{"n.shoal.test", b[i].port, 1, 0} }
	z.setSRV(name, rec(0), rec(1))

	reg := newTestRegistry(t, z, name, WithRefresh(100*time.Millisecond))
	p, err := consumer.NewClientProxy("Counter", reg, consumer.WithFailMode(consumer.Failover))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	waitInstances(t, p, 2)

	// Outcomes seen by the callers; executions are counted by the backends.
	var ok, failed atomic.Int64
	var firstErr atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				var reply int
				err := p.Call(ctx, "Counter.Hit", 1, &reply)
				cancel()
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err)
				} else {
					ok.Add(1)
				}
			}
		})
	}
	progress := func(n int64) {
		t.Helper()
		target := ok.Load() + n
		deadline := time.Now().Add(20 * time.Second)
		for ok.Load() < target {
			if time.Now().After(deadline) {
				t.Fatalf("load stalled at %d calls", ok.Load())
			}
			time.Sleep(5 * time.Millisecond) // polling the callers' progress
		}
	}
	progress(100)

	// A third instance is published: it gets calls.
	z.setSRV(name, rec(0), rec(1), rec(2))
	added := time.Now()
	for b[2].counter.ran.Load() == 0 {
		if time.Since(added) > 10*time.Second {
			t.Fatal("the instance added to DNS got no call within 10s")
		}
		time.Sleep(5 * time.Millisecond) // polling the new backend's counter
	}
	t.Logf("added instance served its first call %v after the record changed", time.Since(added).Round(time.Millisecond))

	// The first is withdrawn: once the proxy has dropped it and its calls in
	// flight have finished, it runs no new call.
	z.setSRV(name, rec(1), rec(2))
	waitInstances(t, p, 2)
	progress(100) // calls picked before the update finish meanwhile
	drained := b[0].counter.ran.Load()
	progress(300)
	if n := b[0].counter.ran.Load(); n != drained {
		t.Fatalf("the withdrawn instance ran %d more calls after it left DNS", n-drained)
	}

	close(stop)
	wg.Wait()
	executed := b[0].counter.ran.Load() + b[1].counter.ran.Load() + b[2].counter.ran.Load()
	t.Logf("calls: %d ok, %d failed; executed by the backends: %d", ok.Load(), failed.Load(), executed)
	if failed.Load() != 0 {
		t.Fatalf("%d calls failed, first: %v", failed.Load(), firstErr.Load())
	}
	if executed != ok.Load() {
		t.Fatalf("backends executed %d calls, callers saw %d succeed", executed, ok.Load())
	}
}

var _ naming.Registry = (*Registry)(nil)

// TestProxyAsksAgainWhenAConnectionFails: with the periodic refresh an hour
// away, an instance replaced in DNS whose old address refuses connections is
// found at once: the proxy's failed dial makes the registry re-resolve.
func TestProxyAsksAgainWhenAConnectionFails(t *testing.T) {
	z := startZone(t)
	const name = "_shoal._tcp.counter.shoal.test"
	z.setHosts("n.shoal.test", "127.0.0.1")
	old, replacement := startBackend(t), startBackend(t)
	// A port nothing listens on stands for the instance a rolling update took away.
	gone, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gonePort := uint16(gone.Addr().(*net.TCPAddr).Port)
	gone.Close()
	z.setSRV(name, srv{"n.shoal.test", gonePort, 1, 0}, srv{"n.shoal.test", old.port, 1, 0})

	reg := newTestRegistry(t, z, name, WithRefresh(time.Hour))
	p, err := consumer.NewClientProxy("Counter", reg, consumer.WithFailMode(consumer.Failover))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	waitInstances(t, p, 2)
	z.setSRV(name, srv{"n.shoal.test", replacement.port, 1, 0}, srv{"n.shoal.test", old.port, 1, 0})
	deadline := time.Now().Add(10 * time.Second)
	for replacement.counter.ran.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the replacement got no call within 10 s (%d DNS questions)", z.queries.Load())
		}
		var reply int
		if err := p.Call(context.Background(), "Counter.Hit", 0, &reply); err != nil {
			t.Fatalf("a call failed: %v", err) // the refused dial is not executed: Failover moves it on
		}
	}
}
