package consumer_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net"

	"github.com/shoalrpc/shoal/consumer"
	"github.com/shoalrpc/shoal/naming"
	"github.com/shoalrpc/shoal/provider"
)

// Args are the operands of Arith.Add.
type Args struct{ A, B int }

// Arith is the service the examples call.
type Arith struct{}

// Add returns A+B.
func (Arith) Add(args Args, sum *int) error { *sum = args.A + args.B; return nil }

// start serves Arith, registered as "arith" in reg, and returns its address
// and a function that stops it.
func start(reg naming.Registry) (addr string, stop func()) {
	var opts []provider.Option
	if reg != nil {
		opts = append(opts, provider.WithRegistry(reg, naming.Instance{Service: "arith"}))
	}
	srv := provider.NewServer(opts...)
	if err := srv.Register(Arith{}); err != nil {
		log.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	if err := srv.Start(ln); err != nil {
		log.Fatal(err)
	}
	return ln.Addr().String(), func() { srv.Shutdown(context.Background()) }
}

// A typed handle: args and reply of the wrong type do not compile.
func ExampleNewMethod() {
	addr, stop := start(nil)
	defer stop()
	c, err := consumer.Dial(addr)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	add := consumer.NewMethod[Args, int](c, "Arith.Add")
	sum, err := add.Call(context.Background(), Args{A: 40, B: 2})
	fmt.Println(sum, err)
	// Output: 42 <nil>
}

// Errors say what went wrong and are testable with errors.Is.
func ExampleClient_Call() {
	addr, stop := start(nil)
	defer stop()
	c, err := consumer.Dial(addr)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	var sum int
	err = c.Call(context.Background(), "Arith.Add", Args{A: 1, B: 2}, &sum)
	fmt.Println(sum, err)

	err = c.Call(context.Background(), "Arith.Add", Args{A: 1, B: 2}, sum) // not a pointer
	fmt.Println(errors.Is(err, consumer.ErrBadRequest), err)

	var s string
	err = c.Call(context.Background(), "Arith.Add", Args{A: 1, B: 2}, &s) // the wrong type
	fmt.Println(errors.Is(err, consumer.ErrReplyDecode), err)
	// Output:
	// 3 <nil>
	// true shoal: bad request: call Arith.Add: reply must be a non-nil pointer (or nil to discard the reply), got int: pass &reply
	// true shoal: reply does not fit its type: call Arith.Add: want string, got int 3
}

// A ClientProxy calls a service by its registry name; the call names the
// method as the provider registered it.
func ExampleNewClientProxy() {
	reg := naming.NewMemory()
	_, stop := start(reg)
	defer stop()

	p, err := consumer.NewClientProxy("arith", reg, consumer.WithFailMode(consumer.Failover))
	if err != nil {
		log.Fatal(err)
	}
	defer p.Close()
	var sum int
	err = p.Call(context.Background(), "Arith.Add", Args{A: 2, B: 3}, &sum)
	fmt.Println(sum, err)

	err = p.Call(context.Background(), "arith.Add", Args{A: 2, B: 3}, &sum)
	fmt.Println(errors.Is(err, consumer.ErrUnknownService))
	// Output:
	// 5 <nil>
	// true
}
