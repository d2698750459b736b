package harness

import (
	"context"
	"os"
	"sync/atomic"
	"testing"
	"time"
)

// deadlineClient is a peer.Client whose calls record whether their context
// carries a deadline, and end at once.
type deadlineClient struct{ calls, withDeadline atomic.Int64 }

func (d *deadlineClient) NewCaller() func(ctx context.Context) error {
	return func(ctx context.Context) error {
		d.calls.Add(1)
		if _, ok := ctx.Deadline(); ok {
			d.withDeadline.Add(1)
		}
		time.Sleep(time.Millisecond) // a call's duration, not synchronisation
		return nil
	}
}

func (d *deadlineClient) Close() error { return nil }

// TestCallsCarryNoDeadline checks what bench/README.md promises: a round's
// calls get a context without a deadline even when the run has a timeout.
func TestCallsCarryNoDeadline(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	c := &deadlineClient{}
	_, err := runRound(ctx, roundSpec{
		peer: "fake", round: 1, concurrency: 2, duration: 50 * time.Millisecond,
		serverPID: os.Getpid(), client: c, hists: []*Histogram{new(Histogram), new(Histogram)},
	})
	if err != nil {
		t.Fatal(err)
	}
	if c.calls.Load() == 0 || c.withDeadline.Load() != 0 {
		t.Fatalf("%d calls, %d of them with a deadline", c.calls.Load(), c.withDeadline.Load())
	}
}
