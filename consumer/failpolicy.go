package consumer

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/shoalrpc/shoal/loadbalance"
	"github.com/shoalrpc/shoal/naming"
	"github.com/shoalrpc/shoal/stats"
)

// FailMode says what a ClientProxy does when a call may have run and failed
// (the connection broke mid-call, or the attempt timed out). Calls known not
// to have run are retried on another instance in every mode, at most once per
// instance; the remote method's own errors are never retried. The rules, all
// in one place, are ClientProxy.decide's (failpolicy.go).
type FailMode int

// Fail modes.
const (
	// Failfast returns the error.
	Failfast FailMode = iota
	// Failover tries up to Retries more times, each on an instance not yet
	// tried in this call while one is left (then on one that has not
	// refused the call), with backoff.
	Failover
	// Failretry tries the same instance again, reconnecting, up to Retries
	// more times, with backoff; also when every instance refused the call,
	// so that a call rides out an instance's restart.
	Failretry
	// Failbackup hedges calls to methods marked idempotent (WithIdempotent):
	// when the first attempt has not answered within the hedging delay, a
	// second goes to another instance and the first reply wins. Other calls
	// behave as Failover.
	Failbackup
)

var failModeNames = [...]string{Failfast: "failfast", Failover: "failover", Failretry: "failretry", Failbackup: "failbackup"}

// String returns the mode's name as ParseFailMode reads it, e.g. "failover".
func (m FailMode) String() string {
	if m >= 0 && int(m) < len(failModeNames) {
		return failModeNames[m]
	}
	return fmt.Sprintf("FailMode(%d)", int(m))
}

// ParseFailMode returns the FailMode named name ("failfast", "failover",
// "failretry", "failbackup"), ignoring case and surrounding space.
func ParseFailMode(name string) (FailMode, error) {
	for i, n := range failModeNames {
		if strings.EqualFold(strings.TrimSpace(name), n) {
			return FailMode(i), nil
		}
	}
	return 0, fmt.Errorf("consumer: unknown fail mode %q (valid: failfast, failover, failretry, failbackup)", name)
}

// errKind is what an attempt's error says about retrying it.
type errKind int

const (
	kindFinal         errKind = iota // return it: retrying cannot help or is not allowed
	kindNotExecuted                  // the call did not run: another instance may take it
	kindMaybeExecuted                // the call may have run: the fail mode decides
)

// classify sorts an attempt's error into the three kinds of DESIGN.md. ctx is
// the caller's context: its end is final, while an attempt's own timeout is
// "maybe executed".
func classify(ctx context.Context, err error) errKind {
	switch {
	case contextEnded(ctx) != nil:
		return kindFinal
	case errors.Is(err, ErrDial), errors.Is(err, ErrClientClosed), errors.Is(err, ErrShuttingDown),
		errors.Is(err, ErrOverloaded), errors.Is(err, ErrTooManyPending), errors.Is(err, ErrRefused):
		return kindNotExecuted
	case errors.Is(err, ErrConnClosed), errors.Is(err, context.DeadlineExceeded), errors.Is(err, ErrStreamAborted):
		return kindMaybeExecuted
	}
	// ServiceError, bad request, unknown service or method, internal error,
	// unauthenticated, no instances, a reply that does not decode.
	return kindFinal
}

// instanceFault reports whether err says something about the instance, for
// the balancer's feedback and outlier ejection: transport failures and
// timeouts do, the method's own errors and refusals by a draining server do
// not. A call that timed out on a connection gone silent counts even when
// the caller's own deadline ended it: the instance did not answer a probe.
func instanceFault(ctx context.Context, err error) error {
	if errors.Is(err, errSilentConn) {
		return err
	}
	if err == nil || contextEnded(ctx) != nil {
		return nil
	}
	if errors.Is(err, ErrDial) || errors.Is(err, ErrConnClosed) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return nil
}

// retryAction is what a ClientProxy does after a failed attempt.
type retryAction int

const (
	giveUp   retryAction = iota // return the attempt's error
	tryOther                    // another instance, one the plan does not avoid
	trySame                     // the same instance again, reconnecting
)

func (a retryAction) String() string {
	switch a {
	case tryOther:
		return "tryOther"
	case trySame:
		return "trySame"
	}
	return "giveUp"
}

// retryPlan is the whole decision after a failed attempt; the call loop
// (proxy.go) only carries it out.
type retryPlan struct {
	action retryAction
	avoid  []string      // tryOther: IDs of the instances the pick must not choose
	wait   time.Duration // before the next attempt
}

// callState is what one call has done so far, as far as retrying goes.
type callState struct {
	method  string   // the call's "Service.Method"
	tried   []string // IDs of the instances tried in this call (a hedge's second leg starts with the first's)
	refused []string // IDs of those that refused the call without running it
	retries int      // retries spent: maybe-executed ones, and Failretry's retries of a refusing instance
}

// decide is the one place where a retry is decided. An attempt on in failed
// with an error of kind (classify); decide records the attempt in st and
// returns the plan. healthy is what the balancer picks from now. The rules:
//
//   - final: give up.
//   - not executed: try an instance not yet tried in this call, at once, in
//     every mode. This spends neither Retries nor the retry budget (nothing
//     ran), and is bounded by one try per instance. When every instance has
//     been tried, Failretry tries the same one again after backoff as one of
//     its Retries (a restarting instance refuses for a moment: that is what
//     Failretry waits out); the other modes give up.
//   - maybe executed: Failfast gives up; the other modes give up once Retries
//     retries are spent or the retry budget refuses one. Otherwise, after
//     backoff, Failover and Failbackup try another instance (one not yet
//     tried while any is left, else any that has not refused in this call),
//     and Failretry the same instance, reconnecting.
//
// The backoff before retry n (counted over the call) is WithBackoff's.
func (p *ClientProxy) decide(kind errKind, in *naming.Instance, st *callState, healthy []*naming.Instance) retryPlan {
	if !slices.Contains(st.tried, in.ID) {
		st.tried = append(st.tried, in.ID)
	}
	untriedLeft := slices.ContainsFunc(healthy, func(h *naming.Instance) bool { return !slices.Contains(st.tried, h.ID) })
	switch kind {
	case kindNotExecuted:
		if !slices.Contains(st.refused, in.ID) {
			st.refused = append(st.refused, in.ID)
		}
		switch {
		case untriedLeft:
			return retryPlan{action: tryOther, avoid: st.tried}
		case p.opts.failMode == Failretry && st.retries < p.opts.retries:
			st.retries++
			return retryPlan{action: trySame, wait: p.backoffDelay(st.retries)}
		}
	case kindMaybeExecuted:
		if p.opts.failMode == Failfast || st.retries >= p.opts.retries {
			return retryPlan{action: giveUp}
		}
		if !p.budget.allow() {
			p.proxyEvent(stats.ProxyEvent{Kind: stats.BudgetExhausted, Method: st.method})
			return retryPlan{action: giveUp}
		}
		switch p.opts.failMode {
		case Failover, Failbackup:
			avoid := st.tried
			if !untriedLeft {
				avoid = st.refused
				if !slices.ContainsFunc(healthy, func(h *naming.Instance) bool { return !slices.Contains(avoid, h.ID) }) {
					return retryPlan{action: giveUp} // every instance refused or is gone
				}
			}
			st.retries++
			return retryPlan{action: tryOther, avoid: avoid, wait: p.backoffDelay(st.retries)}
		case Failretry:
			st.retries++
			return retryPlan{action: trySame, wait: p.backoffDelay(st.retries)}
		}
	}
	return retryPlan{action: giveUp}
}

// backoffDelay is the wait before retry n (1-based): exponential from the
// base, capped, plus jitter.
func (p *ClientProxy) backoffDelay(n int) time.Duration {
	o := &p.opts
	d := o.backoffBase << min(n-1, 20)
	if d > o.backoffCap || d <= 0 {
		d = o.backoffCap
	}
	if o.backoffJitter > 0 {
		d += time.Duration(rand.Float64() * o.backoffJitter * float64(d))
	}
	return max(d, 0)
}

// sleep waits for d, or returns early with ctx's error.
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// retryBudget is gRPC's retry throttling: a token bucket of max tokens that
// every maybe-executed failure drains by one and every answer refills by
// ratio; retries are allowed only while more than half the tokens are left.
// A healthy cluster never notices it; a failing one gets at most a few
// retries per success instead of Retries times its load. Tokens are kept in
// thousandths, in an atomic, so the success of every call takes no lock (and,
// with the bucket full, writes nothing).
type retryBudget struct {
	milli    atomic.Int64 // tokens × 1000
	max      int64        // in thousandths; 0: budget off
	refill   int64        // thousandths given back per success
	halfFull int64
}

func newRetryBudget(max, ratio float64) *retryBudget {
	b := &retryBudget{max: int64(max * 1000), refill: int64(ratio * 1000)}
	b.halfFull = b.max / 2
	b.milli.Store(b.max)
	return b
}

func (b *retryBudget) success() { b.add(b.refill) }

func (b *retryBudget) failure() { b.add(-1000) }

// add moves the tokens by delta, within [0, max].
func (b *retryBudget) add(delta int64) {
	if b.max <= 0 {
		return
	}
	for {
		v := b.milli.Load()
		n := min(max(v+delta, 0), b.max)
		if n == v || b.milli.CompareAndSwap(v, n) {
			return
		}
	}
}

// allow reports whether a retry may be made now.
func (b *retryBudget) allow() bool {
	return b.max <= 0 || b.milli.Load() > b.halfFull
}

// errNoInstance wraps loadbalance.ErrNoInstances for a service.
func errNoInstance(service string) error {
	return fmt.Errorf("consumer: service %q: %w", service, loadbalance.ErrNoInstances)
}
