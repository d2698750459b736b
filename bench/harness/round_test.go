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

// roundEnder is a peer.Client and peer.RoundEnder that records, when its
// round is ended, how many of its calls were still running.
type roundEnder struct {
	running, calls atomic.Int64
	ends           []int64 // calls running at each EndRound
}

func (r *roundEnder) NewCaller() func(ctx context.Context) error {
	return func(ctx context.Context) error {
		r.running.Add(1)
		defer r.running.Add(-1)
		r.calls.Add(1)
		time.Sleep(time.Millisecond) // a call's duration, not synchronisation
		return nil
	}
}

func (r *roundEnder) EndRound() error {
	r.ends = append(r.ends, r.running.Load())
	return nil
}

func (r *roundEnder) Close() error { return nil }

// TestRoundEndsAfterItsCallers checks that a round ends a RoundEnder's
// round (a stream client's streams) once, after every caller returned.
func TestRoundEndsAfterItsCallers(t *testing.T) {
	c := &roundEnder{}
	for round := 1; round <= 2; round++ {
		if _, err := runRound(context.Background(), roundSpec{
			peer: "fake", round: round, concurrency: 4, duration: 30 * time.Millisecond,
			serverPID: os.Getpid(), client: c, hists: []*Histogram{new(Histogram), new(Histogram), new(Histogram), new(Histogram)},
		}); err != nil {
			t.Fatal(err)
		}
	}
	if len(c.ends) != 2 || c.ends[0] != 0 || c.ends[1] != 0 || c.calls.Load() == 0 {
		t.Fatalf("EndRound at %v (calls running at each), %d calls; want twice, none running", c.ends, c.calls.Load())
	}
}
