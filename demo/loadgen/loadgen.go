// Package loadgen drives calls at a fixed concurrency and counts what
// happened: outcomes by kind, latency quantiles, and which instance served
// each call. The demo client, the quickstart and the end-to-end tests share
// it, so what the tests assert is what the demo prints.
package loadgen

import (
	"context"
	"errors"
	"maps"
	"sync"
	"sync/atomic"
	"time"
)

// Call makes one call and returns the ID of the instance that served it,
// or "" when the reply does not say (Arith.Sleep's reply does).
type Call func(ctx context.Context) (instance string, err error)

// Config says how much load to drive.
type Config struct {
	// Concurrency is the number of callers, each making one call after the
	// other (at least 1).
	Concurrency int
	// Calls stops the run after this many calls have been started (0: no limit).
	Calls int64
	// Duration stops the run after this long (0: no limit).
	Duration time.Duration
	// Timeout is each call's deadline (0: none).
	Timeout time.Duration
	// PauseAfterError is how long a caller waits after a failed call before
	// its next one (0: no wait), so that a service with no instance left,
	// which fails calls at once, is not called in a busy loop.
	PauseAfterError time.Duration
}

// Runner drives one run. Its methods are safe for concurrent use.
type Runner struct {
	cfg   Config
	call  Call
	start time.Time

	started  atomic.Int64
	inFlight atomic.Int64

	mu    sync.Mutex
	stats Stats

	stop     chan struct{}
	stopOnce sync.Once
	done     chan struct{}
}

// ErrConfig is wrapped by Start's error for an invalid Config.
var ErrConfig = errors.New("loadgen: invalid config")

// Start starts cfg.Concurrency callers of call. They run until cfg.Calls
// calls have been started, cfg.Duration has passed, or Stop is called; a
// run without a limit runs until Stop. Calls are not cancelled by Stop:
// each runs to its reply or its own deadline.
func Start(cfg Config, call Call) (*Runner, error) {
	switch {
	case call == nil:
		return nil, errors.Join(ErrConfig, errors.New("nil call"))
	case cfg.Concurrency < 1:
		return nil, errors.Join(ErrConfig, errors.New("concurrency must be at least 1"))
	case cfg.Calls < 0 || cfg.Duration < 0 || cfg.Timeout < 0 || cfg.PauseAfterError < 0:
		return nil, errors.Join(ErrConfig, errors.New("calls, duration, timeout and pause must not be negative"))
	}
	r := &Runner{
		cfg:   cfg,
		call:  call,
		start: time.Now(),
		stats: Stats{Instances: map[string]int64{}, LastErrors: map[Kind]string{}, latency: new(histogram)},
		stop:  make(chan struct{}),
		done:  make(chan struct{}),
	}
	var wg sync.WaitGroup
	for range cfg.Concurrency {
		wg.Go(r.caller)
	}
	go func() {
		wg.Wait()
		r.mu.Lock()
		r.stats.Elapsed = time.Since(r.start)
		r.mu.Unlock()
		close(r.done)
	}()
	return r, nil
}

// caller makes calls one after the other until the run ends.
func (r *Runner) caller() {
	var deadline time.Time
	if r.cfg.Duration > 0 {
		deadline = r.start.Add(r.cfg.Duration)
	}
	for {
		select {
		case <-r.stop:
			return
		default:
		}
		if !deadline.IsZero() && !time.Now().Before(deadline) {
			return
		}
		if n := r.started.Add(1); r.cfg.Calls > 0 && n > r.cfg.Calls {
			return
		}
		if ok := r.one(); !ok && r.cfg.PauseAfterError > 0 {
			t := time.NewTimer(r.cfg.PauseAfterError)
			select {
			case <-t.C:
			case <-r.stop:
				t.Stop()
				return
			}
		}
	}
}

// one makes one call and records it; it reports whether the call succeeded.
func (r *Runner) one() bool {
	ctx := context.Background()
	if r.cfg.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, r.cfg.Timeout)
		defer cancel()
	}
	r.inFlight.Add(1)
	t0 := time.Now()
	instance, err := r.call(ctx)
	d := time.Since(t0)
	r.inFlight.Add(-1)

	kind := Classify(err)
	r.mu.Lock()
	defer r.mu.Unlock()
	s := &r.stats
	s.Calls++
	s.Kinds[kind]++
	if err != nil {
		s.LastErrors[kind] = err.Error()
		return false
	}
	s.latency.record(d)
	if instance != "" {
		s.Instances[instance]++
	}
	return true
}

// Snapshot returns the counts so far; Elapsed is the time since the start,
// or the run's length once it has ended.
func (r *Runner) Snapshot() Stats {
	r.mu.Lock()
	s := r.stats
	s.Instances = maps.Clone(r.stats.Instances)
	s.LastErrors = maps.Clone(r.stats.LastErrors)
	h := *r.stats.latency
	s.latency = &h
	r.mu.Unlock()
	select {
	case <-r.done:
	default:
		s.Elapsed = time.Since(r.start)
		s.InFlight = r.inFlight.Load()
	}
	return s
}

// Stop ends the run: no new call starts. It waits for the calls in flight
// and returns the final counts. It is safe to call more than once.
func (r *Runner) Stop() Stats {
	r.stopOnce.Do(func() { close(r.stop) })
	return r.Wait()
}

// Wait waits until the run has ended (by its limits, or Stop) and returns
// the final counts.
func (r *Runner) Wait() Stats {
	<-r.done
	return r.Snapshot()
}

// Done is closed when the run has ended and every call has returned.
func (r *Runner) Done() <-chan struct{} { return r.done }

// Stats are the counts of a run, or of a part of it (Sub).
type Stats struct {
	Elapsed    time.Duration    // how long the run (or the part) lasted
	Calls      int64            // calls that returned
	InFlight   int64            // calls started and not yet returned
	Kinds      [numKinds]int64  // calls by outcome, indexed by Kind
	Instances  map[string]int64 // successful calls by the instance that served them, when known
	LastErrors map[Kind]string  // the text of the last error of each kind seen
	latency    *histogram       // of successful calls; nil in the zero Stats
}

// Count returns the number of calls with outcome k.
func (s Stats) Count(k Kind) int64 {
	if k < 0 || k >= numKinds {
		return 0
	}
	return s.Kinds[k]
}

// Failed returns the number of calls that returned an error.
func (s Stats) Failed() int64 { return s.Calls - s.Kinds[OK] }

// Rate returns the calls per second over Elapsed.
func (s Stats) Rate() float64 {
	if s.Elapsed <= 0 {
		return 0
	}
	return float64(s.Calls) / s.Elapsed.Seconds()
}

// Latency returns the q-quantile (e.g. 0.5, 0.99) of the successful calls'
// latency, within about 3 %; 0 when there was none.
func (s Stats) Latency(q float64) time.Duration {
	if s.latency == nil {
		return 0
	}
	return s.latency.quantile(q)
}

// Sub returns what happened between an earlier snapshot prev of the same
// run and s. LastErrors keeps only the kinds that occurred in between.
func (s Stats) Sub(prev Stats) Stats {
	d := s
	d.Elapsed = s.Elapsed - prev.Elapsed
	d.Calls = s.Calls - prev.Calls
	for i := range d.Kinds {
		d.Kinds[i] = s.Kinds[i] - prev.Kinds[i]
	}
	d.Instances = make(map[string]int64, len(s.Instances))
	for id, n := range s.Instances {
		if n -= prev.Instances[id]; n != 0 {
			d.Instances[id] = n
		}
	}
	d.LastErrors = make(map[Kind]string)
	for k, msg := range s.LastErrors {
		if d.Kinds[k] > 0 {
			d.LastErrors[k] = msg
		}
	}
	h := new(histogram)
	if s.latency != nil {
		*h = *s.latency
	}
	if prev.latency != nil {
		h.sub(prev.latency)
	}
	d.latency = h
	return d
}
