// Package loadbalance chooses one instance of a service for each call.
//
// A Balancer holds the current set of instances, replaced as a whole by Update,
// and returns one of them from Pick together with a done callback that the
// caller invokes once the call has finished. Policies (one file each):
//
//	random               uniform choice
//	roundrobin           each instance in turn, from a random start
//	weighted_roundrobin  nginx's smooth weighted round robin
//	weighted_random      choice proportional to weight
//	consistent_hash      hash ring with virtual nodes, key from WithHashKey
//	least_connections    fewest calls in flight
//	p2c_ewma             power of two choices on peak-EWMA latency × load
//
// Update stores an immutable snapshot (copy-on-write); Pick reads it without a
// lock, except for least_connections, which keeps its instances in a heap
// ordered by calls in flight under a small mutex (O(log n) per pick and per
// done). weighted_roundrobin works out nginx's cycle once per Update, so a
// pick is one atomic add. State that must survive updates (calls in flight,
// latency estimates, the position in a cycle) is kept per instance ID.
//
// Instances are identified by ID (by Addr when ID is empty); nil entries and
// later duplicates of an ID are ignored. Weights are read with
// EffectiveWeight at Update time and clamped to MaxWeight. The instances passed
// to Update must not be modified afterwards.
package loadbalance

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/shoalrpc/shoal/naming"
)

// Mode names a load-balancing policy.
type Mode int

// The policies. The zero Mode is Random.
const (
	Random             Mode = iota // uniform choice
	RoundRobin                     // i = (i + 1) mod n from a random start
	WeightedRoundRobin             // nginx smooth weighted round robin
	WeightedRandom                 // choice proportional to weight
	ConsistentHash                 // hash ring keyed by WithHashKey or the caller's identity
	LeastConnections               // fewest calls in flight, ties at random
	P2CEWMA                        // power of two choices on EWMA latency × (in flight + 1)
)

// modeNames is indexed by Mode; it is the single source of the names.
var modeNames = [...]string{
	Random:             "random",
	RoundRobin:         "roundrobin",
	WeightedRoundRobin: "weighted_roundrobin",
	WeightedRandom:     "weighted_random",
	ConsistentHash:     "consistent_hash",
	LeastConnections:   "least_connections",
	P2CEWMA:            "p2c_ewma",
}

// ErrNoInstances is returned, possibly wrapped, by Pick when the balancer holds
// no instance. Test for it with errors.Is.
var ErrNoInstances = errors.New("no instances available")

// ErrUnknownMode is returned, wrapped, by ParseMode for a name it does not know
// and by the Pick of a balancer built by New with an invalid Mode.
var ErrUnknownMode = errors.New("unknown load-balancing mode")

// MaxWeight is the largest weight the weighted policies use; larger weights are
// clamped to it so that sums cannot overflow and hash rings stay bounded.
const MaxWeight = 1 << 20

// Modes returns every valid Mode, in order.
func Modes() []Mode {
	ms := make([]Mode, len(modeNames))
	for i := range ms {
		ms[i] = Mode(i)
	}
	return ms
}

// valid reports whether m is one of the defined modes.
func (m Mode) valid() bool { return m >= 0 && int(m) < len(modeNames) }

// String returns the name ParseMode accepts for m, or "Mode(n)" for an invalid m.
func (m Mode) String() string {
	if !m.valid() {
		return "Mode(" + strconv.Itoa(int(m)) + ")"
	}
	return modeNames[m]
}

// ParseMode returns the Mode named name (one of the names String returns,
// ignoring case and surrounding space). An unknown name is an error wrapping
// ErrUnknownMode that lists the valid names.
func ParseMode(name string) (Mode, error) {
	s := strings.TrimSpace(name)
	for i, n := range modeNames {
		if strings.EqualFold(s, n) {
			return Mode(i), nil
		}
	}
	return 0, fmt.Errorf("loadbalance: %w %q (valid: %s)", ErrUnknownMode, name, strings.Join(modeNames[:], ", "))
}

// MarshalText implements encoding.TextMarshaler with the mode's name.
func (m Mode) MarshalText() ([]byte, error) {
	if !m.valid() {
		return nil, fmt.Errorf("loadbalance: %w %d", ErrUnknownMode, int(m))
	}
	return []byte(m.String()), nil
}

// UnmarshalText implements encoding.TextUnmarshaler with ParseMode.
func (m *Mode) UnmarshalText(text []byte) error {
	v, err := ParseMode(string(text))
	if err != nil {
		return err
	}
	*m = v
	return nil
}

// Balancer chooses an instance for each call. Its methods are safe for
// concurrent use.
type Balancer interface {
	// Update replaces the set of instances. The slice is copied; the
	// instances themselves must not be modified afterwards.
	Update(instances []*naming.Instance)
	// Pick chooses an instance. The caller must call done exactly once when
	// the call has finished, from any goroutine, even after Update removed the
	// instance; err should be non-nil only for failures that say something
	// about the instance (transport errors, timeouts), not for errors returned
	// by the remote method. done is never nil, even when err is not.
	Pick(ctx context.Context) (in *naming.Instance, done func(err error), err error)
}

// New returns a Balancer for mode m, configured by opts (options that do not
// apply to m are ignored). An invalid m does not panic: the balancer's Pick
// returns an error wrapping ErrUnknownMode that names the mode.
func New(m Mode, opts ...Option) Balancer {
	cfg := newConfig(m, commonOpts(opts))
	switch m {
	case Random:
		return newRandom(cfg)
	case RoundRobin:
		return newRoundRobin(cfg)
	case WeightedRoundRobin:
		return newWeightedRoundRobin(cfg)
	case WeightedRandom:
		return newWeightedRandom(cfg)
	case ConsistentHash:
		return newConsistentHash(cfg)
	case LeastConnections:
		return newLeastConnections(cfg)
	case P2CEWMA:
		return newP2CEWMA(cfg)
	}
	return invalidBalancer{err: fmt.Errorf("loadbalance: New: %w %s (valid: %s)", ErrUnknownMode, m, strings.Join(modeNames[:], ", "))}
}

// invalidBalancer is what New returns for an invalid Mode.
type invalidBalancer struct{ err error }

func (invalidBalancer) Update([]*naming.Instance) {}

func (b invalidBalancer) Pick(context.Context) (*naming.Instance, func(error), error) {
	return nil, noopDone, b.err
}

// hashKeyCtx is the context key of WithHashKey.
type hashKeyCtx struct{}

// WithHashKey returns a copy of ctx carrying key, the value ConsistentHash
// hashes to choose an instance (a user ID, a session, a shard key…). Without
// it, ConsistentHash uses the caller's identity (see WithIdentity).
func WithHashKey(ctx context.Context, key string) context.Context {
	if ctx == nil {
		ctx = context.Background()
	}
	return context.WithValue(ctx, hashKeyCtx{}, key)
}

// hashKeyFrom returns the key set by WithHashKey, if any.
func hashKeyFrom(ctx context.Context) (string, bool) {
	if ctx == nil {
		return "", false
	}
	k, ok := ctx.Value(hashKeyCtx{}).(string)
	return k, ok
}

// noopDone is the done callback of the policies that need no feedback. It is a
// package-level function so that returning it allocates nothing.
func noopDone(error) {}

// Options are typed by the policies they configure, so that an option a
// policy would ignore is a compile error: an Option (WithRand) configures
// every policy and is accepted by New and by every policy's constructor; a
// ConsistentHashOption only by NewConsistentHash, a P2COption only by
// NewP2CEWMA. New(mode) is the short way; a policy's own constructor, given
// to consumer.WithBalancer, takes its own options:
//
//	consumer.WithBalancer(func() loadbalance.Balancer {
//		return loadbalance.NewP2CEWMA(loadbalance.WithDecay(5 * time.Second))
//	})

// Option configures every policy.
type Option interface {
	ConsistentHashOption
	P2COption
}

// ConsistentHashOption configures ConsistentHash.
type ConsistentHashOption interface{ applyHash(*config) }

// P2COption configures P2CEWMA.
type P2COption interface{ applyP2C(*config) }

// commonOption applies to every policy.
type commonOption func(*config)

func (f commonOption) applyHash(c *config) { f(c) }
func (f commonOption) applyP2C(c *config)  { f(c) }

type hashOption func(*config)

func (f hashOption) applyHash(c *config) { f(c) }

type p2cOption func(*config)

func (f p2cOption) applyP2C(c *config) { f(c) }

// NewRandom returns a Random balancer.
func NewRandom(opts ...Option) Balancer { return newRandom(newConfig(Random, commonOpts(opts))) }

// NewRoundRobin returns a RoundRobin balancer.
func NewRoundRobin(opts ...Option) Balancer {
	return newRoundRobin(newConfig(RoundRobin, commonOpts(opts)))
}

// NewWeightedRoundRobin returns a WeightedRoundRobin balancer.
func NewWeightedRoundRobin(opts ...Option) Balancer {
	return newWeightedRoundRobin(newConfig(WeightedRoundRobin, commonOpts(opts)))
}

// NewWeightedRandom returns a WeightedRandom balancer.
func NewWeightedRandom(opts ...Option) Balancer {
	return newWeightedRandom(newConfig(WeightedRandom, commonOpts(opts)))
}

// NewLeastConnections returns a LeastConnections balancer.
func NewLeastConnections(opts ...Option) Balancer {
	return newLeastConnections(newConfig(LeastConnections, commonOpts(opts)))
}

// NewConsistentHash returns a ConsistentHash balancer.
func NewConsistentHash(opts ...ConsistentHashOption) Balancer {
	fs := make([]func(*config), 0, len(opts))
	for _, o := range opts {
		if o != nil {
			fs = append(fs, o.applyHash)
		}
	}
	return newConsistentHash(newConfig(ConsistentHash, fs))
}

// NewP2CEWMA returns a P2CEWMA balancer.
func NewP2CEWMA(opts ...P2COption) Balancer {
	fs := make([]func(*config), 0, len(opts))
	for _, o := range opts {
		if o != nil {
			fs = append(fs, o.applyP2C)
		}
	}
	return newP2CEWMA(newConfig(P2CEWMA, fs))
}

// commonOpts turns Options into what newConfig applies.
func commonOpts(opts []Option) []func(*config) {
	fs := make([]func(*config), 0, len(opts))
	for _, o := range opts {
		if o != nil {
			fs = append(fs, o.applyHash) // an Option applies alike through either method
		}
	}
	return fs
}

// config holds the options of every policy.
type config struct {
	rng       *rand.Rand           // shared random source, goroutine-safe
	identity  string               // consistent_hash: key when the context has none
	replicas  int                  // consistent_hash: virtual nodes per unit of weight
	now       func() time.Duration // p2c_ewma: monotonic clock
	decay     time.Duration        // p2c_ewma: EWMA time constant
	penalty   time.Duration        // p2c_ewma: latency recorded for a failed call
	initial   time.Duration        // p2c_ewma: latency assumed for a new instance
	emptyPick error                // ErrNoInstances wrapped with the mode
}

// Defaults of the options.
const (
	DefaultReplicas       = 160                   // consistent_hash virtual nodes per unit of weight
	DefaultDecay          = 10 * time.Second      // p2c_ewma time constant
	DefaultErrorPenalty   = time.Second           // p2c_ewma latency recorded for a failed call
	DefaultInitialLatency = 30 * time.Millisecond // p2c_ewma latency assumed for a new instance
	maxReplicas           = 1 << 12               // bound of WithReplicas
)

func newConfig(m Mode, opts []func(*config)) *config {
	start := time.Now()
	c := &config{
		rng:      rand.New(runtimeSource{}),
		replicas: DefaultReplicas,
		now:      func() time.Duration { return time.Since(start) },
		decay:    DefaultDecay,
		penalty:  DefaultErrorPenalty,
		initial:  DefaultInitialLatency,
	}
	for _, o := range opts {
		o(c)
	}
	if c.identity == "" {
		c.identity = defaultIdentity()
	}
	c.emptyPick = fmt.Errorf("loadbalance %s: %w", m, ErrNoInstances)
	return c
}

// WithRand makes the balancer draw its random numbers from src instead of the
// runtime's generator, so that tests can be reproducible. Calls to src are
// serialised by a mutex, so src need not be safe for concurrent use. A nil src
// is ignored.
func WithRand(src rand.Source) Option {
	return commonOption(func(c *config) {
		if src != nil {
			c.rng = rand.New(&lockedSource{src: src})
		}
	})
}

// WithIdentity sets the key ConsistentHash uses when the context carries none
// (see WithHashKey). The default is "hostname/pid" of the process, computed
// once by New, so that one process sticks to one instance as with nginx's
// ip_hash. An empty id keeps the default.
func WithIdentity(id string) ConsistentHashOption {
	return hashOption(func(c *config) { c.identity = id })
}

// WithReplicas sets the number of ConsistentHash virtual nodes per unit of
// weight (default DefaultReplicas, at most 4096). n < 1 keeps the default.
// Every process routing the same keys must use the same value.
func WithReplicas(n int) ConsistentHashOption {
	return hashOption(func(c *config) {
		if n >= 1 {
			c.replicas = min(n, maxReplicas)
		}
	})
}

// WithDecay sets the time constant of the P2CEWMA latency average (default
// DefaultDecay): an observation's weight falls by e every d. d <= 0 keeps the
// default.
func WithDecay(d time.Duration) P2COption {
	return p2cOption(func(c *config) {
		if d > 0 {
			c.decay = d
		}
	})
}

// WithErrorPenalty sets the latency P2CEWMA records for a call that failed, if
// it is longer than the observed one (default DefaultErrorPenalty). The
// penalty decays like any other observation. d < 0 keeps the default; 0
// disables the penalty.
func WithErrorPenalty(d time.Duration) P2COption {
	return p2cOption(func(c *config) {
		if d >= 0 {
			c.penalty = d
		}
	})
}

// WithInitialLatency sets the latency P2CEWMA assumes for an instance it has not
// measured yet (default DefaultInitialLatency), so that a new instance is not
// flooded before its first reply. d <= 0 keeps the default.
func WithInitialLatency(d time.Duration) P2COption {
	return p2cOption(func(c *config) {
		if d > 0 {
			c.initial = d
		}
	})
}

// WithClock replaces the clock P2CEWMA measures latency with. now must be
// monotonic and safe for concurrent use; it returns the time elapsed since
// any fixed origin. A nil now is ignored.
func WithClock(now func() time.Duration) P2COption {
	return p2cOption(func(c *config) {
		if now != nil {
			c.now = now
		}
	})
}

// runtimeSource draws from math/rand/v2's top-level generator, which is
// goroutine-safe and allocation-free.
type runtimeSource struct{}

func (runtimeSource) Uint64() uint64 { return rand.Uint64() }

// lockedSource makes a caller-supplied source safe for concurrent use.
type lockedSource struct {
	mu  sync.Mutex
	src rand.Source
}

func (s *lockedSource) Uint64() uint64 {
	s.mu.Lock()
	v := s.src.Uint64()
	s.mu.Unlock()
	return v
}

// defaultIdentity is the calling process's identity: "hostname/pid".
func defaultIdentity() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "localhost"
	}
	return host + "/" + strconv.Itoa(os.Getpid())
}

// instanceKey is the identity of an instance: its ID, or its Addr when the ID
// is empty.
func instanceKey(in *naming.Instance) string {
	if in.ID != "" {
		return in.ID
	}
	return in.Addr
}

// weightOf returns in's effective weight clamped to MaxWeight.
func weightOf(in *naming.Instance) int64 {
	return int64(min(in.EffectiveWeight(), MaxWeight))
}

// normalize returns a fresh slice of instances without nil entries and without
// later duplicates of an instance key, in the given order.
func normalize(instances []*naming.Instance) []*naming.Instance {
	out := make([]*naming.Instance, 0, len(instances))
	seen := make(map[string]struct{}, len(instances))
	for _, in := range instances {
		if in == nil {
			continue
		}
		k := instanceKey(in)
		if _, dup := seen[k]; dup {
			continue
		}
		seen[k] = struct{}{}
		out = append(out, in)
	}
	return out
}
