package peer

import (
	"context"
	"fmt"
	"net"
	"net/rpc"

	"github.com/shoalrpc/shoal/bench/msg"
)

// NetRPC is the standard library's net/rpc with its default gob codec: one
// rpc.Client (one connection), carrying the plain struct msg.Plain.
type NetRPC struct{}

// Name implements Peer.
func (NetRPC) Name() string { return "net/rpc" }

// NetRPCHello is net/rpc's Hello service.
type NetRPCHello struct{}

// Say answers the benchmark call.
func (NetRPCHello) Say(args *msg.Plain, reply *msg.Plain) error {
	msg.AnswerPlain(args, reply)
	return nil
}

// Serve implements Peer.
func (NetRPC) Serve(ctx context.Context, ln net.Listener) error {
	srv := rpc.NewServer()
	if err := srv.RegisterName("Hello", NetRPCHello{}); err != nil {
		ln.Close()
		return fmt.Errorf("net/rpc: register: %w", err)
	}
	// rpc.Server.Accept would log the listener's closing.
	return serveConns(ctx, "net/rpc", ln, func(nc net.Conn) { srv.ServeConn(nc) })
}

// Dial implements Peer.
func (NetRPC) Dial(ctx context.Context, addr string) (Client, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("net/rpc: dial %s: %w", addr, err)
	}
	c := rpc.NewClient(nc)
	call := func(_ context.Context, args, reply any) error { return c.Call("Hello.Say", args, reply) }
	return newStructClient(PlainStruct, call, c.Close), nil
}
