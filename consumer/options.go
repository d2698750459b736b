package consumer

import (
	"context"
	"time"

	"github.com/shoalrpc/shoal/protocol"
)

// Option configures a Client, a Pool or a ClientProxy.
type Option func(*options)

type options struct {
	codec             protocol.Codec
	maxBody           int
	dialTimeout       time.Duration
	heartbeatInterval time.Duration
	heartbeatTimeout  time.Duration
	connsPerAddr      int
}

func defaultOptions() options {
	return options{
		codec:             protocol.Msgpack,
		dialTimeout:       5 * time.Second,
		heartbeatInterval: 10 * time.Second,
		heartbeatTimeout:  30 * time.Second,
		connsPerAddr:      1,
	}
}

func buildOptions(opts []Option) options {
	o := defaultOptions()
	for _, opt := range opts {
		opt(&o)
	}
	return o
}

// WithCodec sets the payload codec (default protocol.Msgpack).
func WithCodec(c protocol.Codec) Option {
	return func(o *options) {
		if c != nil {
			o.codec = c
		}
	}
}

// WithMaxBodySize limits the body of a frame the client reads or writes
// (default protocol.DefaultMaxBodySize, 8 MiB).
func WithMaxBodySize(n int) Option {
	return func(o *options) { o.maxBody = n }
}

// WithDialTimeout bounds connecting to a server (default 5 s).
func WithDialTimeout(d time.Duration) Option {
	return func(o *options) {
		if d > 0 {
			o.dialTimeout = d
		}
	}
}

// WithHeartbeat sets how long a connection may stay silent before the client
// sends a heartbeat (default 10 s), and how long without any frame from the
// server before the connection is declared dead and its pending calls fail
// with ErrConnClosed (default 30 s). A zero interval turns heartbeats off.
func WithHeartbeat(interval, timeout time.Duration) Option {
	return func(o *options) {
		o.heartbeatInterval = interval
		if timeout > 0 {
			o.heartbeatTimeout = timeout
		}
	}
}

// WithConnsPerAddr sets how many long connections a Pool keeps to each
// address (default 1: one multiplexed connection carries many calls).
func WithConnsPerAddr(n int) Option {
	return func(o *options) {
		if n > 0 {
			o.connsPerAddr = n
		}
	}
}

type metadataKey struct{}

// WithMetadata returns a context whose calls carry md to the server, where
// provider.Metadata reads it. The map must not be modified afterwards.
func WithMetadata(ctx context.Context, md map[string]string) context.Context {
	return context.WithValue(ctx, metadataKey{}, md)
}

func metadataFrom(ctx context.Context) map[string]string {
	md, _ := ctx.Value(metadataKey{}).(map[string]string)
	return md
}
