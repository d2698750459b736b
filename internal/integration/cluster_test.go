package integration

import (
	"context"
	"errors"
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

// node is one provider of the "arith" service in a test cluster.
type node struct {
	id       string
	addr     string
	srv      *provider.Server
	arith    *Arith
	serveErr chan error
}

// cluster is a set of providers registered in one registry.
type cluster struct {
	t     *testing.T
	reg   naming.Registry
	mu    sync.Mutex
	nodes []*node
	next  int
}

func newCluster(t *testing.T, reg naming.Registry, n int) *cluster {
	c := &cluster{t: t, reg: reg}
	for range n {
		c.add("")
	}
	return c
}

// add starts a provider, on addr if given ("127.0.0.1:port", to restart one).
func (c *cluster) add(addr string) *node {
	t := c.t
	t.Helper()
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c.mu.Lock()
	c.next++
	id := "node" + itoa(c.next)
	c.mu.Unlock()
	a := newArith()
	a.id = id
	srv := provider.NewServer(
		provider.WithLogger(slog.New(slog.DiscardHandler)),
		provider.WithRegistry(c.reg, naming.Instance{Service: "arith", ID: id}),
	)
	if err := srv.Register(a); err != nil {
		t.Fatal(err)
	}
	n := &node{id: id, addr: "tcp@" + ln.Addr().String(), srv: srv, arith: a, serveErr: make(chan error, 1)}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	watch, err := c.reg.Watch(ctx, "arith")
	if err != nil {
		t.Fatal(err)
	}
	go func() { n.serveErr <- srv.Serve(ln) }()
	for listed := false; !listed; { // wait for the registration to show
		list, ok := <-watch
		if !ok {
			t.Fatalf("%s never appeared in the registry", id)
		}
		for _, in := range list {
			listed = listed || in.ID == id
		}
	}
	t.Cleanup(func() { srv.Close(); <-n.serveErr })
	c.mu.Lock()
	c.nodes = append(c.nodes, n)
	c.mu.Unlock()
	return n
}

// waitListed waits until the registry lists exactly the given number of instances.
func waitListed(t *testing.T, p *consumer.ClientProxy, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for len(p.Instances()) != n {
		if time.Now().After(deadline) {
			t.Fatalf("proxy knows %d instances, want %d", len(p.Instances()), n)
		}
		time.Sleep(5 * time.Millisecond) // polling the registry's propagation, an outside event
	}
}

// load runs callers goroutines making calls until stop is closed, and counts
// outcomes. It also records when the first and the last failed call ended:
// failed calls return at once, so their number says little where for how
// long calls failed is the figure.
type load struct {
	ok, failed  atomic.Int64
	mu          sync.Mutex
	errs        []error // the first maxLoadErrs
	first, last time.Time
	wg          sync.WaitGroup
	stop        chan struct{}
	stopOnce    sync.Once
}

// maxLoadErrs bounds the errors a load keeps (a broken cluster fails calls
// by the million).
const maxLoadErrs = 1000

func startLoad(p *consumer.ClientProxy, callers int, method string, args any) *load {
	l := &load{stop: make(chan struct{})}
	for range callers {
		l.wg.Go(func() {
			for {
				select {
				case <-l.stop:
					return
				default:
				}
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				var reply string
				err := p.Call(ctx, method, args, &reply)
				cancel()
				if err == nil {
					l.ok.Add(1)
					continue
				}
				l.failed.Add(1)
				now := time.Now()
				l.mu.Lock()
				if l.first.IsZero() {
					l.first = now
				}
				l.last = now
				if len(l.errs) < maxLoadErrs {
					l.errs = append(l.errs, err)
				}
				l.mu.Unlock()
			}
		})
	}
	return l
}

// until keeps the load running until at least n more calls have succeeded.
func (l *load) until(t *testing.T, n int64) {
	t.Helper()
	target := l.ok.Load() + n
	deadline := time.Now().Add(20 * time.Second)
	for l.ok.Load() < target {
		if time.Now().After(deadline) {
			t.Fatalf("load stalled at %d calls", l.ok.Load())
		}
		time.Sleep(2 * time.Millisecond) // polling progress of the load goroutines
	}
}

// finish stops the load (once; later calls return the same counts).
func (l *load) finish() (ok, failed int64, errs []error) {
	l.stopOnce.Do(func() { close(l.stop) })
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.ok.Load(), l.failed.Load(), l.errs
}

// failedFor is how long calls failed: from the first failed call's end to
// the last's. Call it after finish.
func (l *load) failedFor() time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.last.Sub(l.first).Round(time.Millisecond)
}

func newProxy(t *testing.T, reg naming.Registry, opts ...consumer.ProxyOption) *consumer.ClientProxy {
	t.Helper()
	p, err := consumer.NewClientProxy("arith", reg, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func isConnErr(err error) bool { return errors.Is(err, consumer.ErrConnClosed) }
