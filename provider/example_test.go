package provider_test

import (
	"context"
	"fmt"
	"log"

	"github.com/shoalrpc/shoal/consumer"
	"github.com/shoalrpc/shoal/naming"
	"github.com/shoalrpc/shoal/provider"
)

// Greeter is a service: its exported method of the right shape is served as
// "Greeter.Hello".
type Greeter struct{}

// Hello greets name.
func (Greeter) Hello(ctx context.Context, name string, greeting *string) error {
	*greeting = "hello, " + name
	return nil
}

// Start returns once the server accepts connections and its instance is
// in the registry; serving goes on in the background until Shutdown.
func ExampleServer_Start() {
	reg := naming.NewMemory()
	srv := provider.NewServer(provider.WithRegistry(reg, naming.Instance{Service: "greeter"}))
	if err := srv.Register(Greeter{}); err != nil {
		log.Fatal(err)
	}
	ln, err := provider.Listen("127.0.0.1:0") // or "tcp@127.0.0.1:9001", "unix@/run/greeter.sock"
	if err != nil {
		log.Fatal(err)
	}
	if err := srv.Start(ln); err != nil {
		log.Fatal(err)
	}
	defer srv.Shutdown(context.Background())

	list, _ := reg.Fetch(context.Background(), "greeter")
	fmt.Println(len(list), "instance registered")

	c, err := consumer.Dial(list[0].Addr)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	var greeting string
	err = c.Call(context.Background(), "Greeter.Hello", "gopher", &greeting)
	fmt.Println(greeting, err)
	// Output:
	// 1 instance registered
	// hello, gopher <nil>
}

// RegisterName serves a value under another service name than its type's.
func ExampleServer_RegisterName() {
	srv := provider.NewServer()
	defer srv.Close()
	if err := srv.RegisterName("Hi", Greeter{}); err != nil {
		log.Fatal(err)
	}
	ln, err := provider.Listen("127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	if err := srv.Start(ln); err != nil {
		log.Fatal(err)
	}
	c, err := consumer.Dial(ln.Addr().String())
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	var greeting string
	fmt.Println(c.Call(context.Background(), "Hi.Hello", "gopher", &greeting), greeting)
	err = c.Call(context.Background(), "Greeter.Hello", "gopher", &greeting)
	fmt.Println(err)
	// Output:
	// <nil> hello, gopher
	// shoal: unknown service: "Greeter.Hello": no service "Greeter" on this server; it serves Hi (a call names "Service.Method" as Register or RegisterName named it, not the registry's service name); did you mean "Hi.Hello"?
}
