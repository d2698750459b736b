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
// client.Client (one connection).
type RPCX struct{}

// quietRPCX silences rpcx's package-level logger, once per process.
var quietRPCX = sync.OnceFunc(rpcxlog.SetDummyLogger)

// Name implements Peer.
func (RPCX) Name() string { return "rpcx" }

// RPCXHello is rpcx's Hello service.
type RPCXHello struct{}

// Say answers the benchmark call.
func (RPCXHello) Say(_ context.Context, args *msg.BenchmarkMessage, reply *msg.BenchmarkMessage) error {
	msg.Answer(args, reply)
	return nil
}

// Serve implements Peer.
func (RPCX) Serve(ctx context.Context, ln net.Listener) error {
	quietRPCX()
	srv := server.NewServer()
	if err := srv.RegisterName("Hello", new(RPCXHello), ""); err != nil {
		ln.Close()
		return fmt.Errorf("rpcx: register: %w", err)
	}
	return serveUntil(ctx, func() error { return srv.ServeListener("tcp", ln) }, func() {
		srv.Close()
		ln.Close()
	})
}

// Dial implements Peer.
func (RPCX) Dial(_ context.Context, addr string) (Client, error) {
	quietRPCX()
	opt := client.DefaultOption
	opt.SerializeType = protocol.MsgPack
	c := client.NewClient(opt)
	if err := c.Connect("tcp", addr); err != nil {
		return nil, fmt.Errorf("rpcx: dial %s: %w", addr, err)
	}
	return &rpcxClient{c: c, args: msg.New()}, nil
}

type rpcxClient struct {
	c    *client.Client
	args *msg.BenchmarkMessage
}

func (r *rpcxClient) NewCaller() func(ctx context.Context) error {
	reply := new(msg.BenchmarkMessage)
	return func(ctx context.Context) error {
		*reply = msg.BenchmarkMessage{}
		if err := r.c.Call(ctx, "Hello", "Say", r.args, reply); err != nil {
			return err
		}
		if reply.Field1 != "OK" {
			return ErrBadReply
		}
		return nil
	}
}

func (r *rpcxClient) Close() error { return r.c.Close() }
