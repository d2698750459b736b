package loadgen

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/shoalrpc/shoal/consumer"
	"github.com/shoalrpc/shoal/loadbalance"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestClassify(t *testing.T) {
	noInst := fmt.Errorf("consumer: pick an instance of arith: %w", loadbalance.ErrNoInstances)
	for _, tc := range []struct {
		name string
		err  error
		want Kind
	}{
		{"nil", nil, OK},
		{"service error", fmt.Errorf("call: %w", &consumer.ServiceError{Message: "divide by zero"}), ServiceError},
		{"no instances", noInst, NoInstances},
		{"no instances after a refusal", fmt.Errorf("%w (after: %w)", noInst, consumer.ErrShuttingDown), NoInstances},
		{"no instances after a deadline", fmt.Errorf("%w (after: %w)", noInst, context.DeadlineExceeded), NoInstances},
		{"connection closed", fmt.Errorf("call: %w: EOF", consumer.ErrConnClosed), ConnClosed},
		{"shutting down", fmt.Errorf("%w: draining", consumer.ErrShuttingDown), ShuttingDown},
		{"go-away", fmt.Errorf("call: %w: server sent go-away", consumer.ErrClientClosed), ShuttingDown},
		{"dial", fmt.Errorf("%w: refused", consumer.ErrDial), Dial},
		{"deadline", fmt.Errorf("call: %w", context.DeadlineExceeded), Deadline},
		{"deadline over a server's copy", fmt.Errorf("call: %w (server: %w)", context.DeadlineExceeded, &consumer.ServiceError{Message: "x"}), Deadline},
		{"deadline over a broken connection", fmt.Errorf("call: %w (after: %w)", context.DeadlineExceeded, consumer.ErrConnClosed), Deadline},
		{"unknown method", fmt.Errorf("%w: Arith.Nope", consumer.ErrUnknownMethod), Other},
		{"canceled", context.Canceled, Other},
	} {
		if got := Classify(tc.err); got != tc.want {
			t.Errorf("%s: Classify(%v) = %s, want %s", tc.name, tc.err, got, tc.want)
		}
	}
}

func TestKindNames(t *testing.T) {
	var names []string
	for _, k := range Kinds() {
		names = append(names, k.String())
	}
	want := []string{"ok", "service error", "no instances", "connection closed", "shutting down", "dial", "deadline", "other"}
	if !slices.Equal(names, want) {
		t.Errorf("kinds %q, want %q", names, want)
	}
	if Kind(-1).String() != "unknown" || numKinds.String() != "unknown" {
		t.Error("an invalid Kind should print as unknown")
	}
}

func TestHistogramBuckets(t *testing.T) {
	prev := -1
	for _, v := range []uint64{0, 1, 31, 32, 33, 63, 64, 65, 1000, 1 << 20, 123456789, 1<<62 + 12345, 1<<63 - 1} {
		i := bucketOf(v)
		if i < prev || i >= numBuckets {
			t.Fatalf("bucketOf(%d) = %d: out of order or range", v, i)
		}
		prev = i
		lo, hi := bucketBounds(i)
		if v < lo || v > hi {
			t.Errorf("value %d in bucket %d = [%d, %d]", v, i, lo, hi)
		}
		if lo >= 32 && float64(hi-lo+1)/float64(lo) > 1.0/32+1e-9 {
			t.Errorf("bucket %d = [%d, %d] is wider than 1/32", i, lo, hi)
		}
	}
	// Adjacent buckets tile the line.
	for i := 1; i < numBuckets; i++ {
		_, hi := bucketBounds(i - 1)
		lo, _ := bucketBounds(i)
		if lo != hi+1 {
			t.Fatalf("bucket %d starts at %d, previous ends at %d", i, lo, hi)
		}
	}
}

func TestHistogramQuantiles(t *testing.T) {
	var h histogram
	if h.quantile(0.5) != 0 {
		t.Error("empty histogram: quantile should be 0")
	}
	r := rand.New(rand.NewPCG(1, 2))
	values := make([]time.Duration, 10_000)
	for i := range values {
		values[i] = time.Duration(r.ExpFloat64() * float64(5*time.Millisecond))
		h.record(values[i])
	}
	slices.Sort(values)
	for _, q := range []float64{0.5, 0.9, 0.99, 1} {
		exact := values[int(q*float64(len(values)))-1]
		got := h.quantile(q)
		if diff := float64(got-exact) / float64(exact); diff > 0.04 || diff < -0.04 {
			t.Errorf("q%.2f = %v, exact %v (off by %.1f%%)", q, got, exact, 100*diff)
		}
	}
}

// fake is a call that answers from instances in turn, failing every nth
// call with err.
func fake(instances []string, nth int64, err error) Call {
	var n atomic.Int64
	return func(ctx context.Context) (string, error) {
		i := n.Add(1)
		if nth > 0 && i%nth == 0 {
			return "", err
		}
		return instances[int(i)%len(instances)], nil
	}
}

func TestRunStopsAfterCalls(t *testing.T) {
	r, err := Start(Config{Concurrency: 7, Calls: 1000}, fake([]string{"a", "b"}, 10, consumer.ErrDial))
	if err != nil {
		t.Fatal(err)
	}
	s := r.Wait()
	if s.Calls != 1000 || s.Count(OK) != 900 || s.Count(Dial) != 100 || s.Failed() != 100 || s.InFlight != 0 {
		t.Errorf("calls %d, ok %d, dial %d, failed %d, in flight %d; want 1000, 900, 100, 100, 0", s.Calls, s.Count(OK), s.Count(Dial), s.Failed(), s.InFlight)
	}
	if s.Instances["a"]+s.Instances["b"] != 900 || s.Instances["a"] == 0 || s.Instances["b"] == 0 {
		t.Errorf("instances %v, want 900 calls over a and b", s.Instances)
	}
	if s.LastErrors[Dial] != consumer.ErrDial.Error() {
		t.Errorf("last dial error %q", s.LastErrors[Dial])
	}
}

func TestRunStopsAfterDuration(t *testing.T) {
	start := time.Now()
	r, err := Start(Config{Concurrency: 2, Duration: 100 * time.Millisecond}, func(ctx context.Context) (string, error) {
		time.Sleep(time.Millisecond) // a call that takes time
		return "a", nil
	})
	if err != nil {
		t.Fatal(err)
	}
	s := r.Wait()
	if took := time.Since(start); took < 100*time.Millisecond || took > 5*time.Second {
		t.Errorf("a 100ms run took %v", took)
	}
	if s.Calls == 0 || s.Elapsed < 100*time.Millisecond || s.Rate() <= 0 {
		t.Errorf("calls %d, elapsed %v, rate %v", s.Calls, s.Elapsed, s.Rate())
	}
	if s.Latency(0.5) < time.Millisecond {
		t.Errorf("p50 %v for calls that sleep 1ms", s.Latency(0.5))
	}
}

func TestStopWaitsForCallsInFlightWithoutCancellingThem(t *testing.T) {
	release := make(chan struct{})
	var entered atomic.Int64
	r, err := Start(Config{Concurrency: 3}, func(ctx context.Context) (string, error) {
		entered.Add(1)
		<-release
		return "a", ctx.Err()
	})
	if err != nil {
		t.Fatal(err)
	}
	for entered.Load() < 3 {
		time.Sleep(time.Millisecond) // the callers run on their own goroutines
	}
	if s := r.Snapshot(); s.InFlight != 3 || s.Calls != 0 {
		t.Errorf("in flight %d, calls %d; want 3, 0", s.InFlight, s.Calls)
	}
	stopped := make(chan Stats)
	go func() { stopped <- r.Stop() }()
	select {
	case <-stopped:
		t.Fatal("Stop returned with calls in flight")
	case <-time.After(20 * time.Millisecond):
	}
	close(release)
	s := <-stopped
	if s.Calls != 3 || s.Count(OK) != 3 {
		t.Errorf("calls %d, ok %d; want 3 calls that completed uncancelled", s.Calls, s.Count(OK))
	}
	if s2 := r.Stop(); s2.Calls != 3 {
		t.Error("a second Stop changed the counts")
	}
}

func TestPauseAfterError(t *testing.T) {
	r, err := Start(Config{Concurrency: 1, Duration: 100 * time.Millisecond, PauseAfterError: 20 * time.Millisecond},
		func(ctx context.Context) (string, error) { return "", loadbalance.ErrNoInstances })
	if err != nil {
		t.Fatal(err)
	}
	s := r.Wait()
	if s.Calls < 1 || s.Calls > 6 || s.Count(NoInstances) != s.Calls {
		t.Errorf("%d calls (%d no instances) in 100ms with a 20ms pause after each failure; want 1 to 6, all no instances", s.Calls, s.Count(NoInstances))
	}
}

func TestStartRejectsBadConfig(t *testing.T) {
	call := fake([]string{"a"}, 0, nil)
	for _, cfg := range []Config{{}, {Concurrency: 1, Calls: -1}, {Concurrency: 1, Duration: -1}, {Concurrency: 1, PauseAfterError: -1}} {
		if _, err := Start(cfg, call); !errors.Is(err, ErrConfig) {
			t.Errorf("Start(%+v) = %v, want ErrConfig", cfg, err)
		}
	}
	if _, err := Start(Config{Concurrency: 1}, nil); !errors.Is(err, ErrConfig) {
		t.Errorf("Start with a nil call = %v, want ErrConfig", err)
	}
}

func TestSubGivesWhatHappenedBetweenSnapshots(t *testing.T) {
	phase := atomic.Int64{}
	gate := make(chan struct{})
	r, err := Start(Config{Concurrency: 1, Calls: 20}, func(ctx context.Context) (string, error) {
		n := phase.Add(1)
		if n == 11 {
			<-gate // hold the 11th call until the first snapshot is taken
		}
		if n <= 10 {
			return "a", nil
		}
		if n%2 == 0 {
			return "", consumer.ErrConnClosed
		}
		return "b", nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for r.Snapshot().Calls < 10 {
		time.Sleep(time.Millisecond) // the caller runs on its own goroutine
	}
	first := r.Snapshot()
	close(gate)
	last := r.Wait()
	d := last.Sub(first)
	if d.Calls != 10 || d.Count(OK) != 5 || d.Count(ConnClosed) != 5 {
		t.Errorf("between: %d calls, %d ok, %d conn closed; want 10, 5, 5", d.Calls, d.Count(OK), d.Count(ConnClosed))
	}
	if d.Instances["a"] != 0 || d.Instances["b"] != 5 || len(d.Instances) != 1 {
		t.Errorf("between: instances %v, want b:5 only", d.Instances)
	}
	if _, ok := d.LastErrors[ConnClosed]; !ok || len(d.LastErrors) != 1 {
		t.Errorf("between: last errors %v", d.LastErrors)
	}
	if first.Sub(Stats{}).Calls != 10 {
		t.Error("Sub of the zero Stats should be the snapshot itself")
	}
}

func TestReports(t *testing.T) {
	r, err := Start(Config{Concurrency: 2, Calls: 100}, fake([]string{"arith-1", "arith-2"}, 4, &consumer.ServiceError{Message: "divide by zero"}))
	if err != nil {
		t.Fatal(err)
	}
	s := r.Wait()

	var text bytes.Buffer
	if err := s.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"calls       100 in", "p50", "p99", "service error      25", "last service error: divide by zero", "arith-1", "arith-2", "66.7%"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("summary lacks %q:\n%s", want, text.String())
		}
	}

	b, err := json.Marshal(s.Summary())
	if err != nil {
		t.Fatal(err)
	}
	var sum Summary
	if err := json.Unmarshal(b, &sum); err != nil {
		t.Fatal(err)
	}
	if sum.Calls != 100 || sum.OK != 75 || sum.Failed != 25 || sum.Outcomes["service error"] != 25 || len(sum.Outcomes) != int(numKinds) ||
		sum.Instances["arith-1"]+sum.Instances["arith-2"] != 75 || sum.LastErrors["service error"] != "divide by zero" {
		t.Errorf("summary %s", b)
	}

	if line := s.Progress(Stats{}); !strings.Contains(line, "calls 100  ok 75  errors 25") {
		t.Errorf("progress line %q", line)
	}
}
