package consumer

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync/atomic"
	"time"

	"github.com/shoalrpc/shoal/loadbalance"
	"github.com/shoalrpc/shoal/stats"
)

// FailMode says what a ClientProxy does when a call may have run and failed
// (the connection broke mid-call, or the attempt timed out). Calls known not
// to have run are retried on another instance in every mode; the remote
// method's own errors are never retried.
type FailMode int

// Fail modes.
const (
	// Failfast returns the error.
	Failfast FailMode = iota
	// Failover tries up to Retries more times, each on an instance not yet
	// tried in this call while one is left, with backoff.
	Failover
	// Failretry tries the same instance again, reconnecting, up to Retries
	// more times, with backoff.
	Failretry
	// Failbackup hedges calls to methods marked idempotent (WithIdempotent):
	// when the first attempt has not answered within the hedging delay, a
	// second goes to another instance and the first reply wins. Other calls
	// behave as Failover.
	Failbackup
)

var failModeNames = [...]string{Failfast: "failfast", Failover: "failover", Failretry: "failretry", Failbackup: "failbackup"}

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
	case errors.Is(err, ErrConnClosed), errors.Is(err, context.DeadlineExceeded):
		return kindMaybeExecuted
	}
	// ServiceError, bad request, unknown service or method, internal error,
	// unauthenticated, no instances, a reply that does not decode.
	return kindFinal
}

// instanceFault reports whether err says something about the instance, for
// the balancer's feedback and outlier ejection: transport failures and
// timeouts do, the method's own errors and refusals by a draining server do not.
func instanceFault(ctx context.Context, err error) error {
	if err == nil || contextEnded(ctx) != nil {
		return nil
	}
	if errors.Is(err, ErrDial) || errors.Is(err, ErrConnClosed) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return nil
}

// retryPlan is the decision after a failed attempt.
type retryPlan int

const (
	giveUp       retryPlan = iota
	tryOther               // another instance, not yet tried in this call if any is left
	trySameAgain           // the same instance, reconnecting
)

// decide is where a retry is decided. attempt counts the attempts made so
// far (1 after the first); maybeRetries counts the retries already spent on
// maybe-executed errors.
func (p *ClientProxy) decide(ctx context.Context, err error, attempt, maybeRetries int) retryPlan {
	if attempt >= p.maxAttempts() {
		return giveUp
	}
	switch classify(ctx, err) {
	case kindNotExecuted:
		// Safe to repeat, and bounded by maxAttempts to one try per
		// instance: a draining cluster's refusals must not spend the budget
		// that protects it from maybe-executed retries.
		return tryOther
	case kindMaybeExecuted:
		if maybeRetries >= p.opts.retries {
			return giveUp
		}
		if !p.budget.allow() {
			p.proxyEvent(stats.ProxyEvent{Kind: stats.BudgetExhausted})
			return giveUp
		}
		switch p.opts.failMode {
		case Failover, Failbackup:
			return tryOther
		case Failretry:
			return trySameAgain
		}
	}
	return giveUp
}

// maxAttempts bounds the attempts of one call: the retries the mode allows,
// plus one try per instance for calls that were refused without running.
func (p *ClientProxy) maxAttempts() int {
	return 1 + p.opts.retries + len(*p.instances.Load())
}

// backoff waits before retry number n (1-based): exponential from the base,
// capped, with jitter; it returns early with ctx's error.
func (p *ClientProxy) backoff(ctx context.Context, n int) error {
	o := &p.opts
	d := o.backoffBase << min(n-1, 20)
	if d > o.backoffCap || d <= 0 {
		d = o.backoffCap
	}
	if o.backoffJitter > 0 {
		d += time.Duration(rand.Float64() * o.backoffJitter * float64(d))
	}
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
