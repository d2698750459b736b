package consumer

import (
	"context"
	"errors"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/shoalrpc/shoal/loadbalance"
	"github.com/shoalrpc/shoal/naming"
)

// refusingDialer refuses every dial and counts them by address.
type refusingDialer struct {
	mu    sync.Mutex
	dials map[string]int
}

func (d *refusingDialer) dial(ctx context.Context, network, address string) (net.Conn, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.dials == nil {
		d.dials = make(map[string]int)
	}
	d.dials[address]++
	return nil, &net.OpError{Op: "dial", Net: network, Err: syscall.ECONNREFUSED}
}

func (d *refusingDialer) counts() map[string]int {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make(map[string]int, len(d.dials))
	for k, v := range d.dials {
		out[k] = v
	}
	return out
}

// TestOneTryPerInstance: with three instances that all refuse connections, a
// call dials each once and fails with ErrDial, in every mode; Failretry then
// retries the last one, Retries times (issue 13: 6 dials before).
func TestOneTryPerInstance(t *testing.T) {
	addrs := []string{"127.0.0.1:7001", "127.0.0.1:7002", "127.0.0.1:7003"}
	for _, mode := range []FailMode{Failfast, Failover, Failretry, Failbackup} {
		t.Run(mode.String(), func(t *testing.T) {
			reg, err := naming.NewStatic("tcp@"+addrs[0], "tcp@"+addrs[1], "tcp@"+addrs[2])
			if err != nil {
				t.Fatal(err)
			}
			defer reg.Close()
			var d refusingDialer
			p, err := NewClientProxy("arith", reg, WithFailMode(mode), WithRetries(2), WithDialer(d.dial),
				WithIdempotent("Arith.Who"), WithBackoff(time.Millisecond, time.Millisecond, 0))
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			err = p.Call(context.Background(), "Arith.Who", struct{}{}, new(string))
			if !errors.Is(err, ErrDial) {
				t.Fatalf("call: %v, want ErrDial", err)
			}
			dials := d.counts()
			total := 0
			for _, a := range addrs {
				if dials[a] == 0 {
					t.Errorf("%s never dialled: %v", a, dials)
				}
				total += dials[a]
			}
			want := 3
			if mode == Failretry {
				want = 3 + 2 // then the same instance again, Retries times
			}
			if total != want {
				t.Fatalf("%d dials %v for one call to 3 refusing instances, want %d", total, dials, want)
			}
		})
	}
}

// stuckBalancer always picks the first instance it holds.
type stuckBalancer struct{ list []*naming.Instance }

func (b *stuckBalancer) Update(list []*naming.Instance) { b.list = list }
func (b *stuckBalancer) Pick(context.Context) (*naming.Instance, func(error), error) {
	return b.list[0], func(error) {}, nil
}

// TestPickAvoidsWhatThePlanSays: when the balancer keeps choosing an
// instance the plan avoids, pick takes one of the others; with every one
// avoided it says so (and wraps loadbalance.ErrNoInstances); trySame takes
// the last instance again whatever the balancer says.
func TestPickAvoidsWhatThePlanSays(t *testing.T) {
	a, b, c := &naming.Instance{ID: "a"}, &naming.Instance{ID: "b"}, &naming.Instance{ID: "c"}
	all := []*naming.Instance{a, b, c}
	p := &ClientProxy{service: "s", balancer: &stuckBalancer{list: all}}
	p.healthy.Store(&all)
	ctx := context.Background()
	if in, _, err := p.pick(ctx, retryPlan{action: tryOther}, nil); err != nil || in != a {
		t.Fatalf("nothing avoided: %v, %v; want the balancer's a", in, err)
	}
	for range 20 {
		in, _, err := p.pick(ctx, retryPlan{action: tryOther, avoid: []string{"a", "b"}}, a)
		if err != nil || in != c {
			t.Fatalf("a and b avoided: %v, %v; want c", in, err)
		}
	}
	_, _, err := p.pick(ctx, retryPlan{action: tryOther, avoid: []string{"a", "b", "c"}}, a)
	if !errors.Is(err, errAllTried) || !errors.Is(err, loadbalance.ErrNoInstances) {
		t.Fatalf("every instance avoided: %v; want errAllTried wrapping ErrNoInstances", err)
	}
	if in, _, err := p.pick(ctx, retryPlan{action: trySame}, b); err != nil || in != b {
		t.Fatalf("trySame after b: %v, %v", in, err)
	}
}

// TestBackoffEndsWithTheCallersDeadline: a Failretry call waiting out its
// backoff before trying a refusing instance again returns when the caller's
// deadline ends, with both the deadline and the last attempt's error.
func TestBackoffEndsWithTheCallersDeadline(t *testing.T) {
	reg, err := naming.NewStatic("tcp@127.0.0.1:7001")
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	var d refusingDialer
	p, err := NewClientProxy("arith", reg, WithFailMode(Failretry), WithRetries(5), WithDialer(d.dial),
		WithBackoff(time.Minute, time.Minute, 0))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	err = p.Call(ctx, "Arith.Who", struct{}{}, new(string))
	if took := time.Since(start); took > 10*time.Second { // generous: the backoff is a minute
		t.Fatalf("the call returned %v after its 50 ms deadline: the backoff ignored it", took)
	}
	if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, ErrDial) {
		t.Fatalf("call: %v, want the deadline, after the dial error", err)
	}
}
