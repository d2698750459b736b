package consumer

import (
	"context"
	"errors"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"

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
