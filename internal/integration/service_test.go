package integration

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shoalrpc/shoal/consumer"
	"github.com/shoalrpc/shoal/provider"
)

// Args are two operands.
type Args struct{ A, B int }

// Arith is the test service. Its counters let tests see what ran.
type Arith struct {
	id       string        // the instance ID, reported by Who
	stallMS  atomic.Int64  // extra delay Who adds on this instance
	whos     atomic.Int64  // Who calls that ran
	firstWho chan struct{} // closed when the first Who call starts
	whoOnce  sync.Once
	executed atomic.Int64   // Sleep calls that ran
	echoes   atomic.Int64   // Echo calls that ran
	entered  sync.WaitGroup // Sleep and Block calls that have started, when a test Adds to it
	track    atomic.Bool    // Sleep and Block calls Done entered
	canceled chan error     // Block reports its context's error here

	bytesRuns atomic.Int64 // Bytes calls that ran
}

func newArith() *Arith { return &Arith{canceled: make(chan error, 16), firstWho: make(chan struct{})} }

// Add returns A+B.
func (a *Arith) Add(ctx context.Context, args Args, reply *int) error {
	*reply = args.A + args.B
	return nil
}

// Div returns A/B, or an error on division by zero.
func (a *Arith) Div(args *Args, reply *int) error {
	if args.B == 0 {
		return errors.New("arith: division by zero (A=" + itoa(args.A) + ")")
	}
	*reply = args.A / args.B
	return nil
}

// Sleep sleeps ms milliseconds, counting that it ran.
func (a *Arith) Sleep(ctx context.Context, ms int, reply *int) error {
	a.executed.Add(1)
	if a.track.Load() {
		a.entered.Done()
	}
	select {
	case <-time.After(time.Duration(ms) * time.Millisecond):
		*reply = ms
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Block waits for its context to end and reports why.
func (a *Arith) Block(ctx context.Context, _ int, reply *int) error {
	if a.track.Load() {
		a.entered.Done()
	}
	<-ctx.Done()
	a.canceled <- ctx.Err()
	return ctx.Err()
}

// Echo returns its argument followed by the caller's "who" metadata.
func (a *Arith) Echo(ctx context.Context, s string, reply *string) error {
	a.echoes.Add(1)
	*reply = s + provider.Metadata(ctx)["who"]
	return nil
}

// WhoArgs control Who.
type WhoArgs struct {
	SleepMS     int
	FailOn      string // this instance returns an error
	BlockUnless string // other instances block until their context ends
}

// Who waits SleepMS (plus the instance's stall) and returns the instance ID.
func (a *Arith) Who(ctx context.Context, args WhoArgs, reply *string) error {
	a.whos.Add(1)
	a.whoOnce.Do(func() { close(a.firstWho) })
	if args.FailOn == a.id {
		return errors.New("failed on " + a.id)
	}
	if args.BlockUnless != "" && args.BlockUnless != a.id {
		<-ctx.Done()
		select {
		case a.canceled <- ctx.Err():
		default:
		}
		return ctx.Err()
	}
	d := time.Duration(int64(args.SleepMS)+a.stallMS.Load()) * time.Millisecond
	if d > 0 {
		select {
		case <-time.After(d):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	*reply = a.id
	return nil
}

// Bytes returns n bytes, counting that it ran.
func (a *Arith) Bytes(ctx context.Context, n int, reply *[]byte) error {
	a.bytesRuns.Add(1)
	*reply = make([]byte, n)
	return nil
}

// Panic panics.
func (a *Arith) Panic(int, *int) error { panic("boom") }

func itoa(i int) string {
	if i == 0 {
		return "0"
	}
	var b []byte
	neg := i < 0
	for ; i != 0; i /= 10 {
		d := i % 10
		if d < 0 {
			d = -d
		}
		b = append([]byte{byte('0' + d)}, b...)
	}
	if neg {
		b = append([]byte{'-'}, b...)
	}
	return string(b)
}

// served is a running provider on a loopback port.
type served struct {
	srv      *provider.Server
	arith    *Arith
	addr     string
	serveErr chan error
}

func serve(t *testing.T, opts ...provider.Option) *served {
	t.Helper()
	quiet := provider.WithLogger(slog.New(slog.DiscardHandler))
	srv := provider.NewServer(append([]provider.Option{quiet}, opts...)...)
	a := newArith()
	if err := srv.Register(a); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &served{srv: srv, arith: a, addr: "tcp@" + ln.Addr().String(), serveErr: make(chan error, 1)}
	go func() { s.serveErr <- srv.Serve(ln) }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-s.serveErr; !errors.Is(err, provider.ErrServerClosed) {
			t.Errorf("Serve returned %v, want ErrServerClosed", err)
		}
	})
	return s
}

func dial(t *testing.T, addr string, opts ...consumer.DialOption) *consumer.Client {
	t.Helper()
	c, err := consumer.Dial(addr, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// sleeping starts a 10-second Sleep call on c and returns once the server is
// running it.
func sleeping(s *served, c *consumer.Client) *consumer.Call {
	s.arith.track.Store(true)
	defer s.arith.track.Store(false)
	s.arith.entered.Add(1)
	call := c.Go(context.Background(), "Arith.Sleep", 10_000, new(int), nil)
	s.arith.entered.Wait()
	return call
}
