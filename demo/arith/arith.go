// Package arith is the service of shoal's demo: integer arithmetic, a Div
// whose division-by-zero error reaches the caller intact, and a Sleep whose
// reply names the instance that served it, which makes load balancing and
// graceful shutdown visible from the calling side.
//
// Served with provider.Server.Register(arith.New(id)), its methods are
// "Arith.Add", "Arith.Mul", "Arith.Div", "Arith.Sleep" and "Arith.Stats",
// and three streams: "Arith.Count" (server stream: 1..N), "Arith.Sum"
// (client stream: the total of the ints sent) and "Arith.Echo"
// (bidirectional: each message back as it arrives); every exported method
// of Arith is one of them.
package arith

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shoalrpc/shoal/provider"
)

// Args are the operands of Add, Mul and Div.
type Args struct {
	A, B int // the operands
}

// Stats is what one instance reports about itself through Arith.Stats.
type Stats struct {
	ID       string        // the instance ID given to New
	Calls    int64         // calls finished since the start (Stats calls excluded)
	Running  int64         // calls running now
	Sleeping map[int]int64 // Sleep calls running now, by the milliseconds they asked for
}

// ErrDivideByZero is what Div returns for B == 0. A caller sees it as a
// *consumer.ServiceError whose Message is its text, "divide by zero".
var ErrDivideByZero = errors.New("divide by zero")

// MaxSleep is the longest Sleep a caller may ask for, so that no caller can
// hold a provider's shutdown for ever.
const MaxSleep = time.Minute

// Arith is the demo service. Its zero value is not usable; call New.
type Arith struct {
	id      string
	calls   atomic.Int64
	running atomic.Int64

	mu       sync.Mutex
	sleeping map[int]int64 // running Sleep calls by ms; no zero counts
}

// New returns the service of the instance id; Sleep replies with id.
func New(id string) *Arith { return &Arith{id: id, sleeping: make(map[int]int64)} }

// begin counts a call running; the returned func counts it finished.
func (a *Arith) begin() func() {
	a.running.Add(1)
	return func() {
		a.running.Add(-1)
		a.calls.Add(1)
	}
}

// Add sets sum to A+B.
func (a *Arith) Add(ctx context.Context, args Args, sum *int) error {
	defer a.begin()()
	*sum = args.A + args.B
	return nil
}

// Mul sets product to A×B.
func (a *Arith) Mul(ctx context.Context, args Args, product *int) error {
	defer a.begin()()
	*product = args.A * args.B
	return nil
}

// Div sets quotient to A/B, truncated toward zero; B == 0 is ErrDivideByZero.
func (a *Arith) Div(ctx context.Context, args Args, quotient *int) error {
	defer a.begin()()
	if args.B == 0 {
		return ErrDivideByZero
	}
	*quotient = args.A / args.B
	return nil
}

// Sleep waits ms milliseconds and sets instance to the ID of the instance
// that served the call. It returns early with the context's error when the
// caller gives up or its deadline passes; ms must be in [0, MaxSleep].
func (a *Arith) Sleep(ctx context.Context, ms int, instance *string) error {
	defer a.begin()()
	if ms < 0 || ms > int(MaxSleep/time.Millisecond) {
		return fmt.Errorf("sleep %d ms: want 0 to %d", ms, MaxSleep/time.Millisecond)
	}
	a.mu.Lock()
	a.sleeping[ms]++
	a.mu.Unlock()
	defer func() {
		a.mu.Lock()
		if a.sleeping[ms]--; a.sleeping[ms] == 0 {
			delete(a.sleeping, ms)
		}
		a.mu.Unlock()
	}()
	if ms > 0 {
		t := time.NewTimer(time.Duration(ms) * time.Millisecond)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return fmt.Errorf("sleep %d ms: %w", ms, ctx.Err())
		}
	}
	*instance = a.id
	return nil
}

// Stats reports the instance's ID and its call counters; it is not counted
// itself. In-process code may call it directly, with any ctx.
func (a *Arith) Stats(ctx context.Context, _ struct{}, s *Stats) error {
	a.mu.Lock()
	sleeping := maps.Clone(a.sleeping)
	a.mu.Unlock()
	*s = Stats{ID: a.id, Calls: a.calls.Load(), Running: a.running.Load(), Sleeping: sleeping}
	return nil
}

// CountArgs is the argument of Count.
type CountArgs struct {
	N       int // Count sends 1..N
	EveryMs int // milliseconds between two messages (0: none), at most MaxSleep in all
}

// Count is a server stream: it sends 1, 2, …, N, then ends. The stream's
// window paces it: it sends no faster than the caller takes. With
// args.EveryMs it waits that long before each message after the first,
// which makes a stream outlive a provider's shutdown signal in the demo.
func (a *Arith) Count(ctx context.Context, args CountArgs, s *provider.ServerStream[int]) error {
	defer a.begin()()
	if args.N < 0 || args.EveryMs < 0 || time.Duration(args.N)*time.Duration(args.EveryMs)*time.Millisecond > MaxSleep {
		return fmt.Errorf("count to %d every %d ms: want N >= 0 and N × EveryMs within %s", args.N, args.EveryMs, MaxSleep)
	}
	for i := 1; i <= args.N; i++ {
		if i > 1 && args.EveryMs > 0 {
			t := time.NewTimer(time.Duration(args.EveryMs) * time.Millisecond)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return fmt.Errorf("count: %w", ctx.Err())
			}
		}
		if err := s.Send(&i); err != nil {
			return err
		}
	}
	return nil
}

// Sum is a client stream: it adds up the ints the caller sends, and replies
// with the total once the caller has sent them all.
func (a *Arith) Sum(ctx context.Context, s *provider.ClientStream[int], total *int) error {
	defer a.begin()()
	for {
		n, err := s.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		*total += *n
	}
}

// Echo is a bidirectional stream: it sends each message back as it
// arrives, and ends when the caller has sent everything.
func (a *Arith) Echo(ctx context.Context, s *provider.BidiStream[string, string]) error {
	defer a.begin()()
	for {
		m, err := s.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := s.Send(m); err != nil {
			return err
		}
	}
}
