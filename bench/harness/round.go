package harness

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shoalrpc/shoal/bench/peer"
)

// Round is what one peer did in one round at one concurrency.
type Round struct {
	Peer        string `json:"peer"`
	Concurrency int    `json:"concurrency"`
	// Round counts from 1; 0 is the warm-up, which no summary uses.
	Round      int     `json:"round"`
	Calls      uint64  `json:"calls"`
	Errors     uint64  `json:"errors"`
	FirstError string  `json:"first_error,omitempty"`
	Seconds    float64 `json:"seconds"`
	// OtherBusy is the share of the machine's CPU (all cores) that
	// processes other than the runner and this peer's server used during
	// the round; -1 when unknown.
	OtherBusy float64 `json:"other_busy"`
	Metrics
}

// Metrics are the per-peer numbers a report compares. Latencies are in
// milliseconds, CPU times in microseconds per call.
type Metrics struct {
	CallsPerSec        float64 `json:"calls_per_sec"`
	P50ms              float64 `json:"p50_ms"`
	P99ms              float64 `json:"p99_ms"`
	P999ms             float64 `json:"p999_ms"`
	AllocsPerCall      float64 `json:"allocs_per_call"`
	BytesPerCall       float64 `json:"bytes_per_call"`
	ClientCPUusPerCall float64 `json:"client_cpu_us_per_call"`
	ServerCPUusPerCall float64 `json:"server_cpu_us_per_call"`
}

// maxWorkerErrors stops a caller goroutine after this many failed calls,
// so a dead connection does not spin for the rest of the round.
const maxWorkerErrors = 100

// drainTimeout bounds how long callers may take to return once the round
// is over before their calls are cancelled, and again after that.
const drainTimeout = 10 * time.Second

// worker is one caller goroutine's state; padded so that the counters of
// neighbouring workers do not share a cache line.
type worker struct {
	call   func(context.Context) error
	hist   *Histogram
	calls  atomic.Uint64
	errors uint64
	first  error
	_      [64]byte
}

func (w *worker) run(ctx context.Context, stop *atomic.Bool) {
	for !stop.Load() {
		t0 := time.Now()
		err := w.call(ctx)
		d := time.Since(t0)
		if err != nil {
			w.errors++
			if w.first == nil {
				w.first = err
			}
			if w.errors >= maxWorkerErrors || ctx.Err() != nil {
				return
			}
			continue
		}
		w.hist.Record(d)
		w.calls.Add(1)
	}
}

// roundSpec says what one round runs.
type roundSpec struct {
	peer        string
	round       int
	concurrency int
	duration    time.Duration
	serverPID   int
	client      peer.Client
	hists       []*Histogram // one per caller, reused between rounds
	progress    func(calls uint64, elapsed time.Duration)
}

// runRound runs spec.concurrency callers on the shared client for
// spec.duration and measures the round.
func runRound(ctx context.Context, spec roundSpec) (Round, error) {
	r := Round{Peer: spec.peer, Concurrency: spec.concurrency, Round: spec.round}
	workers := make([]worker, spec.concurrency)
	for i := range workers {
		spec.hists[i].Reset()
		workers[i].hist = spec.hists[i]
		workers[i].call = spec.client.NewCaller()
	}
	// The calls' context has no deadline, as the README promises: it does
	// not inherit the run's timeout (which shoal and gRPC would carry on
	// every call), and the round cancels it itself when ctx ends.
	callCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	var stop atomic.Bool

	// The callers are started first and wait for begin, so that starting
	// goroutines is not measured.
	begin := make(chan struct{})
	var wg sync.WaitGroup
	for i := range workers {
		w := &workers[i]
		wg.Go(func() {
			<-begin
			w.run(callCtx, &stop)
		})
	}
	finished := make(chan struct{})
	go func() { wg.Wait(); close(finished) }()

	runtime.GC() // every peer starts its round with a collected heap
	var ms0, ms1 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	cpu0, errCPU0 := selfCPU()
	srv0, errSrv0 := procCPU(spec.serverPID)
	busy0, _, errBusy0 := machineCPU()
	start := time.Now()
	close(begin)

	if err := waitRound(ctx, spec, workers, start, finished); err != nil {
		stop.Store(true)
		cancel()
		return r, err
	}
	stop.Store(true)
	if err := drain(cancel, finished); err != nil {
		return r, fmt.Errorf("%s c=%d: %w", spec.peer, spec.concurrency, err)
	}

	elapsed := time.Since(start)
	runtime.ReadMemStats(&ms1)
	cpu1, errCPU1 := selfCPU()
	srv1, errSrv1 := procCPU(spec.serverPID)
	busy1, _, errBusy1 := machineCPU()
	if e, ok := spec.client.(peer.RoundEnder); ok { // a stream client ends its round's streams, unmeasured
		if err := e.EndRound(); err != nil {
			return r, fmt.Errorf("%s c=%d: end the round: %w", spec.peer, spec.concurrency, err)
		}
	}

	var h Histogram
	for i := range workers {
		w := &workers[i]
		h.Merge(w.hist)
		r.Calls += w.calls.Load()
		r.Errors += w.errors
		if w.first != nil && r.FirstError == "" {
			r.FirstError = w.first.Error()
		}
	}
	r.Seconds = elapsed.Seconds()
	r.OtherBusy = -1
	if err := errors.Join(errCPU0, errCPU1, errSrv0, errSrv1, errBusy0, errBusy1); err == nil {
		other := busy1 - busy0 - (cpu1 - cpu0) - (srv1 - srv0)
		r.OtherBusy = max(0, other.Seconds()/(elapsed.Seconds()*float64(runtime.NumCPU())))
	}
	if r.Calls == 0 {
		return r, nil
	}
	n := float64(r.Calls)
	r.CallsPerSec = n / elapsed.Seconds()
	r.P50ms = ms(h.Quantile(0.50))
	r.P99ms = ms(h.Quantile(0.99))
	r.P999ms = ms(h.Quantile(0.999))
	r.AllocsPerCall = float64(ms1.Mallocs-ms0.Mallocs) / n
	r.BytesPerCall = float64(ms1.TotalAlloc-ms0.TotalAlloc) / n
	r.ClientCPUusPerCall, r.ServerCPUusPerCall = -1, -1
	if errCPU0 == nil && errCPU1 == nil {
		r.ClientCPUusPerCall = us(cpu1-cpu0) / n
	}
	if errSrv0 == nil && errSrv1 == nil {
		r.ServerCPUusPerCall = us(srv1-srv0) / n
	}
	return r, nil
}

// waitRound waits out the round's duration, reporting progress, unless
// ctx ends first or every caller gave up.
func waitRound(ctx context.Context, spec roundSpec, workers []worker, start time.Time, finished <-chan struct{}) error {
	timer := time.NewTimer(spec.duration)
	defer timer.Stop()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-timer.C:
			return nil
		case <-finished: // every caller stopped on errors
			return nil
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
			if spec.progress != nil {
				var calls uint64
				for i := range workers {
					calls += workers[i].calls.Load()
				}
				spec.progress(calls, time.Since(start))
			}
		}
	}
}

// errStuck is returned when callers do not return even after their calls
// were cancelled.
var errStuck = errors.New("callers still running after the round and after cancelling their calls")

// drain waits for the callers to finish their last calls; if they take
// longer than drainTimeout their calls are cancelled, and if they still
// do not return the round fails.
func drain(cancel context.CancelFunc, finished <-chan struct{}) error {
	select {
	case <-finished:
		return nil
	case <-time.After(drainTimeout):
	}
	cancel()
	select {
	case <-finished:
		return nil
	case <-time.After(drainTimeout):
		return errStuck
	}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
