package consumer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/shoalrpc/shoal/loadbalance"
	"github.com/shoalrpc/shoal/naming"
)

func TestClassify(t *testing.T) {
	live := context.Background()
	ended, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		ctx  context.Context
		err  error
		want errKind
	}{
		{live, &ServiceError{Message: "no"}, kindFinal},
		{live, fmt.Errorf("x: %w", ErrBadRequest), kindFinal},
		{live, fmt.Errorf("x: %w", ErrUnknownMethod), kindFinal},
		{live, fmt.Errorf("x: %w", ErrInternal), kindFinal},
		{live, fmt.Errorf("x: %w", loadbalance.ErrNoInstances), kindFinal},
		{live, fmt.Errorf("x: %w", ErrDial), kindNotExecuted},
		{live, fmt.Errorf("x: %w", ErrShuttingDown), kindNotExecuted},
		{live, fmt.Errorf("x: %w", ErrClientClosed), kindNotExecuted},
		{live, fmt.Errorf("x: %w", ErrOverloaded), kindNotExecuted},
		{live, fmt.Errorf("x: %w", ErrTooManyPending), kindNotExecuted},
		{live, fmt.Errorf("x: %w", ErrUnauthenticated), kindFinal},
		{live, fmt.Errorf("x: %w", ErrConnClosed), kindMaybeExecuted},
		{live, fmt.Errorf("attempt: %w", context.DeadlineExceeded), kindMaybeExecuted},
		{ended, fmt.Errorf("x: %w", ErrConnClosed), kindFinal}, // the caller gave up
		{ended, fmt.Errorf("x: %w", ErrDial), kindFinal},
	}
	for _, tt := range tests {
		if got := classify(tt.ctx, tt.err); got != tt.want {
			t.Errorf("classify(%v, ended=%v) = %d, want %d", tt.err, tt.ctx.Err() != nil, got, tt.want)
		}
	}
}

// decideProxy is a ClientProxy with just what decide reads: the fail mode,
// Retries 2, backoff 10 ms doubling to 500 ms without jitter, and a budget
// of 10 tokens.
func decideProxy(mode FailMode) *ClientProxy {
	o, _ := proxyOptionsOf([]ProxyOption{WithFailMode(mode), WithRetries(2),
		WithBackoff(10*time.Millisecond, 500*time.Millisecond, 0), WithRetryBudget(10, 0.1)})
	return &ClientProxy{opts: o, budget: newRetryBudget(o.budgetTokens, o.budgetRatio), log: slog.New(slog.DiscardHandler)}
}

// TestDecide is the table of the documented retry rules (ClientProxy.decide,
// DESIGN.md "Fail policies"): every kind of error × every fail mode × the
// situations that change the answer.
func TestDecide(t *testing.T) {
	live := context.Background()
	ended, cancel := context.WithCancel(context.Background())
	cancel()
	// Errors of each kind, as classify sees them.
	type sample struct {
		ctx context.Context
		err error
	}
	kinds := map[errKind][]sample{
		kindFinal: {
			{live, &ServiceError{Message: "no"}},
			{live, fmt.Errorf("x: %w", ErrBadRequest)},
			{live, fmt.Errorf("x: %w", ErrUnknownService)},
			{live, fmt.Errorf("x: %w", ErrUnknownMethod)},
			{live, fmt.Errorf("x: %w", ErrInternal)},
			{live, fmt.Errorf("x: %w", ErrUnauthenticated)},
			{live, fmt.Errorf("x: %w", loadbalance.ErrNoInstances)},
			{live, errors.New("reply does not decode")},
			{ended, fmt.Errorf("x: %w", ErrConnClosed)}, // the caller gave up
			{ended, fmt.Errorf("x: %w", ErrDial)},
		},
		kindNotExecuted: {
			{live, fmt.Errorf("x: %w", ErrDial)},
			{live, fmt.Errorf("x: %w", ErrClientClosed)},
			{live, fmt.Errorf("x: %w", ErrShuttingDown)},
			{live, fmt.Errorf("x: %w", ErrOverloaded)},
			{live, fmt.Errorf("x: %w", ErrTooManyPending)},
		},
		kindMaybeExecuted: {
			{live, fmt.Errorf("x: %w", ErrConnClosed)},
			{live, fmt.Errorf("attempt: %w", context.DeadlineExceeded)},
		},
	}
	a, b, c, d := &naming.Instance{ID: "a"}, &naming.Instance{ID: "b"}, &naming.Instance{ID: "c"}, &naming.Instance{ID: "d"}
	abc := []*naming.Instance{a, b, c}
	giveUpPlan := retryPlan{action: giveUp}
	other := func(wait time.Duration, avoid ...string) retryPlan {
		return retryPlan{action: tryOther, avoid: avoid, wait: wait}
	}
	same := func(wait time.Duration) retryPlan { return retryPlan{action: trySame, wait: wait} }
	const ms = time.Millisecond

	// A situation: the attempt on c failed; before it, the call had done st.
	type situation struct {
		name    string
		st      callState
		healthy []*naming.Instance
		budget  bool // the retry budget still allows retries
	}
	first := situation{"first attempt, b and a untried", callState{}, abc, true}
	afterMaybe := situation{"a failed maybe-executed before, b untried", callState{tried: []string{"a"}, retries: 1}, abc, true}
	allTried := situation{"a and b refused before", callState{tried: []string{"a", "b"}, refused: []string{"a", "b"}}, abc, true}
	allTriedOneOK := situation{"a refused, b failed maybe-executed before", callState{tried: []string{"a", "b"}, refused: []string{"a"}, retries: 1}, abc, true}
	alone := situation{"c is the only instance", callState{}, []*naming.Instance{c}, true}
	goneLeft := situation{"a and b refused before; c is no longer listed", callState{tried: []string{"a", "b"}, refused: []string{"a", "b"}}, []*naming.Instance{a, b}, true}
	spent := situation{"Retries spent, d untried", callState{tried: []string{"a", "b"}, retries: 2}, []*naming.Instance{a, b, c, d}, true}
	broke := situation{"the budget refuses", callState{}, abc, false}

	type row struct {
		kind errKind
		sit  situation
		want map[FailMode]retryPlan // by mode
	}
	all := func(p retryPlan) map[FailMode]retryPlan {
		return map[FailMode]retryPlan{Failfast: p, Failover: p, Failretry: p, Failbackup: p}
	}
	rows := []row{
		// Final errors are returned, whatever the mode and the situation.
		{kindFinal, first, all(giveUpPlan)},
		{kindFinal, alone, all(giveUpPlan)},
		{kindFinal, allTried, all(giveUpPlan)},

		// Not executed: another instance not yet tried, at once, in every
		// mode; no Retries, no budget spent.
		{kindNotExecuted, first, all(other(0, "c"))},
		{kindNotExecuted, afterMaybe, all(other(0, "a", "c"))},
		{kindNotExecuted, spent, all(other(0, "a", "b", "c"))}, // Retries do not bound these
		{kindNotExecuted, broke, all(other(0, "c"))},           // nor does the budget
		// One try per instance: every instance tried, only Failretry goes on,
		// on the same instance after backoff, as one of its Retries.
		{kindNotExecuted, allTried, map[FailMode]retryPlan{Failfast: giveUpPlan, Failover: giveUpPlan, Failretry: same(10 * ms), Failbackup: giveUpPlan}},
		{kindNotExecuted, alone, map[FailMode]retryPlan{Failfast: giveUpPlan, Failover: giveUpPlan, Failretry: same(10 * ms), Failbackup: giveUpPlan}},
		{kindNotExecuted, situation{"alone, Retries spent", callState{retries: 2}, []*naming.Instance{c}, true}, all(giveUpPlan)},

		// Maybe executed: the mode decides, within Retries and the budget,
		// with backoff (10 ms, then 20 ms).
		{kindMaybeExecuted, first, map[FailMode]retryPlan{Failfast: giveUpPlan, Failover: other(10*ms, "c"), Failretry: same(10 * ms), Failbackup: other(10*ms, "c")}},
		{kindMaybeExecuted, afterMaybe, map[FailMode]retryPlan{Failfast: giveUpPlan, Failover: other(20*ms, "a", "c"), Failretry: same(20 * ms), Failbackup: other(20*ms, "a", "c")}},
		// Every instance tried: Failover goes to one that has not refused.
		{kindMaybeExecuted, allTriedOneOK, map[FailMode]retryPlan{Failfast: giveUpPlan, Failover: other(20*ms, "a"), Failretry: same(20 * ms), Failbackup: other(20*ms, "a")}},
		{kindMaybeExecuted, alone, map[FailMode]retryPlan{Failfast: giveUpPlan, Failover: other(10 * ms), Failretry: same(10 * ms), Failbackup: other(10 * ms)}},
		// Failover with nothing left that has not refused gives up.
		{kindMaybeExecuted, goneLeft, map[FailMode]retryPlan{Failfast: giveUpPlan, Failover: giveUpPlan, Failretry: same(10 * ms), Failbackup: giveUpPlan}},
		{kindMaybeExecuted, spent, all(giveUpPlan)},
		{kindMaybeExecuted, broke, all(giveUpPlan)},
	}
	for _, r := range rows {
		for mode, want := range r.want {
			for _, smp := range kinds[r.kind] {
				if got := classify(smp.ctx, smp.err); got != r.kind {
					t.Fatalf("classify(%v) = %d, want %d", smp.err, got, r.kind)
				}
				p := decideProxy(mode)
				if !r.sit.budget {
					for p.budget.allow() {
						p.budget.failure()
					}
				}
				st := r.sit.st
				st.tried, st.refused = slices.Clone(st.tried), slices.Clone(st.refused)
				got := p.decide(r.kind, c, &st, r.sit.healthy)
				slices.Sort(got.avoid)
				if got.action != want.action || got.wait != want.wait || !slices.Equal(got.avoid, want.avoid) {
					t.Errorf("%s, %s, %v: plan %s avoid %v wait %v; want %s avoid %v wait %v",
						mode, r.sit.name, smp.err, got.action, got.avoid, got.wait, want.action, want.avoid, want.wait)
				}
				// What decide records for the next attempt.
				if !slices.Contains(st.tried, "c") {
					t.Errorf("%s, %s: the attempt on c not recorded as tried", mode, r.sit.name)
				}
				if refused := slices.Contains(st.refused, "c"); refused != (r.kind == kindNotExecuted) {
					t.Errorf("%s, %s, %v: c recorded as refused: %v", mode, r.sit.name, smp.err, refused)
				}
				counted := want.wait > 0 // every counted retry, and only those, waits
				if spentNow := st.retries - r.sit.st.retries; spentNow != map[bool]int{true: 1}[counted] {
					t.Errorf("%s, %s, %v: %d retries spent", mode, r.sit.name, smp.err, spentNow)
				}
			}
		}
	}
}

func TestBackoffDelay(t *testing.T) {
	o, _ := proxyOptionsOf([]ProxyOption{WithBackoff(10*time.Millisecond, 50*time.Millisecond, 0.5)})
	p := &ClientProxy{opts: o}
	for n, base := range []time.Duration{10, 20, 40, 50, 50} {
		base *= time.Millisecond
		if d := p.backoffDelay(n + 1); d < base || d > base+base/2 {
			t.Errorf("backoff before retry %d: %v, want %v plus up to half of it", n+1, d, base)
		}
	}
}

func TestRetryBudgetThrottlesAFailingCluster(t *testing.T) {
	b := newRetryBudget(10, 0.1)
	allowed := 0
	for range 100 { // every attempt fails
		b.failure()
		if b.allow() {
			allowed++
		}
	}
	if allowed != 4 { // tokens 9, 8, 7, 6 are above half of 10
		t.Fatalf("allowed %d retries in a failing cluster, want 4", allowed)
	}
	for range 60 { // 60 successes give back 6 tokens, above half
		b.success()
	}
	if !b.allow() {
		t.Fatal("retries still throttled after the cluster recovered")
	}
	off := newRetryBudget(0, 0)
	off.failure()
	if !off.allow() {
		t.Fatal("a disabled budget throttled")
	}
}

func TestOutlierEjectionAndProbation(t *testing.T) {
	o := newOutliers(3, time.Second, 4*time.Second)
	a, b := &naming.Instance{ID: "a"}, &naming.Instance{ID: "b"}
	all := []*naming.Instance{a, b}
	now := time.Unix(1000, 0)
	boom := errors.New("refused")

	for i := range 2 {
		if o.record("a", boom, now) {
			t.Fatalf("ejected after %d faults", i+1)
		}
	}
	if !o.record("a", boom, now) {
		t.Fatal("not ejected after three consecutive faults")
	}
	healthy, next := o.filter(all, now, nil)
	if len(healthy) != 1 || healthy[0] != b || !next.Equal(now.Add(time.Second)) {
		t.Fatalf("healthy %v, next %v", healthy, next)
	}
	// Period over: a is back on probation; one more fault ejects it at once,
	// for twice as long.
	now = now.Add(time.Second)
	if healthy, _ := o.filter(all, now, nil); len(healthy) != 2 {
		t.Fatal("not let back in after its period")
	}
	if !o.record("a", boom, now) {
		t.Fatal("a failed probe did not eject again")
	}
	if _, next := o.filter(all, now, nil); !next.Equal(now.Add(2 * time.Second)) {
		t.Fatalf("second ejection ends at %v, want +2s", next)
	}
	// A successful probe clears the record.
	now = now.Add(2 * time.Second)
	o.filter(all, now, nil)
	o.record("a", nil, now)
	if o.record("a", boom, now) {
		t.Fatal("one fault after a cleared record ejected")
	}
	// Never all of them: with both out, the one that returns first stays.
	o2 := newOutliers(1, time.Second, time.Minute)
	o2.record("a", boom, now)
	o2.record("b", boom, now.Add(time.Millisecond))
	healthy, _ = o2.filter(all, now.Add(2*time.Millisecond), nil)
	if len(healthy) != 1 || healthy[0] != a {
		t.Fatalf("with every instance failing, picks from %v", healthy)
	}
}

func TestParseFailMode(t *testing.T) {
	for _, m := range []FailMode{Failfast, Failover, Failretry, Failbackup} {
		got, err := ParseFailMode(m.String())
		if err != nil || got != m {
			t.Fatalf("%s: %v, %v", m, got, err)
		}
	}
	if m, err := ParseFailMode(" FailOver "); err != nil || m != Failover {
		t.Fatalf("ParseFailMode ignores case and space: %v, %v", m, err)
	}
	if _, err := ParseFailMode("failsometimes"); err == nil {
		t.Fatal("accepted an unknown mode")
	}
}
