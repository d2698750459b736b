package integration

import (
	"context"
	"net"
	"net/rpc"
	"testing"

	"github.com/shoalrpc/shoal/consumer"
	"github.com/shoalrpc/shoal/internal/testmsg"
	"github.com/shoalrpc/shoal/provider"
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

func shoalHello(b *testing.B) *consumer.Client {
	srv := provider.NewServer()
	if err := srv.Register(Hello{}); err != nil {
		b.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go srv.Serve(ln)
	c, err := consumer.Dial("tcp@" + ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close(); srv.Close() })
	return c
}

func netrpcHello(b *testing.B) *rpc.Client {
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
			go srv.ServeConn(nc)
		}
	}()
	c, err := rpc.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close(); ln.Close() })
	return c
}

// BenchmarkCall is one unary call of the rpcx-benchmark message over one
// loopback connection, client and server in this process; net/rpc (gob) is
// measured in the same run for a ratio. The parallel variants keep
// GOMAXPROCS×100 callers in flight.
func BenchmarkCall(b *testing.B) {
	args := testmsg.NewBenchmarkMessage()
	check := func(b *testing.B, reply *testmsg.BenchmarkMessage) {
		if reply.Field1 != "OK" {
			b.Fatalf("reply Field1 %q", reply.Field1)
		}
	}
	b.Run("shoal", func(b *testing.B) {
		c := shoalHello(b)
		b.ReportAllocs()
		var reply testmsg.BenchmarkMessage
		for b.Loop() {
			if err := c.Call(context.Background(), "Hello.Say", args, &reply); err != nil {
				b.Fatal(err)
			}
		}
		check(b, &reply)
	})
	b.Run("netrpc", func(b *testing.B) {
		c := netrpcHello(b)
		b.ReportAllocs()
		var reply testmsg.BenchmarkMessage
		for b.Loop() {
			if err := c.Call("Hello.Say", args, &reply); err != nil {
				b.Fatal(err)
			}
		}
		check(b, &reply)
	})
	b.Run("shoal/parallel", func(b *testing.B) {
		c := shoalHello(b)
		b.ReportAllocs()
		b.SetParallelism(100)
		b.RunParallel(func(pb *testing.PB) {
			var reply testmsg.BenchmarkMessage
			for pb.Next() {
				if err := c.Call(context.Background(), "Hello.Say", args, &reply); err != nil {
					b.Fatal(err)
				}
				check(b, &reply)
			}
		})
	})
	b.Run("netrpc/parallel", func(b *testing.B) {
		c := netrpcHello(b)
		b.ReportAllocs()
		b.SetParallelism(100)
		b.RunParallel(func(pb *testing.PB) {
			var reply testmsg.BenchmarkMessage
			for pb.Next() {
				if err := c.Call("Hello.Say", args, &reply); err != nil {
					b.Fatal(err)
				}
				check(b, &reply)
			}
		})
	})
}
