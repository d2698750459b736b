package consul

import (
	"context"
	"errors"
	"fmt"
	"github.com/shoalrpc/shoal/naming"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/consul/api"
	"golang.org/x/time/rate"
)

// Defaults of the Consul backend; every one can be changed with a
// ConsulOption (or a consul:// URL query parameter, see Open).
const (
	// DefaultConsulTTL is the TTL of an instance's health check. The
	// instance heartbeats every TTL/3, so it survives two lost heartbeats.
	DefaultConsulTTL = 10 * time.Second
	// DefaultConsulDeregisterAfter is how long an instance may stay critical
	// before Consul removes it (Consul's reaper runs about every 30 s, so
	// shorter values are rounded up in practice).
	DefaultConsulDeregisterAfter = time.Minute
	// DefaultConsulWatchWait is the wait time of a watch's blocking query.
	// It is well under the idle timeouts of common proxies and NATs.
	DefaultConsulWatchWait = time.Minute
	// DefaultConsulRequestTimeout bounds every non-blocking request:
	// register, heartbeat, deregister, fetch.
	DefaultConsulRequestTimeout = 5 * time.Second
	// DefaultConsulWatchInterval and DefaultConsulWatchBurst rate-limit a
	// watch's queries: at most one every interval on average, bursts of up
	// to DefaultConsulWatchBurst.
	DefaultConsulWatchInterval = 100 * time.Millisecond
	DefaultConsulWatchBurst    = 5
	// DefaultConsulBackoffMin and DefaultConsulBackoffMax bound the
	// exponential backoff (with jitter) of a watch after a failed query.
	DefaultConsulBackoffMin = 250 * time.Millisecond
	DefaultConsulBackoffMax = 10 * time.Second
)

// metaAddr is the Consul service meta key that holds the full Instance.Addr.
// It is reserved: user Meta must not use it, and it is removed again when a
// Consul entry becomes an Instance, so user Meta round-trips exactly.
const metaAddr = "shoal_addr"

// ConsulOption configures a Consul registry.
type Option func(*options)

type options struct {
	ttl             time.Duration
	deregisterAfter time.Duration
	wait            time.Duration
	reqTimeout      time.Duration
	watchEvery      time.Duration
	watchBurst      int
	backoffMin      time.Duration
	backoffMax      time.Duration
	logger          *slog.Logger
	token           string
}

// WithTTL sets the TTL of each instance's health check (default
// DefaultConsulTTL). The instance heartbeats every ttl/3; an instance that
// stops heartbeating leaves the passing list after ttl.
func WithTTL(ttl time.Duration) Option {
	return func(o *options) { o.ttl = ttl }
}

// WithDeregisterCriticalAfter sets the check's DeregisterCriticalServiceAfter
// (default DefaultConsulDeregisterAfter): Consul removes an instance that has
// been critical for that long.
func WithDeregisterCriticalAfter(d time.Duration) Option {
	return func(o *options) { o.deregisterAfter = d }
}

// WithWatchWait sets the wait time of a watch's blocking queries (default
// DefaultConsulWatchWait). The HTTP deadline of a blocking query is always
// longer than the wait plus Consul's jitter of wait/16.
func WithWatchWait(d time.Duration) Option {
	return func(o *options) { o.wait = d }
}

// WithRequestTimeout bounds register, heartbeat, deregister and fetch
// requests (default DefaultConsulRequestTimeout).
func WithRequestTimeout(d time.Duration) Option {
	return func(o *options) { o.reqTimeout = d }
}

// WithWatchRateLimit limits each watch to one query every interval on
// average, with bursts of up to burst (defaults DefaultConsulWatchInterval,
// DefaultConsulWatchBurst).
func WithWatchRateLimit(every time.Duration, burst int) Option {
	return func(o *options) { o.watchEvery, o.watchBurst = every, burst }
}

// WithBackoff sets the bounds of a watch's exponential backoff after a
// failed query (defaults DefaultConsulBackoffMin, DefaultConsulBackoffMax).
// Each delay is drawn at random from the upper half of the current step.
func WithBackoff(minDelay, maxDelay time.Duration) Option {
	return func(o *options) { o.backoffMin, o.backoffMax = minDelay, maxDelay }
}

// WithLogger sets where the registry reports heartbeat failures,
// re-registrations and watch errors (default: discarded).
func WithLogger(l *slog.Logger) Option {
	return func(o *options) { o.logger = l }
}

// ConsulStats counts what a Consul registry has done since it was created.
type Stats struct {
	WatchQueries    uint64 // health queries sent by watches
	WatchErrors     uint64 // watch queries that failed
	Heartbeats      uint64 // successful TTL updates
	HeartbeatErrors uint64 // failed TTL updates, including unknown checks
	Registrations   uint64 // successful registrations, first ones and re-registrations
	Reregistrations uint64 // registrations redone because the agent had lost them
	ACLDenials      uint64 // requests Consul refused by ACL (ErrPermissionDenied), of every kind
}

// Consul is the production registry backend, on a Consul agent's HTTP API.
//
// Register adds a service with a TTL check to the local agent and keeps it
// passing with heartbeats; when the agent has lost the registration (it
// restarted) the instance registers again by itself. Watch follows the
// passing instances of a service with blocking queries.
type Registry struct {
	client *api.Client
	conf   api.Config // as given to api.NewClient, after it filled the defaults
	http   *http.Client
	o      options

	token       string // sent with every request; "" is Consul's anonymous token
	tokenSource string // where token came from, for error messages (never the token)

	ctx    context.Context // ended by Close; parent of heartbeats and watches
	cancel context.CancelFunc
	wg     sync.WaitGroup // heartbeat and watch goroutines

	mu     sync.Mutex
	closed bool
	regs   map[string]*consulReg // active registrations by instance ID

	watchQueries    atomic.Uint64
	watchErrors     atomic.Uint64
	heartbeats      atomic.Uint64
	heartbeatErrors atomic.Uint64
	registrations   atomic.Uint64
	reregistrations atomic.Uint64
	aclDenials      atomic.Uint64
}

// New returns a registry on the Consul agent that cfg describes. A nil
// cfg means api.DefaultConfig(), which honours CONSUL_HTTP_ADDR,
// CONSUL_HTTP_TOKEN, CONSUL_HTTP_TOKEN_FILE, CONSUL_HTTP_SSL, CONSUL_CACERT
// and the other CONSUL_* variables; a cfg without a token takes the token
// from those variables too. WithToken overrides both. cfg is copied, not
// modified. No request is made until the registry is used.
//
// With Consul's ACLs on, a request the token does not allow fails with an
// error wrapping ErrPermissionDenied (see there).
func New(cfg *api.Config, opts ...Option) (*Registry, error) {
	o := options{
		ttl:             DefaultConsulTTL,
		deregisterAfter: DefaultConsulDeregisterAfter,
		wait:            DefaultConsulWatchWait,
		reqTimeout:      DefaultConsulRequestTimeout,
		watchEvery:      DefaultConsulWatchInterval,
		watchBurst:      DefaultConsulWatchBurst,
		backoffMin:      DefaultConsulBackoffMin,
		backoffMax:      DefaultConsulBackoffMax,
	}
	for _, opt := range opts {
		opt(&o)
	}
	switch {
	case o.ttl < 100*time.Millisecond:
		return nil, fmt.Errorf("naming: consul: TTL %v is too short (minimum 100ms)", o.ttl)
	case o.deregisterAfter <= 0:
		return nil, fmt.Errorf("naming: consul: deregister-critical-after %v must be positive", o.deregisterAfter)
	case o.wait < time.Second:
		return nil, fmt.Errorf("naming: consul: watch wait %v is too short (minimum 1s)", o.wait)
	case o.reqTimeout <= 0:
		return nil, fmt.Errorf("naming: consul: request timeout %v must be positive", o.reqTimeout)
	case o.watchEvery < 0 || o.watchBurst < 1:
		return nil, fmt.Errorf("naming: consul: watch rate limit (every %v, burst %d) is invalid", o.watchEvery, o.watchBurst)
	case o.backoffMin <= 0 || o.backoffMax < o.backoffMin:
		return nil, fmt.Errorf("naming: consul: backoff bounds %v..%v are invalid", o.backoffMin, o.backoffMax)
	}
	if o.logger == nil {
		o.logger = slog.New(slog.DiscardHandler)
	}

	var conf api.Config
	if cfg != nil {
		conf = *cfg
	} else {
		conf = *api.DefaultConfig()
	}
	client, err := api.NewClient(&conf) // fills conf.HttpClient
	if err != nil {
		return nil, fmt.Errorf("naming: consul client for %s: %w", conf.Address, err)
	}
	// Never let an HTTP timeout cut a blocking query short: shrink the wait
	// to fit a client-wide timeout, leaving room for Consul's jitter.
	if t := httpTimeout(&conf); t > 0 && o.wait+o.wait/16+time.Second > t {
		o.wait = (t - time.Second) * 16 / 17
		if o.wait < time.Second {
			return nil, fmt.Errorf("naming: consul: HTTP client timeout %v is too short for blocking queries", t)
		}
	}

	token, source := resolveToken(&o, &conf)
	if o.token != "" {
		conf.Token, conf.TokenFile = o.token, ""
	}

	ctx, cancel := context.WithCancel(context.Background())
	return &Registry{
		client:      client,
		conf:        conf,
		http:        conf.HttpClient,
		o:           o,
		token:       token,
		tokenSource: source,
		ctx:         ctx,
		cancel:      cancel,
		regs:        make(map[string]*consulReg),
	}, nil
}

// httpTimeout returns the shortest whole-request or response-header timeout
// configured on conf's HTTP client, or 0 for none.
func httpTimeout(conf *api.Config) time.Duration {
	var t time.Duration
	if conf.HttpClient != nil {
		t = conf.HttpClient.Timeout
		if tr, ok := conf.HttpClient.Transport.(*http.Transport); ok && tr.ResponseHeaderTimeout > 0 &&
			(t == 0 || tr.ResponseHeaderTimeout < t) {
			t = tr.ResponseHeaderTimeout
		}
	}
	return t
}

// Stats returns the registry's counters.
func (c *Registry) Stats() Stats {
	return Stats{
		WatchQueries:    c.watchQueries.Load(),
		WatchErrors:     c.watchErrors.Load(),
		Heartbeats:      c.heartbeats.Load(),
		HeartbeatErrors: c.heartbeatErrors.Load(),
		Registrations:   c.registrations.Load(),
		Reregistrations: c.reregistrations.Load(),
		ACLDenials:      c.aclDenials.Load(),
	}
}

// consulReg is one active registration and its heartbeat goroutine.
type consulReg struct {
	c       *Registry
	inst    *naming.Instance
	reg     *api.AgentServiceRegistration
	checkID string

	ctx        context.Context // ends the heartbeat
	stopBeat   context.CancelFunc
	done       chan struct{} // closed when the heartbeat goroutine returns
	deregister sync.Once
}

// Register adds in to the local Consul agent with a TTL check, marks it
// passing at once and starts heartbeating every TTL/3 until the returned
// cancel is called or the registry is closed. ctx bounds the initial
// registration only.
//
// The instance ID defaults to DefaultID (service-host-port), so a provider
// restarted at the same address replaces its own entry. The weight goes to
// Weights.Passing; Tags and Meta are stored as they are, plus the reserved
// meta key "shoal_addr" holding Addr.
//
// When a heartbeat finds that the agent no longer knows the check (the agent
// restarted and lost its state), the instance registers again after a random
// delay of up to TTL/3.
//
// The cancel stops the heartbeat, waits for it to end and then deregisters
// the instance (a service Consul no longer knows is not an error), bounded
// by the request timeout. It is idempotent.
func (c *Registry) Register(ctx context.Context, in *naming.Instance) (context.CancelFunc, error) {
	inst, err := naming.Normalize(in)
	if err != nil {
		return nil, err
	}
	if _, reserved := inst.Meta[metaAddr]; reserved {
		return nil, fmt.Errorf("%w: meta key %q is reserved", naming.ErrInvalidInstance, metaAddr)
	}
	r := c.newReg(inst)

	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, naming.ErrClosed
	}
	if _, dup := c.regs[inst.ID]; dup {
		c.mu.Unlock()
		return nil, fmt.Errorf("consul register %s: instance ID already registered by this registry", inst.ID)
	}
	c.regs[inst.ID] = r // reserves the ID while registering
	c.mu.Unlock()

	if err := r.register(ctx); err != nil {
		r.stopBeat()
		close(r.done) // no heartbeat goroutine to wait for
		// The service may be registered while its first heartbeat failed;
		// do not leave it behind.
		_ = c.deregisterID(inst.Service, inst.ID)
		c.forget(r)
		return nil, err
	}

	c.mu.Lock()
	if c.closed {
		// Close saw r reserved and deregisters it once done is closed.
		c.mu.Unlock()
		r.stopBeat()
		close(r.done)
		return nil, naming.ErrClosed
	}
	c.wg.Add(1)
	c.mu.Unlock()
	go r.heartbeat()
	return r.cancel, nil
}

func (c *Registry) newReg(inst *naming.Instance) *consulReg {
	host, port := "", 0
	if network, address, _ := naming.SplitAddr(inst.Addr); network != "unix" {
		h, p, _ := net.SplitHostPort(address)
		host = h
		port, _ = strconv.Atoi(p)
	}
	meta := make(map[string]string, len(inst.Meta)+1)
	maps.Copy(meta, inst.Meta)
	meta[metaAddr] = inst.Addr
	checkID := inst.ID + "-ttl"

	ctx, cancel := context.WithCancel(c.ctx)
	return &consulReg{
		c:       c,
		inst:    inst,
		checkID: checkID,
		reg: &api.AgentServiceRegistration{
			ID:      inst.ID,
			Name:    inst.Service,
			Tags:    inst.Tags,
			Port:    port,
			Address: host,
			Meta:    meta,
			Weights: &api.AgentWeights{Passing: inst.Weight, Warning: 1},
			Check: &api.AgentServiceCheck{
				CheckID:                        checkID,
				Name:                           "shoal TTL heartbeat",
				TTL:                            c.o.ttl.String(),
				Status:                         api.HealthPassing,
				DeregisterCriticalServiceAfter: c.o.deregisterAfter.String(),
			},
		},
		ctx:      ctx,
		stopBeat: cancel,
		done:     make(chan struct{}),
	}
}

// register (re)registers the service and sends the first heartbeat.
func (r *consulReg) register(ctx context.Context) error {
	c := r.c
	ctx, cancel := context.WithTimeout(ctx, c.o.reqTimeout)
	defer cancel()
	opts := api.ServiceRegisterOpts{ReplaceExistingChecks: true, Token: c.token}.WithContext(ctx)
	if err := c.client.Agent().ServiceRegisterOpts(r.reg, opts); err != nil {
		return fmt.Errorf("consul register %s: %w", r.inst.ID, c.aclError(err, writeNeeds(r.inst.Service)))
	}
	if err := c.client.Agent().UpdateTTLOpts(r.checkID, "", api.HealthPassing, c.queryOptions(ctx)); err != nil {
		return fmt.Errorf("consul register %s: first heartbeat: %w", r.inst.ID, c.aclError(err, writeNeeds(r.inst.Service)))
	}
	c.registrations.Add(1)
	return nil
}

// heartbeat keeps the check passing every TTL/3 and registers again when the
// agent has lost the check. It ends when r.ctx ends.
func (r *consulReg) heartbeat() {
	c := r.c
	defer c.wg.Done()
	defer close(r.done)
	interval := c.o.ttl / 3
	timer := time.NewTimer(interval)
	defer timer.Stop()
	log := c.o.logger.With("service", r.inst.Service, "id", r.inst.ID)
	for {
		select {
		case <-r.ctx.Done():
			return
		case <-timer.C:
		}
		err := r.pass()
		switch {
		case err == nil:
			c.heartbeats.Add(1)
		case r.ctx.Err() != nil:
			return
		case isCheckGone(err):
			c.heartbeatErrors.Add(1)
			log.Info("consul lost the registration; registering again", "err", err)
			// Jitter, so that many instances do not re-register at once
			// after an agent restart.
			if !sleepCtx(r.ctx, rand.N(interval)+time.Millisecond) {
				return
			}
			if err := r.register(r.ctx); err != nil {
				if r.ctx.Err() != nil {
					return
				}
				log.Warn("consul re-register failed; will retry", "err", err)
			} else {
				c.reregistrations.Add(1)
			}
		case errors.Is(err, ErrPermissionDenied):
			// The token was revoked or its policy changed: say so loudly,
			// and keep trying in case it is put right.
			c.heartbeatErrors.Add(1)
			log.Error("consul refused the heartbeat; the instance will turn critical", "err", err)
		default:
			c.heartbeatErrors.Add(1)
			log.Warn("consul heartbeat failed", "err", err)
		}
		timer.Reset(interval)
	}
}

// pass sends one heartbeat.
func (r *consulReg) pass() error {
	ctx, cancel := context.WithTimeout(r.ctx, r.c.o.reqTimeout)
	defer cancel()
	err := r.c.client.Agent().UpdateTTLOpts(r.checkID, "", api.HealthPassing, r.c.queryOptions(ctx))
	if err != nil {
		return fmt.Errorf("consul heartbeat %s: %w", r.inst.ID, r.c.aclError(err, writeNeeds(r.inst.Service)))
	}
	return nil
}

// cancel stops the heartbeat, waits for it and deregisters the instance.
func (r *consulReg) cancel() {
	r.deregister.Do(func() {
		r.stopBeat()
		<-r.done
		if err := r.c.deregisterID(r.inst.Service, r.inst.ID); err != nil {
			r.c.o.logger.Warn("consul deregister failed", "id", r.inst.ID, "err", err)
		}
		r.c.forget(r)
	})
}

// stopHeartbeat stops the heartbeat of instance id without deregistering
// it, as if its provider had hung. It is a test hook; it reports whether id
// was registered.
func (c *Registry) stopHeartbeat(id string) bool {
	c.mu.Lock()
	r := c.regs[id]
	c.mu.Unlock()
	if r == nil {
		return false
	}
	r.stopBeat()
	<-r.done
	return true
}

// forget drops r from the active registrations.
func (c *Registry) forget(r *consulReg) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.regs[r.inst.ID] == r {
		delete(c.regs, r.inst.ID)
	}
}

// deregisterID removes instance id of service from the agent, bounded by
// the request timeout; a service the agent does not know is not an error.
func (c *Registry) deregisterID(service, id string) error {
	ctx, cancel := context.WithTimeout(context.Background(), c.o.reqTimeout)
	defer cancel()
	err := c.client.Agent().ServiceDeregisterOpts(id, c.queryOptions(ctx))
	if err != nil && !isNotFound(err) {
		return fmt.Errorf("consul deregister %s: %w", id, c.aclError(err, writeNeeds(service)))
	}
	return nil
}

// Fetch returns the passing instances of service, sorted by ID. An error
// wrapping ErrPermissionDenied means the token may not read them: Consul
// refused the query, filtered instances out of its answer, or, while its
// default ACL policy is deny, answered an empty list the token may not read
// (no token, and the anonymous token may not read the service): an empty
// answer under deny is checked with Consul, so a token that may read the
// service gets its empty list.
func (c *Registry) Fetch(ctx context.Context, service string) ([]*naming.Instance, error) {
	if c.isClosed() {
		return nil, naming.ErrClosed
	}
	ctx, cancel := context.WithTimeout(ctx, c.o.reqTimeout)
	defer cancel()
	entries, meta, err := c.client.Health().Service(service, "", true, c.queryOptions(ctx))
	if err != nil {
		return nil, fmt.Errorf("consul fetch %s: %w", service, c.aclError(err, readNeeds(service)))
	}
	if meta.ResultsFilteredByACLs {
		return nil, fmt.Errorf("consul fetch %s: %w", service, c.filteredError(service))
	}
	if err := c.checkEmpty(ctx, service, len(entries), meta); err != nil {
		return nil, fmt.Errorf("consul fetch %s: %w", service, err)
	}
	return instancesFromEntries(entries), nil
}

// Close deregisters every instance still registered through this registry
// (each bounded by the request timeout), ends every watch, closes their
// channels and waits for all goroutines. It is idempotent.
func (c *Registry) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	regs := make([]*consulReg, 0, len(c.regs))
	for _, r := range c.regs {
		regs = append(regs, r)
	}
	c.mu.Unlock()

	var wg sync.WaitGroup
	for _, r := range regs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.cancel()
		}()
	}
	wg.Wait()
	c.cancel()
	c.wg.Wait()
	c.http.CloseIdleConnections()
	return nil
}

func (c *Registry) isClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

// instancesFromEntries converts health entries to instances sorted by ID.
func instancesFromEntries(entries []*api.ServiceEntry) []*naming.Instance {
	out := make([]*naming.Instance, 0, len(entries))
	for _, e := range entries {
		if e == nil || e.Service == nil {
			continue
		}
		out = append(out, instanceFromService(e.Service, e.Node))
	}
	naming.SortInstances(out)
	return out
}

// instanceFromService converts one Consul service back to an Instance: Addr
// from the reserved meta key (or Address/Port for services registered by
// other tools), weight from Weights.Passing, user meta without reserved keys.
func instanceFromService(s *api.AgentService, node *api.Node) *naming.Instance {
	in := &naming.Instance{ID: s.ID, Service: s.Service, Weight: s.Weights.Passing}
	if in.Weight < 1 {
		in.Weight = 1
	}
	in.Addr = s.Meta[metaAddr]
	if in.Addr == "" {
		host := s.Address
		if host == "" && node != nil {
			host = node.Address
		}
		in.Addr = "tcp@" + net.JoinHostPort(host, strconv.Itoa(s.Port))
	}
	if len(s.Tags) > 0 {
		in.Tags = append([]string(nil), s.Tags...)
	}
	for k, v := range s.Meta {
		if k == metaAddr {
			continue
		}
		if in.Meta == nil {
			in.Meta = make(map[string]string, len(s.Meta))
		}
		in.Meta[k] = v
	}
	return in
}

// isNotFound reports whether Consul answered 404.
func isNotFound(err error) bool {
	var se api.StatusError
	return errors.As(err, &se) && se.Code == http.StatusNotFound
}

// isCheckGone reports whether a TTL update failed because the agent does not
// know the check any more (it restarted, or the service was removed).
func isCheckGone(err error) bool {
	if err == nil {
		return false
	}
	if isNotFound(err) {
		return true
	}
	msg := err.Error()
	return strings.Contains(msg, "does not have associated TTL") ||
		strings.Contains(strings.ToLower(msg), "unknown check")
}

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

// newWatchLimiter returns the rate limiter of one watch.
func (c *Registry) newWatchLimiter() *rate.Limiter {
	limit := rate.Inf
	if c.o.watchEvery > 0 {
		limit = rate.Every(c.o.watchEvery)
	}
	return rate.NewLimiter(limit, c.o.watchBurst)
}
