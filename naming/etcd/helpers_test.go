package etcd

import (
	"bytes"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shoalrpc/shoal/internal/etcdtest"
	"github.com/shoalrpc/shoal/naming"
)

const testTTL = 2 * time.Second

// newTestRegistry returns a registry on endpoint with a short TTL, fast
// backoff and resync, closed when the test ends.
func newTestRegistry(t *testing.T, endpoint string, opts ...Option) *Registry {
	t.Helper()
	opts = append([]Option{
		WithTTL(testTTL),
		WithRequestTimeout(2 * time.Second),
		WithBackoff(50*time.Millisecond, 500*time.Millisecond),
		WithResync(500 * time.Millisecond),
	}, opts...)
	r, err := New([]string{endpoint}, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func startEtcd(t *testing.T) *etcdtest.Server {
	t.Helper()
	return etcdtest.Start(t)
}

// ids renders a snapshot compactly for failure messages.
func ids(list []*naming.Instance) string {
	var s []string
	for _, in := range list {
		s = append(s, in.ID)
	}
	return "[" + strings.Join(s, " ") + "]"
}

func hasIDs(want ...string) func([]*naming.Instance) bool {
	return func(list []*naming.Instance) bool {
		if len(list) != len(want) {
			return false
		}
		for i := range want {
			if list[i].ID != want[i] {
				return false
			}
		}
		return true
	}
}

// next receives one snapshot from ch within d.
func next(t *testing.T, ch <-chan []*naming.Instance, d time.Duration) []*naming.Instance {
	t.Helper()
	select {
	case snap, ok := <-ch:
		if !ok {
			t.Fatal("watch channel closed")
		}
		return snap
	case <-time.After(d):
		t.Fatalf("no snapshot within %v", d)
		return nil
	}
}

// waitSnapshot reads snapshots until one satisfies ok, failing after d.
func waitSnapshot(t *testing.T, ch <-chan []*naming.Instance, d time.Duration, what string, ok func([]*naming.Instance) bool) []*naming.Instance {
	t.Helper()
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	var last []*naming.Instance
	for {
		select {
		case snap, open := <-ch:
			if !open {
				t.Fatalf("watch channel closed while waiting for %s (last %s)", what, ids(last))
			}
			if ok(snap) {
				return snap
			}
			last = snap
		case <-deadline.C:
			t.Fatalf("no snapshot with %s within %v (last %s)", what, d, ids(last))
			return nil
		}
	}
}

// cutProxy forwards TCP connections to etcd until cut: then it drops every
// connection and refuses new ones (closes them at once) until mended. It
// stands for a network partition between one client and etcd.
type cutProxy struct {
	ln     net.Listener
	target string
	cut    atomic.Bool
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	wg     sync.WaitGroup
}

func startCutProxy(t *testing.T, target string) *cutProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	p.wg.Go(p.accept)
	t.Cleanup(func() {
		ln.Close()
		p.dropAll()
		p.wg.Wait()
	})
	return p
}

func (p *cutProxy) addr() string { return p.ln.Addr().String() }

func (p *cutProxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		if p.cut.Load() {
			c.Close()
			continue
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns[c], p.conns[up] = struct{}{}, struct{}{}
		p.mu.Unlock()
		pipe := func(dst, src net.Conn) {
			_, _ = io.Copy(dst, src)
			dst.Close()
			src.Close()
		}
		p.wg.Go(func() { pipe(up, c) })
		p.wg.Go(func() { pipe(c, up) })
	}
}

// partition drops every connection and refuses new ones.
func (p *cutProxy) partition() {
	p.cut.Store(true)
	p.dropAll()
}

func (p *cutProxy) mend() { p.cut.Store(false) }

func (p *cutProxy) dropAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		c.Close()
		delete(p.conns, c)
	}
}

// syncBuffer is a bytes.Buffer safe for a logger's concurrent writes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
