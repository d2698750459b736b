package integration

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shoalrpc/shoal/consumer"
	"github.com/shoalrpc/shoal/naming"
	"github.com/shoalrpc/shoal/provider"
)

// These tests need the provider to answer a request over its body limit
// alone, with StatusTooLarge (issue 12, item 5), rather than close the
// connection.

func TestARequestTooLargeFailsAloneAndKeepsTheConnection(t *testing.T) {
	const serverLimit = 1 << 20
	s := serve(t, provider.WithMaxBodySize(serverLimit))
	var wire wireCount
	c := dial(t, s.addr, consumer.WithMaxBodySize(32<<20), wire.dialer())
	slow := c.Go(context.Background(), "Arith.Sleep", 200, new(int), nil)
	var out string
	err := c.Call(context.Background(), "Arith.Echo", strings.Repeat("x", 2<<20), &out)
	if !errors.Is(err, consumer.ErrRequestTooLarge) {
		t.Fatalf("oversized request: %v, want ErrRequestTooLarge", err)
	}
	if !strings.Contains(err.Error(), strconv.Itoa(serverLimit)) {
		t.Errorf("error %q does not name the server's limit %d", err, serverLimit)
	}
	<-slow.Done
	if slow.Error != nil {
		t.Fatalf("call in flight beside the oversized request: %v", slow.Error)
	}
	if err := c.Call(context.Background(), "Arith.Echo", "hi", &out); err != nil || out != "hi" {
		t.Fatalf("next call on the connection: %q, %v", out, err)
	}
	if n := wire.dials.Load(); n != 1 || !c.Usable() {
		t.Fatalf("%d dials, usable %v: the connection did not survive", n, c.Usable())
	}
}

func TestARequestTooLargeIsFinalThroughAFailoverProxy(t *testing.T) {
	reg := naming.NewMemory()
	defer reg.Close()
	const serverLimit = 1 << 20
	var nodes []*served
	for i := range 3 {
		s := serve(t, provider.WithMaxBodySize(serverLimit),
			provider.WithRegistry(reg, naming.Instance{Service: "arith", ID: "big" + strconv.Itoa(i)}))
		nodes = append(nodes, s)
	}
	var wire wireCount
	p := newProxy(t, reg, consumer.WithFailMode(consumer.Failover), consumer.WithRetries(2),
		consumer.WithMaxBodySize(32<<20), consumer.WithWaitForInstances(5*time.Second), wire.dialer())
	waitListed(t, p, 3)
	const size = 2 << 20
	var out string
	err := p.Call(context.Background(), "Arith.Echo", strings.Repeat("x", size), &out)
	if !errors.Is(err, consumer.ErrRequestTooLarge) {
		t.Fatalf("oversized request through the proxy: %v, want ErrRequestTooLarge", err)
	}
	// Each attempt writes the whole request: more than one request's worth
	// of bytes means it was retried.
	if sent := wire.bytes.Load(); sent >= 2*size {
		t.Errorf("%d bytes written for one %d-byte request: it was retried", sent, size)
	}
	if d := wire.dials.Load(); d != 1 {
		t.Errorf("%d dials, want 1: the connection was replaced or another instance tried", d)
	}
	for range 9 {
		if err := p.Call(context.Background(), "Arith.Sleep", 1, new(int)); err != nil {
			t.Fatal(err)
		}
	}
	for i, s := range nodes {
		if s.arith.executed.Load() == 0 {
			t.Errorf("instance %d got no call after the oversized request: ejected", i)
		}
	}
}
