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
// client.Client (one connection). Its msgpack codec encodes the plain
// struct by reflection (PlainStruct, the default path), or uses the
// message's generated code (Generated) or as_array (AsArray).
type RPCX struct{ Payload Payload }

// quietRPCX silences rpcx's package-level logger, once per process.
var quietRPCX = sync.OnceFunc(rpcxlog.SetDummyLogger)

// Name implements Peer.
func (r RPCX) Name() string { return "rpcx" + r.Payload.suffix() }

// RPCXHello is rpcx's Hello service on the default path.
type RPCXHello struct{}

// Say answers the benchmark call.
func (RPCXHello) Say(_ context.Context, args *msg.Plain, reply *msg.Plain) error {
	msg.AnswerPlain(args, reply)
	return nil
}

// RPCXGenHello is rpcx's Hello service for messages with generated code.
type RPCXGenHello struct{}

// Say answers the benchmark call.
func (RPCXGenHello) Say(_ context.Context, args *msg.BenchmarkMessage, reply *msg.BenchmarkMessage) error {
	msg.Answer(args, reply)
	return nil
}

// RPCXReflectHello is rpcx's Hello service for Reflected (as_array)
// messages.
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
	switch r.Payload {
	case Generated:
		svc = new(RPCXGenHello)
	case AsArray:
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
	return newStructClient(r.Payload, call, c.Close), nil
}
