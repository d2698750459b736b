// Package etcd is a naming.Registry on etcd v3 (go.etcd.io/etcd/client/v3).
//
// A provider's instance is a JSON value under prefix/service/id, bound to a
// lease with a TTL that the registry keeps alive; when the lease is lost
// (etcd restarted with new data, a partition longer than the TTL) it grants
// a new one and puts the instance again by itself. A consumer's Watch reads
// the prefix, then watches it from the next revision, and delivers full
// snapshots.
//
// It lives in its own package so the core never links etcd's client; a
// program that wants etcd:// URLs imports it.
package etcd

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	grpcbackoff "google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/shoalrpc/shoal/naming"
)

// Scheme is the URL scheme Open accepts.
const Scheme = "etcd"

// Defaults; each can be changed with an Option (or a URL parameter, see Open).
const (
	// DefaultPrefix is the key prefix instances live under.
	DefaultPrefix = "/shoal"
	// DefaultTTL is the TTL of an instance's lease; etcd rounds it up to
	// whole seconds (and to its own minimum, about 2 s).
	DefaultTTL = 10 * time.Second
	// DefaultRequestTimeout bounds every request but watches.
	DefaultRequestTimeout = 5 * time.Second
	// DefaultDialTimeout bounds connecting to etcd.
	DefaultDialTimeout = 5 * time.Second
	// DefaultResync is how often a watch checks that its view matches etcd
	// (same number of keys, revision not gone backwards), which also notices
	// an etcd that lost its data.
	DefaultResync = 10 * time.Second
	// DefaultBackoffMin and DefaultBackoffMax bound the exponential backoff
	// (with jitter) after a failed request.
	DefaultBackoffMin = 250 * time.Millisecond
	DefaultBackoffMax = 10 * time.Second
)

// Option configures an etcd registry.
type Option func(*options)

type options struct {
	prefix      string
	ttl         time.Duration
	reqTimeout  time.Duration
	dialTimeout time.Duration
	resync      time.Duration
	backoffMin  time.Duration
	backoffMax  time.Duration
	tls         *tls.Config
	tlsSource   string // where the TLS settings came from, for errors
	user, pass  string
	authSource  string // where the credentials came from, for errors (never the password)
	logger      *slog.Logger
	endpoints   []string // for errors
}

// WithPrefix sets the key prefix (default DefaultPrefix).
func WithPrefix(p string) Option { return func(o *options) { o.prefix = p } }

// WithTTL sets the lease TTL of registered instances (default DefaultTTL).
// A provider that stops (killed, partitioned) leaves the list after it.
func WithTTL(d time.Duration) Option { return func(o *options) { o.ttl = d } }

// WithRequestTimeout bounds every request but watches (default
// DefaultRequestTimeout).
func WithRequestTimeout(d time.Duration) Option { return func(o *options) { o.reqTimeout = d } }

// WithDialTimeout bounds connecting to etcd (default DefaultDialTimeout).
func WithDialTimeout(d time.Duration) Option { return func(o *options) { o.dialTimeout = d } }

// WithResync sets how often a watch checks its view against etcd (default
// DefaultResync).
func WithResync(d time.Duration) Option { return func(o *options) { o.resync = d } }

// WithBackoff sets the bounds of the backoff after failed requests
// (defaults DefaultBackoffMin, DefaultBackoffMax).
func WithBackoff(minDelay, maxDelay time.Duration) Option {
	return func(o *options) { o.backoffMin, o.backoffMax = minDelay, maxDelay }
}

// WithTLS connects with TLS configured by cfg.
func WithTLS(cfg *tls.Config) Option {
	return func(o *options) { o.tls, o.tlsSource = cfg, "WithTLS" }
}

// WithAuth authenticates as user with password (etcd's auth must be on).
func WithAuth(user, password string) Option {
	return func(o *options) { o.user, o.pass, o.authSource = user, password, "WithAuth" }
}

// WithLogger sets where the registry reports lost leases, re-registrations
// and watch errors (default: discarded).
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// Stats counts what a registry has done since it was created.
type Stats struct {
	Registrations   uint64 // successful puts of an instance, first ones and re-registrations
	Reregistrations uint64 // puts redone because the lease was lost
	LeaseLosses     uint64 // keep-alive streams that ended while registered
	WatchRestarts   uint64 // watches re-read from scratch (compaction, broken watch, etcd reset)
	WatchErrors     uint64 // failed reads of a watch
	WatchChecks     uint64 // resync checks made by watches (see WithResync)
}

// Registry is a naming.Registry on etcd.
type Registry struct {
	cli       *clientv3.Client
	endpoints []string
	o         options

	ctx    context.Context // ended by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.Mutex
	closed bool
	regs   map[string]*reg // by key

	registrations, reregistrations, leaseLosses, watchRestarts, watchErrors, watchChecks atomic.Uint64
}

// New returns a registry on the etcd cluster at endpoints ("host:port" or
// "https://host:port"). It does not read the environment (Open does). No
// request is made until the registry is used.
func New(endpoints []string, opts ...Option) (*Registry, error) {
	o := options{
		prefix:      DefaultPrefix,
		ttl:         DefaultTTL,
		reqTimeout:  DefaultRequestTimeout,
		dialTimeout: DefaultDialTimeout,
		resync:      DefaultResync,
		backoffMin:  DefaultBackoffMin,
		backoffMax:  DefaultBackoffMax,
	}
	for _, opt := range opts {
		opt(&o)
	}
	o.prefix = "/" + strings.Trim(o.prefix, "/")
	o.endpoints = endpoints
	switch {
	case len(endpoints) == 0:
		return nil, errors.New("naming/etcd: no endpoints")
	case o.ttl < time.Second:
		return nil, fmt.Errorf("naming/etcd: TTL %v is too short (minimum 1s; etcd counts whole seconds)", o.ttl)
	case o.reqTimeout <= 0 || o.dialTimeout <= 0:
		return nil, fmt.Errorf("naming/etcd: timeouts (request %v, dial %v) must be positive", o.reqTimeout, o.dialTimeout)
	case o.resync <= 0:
		return nil, fmt.Errorf("naming/etcd: resync %v must be positive", o.resync)
	case o.backoffMin <= 0 || o.backoffMax < o.backoffMin:
		return nil, fmt.Errorf("naming/etcd: backoff bounds %v..%v are invalid", o.backoffMin, o.backoffMax)
	case o.pass != "" && o.user == "":
		return nil, fmt.Errorf("naming/etcd: a password without a user (from %s)", o.authSource)
	}
	if o.logger == nil {
		o.logger = slog.New(slog.DiscardHandler)
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   endpoints,
		DialTimeout: o.dialTimeout,
		TLS:         o.tls,
		Username:    o.user,
		Password:    o.pass,
		Logger:      zap.NewNop(),
		// Notice a dead connection while idle, so keep-alives and
		// watches move on quickly.
		DialKeepAliveTime:    5 * time.Second,
		DialKeepAliveTimeout: 3 * time.Second,
		// gRPC's reconnect backoff grows to 2 minutes by default; after an
		// etcd restart, keep-alives, re-registrations and watches would
		// wait on it. Reconnect within the registry's own backoff bounds.
		DialOptions: []grpc.DialOption{grpc.WithConnectParams(grpc.ConnectParams{
			Backoff: grpcbackoff.Config{
				BaseDelay:  o.backoffMin,
				Multiplier: 1.6,
				Jitter:     0.2,
				MaxDelay:   o.backoffMax,
			},
			MinConnectTimeout: o.dialTimeout,
		})},
	})
	if err != nil {
		return nil, fmt.Errorf("naming/etcd: client for %s: %w", strings.Join(endpoints, ","), describe(err, &o))
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Registry{cli: cli, endpoints: endpoints, o: o, ctx: ctx, cancel: cancel, regs: map[string]*reg{}}, nil
}

// Stats returns the registry's counters.
func (r *Registry) Stats() Stats {
	return Stats{
		Registrations:   r.registrations.Load(),
		Reregistrations: r.reregistrations.Load(),
		LeaseLosses:     r.leaseLosses.Load(),
		WatchRestarts:   r.watchRestarts.Load(),
		WatchErrors:     r.watchErrors.Load(),
		WatchChecks:     r.watchChecks.Load(),
	}
}

// describe adds to an error from etcd what the user can act on: for a
// refused login or permission, which credentials were used and where they
// came from; for a TLS failure, where the TLS settings came from.
func describe(err error, o *options) error {
	switch {
	case errors.Is(err, rpctypes.ErrAuthFailed), errors.Is(err, rpctypes.ErrInvalidAuthToken),
		errors.Is(err, rpctypes.ErrUserEmpty), errors.Is(err, rpctypes.ErrAuthOldRevision):
		if o.user == "" {
			return fmt.Errorf("%w (no user given: set ETCDCTL_USER and ETCDCTL_PASSWORD, or use WithAuth)", err)
		}
		return fmt.Errorf("%w (user %q from %s)", err, o.user, o.authSource)
	case errors.Is(err, rpctypes.ErrPermissionDenied):
		if o.user == "" {
			return fmt.Errorf("%w (no user given: set ETCDCTL_USER and ETCDCTL_PASSWORD, or use WithAuth)", err)
		}
		return fmt.Errorf("%w (user %q from %s lacks a role with readwrite on the key prefix %q)", err, o.user, o.authSource, o.prefix)
	case errors.Is(err, rpctypes.ErrAuthNotEnabled):
		return fmt.Errorf("%w (user %q from %s given, but etcd's auth is off)", err, o.user, o.authSource)
	}
	tlsNote := "TLS off: set ETCDCTL_CACERT, ?cacert= or ?tls=true for a TLS endpoint"
	if o.tls != nil {
		tlsNote = "TLS settings from " + o.tlsSource
	}
	msg := err.Error()
	switch {
	case strings.Contains(msg, "tls:") || strings.Contains(msg, "x509:") || strings.Contains(msg, "certificate"):
		return fmt.Errorf("%w (%s)", err, tlsNote)
	case errors.Is(err, context.DeadlineExceeded) || status.Code(err) == codes.Unavailable || status.Code(err) == codes.DeadlineExceeded:
		// gRPC keeps the reason a connection failed to itself (a refused
		// TLS handshake looks like a silent etcd): say what was used.
		return fmt.Errorf("%w (no answer from etcd at %s; %s)", err, strings.Join(o.endpoints, ","), tlsNote)
	}
	return err
}

// record is an instance as stored in etcd.
type record struct {
	ID      string            `json:"id"`
	Service string            `json:"service"`
	Addr    string            `json:"addr"`
	Weight  int               `json:"weight,omitempty"`
	Tags    []string          `json:"tags,omitempty"`
	Meta    map[string]string `json:"meta,omitempty"`
}

// serviceKey returns the key prefix of service's instances, with the
// trailing slash (so "arith" does not match "arithmetic").
func (r *Registry) serviceKey(service string) string {
	return r.o.prefix + "/" + service + "/"
}

// decode turns a stored value into an instance of service, or nil (with a
// log line) for a value that is not one: another writer's key must not break
// the consumer.
func (r *Registry) decode(service string, key, value []byte) *naming.Instance {
	var rec record
	if err := json.Unmarshal(value, &rec); err != nil {
		r.o.logger.Warn("etcd: skipping a value that is not a shoal instance", "key", string(key), "err", err)
		return nil
	}
	if rec.ID == "" {
		rec.ID = string(key[strings.LastIndexByte(string(key), '/')+1:])
	}
	addr, err := naming.CanonicalAddr(rec.Addr)
	if err != nil {
		r.o.logger.Warn("etcd: skipping an instance with a bad address", "key", string(key), "err", err)
		return nil
	}
	in := &naming.Instance{ID: rec.ID, Service: service, Addr: addr, Weight: max(rec.Weight, 1)}
	if len(rec.Tags) > 0 {
		in.Tags = rec.Tags
	}
	if len(rec.Meta) > 0 {
		in.Meta = rec.Meta
	}
	return in
}

// Fetch returns the instances of service, sorted by ID.
func (r *Registry) Fetch(ctx context.Context, service string) ([]*naming.Instance, error) {
	if r.isClosed() {
		return nil, naming.ErrClosed
	}
	ctx, cancel := context.WithTimeout(ctx, r.o.reqTimeout)
	defer cancel()
	resp, err := r.cli.Get(ctx, r.serviceKey(service), clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("naming/etcd: fetch %s: %w", service, describe(err, &r.o))
	}
	var out []*naming.Instance
	for _, kv := range resp.Kvs {
		if in := r.decode(service, kv.Key, kv.Value); in != nil {
			out = append(out, in)
		}
	}
	naming.SortInstances(out)
	return out, nil
}

// Close revokes the leases of every instance still registered through this
// registry (each bounded by the request timeout), ends every watch, closes
// their channels, waits for all goroutines and closes the client. It is
// idempotent.
func (r *Registry) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	regs := make([]*reg, 0, len(r.regs))
	for _, g := range r.regs {
		regs = append(regs, g)
	}
	r.mu.Unlock()
	var wg sync.WaitGroup
	for _, g := range regs {
		wg.Go(g.cancel)
	}
	wg.Wait()
	r.cancel()
	r.wg.Wait()
	return r.cli.Close()
}

func (r *Registry) isClosed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.closed
}

// backoff is exponential backoff with jitter: the n-th delay is drawn from
// [step/2, step] where step = min·2ⁿ, capped at max.
type backoff struct {
	min, max time.Duration
	n        int
}

func (b *backoff) next() time.Duration {
	step := b.min
	for i := 0; i < b.n && step < b.max; i++ {
		step *= 2
	}
	if step > b.max {
		step = b.max
	} else {
		b.n++
	}
	return step/2 + rand.N(step/2+1)
}

func (b *backoff) reset() { b.n = 0 }

// sleepCtx waits for d or until ctx ends; it reports whether d elapsed.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
