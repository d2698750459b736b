package integration

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/shoalrpc/shoal/consumer"
	"github.com/shoalrpc/shoal/provider"
)

// countingListener counts the connections a server accepts.
type countingListener struct {
	net.Listener
	accepted atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.accepted.Add(1)
	}
	return c, err
}

func serveCounting(t *testing.T) (*provider.Server, *countingListener, string) {
	t.Helper()
	srv := provider.NewServer()
	if err := srv.Register(newArith()); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cl := &countingListener{Listener: ln}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(cl) }()
	t.Cleanup(func() { srv.Close(); <-done })
	return srv, cl, "tcp@" + ln.Addr().String()
}

func TestPoolSharesOneDialAmongConcurrentGets(t *testing.T) {
	_, ln, addr := serveCounting(t)
	p := newPool(t)
	defer p.Close()
	var wg sync.WaitGroup
	got := make(chan *consumer.Client, 50)
	for range 50 {
		wg.Go(func() {
			c, err := p.Get(context.Background(), addr)
			if err != nil {
				t.Error(err)
				return
			}
			got <- c
		})
	}
	wg.Wait()
	close(got)
	first := <-got
	for c := range got {
		if c != first {
			t.Fatal("concurrent Gets returned different connections")
		}
	}
	var out int
	if err := first.Call(context.Background(), "Arith.Add", Args{}, &out); err != nil {
		t.Fatal(err)
	}
	if n := ln.accepted.Load(); n != 1 {
		t.Fatalf("server accepted %d connections, want 1", n)
	}
}

func TestPoolKeepsNConnectionsPerAddress(t *testing.T) {
	_, ln, addr := serveCounting(t)
	p := newPool(t, consumer.WithConnsPerAddr(3))
	defer p.Close()
	seen := map[*consumer.Client]int{}
	for range 9 {
		c, err := p.Get(context.Background(), addr)
		if err != nil {
			t.Fatal(err)
		}
		seen[c]++
	}
	for c := range seen { // a reply proves the server accepted it
		var out int
		if err := c.Call(context.Background(), "Arith.Add", Args{}, &out); err != nil {
			t.Fatal(err)
		}
	}
	if len(seen) != 3 || ln.accepted.Load() != 3 {
		t.Fatalf("%d distinct clients, %d accepted; want 3 and 3", len(seen), ln.accepted.Load())
	}
	for _, n := range seen {
		if n != 3 {
			t.Fatalf("uneven use: %v", seen)
		}
	}
}

func TestPoolReplacesABrokenConnection(t *testing.T) {
	_, ln, addr := serveCounting(t)
	p := newPool(t)
	defer p.Close()
	c1, err := p.Get(context.Background(), addr)
	if err != nil {
		t.Fatal(err)
	}
	c1.Close() // broken, as a connection the network dropped
	c2, err := p.Get(context.Background(), addr)
	if err != nil {
		t.Fatal(err)
	}
	var out int
	if err := c2.Call(context.Background(), "Arith.Add", Args{A: 1, B: 1}, &out); err != nil || out != 2 {
		t.Fatal(out, err)
	}
	if c2 == c1 || !c2.Usable() || ln.accepted.Load() != 2 {
		t.Fatalf("not replaced: same=%v usable=%v accepted=%d", c2 == c1, c2.Usable(), ln.accepted.Load())
	}
}

func TestPoolDialErrorAndClose(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := "tcp@" + ln.Addr().String()
	ln.Close()
	p := newPool(t)
	if _, err := p.Get(context.Background(), refused); !errors.Is(err, consumer.ErrDial) {
		t.Fatalf("Get of a closed port: %v, want ErrDial", err)
	}
	if _, err := p.Get(context.Background(), "bogus@nowhere"); err == nil {
		t.Fatal("Get of a malformed address succeeded")
	}
	_, _, addr := serveCounting(t)
	c, err := p.Get(context.Background(), addr)
	if err != nil {
		t.Fatal(err)
	}
	p.Close()
	p.Close() // twice is fine
	if c.Usable() {
		t.Fatal("connection open after Pool.Close")
	}
	if _, err := p.Get(context.Background(), addr); !errors.Is(err, consumer.ErrPoolClosed) {
		t.Fatalf("Get after Close: %v", err)
	}
}

func newPool(t *testing.T, opts ...consumer.PoolOption) *consumer.Pool {
	t.Helper()
	p, err := consumer.NewPool(opts...)
	if err != nil {
		t.Fatal(err)
	}
	return p
}
