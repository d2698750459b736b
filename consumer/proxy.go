package consumer

import (
	"context"
	"errors"
	"fmt"
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
// proceeds as pick → call → report the outcome to the balancer → decide
// (failpolicy.go) → maybe pick again.
type ClientProxy struct {
	service  string
	opts     options
	balancer loadbalance.Balancer
	pool     *Pool
	budget   *retryBudget
	outliers *outliers

	intercept        Interceptor // WithInterceptors as one; nil: none
	attemptIntercept Interceptor // WithAttemptInterceptors as one; nil: none
	invoke           Invoker     // p.logical, bound once

	instances atomic.Pointer[[]*naming.Instance] // the registry's latest list
	healthy   atomic.Pointer[[]*naming.Instance] // what the balancer holds: instances minus ejected
	refreshMu sync.Mutex                         // serialises balancer updates

	closed     atomic.Bool
	stopWatch  context.CancelFunc
	goroutines sync.WaitGroup
	closeOnce  sync.Once
}

// NewClientProxy returns a proxy for service, whose instances it fetches from
// reg and then follows with reg.Watch. A service with no instance is an error
// wrapping loadbalance.ErrNoInstances, unless WithWaitForInstances is given.
func NewClientProxy(service string, reg naming.Registry, opts ...ProxyOption) (*ClientProxy, error) {
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
	}
	p.invoke = p.logical
	empty := []*naming.Instance{}
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
	p.setInstances(list)
	p.goroutines.Go(func() {
		for list := range watch { // closed when the watch's context ends
			p.setInstances(list)
		}
	})
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
// their calls finish.
func (p *ClientProxy) setInstances(list []*naming.Instance) {
	list = slices.Clone(list)
	old := p.instances.Swap(&list)
	p.proxyEvent(stats.ProxyEvent{Kind: stats.InstancesChanged, Instances: len(list)})
	p.refresh()
	for _, in := range *old {
		if !slices.ContainsFunc(list, func(n *naming.Instance) bool { return n.Addr == in.Addr }) {
			p.pool.Drop(in.Addr)
		}
	}
}

// refresh gives the balancer the instances that are not ejected.
func (p *ClientProxy) refresh() {
	p.refreshMu.Lock()
	defer p.refreshMu.Unlock()
	if p.closed.Load() {
		return
	}
	var readmitted func(*naming.Instance)
	if len(p.opts.stats) > 0 {
		readmitted = func(in *naming.Instance) {
			p.proxyEvent(stats.ProxyEvent{Kind: stats.InstanceReadmitted, Instance: in.ID, Addr: in.Addr})
		}
	}
	healthy, next := p.outliers.filter(*p.instances.Load(), time.Now(), readmitted)
	p.healthy.Store(&healthy)
	p.balancer.Update(healthy)
	if !next.IsZero() {
		p.outliers.wakeAt(next, p.refresh)
	}
}

// Instances returns the instances the proxy currently knows.
func (p *ClientProxy) Instances() []*naming.Instance { return slices.Clone(*p.instances.Load()) }

// Call calls method ("Service.Method") on one instance of the service,
// retrying as the fail mode allows, and decodes the result into reply. The
// caller's deadline bounds the whole call, retries included.
//
// The interceptors of WithInterceptors run around the whole call, those of
// WithAttemptInterceptors around each attempt.
func (p *ClientProxy) Call(ctx context.Context, method string, args, reply any) error {
	if p.closed.Load() {
		return ErrProxyClosed
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
// fail policy gives up. Instances in avoid are treated as tried already;
// picked, if not nil, learns each instance chosen.
func (p *ClientProxy) call(ctx context.Context, method string, args, reply any, avoid []string, picked func(*naming.Instance)) error {
	hedge := avoid != nil // a hedge leg starts out avoiding the first leg's instances
	var (
		tried        = avoid // IDs of the instances tried in this call
		same         *naming.Instance
		maybeRetries int
		lastErr      error
	)
	for attempt := 1; ; attempt++ {
		in, done, err := p.pick(ctx, tried, same)
		if err != nil {
			if lastErr != nil {
				return fmt.Errorf("%w (after: %w)", err, lastErr)
			}
			return err
		}
		if picked != nil {
			picked(in)
		}
		err = p.attempt(ctx, in, attempt, hedge && attempt == 1, method, args, reply)
		p.observe(ctx, in, done, err)
		if err == nil {
			return nil
		}
		plan := p.decide(ctx, err, attempt, maybeRetries)
		if plan == giveUp {
			if cerr := contextEnded(ctx); cerr != nil && !errors.Is(err, cerr) {
				// The caller's deadline ended the call, whatever the last attempt met.
				return fmt.Errorf("call %s: %w (after: %w)", method, cerr, err)
			}
			return err
		}
		lastErr = err
		tried = append(tried, in.ID)
		same = nil
		if plan == trySameAgain {
			same = in
		}
		// Back off before a maybe-executed retry, and before going round
		// instances that have all refused already.
		backoffs := 0
		if classify(ctx, err) == kindMaybeExecuted {
			maybeRetries++
			backoffs = maybeRetries
		} else if len(tried) >= len(*p.healthy.Load()) {
			backoffs = len(tried) - len(*p.healthy.Load()) + 1
		}
		if backoffs > 0 {
			if err := p.backoff(ctx, backoffs); err != nil {
				return fmt.Errorf("call %s: %w (after: %w)", method, err, lastErr)
			}
		}
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

// observe reports an attempt's outcome to the balancer, the outlier detector
// and the retry budget.
func (p *ClientProxy) observe(ctx context.Context, in *naming.Instance, done func(error), err error) {
	fault := instanceFault(ctx, err)
	done(fault)
	if now := time.Now(); p.outliers.record(in.ID, fault, now) {
		p.proxyEvent(stats.ProxyEvent{Kind: stats.InstanceEjected, Instance: in.ID, Addr: in.Addr, Time: now})
		p.refresh()
	}
	switch kind := classify(ctx, err); {
	case err == nil, kind == kindFinal && contextEnded(ctx) == nil:
		p.budget.success() // the server answered
	case kind == kindMaybeExecuted:
		p.budget.failure()
	}
}

// pick chooses the instance for an attempt: same when retrying in place;
// otherwise the balancer's choice, or, when it keeps choosing instances this
// call already tried, one of the untried instances at random.
func (p *ClientProxy) pick(ctx context.Context, tried []string, same *naming.Instance) (*naming.Instance, func(error), error) {
	if same != nil {
		return same, noDone, nil
	}
	for i := 0; ; i++ {
		in, done, err := p.balancer.Pick(ctx)
		if err != nil {
			return nil, noDone, fmt.Errorf("consumer: pick an instance of %s: %w", p.service, err)
		}
		if !slices.Contains(tried, in.ID) {
			return in, done, nil
		}
		if i == 2 {
			var untried []*naming.Instance
			for _, h := range *p.healthy.Load() {
				if !slices.Contains(tried, h.ID) {
					untried = append(untried, h)
				}
			}
			if len(untried) == 0 { // every instance tried: go round again
				return in, done, nil
			}
			done(errPickDiscarded)
			return untried[rand.IntN(len(untried))], noDone, nil
		}
		done(errPickDiscarded)
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
		reply reflect.Value
		err   error
	}
	results := make(chan outcome, 2)
	var legs sync.WaitGroup
	defer func() { cancel(); legs.Wait() }() // the losing leg returns once cancelled
	var mu sync.Mutex
	var firstTried []string
	launch := func(avoid []string, picked func(*naming.Instance)) {
		legs.Go(func() {
			r := reflect.New(rv.Type().Elem())
			err := p.call(ctx, method, args, r.Interface(), avoid, picked)
			results <- outcome{r, err}
		})
	}
	launch(nil, func(in *naming.Instance) {
		mu.Lock()
		firstTried = append(firstTried, in.ID)
		mu.Unlock()
	})
	timer := time.NewTimer(p.opts.hedgeDelay)
	defer timer.Stop()
	running := 1
	var firstErr error
	for {
		select {
		case <-timer.C: // the first leg is slow: hedge on another instance
			mu.Lock()
			avoid := slices.Clone(firstTried)
			mu.Unlock()
			launch(avoid, nil)
			running++
		case o := <-results:
			running--
			if o.err == nil {
				rv.Elem().Set(o.reply.Elem())
				return nil
			}
			if firstErr == nil {
				firstErr = o.err
			}
			if running == 0 { // a leg that fails has already retried
				return firstErr
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

// proxyEvent tells the stats handlers of a decision the proxy took on its
// own; the event's Service and Time are filled in here.
func (p *ClientProxy) proxyEvent(ev stats.ProxyEvent) {
	if len(p.opts.stats) == 0 {
		return
	}
	ev.Service = p.service
	if ev.Time.IsZero() {
		ev.Time = time.Now()
	}
	p.opts.stats.HandleProxy(&ev)
}
