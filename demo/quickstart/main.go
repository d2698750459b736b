// Command quickstart runs shoal in one process: a provider serving an Arith
// service registers in the embedded memory registry, a consumer finds it and
// calls it, and then the provider shuts down gracefully while 200 calls are
// in flight — every one of them completes.
//
//	go run ./demo/quickstart
package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shoalrpc/shoal/consumer"
	"github.com/shoalrpc/shoal/naming"
	"github.com/shoalrpc/shoal/provider"
)

// Args are the operands of an Arith call.
type Args struct{ A, B int }

// Arith is a plain Go struct; its exported methods of the right shape are the service.
type Arith struct{}

// Add returns A+B.
func (Arith) Add(ctx context.Context, args Args, sum *int) error {
	*sum = args.A + args.B
	return nil
}

// Div returns A/B; dividing by zero is an error that reaches the caller intact.
func (Arith) Div(args Args, q *int) error {
	if args.B == 0 {
		return errors.New("divide by zero")
	}
	*q = args.A / args.B
	return nil
}

// Sleep waits ms milliseconds (or until the caller's deadline) and returns ms.
func (Arith) Sleep(ctx context.Context, ms int, out *int) error {
	select {
	case <-time.After(time.Duration(ms) * time.Millisecond):
		*out = ms
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "quickstart:", err)
		os.Exit(1)
	}
}

func run() error {
	ctx := context.Background()
	reg := naming.NewMemory() // the embedded registry; naming.Open("consul://…") in production
	defer reg.Close()

	// Provider: register the service, serve on a free loopback port, publish.
	srv := provider.NewServer(provider.WithRegistry(reg, naming.Instance{Service: "arith"}))
	if err := srv.Register(Arith{}); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	// Consumer: discover the instance and call it.
	watch, err := reg.Watch(ctx, "arith")
	if err != nil {
		return err
	}
	var instances []*naming.Instance
	for len(instances) == 0 {
		instances = <-watch
	}
	in := instances[0]
	fmt.Printf("discovered %s at %s\n", in.ID, in.Addr)
	c, err := consumer.Dial(in.Addr)
	if err != nil {
		return err
	}
	defer c.Close()

	var sum int
	if err := c.Call(ctx, "Arith.Add", Args{A: 40, B: 2}, &sum); err != nil {
		return err
	}
	fmt.Printf("Arith.Add(40, 2) = %d\n", sum)

	var q int
	err = c.Call(ctx, "Arith.Div", Args{A: 1, B: 0}, &q)
	var se *consumer.ServiceError
	fmt.Printf("Arith.Div(1, 0): remote error %q (a *consumer.ServiceError: %v)\n", err, errors.As(err, &se))

	// Graceful shutdown under load: 200 calls of 300 ms are in flight.
	const n = 200
	var ok, failed atomic.Int64
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			var out int
			if err := c.Call(ctx, "Arith.Sleep", 300, &out); err != nil {
				failed.Add(1)
				fmt.Println("  call failed:", err)
				return
			}
			ok.Add(1)
		})
	}
	for srv.InFlight() < n { // wait until the provider has read all of them
		time.Sleep(5 * time.Millisecond)
	}
	fmt.Printf("shutting down with %d calls in flight…\n", srv.InFlight())
	start := time.Now()
	shutdownCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return err
	}
	wg.Wait()
	fmt.Printf("drained in %v: %d of %d calls completed, %d failed\n", time.Since(start).Round(time.Millisecond), ok.Load(), n, failed.Load())
	left, _ := reg.Fetch(ctx, "arith")
	fmt.Printf("instances left in the registry: %d; Serve returned: %v\n", len(left), <-served)

	err = c.Call(ctx, "Arith.Add", Args{A: 1, B: 1}, &sum)
	fmt.Printf("a call after the shutdown is refused, not executed: %v\n", err)
	if failed.Load() != 0 {
		return fmt.Errorf("%d calls lost", failed.Load())
	}
	return nil
}
