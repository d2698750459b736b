package consumer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"reflect"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shoalrpc/shoal/loadbalance"
	"github.com/shoalrpc/shoal/naming"
	"github.com/shoalrpc/shoal/stats"
)

// ErrProxyClosed is returned by calls on a closed ClientProxy.
var ErrProxyClosed = errors.New("consumer: client proxy closed")

// ClientProxy calls a service by name: it follows the service's instances in
// a registry, picks one per call with a load-balancing policy, calls it over
// pooled multiplexed connections, and retries by the fail mode. A call
// proceeds as pick → call → report the outcome to the balancer → decide,
// by the error's kind and the fail mode, whether to try again → maybe pick
// again.
type ClientProxy struct {
	service  string
	opts     options
	balancer loadbalance.Balancer
	pool     *Pool
	budget   *retryBudget
	outliers *outliers
	checks   *healthChecks // WithHealthCheck's verdicts; nil without it

	intercept        Interceptor // WithInterceptors as one; nil: none
	attemptIntercept Interceptor // WithAttemptInterceptors as one; nil: none
	invoke           Invoker     // p.logical, bound once

	listed    atomic.Pointer[[]*naming.Instance] // the registry's latest list
	instances atomic.Pointer[[]*naming.Instance] // what calls go to: listed, or the fallback list
	healthy   atomic.Pointer[[]*naming.Instance] // what the balancer holds: instances minus ejected
	listMu    sync.Mutex                         // serialises changes of listed and instances
	refreshMu sync.Mutex                         // serialises balancer updates

	log        *slog.Logger
	epoch      time.Time    // construction; lastAnswer counts from it (monotonic)
	lastAnswer atomic.Int64 // nanoseconds after epoch of an answer from an instance (0: none yet)
	inFallback atomic.Bool  // calling the last known instances: the registry lists none
	fallbacks  atomic.Int64 // registry fallbacks entered

	refresher    naming.Refresher // the registry, when it can look again on demand (DNS); nil otherwise
	budgetLogged atomic.Int64     // when the budget's refusal was last logged (Unix ns): once per 10 s at most

	closed     atomic.Bool
	stopWatch  context.CancelFunc
	goroutines sync.WaitGroup
	closeOnce  sync.Once
}

// NewClientProxy returns a proxy for service, whose instances it fetches from
// reg and then follows with reg.Watch. A service with no instance is an error
// wrapping loadbalance.ErrNoInstances, unless WithWaitForInstances is given.
func NewClientProxy(service string, reg naming.Registry, opts ...ProxyOption) (*ClientProxy, error) {
	if service == "" {
		return nil, errors.New("consumer: NewClientProxy: the service name is empty; give the name providers register under (naming.Instance.Service), e.g. \"arith\"")
	}
	if reg == nil {
		return nil, errors.New("consumer: NewClientProxy with a nil registry")
	}
	o, err := proxyOptionsOf(opts)
	if err != nil {
		return nil, err
	}
	balancer := loadbalance.New(o.lbMode, o.lbOpts...)
	if o.newBalancer != nil {
		if balancer = o.newBalancer(); balancer == nil {
			return nil, errors.New("consumer: NewClientProxy: WithBalancer's function returned a nil Balancer")
		}
	}
	po := o
	po.underProxy = true // the proxy runs the interceptors and reports calls and attempts
	p := &ClientProxy{
		service:          service,
		opts:             o,
		balancer:         balancer,
		pool:             newPool(po),
		budget:           newRetryBudget(o.budgetTokens, o.budgetRatio),
		outliers:         newOutliers(o.ejectAfter, o.ejectBase, o.ejectMax),
		intercept:        chain(o.interceptors),
		attemptIntercept: chain(o.attemptInterceptors),
		log:              o.logger.With("service", service),
		epoch:            time.Now(),
	}
	p.refresher, _ = reg.(naming.Refresher)
	p.invoke = p.logical
	empty := []*naming.Instance{}
	p.listed.Store(&empty)
	p.instances.Store(&empty)
	p.healthy.Store(&empty)

	ctx, cancel := context.WithCancel(context.Background())
	p.stopWatch = cancel
	// Watch first, so no change between the fetch and the watch is missed.
	watch, err := reg.Watch(ctx, service)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("consumer: watch %s: %w", service, err)
	}
	fetchCtx, fetchCancel := context.WithTimeout(ctx, 10*time.Second)
	list, err := reg.Fetch(fetchCtx, service)
	fetchCancel()
	if err != nil {
		cancel()
		return nil, fmt.Errorf("consumer: fetch %s: %w", service, err)
	}
	if len(list) == 0 {
		if list, err = waitForInstances(ctx, service, watch, o.waitInstances); err != nil {
			cancel()
			return nil, err
		}
	}
	if o.healthInterval > 0 {
		p.checks = newHealthChecks()
	}
	p.setInstances(list)
	p.goroutines.Go(func() {
		for list := range watch { // closed when the watch's context ends
			p.setInstances(list)
		}
	})
	if p.checks != nil {
		p.goroutines.Go(func() { p.checkHealth(ctx) })
	}
	return p, nil
}

// waitForInstances reads the watch until it delivers an instance, for up to d.
func waitForInstances(ctx context.Context, service string, watch <-chan []*naming.Instance, d time.Duration) ([]*naming.Instance, error) {
	if d <= 0 {
		return nil, errNoInstance(service)
	}
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		select {
		case list, ok := <-watch:
			if !ok {
				return nil, errNoInstance(service)
			}
			if len(list) > 0 {
				return list, nil
			}
		case <-t.C:
			return nil, fmt.Errorf("%w (waited %s)", errNoInstance(service), d)
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// setInstances takes a new list from the registry: the balancer gets it (less
// ejected instances), and connections to instances that left are closed once
// their calls finish. A list that would leave the proxy with no instance,
// while its instances answered within the fallback window, is a registry
// that lost its state (an agent restarted empty) rather than a service that
// left: the proxy keeps calling the last known instances until the registry
// lists some again (a panic-mode fallback, as Envoy's). That is safe because
// a provider that really left refuses the dial or answers "shutting down",
// both "not executed": the call moves on, and the instance leaves the
// fallback list (forget).
func (p *ClientProxy) setInstances(list []*naming.Instance) {
	list = slices.Clone(list)
	p.listMu.Lock()
	defer p.listMu.Unlock()
	defer p.listed.Store(&list) // last: who sees the new list sees InFallback's new value too
	p.proxyEvent(stats.ProxyEvent{Kind: stats.InstancesChanged, Instances: len(list)})
	held := *p.instances.Load()
	if len(list) == 0 && len(held) > 0 && p.answeredWithin(p.opts.fallbackWindow) {
		if !p.inFallback.Load() {
			p.registryFallback(true, len(held), "the registry lists no instance")
		}
		return
	}
	if p.inFallback.Load() {
		p.registryFallback(false, len(list), "the registry lists instances again")
	}
	p.use(list, held)
}

// use makes list the instances calls go to, in place of old. p.listMu is held.
func (p *ClientProxy) use(list, old []*naming.Instance) {
	p.instances.Store(&list)
	p.refresh()
	for _, in := range old {
		if !slices.ContainsFunc(list, func(n *naming.Instance) bool { return n.Addr == in.Addr }) {
			p.log.Info("instance left the registry; its connections close once their calls have finished", "instance", in.ID, "addr", in.Addr)
			p.pool.Drop(in.Addr)
		}
	}
}

// forget drops in from the fallback list after it refused a call (dial
// refused or failed, or "shutting down"): during a fallback, that is how a
// provider that really left shows it. The fallback ends when no instance is
// left; calls then fail with loadbalance.ErrNoInstances.
func (p *ClientProxy) forget(in *naming.Instance) {
	if !p.inFallback.Load() {
		return
	}
	p.listMu.Lock()
	defer p.listMu.Unlock()
	held := *p.instances.Load()
	i := slices.IndexFunc(held, func(h *naming.Instance) bool { return h.ID == in.ID })
	if !p.inFallback.Load() || i < 0 {
		return
	}
	rest := slices.Delete(slices.Clone(held), i, i+1)
	p.log.Info("registry fallback: a last known instance refused the call; no longer calling it",
		"id", in.ID, "addr", in.Addr, "left", len(rest))
	if len(rest) == 0 {
		p.registryFallback(false, 0, "every last known instance refused")
	}
	p.use(rest, held)
}

// registryFallback is the one place where the proxy reports entering
// (entered) or leaving a registry fallback: the state InFallback reports, the
// count Fallbacks reports, and one log line per change, at WARN when calls go
// to instances the registry does not list or no instance is left.
// n is the number of instances calls go to from now. p.listMu is held.
//
// Issue 15 (stats handlers): emit the "registry fallback" proxy event here.
func (p *ClientProxy) registryFallback(entered bool, n int, why string) {
	p.inFallback.Store(entered)
	kind := stats.FallbackEnd
	if entered {
		kind = stats.FallbackBegin
	}
	p.proxyEvent(stats.ProxyEvent{Kind: kind, Instances: n})
	switch {
	case entered:
		p.fallbacks.Add(1)
		p.log.Warn("registry fallback: "+why+"; calling the last known instances until it lists some again",
			"instances", n)
	case n == 0:
		p.log.Warn("registry fallback over: " + why + "; no instance left")
	default:
		p.log.Info("registry fallback over: "+why, "instances", n)
	}
}

// answered notes that an instance answered at now.
func (p *ClientProxy) answered(now time.Time) {
	t := int64(now.Sub(p.epoch)) + 1
	if last := p.lastAnswer.Load(); last == 0 || t-last > int64(100*time.Millisecond) { // coarse: a store per 100 ms at most
		p.lastAnswer.Store(t)
	}
}

// answeredWithin reports whether an instance answered within the last d.
func (p *ClientProxy) answeredWithin(d time.Duration) bool {
	last := p.lastAnswer.Load()
	return d > 0 && last != 0 && int64(time.Since(p.epoch))+1-last <= int64(d)
}

// InFallback reports whether the proxy is in a registry fallback: the
// registry lists no instance of the service, and calls go to the last known
// instances (see WithRegistryFallback).
func (p *ClientProxy) InFallback() bool { return p.inFallback.Load() }

// Fallbacks returns how many registry fallbacks the proxy has entered.
func (p *ClientProxy) Fallbacks() int64 { return p.fallbacks.Load() }

// refresh gives the balancer the instances that are not ejected.
func (p *ClientProxy) refresh() {
	p.refreshMu.Lock()
	defer p.refreshMu.Unlock()
	if p.closed.Load() {
		return
	}
	healthy, next := p.outliers.filter(*p.instances.Load(), time.Now(), func(in *naming.Instance) {
		p.proxyEvent(stats.ProxyEvent{Kind: stats.InstanceReadmitted, Instance: in.ID, Addr: in.Addr})
	})
	healthy = p.checks.filter(healthy) // health.go: failing checks leave picks
	p.healthy.Store(&healthy)
	p.balancer.Update(healthy)
	if !next.IsZero() {
		p.outliers.wakeAt(next, p.refresh)
	}
}

// Instances returns the instances the registry lists now. During a registry
// fallback (InFallback) that is none, while calls go to the last known ones.
func (p *ClientProxy) Instances() []*naming.Instance { return slices.Clone(*p.listed.Load()) }

// Call calls method ("Service.Method") on one instance of the service,
// retrying as the fail mode allows, and decodes the result into reply. The
// caller's deadline bounds the whole call, retries included. reply is as for
// Client.Call: a non-nil pointer, or nil to discard the reply.
//
// The interceptors of WithInterceptors run around the whole call, those of
// WithAttemptInterceptors around each attempt.
func (p *ClientProxy) Call(ctx context.Context, method string, args, reply any) error {
	if p.closed.Load() {
		return fmt.Errorf("call %s: %w", method, ErrProxyClosed)
	}
	if err := checkReply(method, reply); err != nil {
		return err
	}
	if p.intercept != nil {
		return p.intercept(ctx, method, args, reply, p.invoke)
	}
	return p.logical(ctx, method, args, reply)
}

// logical is one logical call: hedged or not, with its stats. It is what the
// call interceptors wrap.
func (p *ClientProxy) logical(ctx context.Context, method string, args, reply any) error {
	var st *callStats
	if len(p.opts.stats) > 0 {
		st, ctx = beginStats(ctx, p.opts.stats, stats.RPCInfo{Kind: stats.Call, Method: method, Service: p.service, Codec: p.opts.codec.Name()})
	}
	var err error
	if p.opts.failMode == Failbackup && p.opts.idempotent[method] {
		err = p.hedged(ctx, method, args, reply)
	} else {
		err = p.call(ctx, method, args, reply, nil, nil)
	}
	st.end(ctx, err)
	return err
}

// call is one logical call: attempts until success, a final error, or the
// fail policy gives up; decide (failpolicy.go) makes every retry decision and
// this loop carries it out. Instances in avoid are treated as tried already;
// picked, if not nil, learns each instance chosen.
func (p *ClientProxy) call(ctx context.Context, method string, args, reply any, avoid []string, picked func(*naming.Instance)) error {
	hedge := avoid != nil // a hedge leg starts out avoiding the first leg's instances
	var (
		st       = callState{method: method, tried: slices.Clone(avoid)}
		plan     = retryPlan{action: tryOther, avoid: avoid}
		in       *naming.Instance
		lastErr  error
		attempts int // made so far, for attempt interceptors and stats
	)
	for {
		if err := sleep(ctx, plan.wait); err != nil {
			return fmt.Errorf("call %s: %w (after: %w)", method, err, lastErr)
		}
		next, done, err := p.pick(ctx, plan, in)
		if err != nil {
			if errors.Is(err, errAllTried) && lastErr != nil {
				return lastErr // the instances changed since decide saw one left
			}
			if lastErr != nil {
				return fmt.Errorf("%w (after: %w)", err, lastErr)
			}
			return err
		}
		in = next
		if picked != nil {
			picked(in)
		}
		attempts++
		err = p.attempt(ctx, in, attempts, hedge && attempts == 1, method, args, reply)
		kind := classify(ctx, err)
		p.observe(ctx, in, done, err, kind)
		if err == nil {
			return nil
		}
		plan = p.decide(kind, in, &st, *p.healthy.Load())
		if plan.action == giveUp {
			if cerr := contextEnded(ctx); cerr != nil && !errors.Is(err, cerr) {
				// The caller's deadline ended the call, whatever the last attempt met.
				return fmt.Errorf("call %s: %w (after: %w)", method, cerr, err)
			}
			return err
		}
		lastErr = err
	}
}

// attempt makes one call on one instance: attempt n of its call (0 for a
// Broadcast or Fork leg), a hedge or not. This is where attempt interceptors
// run and attempts are reported.
func (p *ClientProxy) attempt(ctx context.Context, in *naming.Instance, n int, hedge bool, method string, args, reply any) error {
	if p.attemptIntercept == nil && len(p.opts.stats) == 0 {
		return p.try(ctx, in, method, args, reply, nil)
	}
	info := &AttemptInfo{Service: p.service, Instance: in, Attempt: max(n, 1), Retry: n > 1, Hedge: hedge}
	callerCtx := ctx
	st, ctx := beginStats(ctx, p.opts.stats, stats.RPCInfo{
		Kind: stats.Attempt, Method: method, Service: p.service, Addr: in.Addr,
		Attempt: info.Attempt, Retry: info.Retry, Hedge: hedge, Codec: p.opts.codec.Name(),
	})
	var err error
	if p.attemptIntercept != nil {
		ctx = context.WithValue(ctx, attemptKey{}, info)
		err = p.attemptIntercept(ctx, method, args, reply, func(ctx context.Context, method string, args, reply any) error {
			return p.try(ctx, in, method, args, reply, st.sizes())
		})
	} else {
		err = p.try(ctx, in, method, args, reply, st.sizes())
	}
	st.end(callerCtx, err)
	return err
}

// try sends one call to one instance, over a pooled connection.
func (p *ClientProxy) try(ctx context.Context, in *naming.Instance, method string, args, reply any, sizes *wireSizes) error {
	c, err := p.pool.Get(ctx, in.Addr)
	if err != nil {
		return err
	}
	if p.opts.attemptTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, p.opts.attemptTimeout)
		defer cancel()
	}
	return c.do(ctx, method, args, reply, sizes)
}

// observe reports an attempt's outcome (err, of kind) to the balancer, the
// outlier detector, the retry budget and the registry fallback.
func (p *ClientProxy) observe(ctx context.Context, in *naming.Instance, done func(error), err error, kind errKind) {
	fault := instanceFault(ctx, err)
	done(fault)
	now := time.Now()
	if p.outliers.record(in.ID, fault, now) {
		p.proxyEvent(stats.ProxyEvent{Kind: stats.InstanceEjected, Instance: in.ID, Addr: in.Addr, Time: now})
		p.refresh()
	}
	if fault != nil && p.refresher != nil {
		p.refresher.ResolveNow() // the registry may know better addresses by now
	}
	switch {
	case err == nil, kind == kindFinal && contextEnded(ctx) == nil:
		p.budget.success() // the server answered
		p.answered(now)
	case kind == kindMaybeExecuted:
		p.budget.failure()
	case errors.Is(err, ErrDial), errors.Is(err, ErrShuttingDown):
		p.forget(in) // during a fallback: this instance left
	}
}

// errAllTried is pick's error when the plan avoids every instance there is.
var errAllTried = errors.New("every instance already tried in this call")

// pick chooses the instance for an attempt as plan says: last again for
// trySame; otherwise the balancer's choice if plan does not avoid it, or,
// when the balancer keeps choosing avoided instances, one of the others at
// random.
func (p *ClientProxy) pick(ctx context.Context, plan retryPlan, last *naming.Instance) (*naming.Instance, func(error), error) {
	if plan.action == trySame {
		return last, noDone, nil
	}
	for i := 0; ; i++ {
		in, done, err := p.balancer.Pick(ctx)
		if err != nil {
			return nil, noDone, fmt.Errorf("consumer: pick an instance of %s: %w", p.service, err)
		}
		if !slices.Contains(plan.avoid, in.ID) && p.outliers.admit(in.ID) {
			return in, done, nil
		}
		done(errPickDiscarded)
		if i == 2 {
			var left []*naming.Instance
			for _, h := range *p.healthy.Load() {
				if !slices.Contains(plan.avoid, h.ID) {
					left = append(left, h)
				}
			}
			if len(left) == 0 {
				return nil, noDone, fmt.Errorf("consumer: pick an instance of %s: %w: %w", p.service, errAllTried, loadbalance.ErrNoInstances)
			}
			return left[rand.IntN(len(left))], noDone, nil
		}
	}
}

func noDone(error) {}

// errPickDiscarded tells the balancer a pick was not used. It wraps
// context.Canceled, which the balancers take as "record no outcome".
var errPickDiscarded = fmt.Errorf("consumer: pick discarded: %w", context.Canceled)

// hedged runs a Failbackup call: a second attempt goes to another instance
// when the first has not answered within the hedging delay; the first
// success wins and the other is cancelled. Each leg decodes into a reply of
// its own, so the two never write the caller's value at once.
func (p *ClientProxy) hedged(ctx context.Context, method string, args, reply any) error {
	rv := reflect.ValueOf(reply)
	if rv.Kind() != reflect.Pointer || rv.IsNil() {
		return fmt.Errorf("%w: hedged call %s: reply must be a non-nil pointer", ErrBadRequest, method)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type outcome struct {
		leg   int
		reply reflect.Value
		err   error
	}
	results := make(chan outcome, 2)
	var legs sync.WaitGroup
	defer func() { cancel(); legs.Wait() }() // the losing leg returns once cancelled
	var mu sync.Mutex
	var firstTried []string
	launch := func(leg int, avoid []string, picked func(*naming.Instance)) {
		legs.Go(func() {
			r := reflect.New(rv.Type().Elem())
			err := p.call(ctx, method, args, r.Interface(), avoid, picked)
			results <- outcome{leg, r, err}
		})
	}
	launch(0, nil, func(in *naming.Instance) {
		mu.Lock()
		firstTried = append(firstTried, in.ID)
		mu.Unlock()
	})
	timer := time.NewTimer(p.opts.hedgeDelay)
	defer timer.Stop()
	running := 1
	var errs [2]error
	for {
		select {
		case <-timer.C: // the first leg is slow: hedge on another instance, if one is left
			mu.Lock()
			avoid := slices.Clone(firstTried)
			mu.Unlock()
			if slices.ContainsFunc(*p.healthy.Load(), func(h *naming.Instance) bool { return !slices.Contains(avoid, h.ID) }) {
				launch(1, avoid, nil)
				running++
			}
		case o := <-results:
			running--
			if o.err == nil {
				rv.Elem().Set(o.reply.Elem())
				return nil
			}
			errs[o.leg] = o.err
			if running == 0 { // a leg that fails has already retried
				if errs[0] != nil {
					return errs[0] // the call's own error, rather than the hedge's
				}
				return errs[1]
			}
		}
	}
}

// Close stops following the registry and closes every connection; calls in
// flight fail with ErrConnClosed. It is safe to call twice.
func (p *ClientProxy) Close() error {
	var err error
	p.closeOnce.Do(func() {
		p.closed.Store(true)
		p.stopWatch()
		p.goroutines.Wait()
		p.outliers.stop()
		err = p.pool.Close()
	})
	return err
}

// proxyEvent logs a decision the proxy took on its own and tells the stats
// handlers of it; the event's Service and Time are filled in here. The
// registry fallback logs its own records (registryFallback).
func (p *ClientProxy) proxyEvent(ev stats.ProxyEvent) {
	switch ev.Kind {
	case stats.InstanceEjected:
		p.log.Warn("instance ejected after repeated connection failures", "instance", ev.Instance, "addr", ev.Addr)
	case stats.InstanceReadmitted:
		p.log.Info("instance readmitted on probation", "instance", ev.Instance, "addr", ev.Addr)
	case stats.InstanceUnhealthy:
		p.log.Warn("instance left out of picks: its health check failed", "instance", ev.Instance, "addr", ev.Addr, "saw", ev.Detail)
	case stats.InstanceHealthy:
		p.log.Info("instance back in picks: its health check passes", "instance", ev.Instance, "addr", ev.Addr, "saw", ev.Detail)
	case stats.BudgetExhausted:
		if now := time.Now(); p.budgetLogged.Swap(now.UnixNano()) < now.Add(-10*time.Second).UnixNano() {
			p.log.Warn("retry budget exhausted: maybe-executed calls fail without retry until calls succeed again", "method", ev.Method)
		}
	}
	if len(p.opts.stats) == 0 {
		return
	}
	ev.Service = p.service
	if ev.Time.IsZero() {
		ev.Time = time.Now()
	}
	p.opts.stats.HandleProxy(&ev)
}
