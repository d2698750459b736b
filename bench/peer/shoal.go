package peer

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"

	"github.com/shoalrpc/shoal/bench/msg"
	"github.com/shoalrpc/shoal/consumer"
	"github.com/shoalrpc/shoal/provider"
)

// Shoal is shoal: provider.Server and one consumer.Client (one multiplexed
// connection), msgpack payloads through the message's generated code or,
// with Reflect, by reflection.
type Shoal struct{ Reflect bool }

// Name implements Peer.
func (s Shoal) Name() string {
	if s.Reflect {
		return "shoal-reflect"
	}
	return "shoal"
}

// ShoalHello is shoal's Hello service.
type ShoalHello struct{}

// Say answers the benchmark call.
func (ShoalHello) Say(_ context.Context, args *msg.BenchmarkMessage, reply *msg.BenchmarkMessage) error {
	msg.Answer(args, reply)
	return nil
}

// ShoalReflectHello is shoal's Hello service for Reflected messages.
type ShoalReflectHello struct{}

// Say answers the benchmark call.
func (ShoalReflectHello) Say(_ context.Context, args *msg.Reflected, reply *msg.Reflected) error {
	msg.Answer((*msg.BenchmarkMessage)(args), (*msg.BenchmarkMessage)(reply))
	return nil
}

// Serve implements Peer.
func (s Shoal) Serve(ctx context.Context, ln net.Listener) error {
	srv := provider.NewServer(provider.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	var svc any = ShoalHello{}
	if s.Reflect {
		svc = ShoalReflectHello{}
	}
	if err := srv.RegisterName("Hello", svc); err != nil {
		ln.Close()
		return fmt.Errorf("shoal: register: %w", err)
	}
	return serveUntil(ctx, func() error { return srv.Serve(ln) }, func() { srv.Close() })
}

// Dial implements Peer.
func (s Shoal) Dial(ctx context.Context, addr string) (Client, error) {
	c, err := consumer.DialContext(ctx, "tcp@"+addr)
	if err != nil {
		return nil, fmt.Errorf("shoal: dial %s: %w", addr, err)
	}
	call := func(ctx context.Context, args, reply any) error { return c.Call(ctx, "Hello.Say", args, reply) }
	return newStructClient(s.Reflect, call, c.Close), nil
}
