package integration

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shoalrpc/shoal/consumer"
	"github.com/shoalrpc/shoal/loadbalance"
	"github.com/shoalrpc/shoal/naming"
)

// logBuffer is a concurrency-safe buffer for a slog text handler.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// lines returns the logged lines that contain every one of subs.
func (b *logBuffer) lines(subs ...string) []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []string
	for l := range strings.SplitSeq(b.buf.String(), "\n") {
		ok := l != ""
		for _, s := range subs {
			ok = ok && strings.Contains(l, s)
		}
		if ok {
			out = append(out, l)
		}
	}
	return out
}

func (b *logBuffer) logger() *slog.Logger { return slog.New(slog.NewTextHandler(b, nil)) }

// executed is the number of Who calls the cluster's providers ran.
func (c *cluster) executed() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	var n int64
	for _, nd := range c.nodes {
		n += nd.arith.whos.Load()
	}
	return n
}

// TestProxyRegistryFallback: a registry that suddenly lists no instance (as
// a Consul agent restarted empty does) does not empty a proxy whose
// instances answer: calls keep going to the last known instances, the
// fallback is logged once at WARN with the service name and reported by
// InFallback, and it ends when the registry lists an instance again. A
// fallback whose instances are all gone fails the call with the dial error
// at once, and later calls with ErrNoInstances.
func TestProxyRegistryFallback(t *testing.T) {
	providers := naming.NewMemory() // where the providers register themselves
	defer providers.Close()
	c := newCluster(t, providers, 3)
	// The proxy follows another registry, whose entries the test withdraws
	// while the providers keep running.
	reg := naming.NewMemory()
	defer reg.Close()
	var deregister []context.CancelFunc
	register := func(n *node) {
		cancel, err := reg.Register(context.Background(), &naming.Instance{Service: "arith", ID: n.id, Addr: n.addr})
		if err != nil {
			t.Fatal(err)
		}
		deregister = append(deregister, cancel)
	}
	for _, n := range c.nodes {
		register(n)
	}
	var logs logBuffer
	p := newProxy(t, reg, consumer.WithFailMode(consumer.Failover), consumer.WithLogger(logs.logger()))
	call := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		var out string
		return p.Call(ctx, "Arith.Who", WhoArgs{}, &out)
	}
	for range 30 {
		if err := call(); err != nil {
			t.Fatal(err)
		}
	}
	if p.InFallback() {
		t.Fatal("in fallback with every instance listed")
	}

	// The registry empties: the calls go on, each run once.
	for _, d := range deregister {
		d()
	}
	deregister = nil
	waitListed(t, p, 0)
	if !p.InFallback() || p.Fallbacks() != 1 {
		t.Fatalf("registry lists nothing: InFallback %v, Fallbacks %d; want true, 1", p.InFallback(), p.Fallbacks())
	}
	before := c.executed()
	var ok int64
	for range 60 {
		if err := call(); err != nil {
			t.Fatalf("call during the fallback: %v", err)
		}
		ok++
	}
	if ran := c.executed() - before; ran != ok {
		t.Fatalf("during the fallback the providers ran %d calls, the callers saw %d succeed", ran, ok)
	}
	warns := logs.lines("level=WARN", "registry fallback", "service=arith")
	if len(warns) != 1 {
		t.Fatalf("fallback logged %d times at WARN with the service name, want once:\n%s",
			len(warns), strings.Join(logs.lines(), "\n"))
	}
	t.Logf("logged: %s", warns[0])

	// One instance is listed again: the fallback ends, calls go to it alone.
	register(c.nodes[1])
	waitListed(t, p, 1)
	if p.InFallback() {
		t.Fatal("still in fallback with an instance listed")
	}
	before1, beforeAll := c.nodes[1].arith.whos.Load(), c.executed()
	for range 10 {
		if err := call(); err != nil {
			t.Fatal(err)
		}
	}
	if got1, gotAll := c.nodes[1].arith.whos.Load()-before1, c.executed()-beforeAll; got1 != 10 || gotAll != 10 {
		t.Fatalf("after the fallback the listed instance ran %d of %d calls, want all 10", got1, gotAll)
	}

	// A dead fallback: the registry empties again, then every provider goes.
	deregister[0]()
	waitListed(t, p, 0)
	if !p.InFallback() || p.Fallbacks() != 2 {
		t.Fatalf("InFallback %v, Fallbacks %d; want true, 2", p.InFallback(), p.Fallbacks())
	}
	for _, n := range c.nodes {
		n.srv.Close()
	}
	// Only instance 1 was called since: its pooled connection, now closed
	// (the call is not sent: ErrClientClosed, or breaks), then a refused dial.
	err := call()
	for i := 0; i < 3 && !errors.Is(err, loadbalance.ErrNoInstances); i++ {
		if !errors.Is(err, consumer.ErrDial) && !errors.Is(err, consumer.ErrConnClosed) && !errors.Is(err, consumer.ErrShuttingDown) && !errors.Is(err, consumer.ErrClientClosed) {
			t.Fatalf("call to a dead fallback: %v, want a dial or connection error", err)
		}
		t.Logf("call to a dead fallback: %v", err)
		err = call()
	}
	if !errors.Is(err, loadbalance.ErrNoInstances) || p.InFallback() {
		t.Fatalf("with every last known instance gone: %v, InFallback %v; want ErrNoInstances, false", err, p.InFallback())
	}
	if l := logs.lines("level=WARN", "no instance left", "service=arith"); len(l) != 1 {
		t.Fatalf("the end of the dead fallback logged %d times at WARN:\n%s", len(l), strings.Join(logs.lines(), "\n"))
	}
}

// TestProxyRegistryFallbackOff: WithRegistryFallback(0) follows the registry
// strictly: an emptied registry empties the proxy.
func TestProxyRegistryFallbackOff(t *testing.T) {
	reg := naming.NewMemory()
	defer reg.Close()
	c := newCluster(t, naming.NewMemory(), 1)
	cancel, err := reg.Register(context.Background(), &naming.Instance{Service: "arith", ID: c.nodes[0].id, Addr: c.nodes[0].addr})
	if err != nil {
		t.Fatal(err)
	}
	p := newProxy(t, reg, consumer.WithRegistryFallback(0))
	if err := p.Call(context.Background(), "Arith.Who", WhoArgs{}, new(string)); err != nil {
		t.Fatal(err)
	}
	cancel()
	waitListed(t, p, 0)
	err = p.Call(context.Background(), "Arith.Who", WhoArgs{}, new(string))
	if !errors.Is(err, loadbalance.ErrNoInstances) || p.InFallback() {
		t.Fatalf("fallback off, registry empty: %v, InFallback %v; want ErrNoInstances", err, p.InFallback())
	}
}
