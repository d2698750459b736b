package shoal_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net"

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

// A provider registers in a registry under the service name "arith" and
// serves Arith's methods as "Arith.Add" and "Arith.Div"; a ClientProxy finds
// it by the service name and calls a method by its "Type.Method" name,
// through a typed handle. This is the README's first example.
func Example() {
	reg := naming.NewMemory() // in-process; naming.Open("consul://127.0.0.1:8500", consul.Backend()) for Consul

	srv := provider.NewServer(provider.WithRegistry(reg, naming.Instance{Service: "arith"}))
	if err := srv.Register(Arith{}); err != nil { // serves "Arith.Add", "Arith.Div"
		log.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	if err := srv.Start(ln); err != nil { // returns once accepting and registered
		log.Fatal(err)
	}
	defer srv.Shutdown(context.Background()) // graceful: no call is lost

	p, err := consumer.NewClientProxy("arith", reg) // the registry's service name
	if err != nil {
		log.Fatal(err)
	}
	defer p.Close()

	add := consumer.NewMethod[Args, int](p, "Arith.Add") // the call's Type.Method
	sum, err := add.Call(context.Background(), Args{A: 40, B: 2})
	fmt.Println(sum, err)
	// Output: 42 <nil>
}

// A Client is one multiplexed connection to one address; Call takes the
// method name and untyped args and reply. The method's own error arrives as
// a *consumer.ServiceError with its text intact.
func Example_dial() {
	srv := provider.NewServer()
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
	defer srv.Shutdown(context.Background())

	c, err := consumer.Dial(ln.Addr().String()) // "host:port", "tcp@host:port" or "unix@/path"
	if err != nil {
		log.Fatal(err)
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

// A ClientProxy balances calls over the instances of a service; here two
// providers share an in-process registry and each call goes to the next.
func Example_clientProxy() {
	reg := naming.NewMemory()
	for range 2 {
		srv := provider.NewServer(provider.WithRegistry(reg, naming.Instance{Service: "arith"}))
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
		defer srv.Shutdown(context.Background())
	}

	p, err := consumer.NewClientProxy("arith", reg,
		consumer.WithLoadBalance(loadbalance.RoundRobin),
		consumer.WithFailMode(consumer.Failover))
	if err != nil {
		log.Fatal(err)
	}
	defer p.Close()
	fmt.Println(len(p.Instances()), "instances")

	var sum int
	err = p.Call(context.Background(), "Arith.Add", Args{A: 1, B: 2}, &sum)
	fmt.Println(sum, err)
	// Output:
	// 2 instances
	// 3 <nil>
}
