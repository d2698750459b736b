package provider

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"time"

	"github.com/shoalrpc/shoal/naming"
	"github.com/shoalrpc/shoal/stats"
)

// Option configures a Server. An invalid value (a negative size, count or
// duration) makes Serve return an error naming the option.
type Option func(*options)

type options struct {
	registry         naming.Registry
	instance         naming.Instance
	maxBody          int
	idleTimeout      time.Duration
	registerAttempts int
	registerTimeout  time.Duration
	drainGrace       time.Duration
	readTimeout      time.Duration
	writeTimeout     time.Duration
	maxConns         int
	maxPerConn       int
	maxPerServer     int
	interceptors     []Interceptor
	streamIcs        []StreamInterceptor
	maxStreams       int
	streamWindow     int64
	stats            stats.Handlers
	tls              *tls.Config
	noHealth         bool // WithoutHealth
	logger           *slog.Logger
	noHTTP           bool    // WithoutHTTP
	noReflection     bool    // WithoutReflection
	errs             []error // invalid option values: Serve returns them
}

// invalid records that option was given a value it cannot take.
func (o *options) invalid(option string, value any, why string) {
	o.errs = append(o.errs, fmt.Errorf("provider: %s(%v): %s", option, value, why))
}

func defaultOptions() options {
	return options{
		idleTimeout:      2 * time.Minute,
		registerAttempts: 3,
		registerTimeout:  10 * time.Second,
		drainGrace:       time.Second,
		readTimeout:      30 * time.Second,
		writeTimeout:     30 * time.Second,
		maxStreams:       DefaultMaxStreams,
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
		if n < 1 || perAttempt <= 0 {
			o.invalid("WithRegisterAttempts", fmt.Sprintf("%d, %v", n, perAttempt), "want at least 1 attempt of more than 0s")
			return
		}
		o.registerAttempts, o.registerTimeout = n, perAttempt
	}
}

// WithMaxBodySize limits the body of a frame the server reads or writes
// (default protocol.DefaultMaxBodySize, 8 MiB). A request past it is
// answered "too large" (protocol.StatusTooLarge, naming its size and the
// limit) without running, its body read and discarded as it arrives, and the
// connection's other calls carry on; a header announcing more than
// protocol.SkipFactor times the limit closes the connection at once, and a
// body that stalls is cut by the read timeout. A reply past the limit is
// answered with an internal error.
//
// The limit also bounds what one connection may hold, at twice it (see
// WithTimeouts).
func WithMaxBodySize(n int) Option {
	return func(o *options) {
		if n < 0 {
			o.invalid("WithMaxBodySize", n, "negative size")
			return
		}
		o.maxBody = n
	}
}

// WithIdleTimeout closes connections that send nothing, not even a heartbeat,
// for d (default 2 minutes; 0 never closes them). Consumers send heartbeats on
// idle connections well within the default.
func WithIdleTimeout(d time.Duration) Option {
	return func(o *options) {
		if d < 0 {
			o.invalid("WithIdleTimeout", d, "negative duration")
			return
		}
		o.idleTimeout = d
	}
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
	return func(o *options) {
		if d < 0 {
			o.invalid("WithDrainGrace", d, "negative duration")
			return
		}
		o.drainGrace = d
	}
}

// WithTimeouts sets how long a frame may take to arrive once its first byte
// has (read, default 30 s: a peer that sends part of a frame and stalls is
// disconnected; the deadline is set once per frame, so a frame never gets
// longer), and how long a write to a peer may block (write, default 30 s: a
// peer that stops reading its replies is disconnected).
//
// What one connection holds is bounded by twice the body limit: the frames
// queued for it and not yet written, and for each request running its frame
// and a reply the size of its method's recent ones (64 KiB before the
// method has replied once). At the bound, while its peer has not taken
// what is queued, the server reads nothing more from the connection, so a
// peer that never reads costs about that much memory until the write
// timeout cuts it; while requests running alone hold the bound, new ones
// are answered "overloaded", not run, after a wait of 50 ms for room
// (cancel frames and heartbeats are still read). A method whose reply size
// swings with its arguments may overshoot the bound by the replies of the
// calls already running when it does; WithMaxConcurrent bounds those.
//
// Zero turns a timeout off; with no write timeout, a connection whose peer
// never reads waits, holding its bound, until the peer reads or goes.
func WithTimeouts(read, write time.Duration) Option {
	return func(o *options) {
		if read < 0 || write < 0 {
			o.invalid("WithTimeouts", fmt.Sprintf("%v, %v", read, write), "negative duration")
			return
		}
		o.readTimeout, o.writeTimeout = read, write
	}
}

// WithMaxConns limits the open connections (default 0: no limit). A
// connection past the limit is told to go away at once, the requests it
// sends are answered "overloaded" without running, so clients go elsewhere,
// and it is closed 1 s after it arrived (sooner if the client closes it, as
// shoal clients do once answered). Refused connections do not count against
// the limit.
func WithMaxConns(n int) Option {
	return func(o *options) {
		if n < 0 {
			o.invalid("WithMaxConns", n, "negative count")
			return
		}
		o.maxConns = n
	}
}

// WithMaxConcurrent limits the requests in flight on one connection and on
// the whole server (default 0: no limit). A request past either limit is
// answered "overloaded" at once, without running; nothing is queued.
func WithMaxConcurrent(perConn, perServer int) Option {
	return func(o *options) {
		if perConn < 0 || perServer < 0 {
			o.invalid("WithMaxConcurrent", fmt.Sprintf("%d, %d", perConn, perServer), "negative count")
			return
		}
		o.maxPerConn, o.maxPerServer = perConn, perServer
	}
}

// AuthFunc checks a request's credentials before its method runs: method is
// "Service.Method", md the metadata the caller sent (consumer.WithCredentials
// or consumer.WithMetadata). A non-nil error refuses the call, which is then
// answered "unauthenticated" and not executed. It runs on the request's own
// goroutine and may block; ctx carries the caller's deadline.
type AuthFunc func(ctx context.Context, method string, md map[string]string) error

// WithAuth checks every request, and every stream, with auth before its method runs. It is a
// convenience for an interceptor that refuses with
// protocol.StatusUnauthenticated; it runs first, before the interceptors of
// WithInterceptors. A nil auth is ignored.
func WithAuth(auth AuthFunc) Option {
	return func(o *options) {
		if auth != nil {
			o.interceptors = append([]Interceptor{authInterceptor(auth)}, o.interceptors...)
			o.streamIcs = append([]StreamInterceptor{authStreamInterceptor(auth)}, o.streamIcs...)
		}
	}
}

// WithInterceptors adds interceptors around every request's method, in
// order: the first given is the outermost. Several calls add to the chain.
// The chain is built once, by NewServer; with none, a request pays nothing
// for it.
func WithInterceptors(ics ...Interceptor) Option {
	return func(o *options) {
		for _, ic := range ics {
			if ic != nil {
				o.interceptors = append(o.interceptors, ic)
			}
		}
	}
}

// WithStatsHandler adds a handler that observes every request and every
// connection (see package stats). Several may be added; each sees every
// event, in order.
func WithStatsHandler(h stats.Handler) Option {
	return func(o *options) {
		if h != nil {
			o.stats = append(o.stats, h)
		}
	}
}

// WithTLS serves TLS with cfg on every listener Serve is given. For mutual
// TLS set cfg.ClientAuth to tls.RequireAndVerifyClientCert and cfg.ClientCAs.
// The handshake must finish within the read timeout.
func WithTLS(cfg *tls.Config) Option {
	return func(o *options) { o.tls = cfg }
}
