package integration

import (
	"context"
	"net"
	"net/rpc"
	"sync/atomic"
	"testing"

	"github.com/shoalrpc/shoal/consumer"
	"github.com/shoalrpc/shoal/internal/cputime"
	"github.com/shoalrpc/shoal/internal/testmsg"
	"github.com/shoalrpc/shoal/protocol"
	"github.com/shoalrpc/shoal/provider"
	"github.com/shoalrpc/shoal/stats"
)

// Hello is the benchmark service: it copies args to the reply and marks it.
type Hello struct{}

// Say answers the benchmark call.
func (Hello) Say(args *testmsg.BenchmarkMessage, reply *testmsg.BenchmarkMessage) error {
	*reply = *args
	reply.Field1 = "OK"
	reply.Field2 = 100
	return nil
}

// SayCtx is Say with a context, the shape shoal services usually have.
func (Hello) SayCtx(ctx context.Context, args *testmsg.BenchmarkMessage, reply *testmsg.BenchmarkMessage) error {
	return Hello{}.Say(args, reply)
}

// countingConn counts the Write calls (syscalls) made on a connection.
type countingConn struct {
	net.Conn
	writes *atomic.Int64
}

func (c countingConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(p)
}

// countingListener wraps accepted connections in countingConn.
type countingWritesListener struct {
	net.Listener
	writes *atomic.Int64
}

func (l countingWritesListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return countingConn{c, l.writes}, nil
}

// measure reports, besides ns/op, the CPU time per call of client and server
// together (the figure that decides throughput on a machine whose cores both
// run) and the write syscalls per call on both sides.
func measure(b *testing.B, writes *atomic.Int64, run func()) {
	writes.Store(0)
	cpu0 := cputime.Process()
	run()
	n := float64(b.N)
	b.ReportMetric(float64(cputime.Process()-cpu0)/n/1000, "cpu-µs/op")
	b.ReportMetric(float64(writes.Load())/n, "writes/op")
}

func shoalHello(b *testing.B, writes *atomic.Int64, srvOpts []provider.Option, opts ...consumer.DialOption) *consumer.Client {
	srv := provider.NewServer(srvOpts...)
	if err := srv.Register(Hello{}); err != nil {
		b.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go srv.Serve(countingWritesListener{ln, writes})
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return countingConn{c, writes}, nil
	}
	c, err := consumer.Dial("tcp@"+ln.Addr().String(), append(opts, consumer.WithDialer(dial))...)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close(); srv.Close() })
	return c
}

func netrpcHello(b *testing.B, writes *atomic.Int64) *rpc.Client {
	srv := rpc.NewServer()
	if err := srv.Register(Hello{}); err != nil {
		b.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go func() { // srv.Accept would log the listener's closing
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			go srv.ServeConn(countingConn{nc, writes})
		}
	}()
	nc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	c := rpc.NewClient(countingConn{nc, writes})
	b.Cleanup(func() { c.Close(); ln.Close() })
	return c
}

// BenchmarkCall is one unary call of the rpcx-benchmark message over one
// loopback connection, client and server in this process; net/rpc (gob) is
// measured in the same run for a ratio. The parallel variants keep
// GOMAXPROCS×benchParallelism callers in flight.
func BenchmarkCall(b *testing.B) {
	args := testmsg.NewBenchmarkMessage()
	for _, parallel := range []bool{false, true} {
		suffix := ""
		if parallel {
			suffix = "/parallel"
		}
		for _, codec := range []protocol.Codec{protocol.Msgpack, protocol.MsgpackCompact} {
			b.Run("shoal/"+codec.Name()+suffix, func(b *testing.B) {
				var writes atomic.Int64
				c := shoalHello(b, &writes, nil, consumer.WithCodec(codec))
				benchCalls(b, &writes, parallel, func(reply *testmsg.BenchmarkMessage) error {
					return c.Call(context.Background(), "Hello.Say", args, reply)
				})
			})
		}
		b.Run("netrpc"+suffix, func(b *testing.B) {
			var writes atomic.Int64
			c := netrpcHello(b, &writes)
			benchCalls(b, &writes, parallel, func(reply *testmsg.BenchmarkMessage) error {
				return c.Call("Hello.Say", args, reply)
			})
		})
	}
}

// benchCalls makes b.N calls, one after the other or from parallel callers,
// checking every reply, and reports the CPU time and writes per call.
func benchCalls(b *testing.B, writes *atomic.Int64, parallel bool, call func(*testmsg.BenchmarkMessage) error) {
	callAndCheck := func(reply *testmsg.BenchmarkMessage) {
		if err := call(reply); err != nil {
			b.Fatal(err)
		}
		if reply.Field1 != "OK" {
			b.Fatalf("reply Field1 %q", reply.Field1)
		}
	}
	b.ReportAllocs()
	measure(b, writes, func() {
		if !parallel {
			var reply testmsg.BenchmarkMessage
			for b.Loop() {
				callAndCheck(&reply)
			}
			return
		}
		b.SetParallelism(benchParallelism)
		b.RunParallel(func(pb *testing.PB) {
			var reply testmsg.BenchmarkMessage
			for pb.Next() {
				callAndCheck(&reply)
			}
		})
	})
}

// benchParallelism is the callers per GOMAXPROCS in the parallel variants.
var benchParallelism = 100

// BenchmarkInterceptors is BenchmarkCall's default-codec call with 0, 1 and
// 5 pass-through interceptors on each side, and with a stats handler on each
// side: what the seam costs a call.
func BenchmarkInterceptors(b *testing.B) {
	args := testmsg.NewBenchmarkMessage()
	passServer := func(ctx context.Context, _ *provider.RequestInfo, args any, next provider.Handler) (any, error) {
		return next(ctx, args)
	}
	passClient := func(ctx context.Context, method string, args, reply any, next consumer.Invoker) error {
		return next(ctx, method, args, reply)
	}
	for _, n := range []int{0, 1, 5} {
		b.Run("n="+itoa(n), func(b *testing.B) {
			var srvOpts []provider.Option
			var cliOpts []consumer.DialOption
			for range n {
				srvOpts = append(srvOpts, provider.WithInterceptors(passServer))
				cliOpts = append(cliOpts, consumer.WithInterceptors(passClient))
			}
			var writes atomic.Int64
			c := shoalHello(b, &writes, srvOpts, cliOpts...)
			benchCalls(b, &writes, false, func(reply *testmsg.BenchmarkMessage) error {
				return c.Call(context.Background(), "Hello.Say", args, reply)
			})
		})
	}
	b.Run("stats", func(b *testing.B) {
		var writes atomic.Int64
		c := shoalHello(b, &writes, []provider.Option{provider.WithStatsHandler(stats.Base{})}, consumer.WithStatsHandler(stats.Base{}))
		benchCalls(b, &writes, false, func(reply *testmsg.BenchmarkMessage) error {
			return c.Call(context.Background(), "Hello.Say", args, reply)
		})
	})
}
