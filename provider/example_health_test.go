package provider_test

import (
	"context"
	"fmt"
	"log"

	"github.com/shoalrpc/shoal/consumer"
	"github.com/shoalrpc/shoal/health"
	"github.com/shoalrpc/shoal/naming"
	"github.com/shoalrpc/shoal/provider"
)

// Every server answers ShoalHealth.Check; the program sets a service's
// status, and Shutdown turns every status to NOT_SERVING first thing.
func ExampleHealth_SetStatus() {
	srv := provider.NewServer(provider.WithRegistry(naming.NewMemory(), naming.Instance{Service: "greeter"}))
	if err := srv.Register(Greeter{}); err != nil {
		log.Fatal(err)
	}
	ln, err := provider.Listen("127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	if err := srv.Start(ln); err != nil {
		log.Fatal(err)
	}
	c, err := consumer.Dial("tcp@" + ln.Addr().String())
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	check := func(service string) health.Status {
		var resp health.CheckResponse
		if err := c.Call(context.Background(), health.CheckMethod, &health.CheckRequest{Service: service}, &resp); err != nil {
			log.Fatal(err)
		}
		return resp.Status
	}
	fmt.Println("greeter:", check("greeter"), "· Greeter:", check("Greeter"), "· whole:", check(""), "· nope:", check("nope"))

	// Take the instance out of consumers' health-checked picks, e.g. while
	// a cache warms up; put it back with health.Serving.
	srv.Health().SetStatus("greeter", health.NotServing)
	fmt.Println("greeter:", check("greeter"))

	srv.Shutdown(context.Background())
	fmt.Println("after Shutdown:", srv.Health().Status("Greeter"))
	// Output:
	// greeter: SERVING · Greeter: SERVING · whole: SERVING · nope: SERVICE_UNKNOWN
	// greeter: NOT_SERVING
	// after Shutdown: NOT_SERVING
}
