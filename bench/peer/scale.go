package peer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"

	"github.com/shoalrpc/shoal/bench/msg"
	"github.com/shoalrpc/shoal/consumer"
	"github.com/shoalrpc/shoal/naming"
	"github.com/shoalrpc/shoal/provider"
)

// Blob is the payload of the scale benchmark's size curve: a plain struct
// whose one field is the bytes carried (msgpack bin, encoded by shoal's
// default codec).
type Blob struct {
	Data []byte
}

// ShoalBlob is the scale server's Blob service.
type ShoalBlob struct{}

// Echo answers with the request's bytes.
func (ShoalBlob) Echo(_ context.Context, args *Blob, reply *Blob) error {
	reply.Data = args.Data
	return nil
}

// ServeScale serves shoal's Hello (the plain struct, as the shoal peer
// does) and Blob services on every listener, with one provider.Server and
// default options, until ctx ends. It closes the listeners. One server
// behind many listeners stands in for many instances: the proxy curve then
// measures what N instances cost the client (discovery, balancing, N
// connections) rather than N servers sharing two cores.
func ServeScale(ctx context.Context, lns []net.Listener) error {
	srv := provider.NewServer(provider.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	err := errors.Join(srv.RegisterName("Hello", ShoalHello{}), srv.RegisterName("Blob", ShoalBlob{}))
	for i, ln := range lns {
		if err == nil {
			err = srv.Start(ln)
			continue
		}
		lns[i].Close()
	}
	if err != nil {
		srv.Close()
		return fmt.Errorf("shoal scale server: %w", err)
	}
	<-ctx.Done()
	srv.Close()
	return nil
}

// caller is a Client made of a caller factory and a close function.
type caller struct {
	newCaller func() func(ctx context.Context) error
	close     func() error
}

func (c caller) NewCaller() func(ctx context.Context) error { return c.newCaller() }
func (c caller) Close() error                               { return c.close() }

// DialBlob dials one shoal connection to addr, with opts, whose callers
// send size bytes in Blob.Echo and check the reply carries them back. The
// bytes are text (the benchmark message's string over and over, with a
// counter every 64 bytes), so that compression has something realistic to
// work on.
func DialBlob(ctx context.Context, addr string, size int, opts ...consumer.DialOption) (Client, error) {
	c, err := consumer.DialContext(ctx, "tcp@"+addr, opts...)
	if err != nil {
		return nil, fmt.Errorf("shoal: dial %s: %w", addr, err)
	}
	args := &Blob{Data: make([]byte, 0, size+64)}
	for i := 0; len(args.Data) < size; i++ {
		args.Data = fmt.Appendf(args.Data, "%d %s", i, msg.Text)
	}
	args.Data = args.Data[:size]
	last := args.Data[size-1]
	return caller{
		newCaller: func() func(ctx context.Context) error {
			reply := new(Blob)
			return func(ctx context.Context) error {
				reply.Data = reply.Data[:0]
				if err := c.Call(ctx, "Blob.Echo", args, reply); err != nil {
					return err
				}
				if len(reply.Data) != size || reply.Data[size-1] != last {
					return fmt.Errorf("%w: %d bytes back, want %d", ErrBadReply, len(reply.Data), size)
				}
				return nil
			}
		},
		close: c.Close,
	}, nil
}

// sayCaller returns a caller of Hello.Say with the plain struct through
// call, which checks the reply like the shoal peer.
func sayCaller(call func(ctx context.Context, args, reply any) error) func() func(ctx context.Context) error {
	return newStructClient(PlainStruct, call, nil).NewCaller
}

// DialPool makes the Hello.Say callers call addr through a consumer.Pool
// with conns connections to it (consumer.WithConnsPerAddr): each call takes
// the next connection from the pool.
func DialPool(ctx context.Context, addr string, conns int) (Client, error) {
	p, err := consumer.NewPool(consumer.WithConnsPerAddr(conns))
	if err != nil {
		return nil, fmt.Errorf("shoal: pool: %w", err)
	}
	target := "tcp@" + addr
	for range conns { // dial every connection before the round
		if _, err := p.Get(ctx, target); err != nil {
			p.Close()
			return nil, fmt.Errorf("shoal: pool dial %s: %w", addr, err)
		}
	}
	call := func(ctx context.Context, args, reply any) error {
		c, err := p.Get(ctx, target)
		if err != nil {
			return err
		}
		return c.Call(ctx, "Hello.Say", args, reply)
	}
	return caller{newCaller: sayCaller(call), close: p.Close}, nil
}

// DialProxy makes the Hello.Say callers call through a consumer.ClientProxy
// with default options over a static registry of addrs, after one call per
// address so that every connection is dialled (the default balancer picks
// at random, so a few more than that).
func DialProxy(ctx context.Context, addrs []string) (Client, error) {
	reg, err := naming.NewStatic(addrs...)
	if err != nil {
		return nil, fmt.Errorf("shoal: proxy over %d instances: %w", len(addrs), err)
	}
	p, err := consumer.NewClientProxy("Hello", reg)
	if err != nil {
		return nil, fmt.Errorf("shoal: proxy over %d instances: %w", len(addrs), err)
	}
	call := func(ctx context.Context, args, reply any) error { return p.Call(ctx, "Hello.Say", args, reply) }
	c := caller{newCaller: sayCaller(call), close: func() error { return errors.Join(p.Close(), reg.Close()) }}
	warm := c.NewCaller()
	for i := range 4 * len(addrs) {
		if err := warm(ctx); err != nil {
			c.Close()
			return nil, fmt.Errorf("shoal: proxy over %d instances: warm-up call %d: %w", len(addrs), i, err)
		}
	}
	return c, nil
}
