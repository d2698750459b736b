package consumer

import (
	"context"
	"errors"
	"fmt"
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

func proxyWith(mode FailMode, retries int, instances int) *ClientProxy {
	o, _ := proxyOptionsOf([]ProxyOption{WithFailMode(mode), WithRetries(retries)})
	p := &ClientProxy{opts: o, budget: newRetryBudget(o.budgetTokens, o.budgetRatio)}
	list := make([]*naming.Instance, instances)
	p.instances.Store(&list)
	return p
}

func TestDecide(t *testing.T) {
	ctx := context.Background()
	maybe := fmt.Errorf("x: %w", ErrConnClosed)
	refused := fmt.Errorf("x: %w", ErrDial)
	remote := &ServiceError{Message: "no"}
	tests := []struct {
		mode         FailMode
		err          error
		attempt      int
		maybeRetries int
		want         retryPlan
	}{
		{Failfast, remote, 1, 0, giveUp},
		{Failover, remote, 1, 0, giveUp},
		{Failfast, refused, 1, 0, tryOther},
		{Failretry, refused, 1, 0, tryOther},
		{Failfast, maybe, 1, 0, giveUp},
		{Failover, maybe, 1, 0, tryOther},
		{Failover, maybe, 3, 2, giveUp}, // Retries (2) spent
		{Failretry, maybe, 1, 0, trySameAgain},
		{Failbackup, maybe, 1, 0, tryOther},
		{Failfast, refused, 6, 0, giveUp}, // 1 + 2 retries + 3 instances attempts made
	}
	for _, tt := range tests {
		p := proxyWith(tt.mode, 2, 3)
		if got := p.decide(ctx, tt.err, tt.attempt, tt.maybeRetries); got != tt.want {
			t.Errorf("%s, %v, attempt %d: %d, want %d", tt.mode, tt.err, tt.attempt, got, tt.want)
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
