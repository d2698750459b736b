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
// connection), msgpack payloads.
type Shoal struct{}

// Name implements Peer.
func (Shoal) Name() string { return "shoal" }

// ShoalHello is shoal's Hello service.
type ShoalHello struct{}

// Say answers the benchmark call.
func (ShoalHello) Say(_ context.Context, args *msg.BenchmarkMessage, reply *msg.BenchmarkMessage) error {
	msg.Answer(args, reply)
	return nil
}

// Serve implements Peer.
func (Shoal) Serve(ctx context.Context, ln net.Listener) error {
	srv := provider.NewServer(provider.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	if err := srv.RegisterName("Hello", ShoalHello{}); err != nil {
		ln.Close()
		return fmt.Errorf("shoal: register: %w", err)
	}
	return serveUntil(ctx, func() error { return srv.Serve(ln) }, func() { srv.Close() })
}

// Dial implements Peer.
func (Shoal) Dial(ctx context.Context, addr string) (Client, error) {
	c, err := consumer.DialContext(ctx, "tcp@"+addr)
	if err != nil {
		return nil, fmt.Errorf("shoal: dial %s: %w", addr, err)
	}
	return &shoalClient{c: c, args: msg.New()}, nil
}

type shoalClient struct {
	c    *consumer.Client
	args *msg.BenchmarkMessage
}

func (s *shoalClient) NewCaller() func(ctx context.Context) error {
	reply := new(msg.BenchmarkMessage)
	return func(ctx context.Context) error {
		*reply = msg.BenchmarkMessage{}
		if err := s.c.Call(ctx, "Hello.Say", s.args, reply); err != nil {
			return err
		}
		if reply.Field1 != "OK" {
			return ErrBadReply
		}
		return nil
	}
}

func (s *shoalClient) Close() error { return s.c.Close() }
