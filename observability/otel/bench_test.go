package otel_test

import (
	"context"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/shoalrpc/shoal/consumer"
	"github.com/shoalrpc/shoal/internal/cputime"
	"github.com/shoalrpc/shoal/internal/servetest"
	shoalotel "github.com/shoalrpc/shoal/observability/otel"
	"github.com/shoalrpc/shoal/provider"
	"github.com/shoalrpc/shoal/stats"
)

// BenchmarkCall is a loopback call from parallel callers with tracing off,
// with stats handlers that do nothing (the seam's own cost), on with no
// call sampled, and on (both sides, every call sampled, spans batched to an exporter that
// drops them). cpu-µs/op is the process's CPU time per call, client and
// server together.
func BenchmarkCall(b *testing.B) {
	for _, mode := range []string{"off", "seam", "unsampled", "on"} {
		b.Run(mode, func(b *testing.B) {
			var sopts []provider.Option
			var copts []consumer.DialOption
			switch mode {
			case "seam": // stats handlers that do nothing: the seam's own cost
				sopts = append(sopts, provider.WithStatsHandler(stats.Base{}))
				copts = append(copts, consumer.WithStatsHandler(stats.Base{}))
			case "unsampled", "on":
				sampler := sdktrace.AlwaysSample()
				if mode == "unsampled" { // spans made and context carried, none recorded
					sampler = sdktrace.NeverSample()
				}
				tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sampler), sdktrace.WithBatcher(tracetest.NewNoopExporter()))
				defer tp.Shutdown(context.Background())
				sopts = append(sopts, provider.WithStatsHandler(shoalotel.ServerHandler(shoalotel.WithTracerProvider(tp))))
				copts = append(copts, consumer.WithStatsHandler(shoalotel.ClientHandler(shoalotel.WithTracerProvider(tp))))
			}
			benchCalls(b, sopts, copts)
		})
	}
}

// benchCalls measures Greeter.Hello over loopback with the given options.
func benchCalls(b *testing.B, sopts []provider.Option, copts []consumer.DialOption) {
	srv := provider.NewServer(sopts...)
	if err := srv.Register(Greeter{}); err != nil {
		b.Fatal(err)
	}
	c, err := consumer.Dial("tcp@"+servetest.Start(b, srv), copts...)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	b.ReportAllocs()
	b.SetParallelism(50)
	b.ResetTimer()
	cpu0 := cputime.Process()
	b.RunParallel(func(pb *testing.PB) {
		var reply string
		for pb.Next() {
			if err := c.Call(context.Background(), "Greeter.Hello", "hi", &reply); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.ReportMetric(float64(cputime.Process()-cpu0)/float64(b.N)/1000, "cpu-µs/op")
}
