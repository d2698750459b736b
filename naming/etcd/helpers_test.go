package etcd

import (
	"bytes"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shoalrpc/shoal/internal/etcdtest"
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
