package prom_test

import (
	"context"
	"testing"
	"time"

	"github.com/shoalrpc/shoal/consumer"
	"github.com/shoalrpc/shoal/internal/cputime"
	"github.com/shoalrpc/shoal/internal/servetest"
	"github.com/shoalrpc/shoal/observability/prom"
	"github.com/shoalrpc/shoal/provider"
	"github.com/shoalrpc/shoal/stats"
)

// BenchmarkCall is a loopback call from parallel callers with the metrics
// off, with stats handlers that do nothing (the seam's own cost) and on
// (both sides). cpu-µs/op is the process's CPU time per call,
// client and server together: the figure the metrics' cost is read from,
// less disturbed than ns/op by other work on the machine.
func BenchmarkCall(b *testing.B) {
	for _, mode := range []string{"off", "seam", "on"} {
		b.Run(mode, func(b *testing.B) {
			var sopts []provider.Option
			var copts []consumer.DialOption
			switch mode {
			case "seam": // stats handlers that do nothing: the seam's own cost
				sopts = append(sopts, provider.WithStatsHandler(stats.Base{}))
				copts = append(copts, consumer.WithStatsHandler(stats.Base{}))
			case "on":
				m, err := prom.New()
				if err != nil {
					b.Fatal(err)
				}
				sopts = append(sopts, provider.WithStatsHandler(m.ServerHandler()))
				copts = append(copts, consumer.WithStatsHandler(m.ClientHandler()))
			}
			benchCalls(b, sopts, copts)
		})
	}
}

// benchCalls measures Arith.Add over loopback with the given options.
func benchCalls(b *testing.B, sopts []provider.Option, copts []consumer.DialOption) {
	srv := provider.NewServer(sopts...)
	if err := srv.Register(Arith{}); err != nil {
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
		var sum int
		for pb.Next() {
			if err := c.Call(context.Background(), "Arith.Add", [2]int{1, 2}, &sum); err != nil || sum != 3 {
				b.Fatal(sum, err)
			}
		}
	})
	b.ReportMetric(float64(cputime.Process()-cpu0)/float64(b.N)/1000, "cpu-µs/op")
}

// BenchmarkHandlers is the metrics' own CPU per call, without the network
// (cpu-µs/op, read against BenchmarkCall/off's):
// one request through the server's handler and one call through the
// client's, as a loopback call with metrics on makes them.
func BenchmarkHandlers(b *testing.B) {
	m, err := prom.New()
	if err != nil {
		b.Fatal(err)
	}
	server, client := m.ServerHandler(), m.ClientHandler()
	req := &stats.RPCInfo{Kind: stats.Request, Method: "Arith.Add", Addr: "127.0.0.1:5000", Begin: time.Now()}
	call := &stats.RPCInfo{Kind: stats.Call, Method: "Arith.Add", Addr: "tcp@127.0.0.1:5000", Begin: time.Now()}
	end := &stats.RPCEnd{Status: "ok", Duration: time.Millisecond}
	ctx := context.Background()
	b.ReportAllocs()
	cpu0 := cputime.Process()
	for b.Loop() {
		client.RPCEnd(client.RPCBegin(ctx, call), call, end)
		server.RPCEnd(server.RPCBegin(ctx, req), req, end)
	}
	b.ReportMetric(float64(cputime.Process()-cpu0)/float64(b.N)/1000, "cpu-µs/op")
}
