package peer

import (
	"context"
	"fmt"
	"net"
	"sync"

	"github.com/shoalrpc/shoal/bench/msg"
	"github.com/smallnest/rpcx/client"
	rpcxlog "github.com/smallnest/rpcx/log"
	"github.com/smallnest/rpcx/protocol"
	"github.com/smallnest/rpcx/server"
)

// RPCX is rpcx with its msgpack serialize type: server.Server and one
// client.Client (one connection). Its msgpack codec uses the message's
// generated code or, with Reflect, encodes by reflection.
type RPCX struct{ Reflect bool }

// quietRPCX silences rpcx's package-level logger, once per process.
var quietRPCX = sync.OnceFunc(rpcxlog.SetDummyLogger)

// Name implements Peer.
func (r RPCX) Name() string {
	if r.Reflect {
		return "rpcx-reflect"
	}
	return "rpcx"
}

// RPCXHello is rpcx's Hello service.
type RPCXHello struct{}

// Say answers the benchmark call.
func (RPCXHello) Say(_ context.Context, args *msg.BenchmarkMessage, reply *msg.BenchmarkMessage) error {
	msg.Answer(args, reply)
	return nil
}

// RPCXReflectHello is rpcx's Hello service for Reflected messages.
type RPCXReflectHello struct{}

// Say answers the benchmark call.
func (RPCXReflectHello) Say(_ context.Context, args *msg.Reflected, reply *msg.Reflected) error {
	msg.Answer((*msg.BenchmarkMessage)(args), (*msg.BenchmarkMessage)(reply))
	return nil
}

// Serve implements Peer.
func (r RPCX) Serve(ctx context.Context, ln net.Listener) error {
	quietRPCX()
	srv := server.NewServer()
	var svc any = new(RPCXHello)
	if r.Reflect {
		svc = new(RPCXReflectHello)
	}
	if err := srv.RegisterName("Hello", svc, ""); err != nil {
		ln.Close()
		return fmt.Errorf("rpcx: register: %w", err)
	}
	return serveUntil(ctx, func() error { return srv.ServeListener("tcp", ln) }, func() {
		srv.Close()
		ln.Close()
	})
}

// Dial implements Peer.
func (r RPCX) Dial(_ context.Context, addr string) (Client, error) {
	quietRPCX()
	opt := client.DefaultOption
	opt.SerializeType = protocol.MsgPack
	c := client.NewClient(opt)
	if err := c.Connect("tcp", addr); err != nil {
		return nil, fmt.Errorf("rpcx: dial %s: %w", addr, err)
	}
	call := func(ctx context.Context, args, reply any) error { return c.Call(ctx, "Hello", "Say", args, reply) }
	return newStructClient(r.Reflect, call, c.Close), nil
}
