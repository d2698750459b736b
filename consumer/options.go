package consumer

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"slices"
	"time"

	"github.com/shoalrpc/shoal/loadbalance"
	"github.com/shoalrpc/shoal/protocol"
	"github.com/shoalrpc/shoal/stats"
)

// Options are typed by what they configure, so that an option given to
// something it does not apply to is a compile error: a DialOption configures
// a connection and is accepted by Dial, NewPool and NewClientProxy (whose
// connections it then configures); a PoolOption by NewPool and
// NewClientProxy; a ProxyOption by NewClientProxy alone. An invalid value
// makes the constructor return an error that names the option.

// DialOption configures a Client's connection: Dial, and the connections of
// a Pool or a ClientProxy.
type DialOption interface {
	PoolOption
	applyDial(*options)
}

// PoolOption configures a Pool, and a ClientProxy's pool.
type PoolOption interface {
	ProxyOption
	applyPool(*options)
}

// ProxyOption configures a ClientProxy.
type ProxyOption interface {
	applyProxy(*options)
}

// dialOption sets a connection's options, wherever it is given.
type dialOption func(*options)

func (f dialOption) applyDial(o *options)  { f(o) }
func (f dialOption) applyPool(o *options)  { f(o) }
func (f dialOption) applyProxy(o *options) { f(o) }

// poolOption sets a pool's options.
type poolOption func(*options)

func (f poolOption) applyPool(o *options)  { f(o) }
func (f poolOption) applyProxy(o *options) { f(o) }

// proxyOption sets a ClientProxy's options.
type proxyOption func(*options)

func (f proxyOption) applyProxy(o *options) { f(o) }

// invalid records that option was given a value it cannot take.
func (o *options) invalid(option string, value any, why string) {
	o.errs = append(o.errs, fmt.Errorf("consumer: %s(%v): %s", option, value, why))
}

// check returns the options' errors, joined; nil when every value was valid.
func (o *options) check() error { return errors.Join(o.errs...) }

type options struct {
	codec             protocol.Codec
	compress          bool // WithCompression
	maxBody           int
	dialTimeout       time.Duration
	heartbeatInterval time.Duration
	heartbeatTimeout  time.Duration
	writeTimeout      time.Duration
	probeAfter        time.Duration
	probeTimeout      time.Duration
	onDead            func() // tests: runs when the reader finds the connection dead, before it stops
	connsPerAddr      int
	dialer            func(ctx context.Context, network, address string) (net.Conn, error)
	streamWindow      int64 // WithStreamWindow; 0: protocol.StreamWindow
	maxPending        int
	tls               *tls.Config
	credentials       map[string]string
	interceptors      []Interceptor       // around each call (Client) or logical call (ClientProxy)
	streamIcs         []StreamInterceptor // around each stream's opening
	stats             stats.Handlers      // observe calls, attempts and connections
	underProxy        bool                // a ClientProxy's connection: the proxy runs the interceptors and reports the calls
	errs              []error             // invalid option values, for the constructor to return
	proxyOptions
}

func defaultOptions() options {
	return options{
		codec:             protocol.Msgpack,
		dialTimeout:       5 * time.Second,
		heartbeatInterval: 10 * time.Second,
		heartbeatTimeout:  30 * time.Second,
		writeTimeout:      10 * time.Second,
		probeAfter:        time.Second,
		probeTimeout:      time.Second,
		connsPerAddr:      1,
		maxPending:        10000,
		proxyOptions:      defaultProxyOptions(),
	}
}

func dialOptions(opts []DialOption) (options, error) {
	o := defaultOptions()
	for _, opt := range opts {
		if opt != nil {
			opt.applyDial(&o)
		}
	}
	return o, o.check()
}

func poolOptions(opts []PoolOption) (options, error) {
	o := defaultOptions()
	for _, opt := range opts {
		if opt != nil {
			opt.applyPool(&o)
		}
	}
	return o, o.check()
}

func proxyOptionsOf(opts []ProxyOption) (options, error) {
	o := defaultOptions()
	for _, opt := range opts {
		if opt != nil {
			opt.applyProxy(&o)
		}
	}
	if o.failMode < Failfast || o.failMode > Failbackup {
		o.invalid("WithFailMode", o.failMode, "not a fail mode")
	}
	return o, o.check()
}

// WithCodec sets the payload codec (default protocol.Msgpack).
func WithCodec(c protocol.Codec) DialOption {
	return dialOption(func(o *options) {
		if c == nil {
			o.invalid("WithCodec", c, "nil codec")
			return
		}
		o.codec = c
	})
}

// WithCompression compresses the payloads of the client's requests of at
// least protocol.CompressThreshold bytes (4 KiB) with s2
// (github.com/klauspost/compress), whatever the codec, and asks the server
// to answer alike: its large replies come compressed too. Stream messages
// are compressed the same way, both ways; a stream's window counts them by
// their decompressed size. Small payloads go as they are. Worth it for large, compressible payloads over a network
// slower than the CPU; it costs CPU on both sides. A compressed payload is
// checked against the body limit (WithMaxBodySize) by its decompressed size,
// before it is decompressed.
func WithCompression() DialOption {
	return dialOption(func(o *options) { o.compress = true })
}

// WithMaxBodySize limits the body of a frame the client reads or writes
// (default protocol.DefaultMaxBodySize, 8 MiB).
func WithMaxBodySize(n int) DialOption {
	return dialOption(func(o *options) {
		if n < 0 {
			o.invalid("WithMaxBodySize", n, "negative size")
			return
		}
		o.maxBody = n
	})
}

// WithDialTimeout bounds connecting to a server (default 5 s).
func WithDialTimeout(d time.Duration) DialOption {
	return dialOption(func(o *options) {
		if d <= 0 {
			o.invalid("WithDialTimeout", d, "must be more than 0")
			return
		}
		o.dialTimeout = d
	})
}

// WithHeartbeat sets how long an idle connection (no call pending) may stay
// silent before the client sends a heartbeat (default 10 s), and how long
// without any frame from the server before the connection is declared dead
// (default 30 s). A zero interval turns these heartbeats off. A connection
// with calls pending is watched more closely: see WithProbe.
func WithHeartbeat(interval, timeout time.Duration) DialOption {
	return dialOption(func(o *options) {
		if interval < 0 || timeout < 0 {
			o.invalid("WithHeartbeat", fmt.Sprintf("%v, %v", interval, timeout), "negative duration")
			return
		}
		o.heartbeatInterval = interval
		if timeout > 0 {
			o.heartbeatTimeout = timeout
		}
	})
}

// WithWriteTimeout bounds how long a write to the connection may make no
// progress (default 10 s): a server that stops reading is declared dead
// after it, and the connection's pending calls fail at once (ErrConnClosed
// for those whose requests were written, ErrNotSent for the rest). Calls do
// not wait for writes either way: a call returns when its context ends. 0
// turns the timeout off.
func WithWriteTimeout(d time.Duration) DialOption {
	return dialOption(func(o *options) {
		if d < 0 {
			o.invalid("WithWriteTimeout", d, "negative duration")
			return
		}
		o.writeTimeout = d
	})
}

// WithProbe sets how a connection with calls pending is watched for a server
// that vanished without a word (a crashed host, a pulled cable): when it has
// received nothing for after (default 1 s), a heartbeat probes it, and when
// nothing arrives within timeout more (default 1 s), it is declared dead and
// its pending calls fail with ErrConnClosed, which Failover retries on
// another instance. A live server answers the probe from its reader however
// long its methods run. With the defaults a silent server is found within
// about 2.5 s of its last frame. A zero after turns probing off (the
// heartbeat timeout of WithHeartbeat then is the only bound).
func WithProbe(after, timeout time.Duration) DialOption {
	return dialOption(func(o *options) {
		if after < 0 || timeout < 0 {
			o.invalid("WithProbe", fmt.Sprintf("%v, %v", after, timeout), "negative duration")
			return
		}
		o.probeAfter = after
		if timeout > 0 {
			o.probeTimeout = timeout
		}
	})
}

// WithDialer makes connections with dial instead of a net.Dialer, e.g. to
// wrap or instrument them. The dial timeout still bounds ctx. The client
// bounds its writes with write deadlines, and resumes a write a deadline cut
// short from the count it returned, as net.TCPConn allows: a connection that
// transforms the bytes it writes (encrypts, compresses) must be a *tls.Conn
// or honour that too.
func WithDialer(dial func(ctx context.Context, network, address string) (net.Conn, error)) DialOption {
	return dialOption(func(o *options) { o.dialer = dial })
}

// WithStreamWindow sets the receive window of each stream's messages from
// the server (server and bidirectional streams), in bytes: at least
// protocol.StreamWindow (64 KiB, the default), at most
// protocol.MaxWindowCredit. The server sends at most this much ahead of
// what the caller has taken, so one stream moves at most a window per
// round trip: widen it for fast streams over long links. A caller that
// stops reading holds up to a window per stream.
func WithStreamWindow(n int) DialOption {
	return dialOption(func(o *options) {
		if n < protocol.StreamWindow || n > protocol.MaxWindowCredit {
			o.invalid("WithStreamWindow", n, fmt.Sprintf("must be from %d (protocol.StreamWindow) to %d bytes", protocol.StreamWindow, protocol.MaxWindowCredit))
			return
		}
		o.streamWindow = int64(n)
	})
}

// WithMaxPending bounds the calls awaiting replies on one connection
// (default 10,000); a call past it fails at once with ErrTooManyPending,
// without being sent.
func WithMaxPending(n int) DialOption {
	return dialOption(func(o *options) {
		if n < 0 {
			o.invalid("WithMaxPending", n, "negative count")
			return
		}
		o.maxPending = n
	})
}

// WithTLS dials TLS with cfg. An empty cfg.ServerName is taken from the
// address's host. For mutual TLS give cfg.Certificates.
func WithTLS(cfg *tls.Config) DialOption {
	return dialOption(func(o *options) { o.tls = cfg })
}

// WithCredentials sends md with every call, for the server's auth check
// (provider.WithAuth); metadata set on a call's context with WithMetadata
// is sent too and wins on a clash.
func WithCredentials(md map[string]string) DialOption {
	return dialOption(func(o *options) { o.credentials = maps.Clone(md) })
}

// WithConnsPerAddr sets how many long connections a Pool keeps to each
// address (default 1: one multiplexed connection carries many calls).
func WithConnsPerAddr(n int) PoolOption {
	return poolOption(func(o *options) {
		if n < 1 {
			o.invalid("WithConnsPerAddr", n, "must be at least 1")
			return
		}
		o.connsPerAddr = n
	})
}

// WithInterceptors adds interceptors around every call, in order: the first
// given is the outermost. On a Client they wrap each Call; on a ClientProxy
// each logical call, retries and hedges included (WithAttemptInterceptors
// wraps each attempt). The chain is built once; with none, a call pays
// nothing for it.
func WithInterceptors(ics ...Interceptor) DialOption {
	return dialOption(func(o *options) {
		for _, ic := range ics {
			if ic != nil {
				o.interceptors = append(o.interceptors, ic)
			}
		}
	})
}

// WithAttemptInterceptors adds interceptors around each attempt a
// ClientProxy makes on one instance, in order; AttemptOf(ctx) tells which
// instance and which attempt. A Client ignores them, and so do streams
// (their stream interceptors run once per stream, around every open tried;
// stats handlers still see each open as an attempt).
func WithAttemptInterceptors(ics ...Interceptor) ProxyOption {
	return proxyOption(func(o *options) {
		for _, ic := range ics {
			if ic != nil {
				o.attemptInterceptors = append(o.attemptInterceptors, ic)
			}
		}
	})
}

// WithStatsHandler adds a handler that observes calls, attempts (on a
// ClientProxy), connections and the proxy's own decisions (see package
// stats). Several may be added; each sees every event, in order. A stream
// is one call (RPCInfo.Stream) from its open to its end; on a ClientProxy
// each instance its open tried is an attempt, the last one lasting as long
// as the stream.
func WithStatsHandler(h stats.Handler) DialOption {
	return dialOption(func(o *options) {
		if h != nil {
			o.stats = append(o.stats, h)
		}
	})
}

type metadataKey struct{}

// WithMetadata returns a context whose calls carry md to the server, where
// provider.Metadata reads it. The map must not be modified afterwards.
func WithMetadata(ctx context.Context, md map[string]string) context.Context {
	return context.WithValue(ctx, metadataKey{}, md)
}

// OutgoingMetadata returns the metadata WithMetadata put on ctx, or nil. The
// map must not be modified: to add to it, copy it and call WithMetadata
// with the copy (as a tracing stats handler does to carry trace context).
func OutgoingMetadata(ctx context.Context) map[string]string { return metadataFrom(ctx) }

func metadataFrom(ctx context.Context) map[string]string {
	md, _ := ctx.Value(metadataKey{}).(map[string]string)
	return md
}

// ClientProxy options. Defaults: round robin, Failfast, 2 retries (used by
// Failover, Failretry and Failbackup), no per-attempt timeout, backoff from
// 10 ms to 500 ms with 20 % jitter, a retry budget of 100 tokens refilled by
// 0.1 per success, a 50 ms hedging delay, ejection after 3 consecutive
// connection failures for 1 s doubling up to 30 s, a registry fallback for
// instances that answered within a minute, logs to slog.Default().

type proxyOptions struct {
	attemptInterceptors []Interceptor
	newBalancer         func() loadbalance.Balancer
	lbMode              loadbalance.Mode
	lbOpts              []loadbalance.Option
	failMode            FailMode
	retries             int
	attemptTimeout      time.Duration
	backoffBase         time.Duration
	backoffCap          time.Duration
	backoffJitter       float64
	budgetTokens        float64
	budgetRatio         float64
	hedgeDelay          time.Duration
	idempotent          map[string]bool
	waitInstances       time.Duration
	ejectAfter          int
	ejectBase           time.Duration
	ejectMax            time.Duration
	fallbackWindow      time.Duration
	healthInterval      time.Duration // WithHealthCheck; 0: no checks
	healthTimeout       time.Duration
	logger              *slog.Logger
}

func defaultProxyOptions() proxyOptions {
	return proxyOptions{
		lbMode:        loadbalance.RoundRobin,
		failMode:      Failfast,
		retries:       2,
		backoffBase:   10 * time.Millisecond,
		backoffCap:    500 * time.Millisecond,
		backoffJitter: 0.2,
		budgetTokens:  100,
		budgetRatio:   0.1,
		hedgeDelay:    50 * time.Millisecond,
		ejectAfter:    3,
		ejectBase:     time.Second,
		ejectMax:      30 * time.Second,
		// A minute: a consumer that calls at all calls more often than
		// that, and a list older than that is not worth resurrecting.
		fallbackWindow: time.Minute,
		logger:         slog.Default(),
	}
}

// WithLoadBalance sets the load-balancing policy (default loadbalance.RoundRobin).
func WithLoadBalance(m loadbalance.Mode, opts ...loadbalance.Option) ProxyOption {
	return proxyOption(func(o *options) {
		if !slices.Contains(loadbalance.Modes(), m) {
			o.invalid("WithLoadBalance", m, "not a load-balancing mode")
			return
		}
		o.lbMode, o.lbOpts = m, opts
	})
}

// WithBalancer makes a ClientProxy pick instances with the balancer newB
// returns, one written outside shoal, instead of a built-in policy
// (WithLoadBalance). The proxy calls newB once, gives the balancer every
// instance list with Update, and calls the done func of every Pick with the
// attempt's outcome: nil when the instance answered, the error when it
// failed in a way that says something about the instance (dial refused,
// connection broken, timed out).
func WithBalancer(newB func() loadbalance.Balancer) ProxyOption {
	return proxyOption(func(o *options) { o.newBalancer = newB })
}

// WithFailMode sets what happens when a call may have run and failed
// (default Failfast).
func WithFailMode(m FailMode) ProxyOption {
	return proxyOption(func(o *options) { o.failMode = m })
}

// WithRetries sets how many more attempts Failover, Failretry and Failbackup
// make after a maybe-executed failure (default 2).
func WithRetries(n int) ProxyOption {
	return proxyOption(func(o *options) {
		if n < 0 {
			o.invalid("WithRetries", n, "negative count")
			return
		}
		o.retries = n
	})
}

// WithAttemptTimeout bounds each attempt (default none: only the caller's
// deadline bounds the call). An attempt that times out may have run.
func WithAttemptTimeout(d time.Duration) ProxyOption {
	return proxyOption(func(o *options) {
		if d < 0 {
			o.invalid("WithAttemptTimeout", d, "negative duration")
			return
		}
		o.attemptTimeout = d
	})
}

// WithBackoff sets the wait before retry n: base·2ⁿ⁻¹ capped at cap, plus up
// to jitter (a fraction) of it at random.
func WithBackoff(base, cap time.Duration, jitter float64) ProxyOption {
	return proxyOption(func(o *options) {
		value := fmt.Sprintf("%v, %v, %v", base, cap, jitter)
		switch {
		case base < 0 || cap < 0:
			o.invalid("WithBackoff", value, "negative duration")
		case cap < base:
			o.invalid("WithBackoff", value, "cap below base")
		case jitter < 0 || jitter > 1:
			o.invalid("WithBackoff", value, "jitter must be from 0 to 1")
		default:
			o.backoffBase, o.backoffCap, o.backoffJitter = base, cap, jitter
		}
	})
}

// WithRetryBudget sets the token bucket that throttles maybe-executed
// retries, as gRPC's retry throttling: every maybe-executed failure takes a
// token, every answer from a server gives back ratio, and retries stop while
// half the tokens or fewer are left. The default, 100 and 0.1, lets a burst of
// 50 retries through (an instance dying under load) and then about one retry
// per ten successes. Retries of calls that were refused without running
// spend nothing; they are bounded by one try per instance. tokens 0 turns
// the budget off.
func WithRetryBudget(tokens, ratio float64) ProxyOption {
	return proxyOption(func(o *options) {
		if tokens < 0 || ratio < 0 {
			o.invalid("WithRetryBudget", fmt.Sprintf("%v, %v", tokens, ratio), "negative value")
			return
		}
		o.budgetTokens, o.budgetRatio = tokens, ratio
	})
}

// WithHedging sets the delay after which Failbackup sends a second attempt
// of an idempotent call to another instance (default 50 ms).
func WithHedging(delay time.Duration) ProxyOption {
	return proxyOption(func(o *options) {
		if delay <= 0 {
			o.invalid("WithHedging", delay, "must be more than 0")
			return
		}
		o.hedgeDelay = delay
	})
}

// WithIdempotent marks methods ("Service.Method") safe to run twice, which
// Failbackup may hedge.
func WithIdempotent(methods ...string) ProxyOption {
	return proxyOption(func(o *options) {
		if o.idempotent == nil {
			o.idempotent = make(map[string]bool)
		}
		for _, m := range methods {
			o.idempotent[m] = true
		}
	})
}

// WithWaitForInstances makes NewClientProxy wait up to d for the service's
// first instance instead of failing at once when there is none.
func WithWaitForInstances(d time.Duration) ProxyOption {
	return proxyOption(func(o *options) {
		if d < 0 {
			o.invalid("WithWaitForInstances", d, "negative duration")
			return
		}
		o.waitInstances = d
	})
}

// WithOutlierEjection leaves out of picks an instance after consecutive
// connection failures (dial refused, connection broken, attempt timed out)
// for base, doubling while it keeps failing up to max; then one probe call
// decides whether it is back. At least one instance is always left.
// consecutive 0 turns ejection off.
func WithOutlierEjection(consecutive int, base, max time.Duration) ProxyOption {
	return proxyOption(func(o *options) {
		value := fmt.Sprintf("%d, %v, %v", consecutive, base, max)
		switch {
		case consecutive < 0:
			o.invalid("WithOutlierEjection", value, "negative count")
		case consecutive > 0 && (base <= 0 || max < base):
			o.invalid("WithOutlierEjection", value, "want 0 < base <= max")
		default:
			o.ejectAfter, o.ejectBase, o.ejectMax = consecutive, base, max
		}
	})
}

// WithRegistryFallback sets the window of the registry fallback: when the
// registry would leave the proxy with no instance of the service (a Consul
// agent that restarted empty, a registry that briefly lists no passing
// instance) while one of its instances answered within window, the proxy
// keeps calling the last known instances until the registry lists some
// again, logs it at WARN, and reports it with InFallback. A last known
// instance that refuses a call (dial refused, "shutting down") is dropped
// from the fallback; with none left, calls fail with
// loadbalance.ErrNoInstances. Default one minute; 0 turns the fallback off,
// so that an emptied registry empties the proxy at once (to take a live
// cluster out of rotation by deregistering it, say).
func WithRegistryFallback(window time.Duration) ProxyOption {
	return proxyOption(func(o *options) {
		if window < 0 {
			o.invalid("WithRegistryFallback", window, "negative duration")
			return
		}
		o.fallbackWindow = window
	})
}

// WithLogger sets where a ClientProxy logs what it decides on its own, such
// as entering and leaving a registry fallback (default slog.Default(); a nil
// logger keeps the default). Records carry the service name.
func WithLogger(l *slog.Logger) ProxyOption {
	return proxyOption(func(o *options) {
		if l != nil {
			o.logger = l
		}
	})
}
