package provider

import (
	"log/slog"
	"time"

	"github.com/shoalrpc/shoal/naming"
)

// Option configures a Server.
type Option func(*options)

type options struct {
	registry         naming.Registry
	instance         naming.Instance
	maxBody          int
	idleTimeout      time.Duration
	registerAttempts int
	registerTimeout  time.Duration
	drainGrace       time.Duration
	logger           *slog.Logger
}

func defaultOptions() options {
	return options{
		idleTimeout:      2 * time.Minute,
		registerAttempts: 3,
		registerTimeout:  10 * time.Second,
		drainGrace:       time.Second,
		logger:           slog.Default(),
	}
}

// WithRegistry makes the server publish in to reg once Serve accepts
// connections, and withdraw it first thing in Shutdown. An empty in.Addr is
// filled from the listener ("tcp@127.0.0.1:9001"), an empty in.ID with
// naming.DefaultID. in.Service is required.
func WithRegistry(reg naming.Registry, in naming.Instance) Option {
	return func(o *options) { o.registry, o.instance = reg, in }
}

// WithRegisterAttempts sets how many times a failed registration is tried
// before Serve gives up and returns the error (default 3), and the timeout of
// each attempt (default 10 s).
func WithRegisterAttempts(n int, perAttempt time.Duration) Option {
	return func(o *options) {
		if n > 0 {
			o.registerAttempts = n
		}
		if perAttempt > 0 {
			o.registerTimeout = perAttempt
		}
	}
}

// WithMaxBodySize limits the body of a frame the server reads or writes
// (default protocol.DefaultMaxBodySize, 8 MiB). A request past it closes its
// connection; a reply past it is answered with an internal error.
func WithMaxBodySize(n int) Option {
	return func(o *options) { o.maxBody = n }
}

// WithIdleTimeout closes connections that send nothing, not even a heartbeat,
// for d (default 2 minutes; 0 never closes them). Consumers send heartbeats on
// idle connections well within the default.
func WithIdleTimeout(d time.Duration) Option {
	return func(o *options) { o.idleTimeout = d }
}

// WithLogger sets where the server logs connection errors and handler
// panics (default slog.Default()).
func WithLogger(l *slog.Logger) Option {
	return func(o *options) {
		if l != nil {
			o.logger = l
		}
	}
}

// WithDrainGrace sets how long Shutdown, once every request in flight has
// been answered, waits for clients to close their connections before closing
// them itself (default 1 s). shoal clients close a connection as soon as the
// last reply they await has arrived, so a request they sent just before they
// read the go-away is still read and answered "shutting down" rather than
// lost with the connection.
func WithDrainGrace(d time.Duration) Option {
	return func(o *options) { o.drainGrace = max(d, 0) }
}
