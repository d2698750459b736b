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
// connection), both with default options, so the payload goes through
// shoal's default codec, protocol.Msgpack. With the PlainStruct payload
// (the default path) that codec encodes msg.Plain by its field names, as it
// would any user's struct; Generated and AsArray are the tuned path.
type Shoal struct{ Payload Payload }

// Name implements Peer.
func (s Shoal) Name() string { return "shoal" + s.Payload.suffix() }

// ShoalHello is shoal's Hello service on the default path.
type ShoalHello struct{}

// Say answers the benchmark call.
func (ShoalHello) Say(_ context.Context, args *msg.Plain, reply *msg.Plain) error {
	msg.AnswerPlain(args, reply)
	return nil
}

// ShoalGenHello is shoal's Hello service for messages with generated code.
type ShoalGenHello struct{}

// Say answers the benchmark call.
func (ShoalGenHello) Say(_ context.Context, args *msg.BenchmarkMessage, reply *msg.BenchmarkMessage) error {
	msg.Answer(args, reply)
	return nil
}

// ShoalReflectHello is shoal's Hello service for Reflected (as_array)
// messages.
type ShoalReflectHello struct{}

// Say answers the benchmark call.
func (ShoalReflectHello) Say(_ context.Context, args *msg.Reflected, reply *msg.Reflected) error {
	msg.Answer((*msg.BenchmarkMessage)(args), (*msg.BenchmarkMessage)(reply))
	return nil
}

// Serve implements Peer.
func (s Shoal) Serve(ctx context.Context, ln net.Listener) error {
	// The logger only keeps the benchmark's output clean; it is not a
	// speed option.
	srv := provider.NewServer(provider.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	var svc any = ShoalHello{}
	switch s.Payload {
	case Generated:
		svc = ShoalGenHello{}
	case AsArray:
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
	return newStructClient(s.Payload, call, c.Close), nil
}
