package otel_test

import (
	"context"
	"fmt"
	"net"

	"go.opentelemetry.io/otel/baggage"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/shoalrpc/shoal/consumer"
	shoalotel "github.com/shoalrpc/shoal/observability/otel"
	"github.com/shoalrpc/shoal/provider"
)

// Greeter is the example's service: it answers with what its context holds.
type Greeter struct{}

// Hello says which trace the server's span is in and who the caller's
// baggage says is calling.
func (Greeter) Hello(ctx context.Context, _ string, reply *string) error {
	*reply = trace.SpanContextFromContext(ctx).TraceID().String() + " " + baggage.FromContext(ctx).Member("tenant").Value()
	return nil
}

// One option on each side traces calls: the server's span continues the
// caller's trace, and the caller's baggage reaches the method. Any SDK and
// exporter works (here the SDK's in-memory recorder, to print the spans);
// without WithTracerProvider the global provider is used.
func Example() {
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	defer tp.Shutdown(context.Background())

	srv := provider.NewServer(provider.WithStatsHandler(shoalotel.ServerHandler(shoalotel.WithTracerProvider(tp))))
	if err := srv.Register(Greeter{}); err != nil {
		panic(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	if err := srv.Start(ln); err != nil {
		panic(err)
	}
	defer srv.Shutdown(context.Background())
	c, err := consumer.Dial("tcp@"+ln.Addr().String(), consumer.WithStatsHandler(shoalotel.ClientHandler(shoalotel.WithTracerProvider(tp))))
	if err != nil {
		panic(err)
	}
	defer c.Close()

	ctx, checkout := tp.Tracer("shop").Start(context.Background(), "checkout")
	tenant, _ := baggage.NewMember("tenant", "acme")
	bag, _ := baggage.New(tenant)
	ctx = baggage.ContextWithBaggage(ctx, bag)
	var reply string
	if err := c.Call(ctx, "Greeter.Hello", "hi", &reply); err != nil {
		panic(err)
	}
	checkout.End()

	var call sdktrace.ReadOnlySpan
	for _, s := range spans.Ended() {
		if s.SpanKind() == trace.SpanKindClient {
			call = s
		}
	}
	fmt.Println(call.Name(), call.SpanKind(), "child of checkout:", call.Parent().SpanID() == checkout.SpanContext().SpanID())
	fmt.Println("server in the same trace, for tenant:", reply == checkout.SpanContext().TraceID().String()+" acme")
	// Output:
	// Greeter/Hello client child of checkout: true
	// server in the same trace, for tenant: true
}
