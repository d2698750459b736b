package consumer

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	healthsvc "github.com/shoalrpc/shoal/health" // outlier.go has a type health
	"github.com/shoalrpc/shoal/naming"
	"github.com/shoalrpc/shoal/stats"
)

// WithHealthCheck makes a ClientProxy check each instance's health every
// interval, with a ShoalHealth.Check of the proxy's service name (see
// package health and provider.Health), each check bounded by timeout
// (0: half the interval; at most the interval). An instance that answers
// NOT_SERVING, or does not answer (dial refused, connection broken, timed
// out), is left out of picks from then on, and put back once a check finds
// it SERVING again: a provider taken out of rotation, or one that hung,
// stops getting calls within one interval, before any call fails on it.
//
// A provider that does not know the service's name (no WithRegistry, or a
// registry name of its own) is asked for its health as a whole (service
// ""); one without the health service (provider.WithoutHealth, or another
// implementation) answers "unknown service", and that answer is taken as a
// heartbeat: it is up. So are its refusals of the check ("overloaded",
// "unauthenticated"): the instance answered.
//
// As with outlier ejection, at least one instance is always left in: when
// every instance fails its check, calls go to all of them (a fault that
// fails every check is likelier in the checks than in every instance).
// Changes are logged and reported, once made, to stats handlers as
// stats.InstanceUnhealthy and stats.InstanceHealthy events. Checks do not
// count as calls: interceptors and stats handlers of the proxy do not see
// them (the provider's do).
func WithHealthCheck(interval, timeout time.Duration) ProxyOption {
	return proxyOption(func(o *options) {
		value := fmt.Sprintf("%v, %v", interval, timeout)
		switch {
		case interval <= 0:
			o.invalid("WithHealthCheck", value, "the interval must be more than 0")
		case timeout < 0 || timeout > interval:
			o.invalid("WithHealthCheck", value, "want 0 <= timeout <= interval")
		default:
			if timeout == 0 {
				timeout = interval / 2
			}
			o.healthInterval, o.healthTimeout = interval, timeout
		}
	})
}

// healthChecks holds the verdicts of a proxy's active health checks, by
// instance ID.
type healthChecks struct {
	failing atomic.Int64 // instances whose last check failed: filter takes no lock at 0

	mu    sync.Mutex
	state map[string]*checkState
}

// checkState is one instance's last check.
type checkState struct {
	ok     bool      // the last check passed
	detail string    // what it saw: "SERVING", "NOT_SERVING", an error
	at     time.Time // when it ended
}

// CheckResult is an instance's last health check, as Snapshot reports it.
type CheckResult struct {
	Checked bool      // a check has ended: the fields below mean something
	OK      bool      // it passed: the instance is in picks as far as health goes
	Detail  string    // what it saw: "SERVING", "NOT_SERVING", "up (no health service)", or the error
	At      time.Time // when it ended
}

func newHealthChecks() *healthChecks {
	return &healthChecks{state: make(map[string]*checkState)}
}

// filter leaves out of list the instances whose last check failed, unless
// that leaves none: then every one stays.
func (h *healthChecks) filter(list []*naming.Instance) []*naming.Instance {
	if h == nil || h.failing.Load() == 0 {
		return list
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	kept := make([]*naming.Instance, 0, len(list))
	for _, in := range list {
		if st := h.state[in.ID]; st == nil || st.ok {
			kept = append(kept, in)
		}
	}
	if len(kept) == 0 {
		return list
	}
	return kept
}

// result returns id's last check.
func (h *healthChecks) result(id string) CheckResult {
	if h == nil {
		return CheckResult{}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	st := h.state[id]
	if st == nil {
		return CheckResult{}
	}
	return CheckResult{Checked: true, OK: st.ok, Detail: st.detail, At: st.at}
}

// record stores id's verdict and reports whether it changed whether the
// instance is in picks (a first check that passes changes nothing).
func (h *healthChecks) record(id string, ok bool, detail string, at time.Time) (changed bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	st := h.state[id]
	if st == nil {
		st = &checkState{ok: true}
		h.state[id] = st
	}
	changed = st.ok != ok
	st.ok, st.detail, st.at = ok, detail, at
	h.count()
	return changed
}

// keep forgets the instances not in list. h.mu is not held.
func (h *healthChecks) keep(list []*naming.Instance) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for id := range h.state {
		if !slices.ContainsFunc(list, func(in *naming.Instance) bool { return in.ID == id }) {
			delete(h.state, id)
		}
	}
	h.count()
}

// count publishes how many instances fail. h.mu is held.
func (h *healthChecks) count() {
	n := 0
	for _, st := range h.state {
		if !st.ok {
			n++
		}
	}
	h.failing.Store(int64(n))
}

// checkHealth checks every instance calls may go to, now and then every
// interval, until ctx ends.
func (p *ClientProxy) checkHealth(ctx context.Context) {
	t := time.NewTicker(p.opts.healthInterval)
	defer t.Stop()
	for {
		p.checkRound(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// checkRound checks every instance at once and waits for the verdicts;
// instances whose verdict changed leave or rejoin picks.
func (p *ClientProxy) checkRound(ctx context.Context) {
	list := *p.instances.Load()
	p.checks.keep(list)
	type verdict struct {
		in     *naming.Instance
		ok     bool
		detail string
	}
	verdicts := make([]verdict, len(list))
	decided := make([]bool, len(list))
	var wg sync.WaitGroup
	for i, in := range list {
		wg.Go(func() {
			ok, detail, done := p.checkOne(ctx, in)
			verdicts[i], decided[i] = verdict{in, ok, detail}, done
		})
	}
	wg.Wait()
	if ctx.Err() != nil {
		return // closing: a check cut short says nothing
	}
	now := time.Now()
	var events []stats.ProxyEvent
	for i, v := range verdicts {
		if !decided[i] || !p.checks.record(v.in.ID, v.ok, v.detail, now) {
			continue
		}
		kind := stats.InstanceHealthy
		if !v.ok {
			kind = stats.InstanceUnhealthy
		}
		events = append(events, stats.ProxyEvent{Kind: kind, Instance: v.in.ID, Addr: v.in.Addr, Detail: v.detail, Time: now})
	}
	if len(events) == 0 {
		return
	}
	// The balancer first: whoever hears of a change finds it made, and
	// every verdict of the round is recorded by then.
	p.refresh()
	for _, ev := range events {
		p.proxyEvent(ev)
	}
}

// checkOne checks one instance: ok says it passed, detail what it saw;
// decided is false when the check said nothing about the instance (the
// proxy closing, too many calls pending on the connection).
func (p *ClientProxy) checkOne(ctx context.Context, in *naming.Instance) (ok bool, detail string, decided bool) {
	ctx, cancel := context.WithTimeout(ctx, p.opts.healthTimeout)
	defer cancel()
	c, err := p.pool.Get(ctx, in.Addr)
	if !slices.ContainsFunc(*p.instances.Load(), func(h *naming.Instance) bool { return h.Addr == in.Addr }) {
		// It left while this check dialled it: the connection the check
		// may have made is not kept (setInstances dropped the others).
		p.pool.Drop(in.Addr)
	}
	if err == nil {
		var resp healthsvc.CheckResponse
		err = c.do(ctx, healthsvc.CheckMethod, &healthsvc.CheckRequest{Service: p.service}, &resp, nil)
		if err == nil && resp.Status == healthsvc.ServiceUnknown {
			// It does not know the registry's name: ask for the whole.
			err = c.do(ctx, healthsvc.CheckMethod, &healthsvc.CheckRequest{}, &resp, nil)
		}
		if err == nil {
			return resp.Status == healthsvc.Serving, resp.Status.String(), true
		}
	}
	switch {
	case errors.Is(err, ErrPoolClosed), errors.Is(err, ErrTooManyPending):
		return false, "", false
	case errors.Is(err, ErrUnknownService), errors.Is(err, ErrUnknownMethod):
		return true, "up (no health service)", true
	case errors.Is(err, ErrOverloaded), errors.Is(err, ErrUnauthenticated), errors.Is(err, ErrRefused):
		return true, "up (" + statusOf(err) + " the check)", true
	}
	return false, err.Error(), true
}
