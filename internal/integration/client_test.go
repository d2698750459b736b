package integration

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shoalrpc/shoal/consumer"
	"github.com/shoalrpc/shoal/naming"
	"github.com/shoalrpc/shoal/protocol"
)

// wireCount counts what a client's connections carry: dials, request bytes
// written, and heartbeat frames written.
type wireCount struct {
	dials      atomic.Int64
	bytes      atomic.Int64
	heartbeats atomic.Int64
}

func (w *wireCount) dialer() consumer.DialOption {
	return consumer.WithDialer(func(ctx context.Context, network, address string) (net.Conn, error) {
		nc, err := (&net.Dialer{}).DialContext(ctx, network, address)
		if err != nil {
			return nil, err
		}
		w.dials.Add(1)
		return &countedConn{Conn: nc, w: w}, nil
	})
}

// countedConn counts the bytes written on it and, following the frames in
// that stream (a write may carry part of a frame, resumed by the next), the
// heartbeats.
type countedConn struct {
	net.Conn
	w *wireCount

	mu   sync.Mutex
	head []byte // the part of the next frame's header seen so far
	skip int    // bytes of the current frame's body still to come
}

func (c *countedConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.w.bytes.Add(int64(n))
	c.mu.Lock()
	defer c.mu.Unlock()
	for b := p[:n]; len(b) > 0; {
		if c.skip > 0 {
			k := min(c.skip, len(b))
			c.skip, b = c.skip-k, b[k:]
			continue
		}
		k := min(protocol.HeaderSize-len(c.head), len(b))
		c.head, b = append(c.head, b[:k]...), b[k:]
		if len(c.head) == protocol.HeaderSize {
			if protocol.Kind(c.head[2]) == protocol.KindHeartbeat {
				c.w.heartbeats.Add(1)
			}
			c.skip = int(binary.BigEndian.Uint32(c.head[16:20]))
			c.head = c.head[:0]
		}
	}
	return n, err
}

func TestAReplyTooLargeFailsThatCallAloneAndKeepsTheConnection(t *testing.T) {
	s := serve(t)
	var wire wireCount
	const limit = 64 << 10
	c := dial(t, s.addr, consumer.WithMaxBodySize(limit), wire.dialer())
	// A call in flight on the same connection while the large reply is skipped.
	slow := c.Go(context.Background(), "Arith.Sleep", 200, new(int), nil)
	var out []byte
	err := c.Call(context.Background(), "Arith.Bytes", 200<<10, &out)
	if !errors.Is(err, consumer.ErrReplyTooLarge) {
		t.Fatalf("large reply: %v, want ErrReplyTooLarge", err)
	}
	if !strings.Contains(err.Error(), strconv.Itoa(limit)) {
		t.Errorf("error %q does not name the client's limit %d", err, limit)
	}
	if got := s.arith.bytesRuns.Load(); got != 1 {
		t.Errorf("Bytes ran %d times, want 1", got)
	}
	<-slow.Done
	if slow.Error != nil {
		t.Fatalf("call in flight beside the large reply: %v", slow.Error)
	}
	if err := c.Call(context.Background(), "Arith.Bytes", 1000, &out); err != nil || len(out) != 1000 {
		t.Fatalf("next call on the connection: %d bytes, %v", len(out), err)
	}
	if n := wire.dials.Load(); n != 1 || !c.Usable() {
		t.Fatalf("%d dials, usable %v: the connection did not survive", n, c.Usable())
	}
}

func TestTooLargeIsFinalThroughAFailoverProxy(t *testing.T) {
	reg := naming.NewMemory()
	defer reg.Close()
	cl := newCluster(t, reg, 3)
	const limit = 1 << 20 // the client's; the providers keep the default 8 MiB
	var wire wireCount
	p := newProxy(t, reg, consumer.WithFailMode(consumer.Failover), consumer.WithRetries(2),
		consumer.WithMaxBodySize(limit), wire.dialer())
	waitListed(t, p, 3)

	// A reply over the client's limit: the method ran once, and no other
	// instance is asked.
	var out []byte
	err := p.Call(context.Background(), "Arith.Bytes", 2<<20, &out)
	if !errors.Is(err, consumer.ErrReplyTooLarge) {
		t.Fatalf("large reply through the proxy: %v, want ErrReplyTooLarge", err)
	}
	var runs int64
	for _, n := range cl.nodes {
		runs += n.arith.bytesRuns.Load()
	}
	if runs != 1 {
		t.Errorf("Bytes ran %d times across the cluster, want 1: a final error was retried", runs)
	}
	if d := wire.dials.Load(); d != 1 {
		t.Errorf("%d dials, want 1: the connection was replaced or another instance tried", d)
	}

	// The instance is not ejected for it: ten calls all succeed, spread
	// over the three instances by round robin.
	seen := map[string]bool{}
	for range 9 {
		var who string
		if err := p.Call(context.Background(), "Arith.Who", WhoArgs{}, &who); err != nil {
			t.Fatal(err)
		}
		seen[who] = true
	}
	if len(seen) != 3 {
		t.Errorf("calls reached %d instances after the large reply, want 3", len(seen))
	}
}

func TestAProbeKeepsAConnectionWhoseMethodRunsLong(t *testing.T) {
	s := serve(t)
	var wire wireCount
	// Default probing: a probe after 1 s of silence with a call pending,
	// answered within 1 s or the connection is dead.
	c := dial(t, s.addr, wire.dialer())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out int
	if err := c.Call(ctx, "Arith.Sleep", 5000, &out); err != nil || out != 5000 {
		t.Fatalf("5 s call: %d, %v", out, err)
	}
	if hb := wire.heartbeats.Load(); hb < 2 {
		t.Fatalf("%d probes were sent during a 5 s call, want at least 2", hb)
	}
	if d := wire.dials.Load(); d != 1 || !c.Usable() {
		t.Fatalf("%d dials, usable %v: the probes cut a live connection", d, c.Usable())
	}
}
