package shoal_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/shoalrpc/shoal/consumer"
	"github.com/shoalrpc/shoal/loadbalance"
	"github.com/shoalrpc/shoal/naming"
	"github.com/shoalrpc/shoal/provider"
)

// Args are the operands of an Arith call.
type Args struct{ A, B int }

// Arith is a plain Go struct; its exported methods of the right shape are
// the service.
type Arith struct{}

// Add returns A+B.
func (Arith) Add(ctx context.Context, args Args, sum *int) error {
	*sum = args.A + args.B
	return nil
}

// Div returns A/B, or an error that reaches the caller intact.
func (Arith) Div(args Args, q *int) error {
	if args.B == 0 {
		return errors.New("divide by zero")
	}
	*q = args.A / args.B
	return nil
}

// A provider serves Arith; a client calls it over one connection.
func Example() {
	srv := provider.NewServer()
	if err := srv.Register(Arith{}); err != nil {
		panic(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	go srv.Serve(ln)
	defer srv.Shutdown(context.Background())

	c, err := consumer.Dial("tcp@" + ln.Addr().String())
	if err != nil {
		panic(err)
	}
	defer c.Close()

	var sum int
	err = c.Call(context.Background(), "Arith.Add", Args{A: 40, B: 2}, &sum)
	fmt.Println(sum, err)

	var q int
	err = c.Call(context.Background(), "Arith.Div", Args{A: 1, B: 0}, &q)
	var remote *consumer.ServiceError
	fmt.Println(err, errors.As(err, &remote))
	// Output:
	// 42 <nil>
	// divide by zero true
}

// A ClientProxy finds the service's instances in a registry and balances
// calls over them; here two providers share an in-process registry.
func Example_clientProxy() {
	reg := naming.NewMemory()
	defer reg.Close()
	for range 2 {
		srv := provider.NewServer(provider.WithRegistry(reg, naming.Instance{Service: "arith"}))
		if err := srv.Register(Arith{}); err != nil {
			panic(err)
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			panic(err)
		}
		go srv.Serve(ln)
		defer srv.Shutdown(context.Background())
	}

	p, err := consumer.NewClientProxy("arith", reg,
		consumer.WithWaitForInstances(5*time.Second), // the providers register as they start
		consumer.WithLoadBalance(loadbalance.RoundRobin),
		consumer.WithFailMode(consumer.Failover))
	if err != nil {
		panic(err)
	}
	defer p.Close()
	var sum int
	err = p.Call(context.Background(), "Arith.Add", Args{A: 1, B: 2}, &sum)
	fmt.Println(sum, err)
	// Output:
	// 3 <nil>
}
