package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"
)

func runLoad(ctx context.Context, e *env, args []string) error {
	var cf commonFlags
	fs := newFlags(e, "load", "TARGET Service.Method [JSON] [flags]",
		"Calls a method from -c callers, each one call after the other, for -d (or -n calls), with a live\n"+
			"progress line on stderr, then prints the latency histogram, percentiles and the outcomes.\n"+
			"Exit status 0 when a call succeeded, else that of the most frequent error.")
	cf.register(fs)
	conc := fs.Int("c", 50, "concurrent callers")
	dur := fs.Duration("d", 10*time.Second, "how long to run (with -n, whichever comes first; -d 0 with -n: until -n calls)")
	calls := fs.Int64("n", 0, "stop after this many calls (0: no limit)")
	data := fs.String("data", "", "the body: `JSON`, @file, or @- for stdin")
	check := fs.Bool("check", true, "check the body against the method's args schema before the run")
	pos, err := parse(fs, args, 2, 3)
	if err != nil {
		return err
	}
	switch {
	case *conc < 1:
		return usagef("-c %d: want at least 1", *conc)
	case *dur < 0 || *calls < 0:
		return usagef("-d and -n must not be negative")
	case *dur == 0 && *calls == 0:
		return usagef("-d 0 runs for ever: give -n too")
	}
	cn, t, argsJSON, err := cf.openCall(ctx, e, pos, *data, *check)
	if err != nil {
		return err
	}
	defer cn.Close()

	l := &load{
		call: func(ctx context.Context) error {
			ctx, cancel := cf.callCtx(ctx)
			defer cancel()
			var reply json.RawMessage
			return cn.Call(ctx, pos[1], argsJSON, &reply)
		},
		concurrency: *conc,
		duration:    *dur,
		calls:       *calls,
	}
	fmt.Fprintf(e.stderr, "load: %s %s from %d callers for %s\n", t, pos[1], *conc, l.limits())
	res := l.run(ctx, e.stderr, e.stderrTTY)
	res.write(e.stdout, t.raw, pos[1])
	if res.byStatus["ok"] > 0 || res.hist.total == 0 {
		return nil
	}
	// Nothing succeeded: exit as the most frequent error would.
	var worst string
	for _, s := range slices.Sorted(maps.Keys(res.byStatus)) {
		if worst == "" || res.byStatus[s] > res.byStatus[worst] {
			worst = s
		}
	}
	return &exitError{codeOfStatus(worst), fmt.Sprintf("%s: every call failed; last: %s", worst, res.lastErr[worst])}
}

// load is one run of calls.
type load struct {
	call        func(ctx context.Context) error
	concurrency int
	duration    time.Duration
	calls       int64

	started  atomic.Int64
	done     atomic.Int64
	failed   atomic.Int64
	inFlight atomic.Int64
}

func (l *load) limits() string {
	switch {
	case l.calls > 0 && l.duration > 0:
		return fmt.Sprintf("%s or %d calls", l.duration, l.calls)
	case l.calls > 0:
		return fmt.Sprintf("%d calls", l.calls)
	}
	return l.duration.String()
}

// worker is one caller's own counts: no lock is taken per call.
type worker struct {
	hist     histogram
	byStatus map[string]int64
	lastErr  map[string]string
}

// result is a run's counts.
type result struct {
	elapsed  time.Duration
	hist     histogram
	byStatus map[string]int64
	lastErr  map[string]string
}

// run drives the calls until a limit or ctx ends (SIGINT), showing
// progress on progress: one line rewritten at most 4 times a second on a
// terminal, else a line a second.
func (l *load) run(ctx context.Context, progress io.Writer, tty bool) *result {
	start := time.Now()
	runCtx := ctx
	if l.duration > 0 {
		var cancel context.CancelFunc
		runCtx, cancel = context.WithDeadline(ctx, start.Add(l.duration))
		defer cancel()
	}
	workers := make([]*worker, l.concurrency)
	var wg sync.WaitGroup
	for i := range workers {
		w := &worker{byStatus: map[string]int64{}, lastErr: map[string]string{}}
		workers[i] = w
		wg.Go(func() {
			for runCtx.Err() == nil {
				if n := l.started.Add(1); l.calls > 0 && n > l.calls {
					return
				}
				l.inFlight.Add(1)
				t0 := time.Now()
				// A call runs to its reply, not cut by the end of the run:
				// its latency is real.
				err := l.call(context.WithoutCancel(ctx))
				w.hist.record(time.Since(t0))
				l.inFlight.Add(-1)
				status := statusOf(err)
				w.byStatus[status]++
				if err != nil {
					w.lastErr[status] = err.Error()
					l.failed.Add(1)
				}
				l.done.Add(1)
			}
		})
	}
	finished := make(chan struct{})
	go func() { wg.Wait(); close(finished) }()

	every := time.Second
	if tty {
		every = 250 * time.Millisecond
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	var lastDone int64
	lastAt := start
	for {
		select {
		case <-finished:
			if tty {
				fmt.Fprint(progress, "\r\033[K")
			}
			res := &result{elapsed: time.Since(start), byStatus: map[string]int64{}, lastErr: map[string]string{}}
			for _, w := range workers {
				res.hist.merge(&w.hist)
				for s, n := range w.byStatus {
					res.byStatus[s] += n
				}
				maps.Copy(res.lastErr, w.lastErr)
			}
			return res
		case now := <-tick.C:
			done := l.done.Load()
			rate := float64(done-lastDone) / now.Sub(lastAt).Seconds()
			lastDone, lastAt = done, now
			line := fmt.Sprintf("%5.1fs  calls %d  errors %d  %.0f calls/s  in flight %d",
				now.Sub(start).Seconds(), done, l.failed.Load(), rate, l.inFlight.Load())
			if tty {
				fmt.Fprint(progress, "\r\033[K"+line)
			} else {
				fmt.Fprintln(progress, line)
			}
		}
	}
}

// write prints the report, in the manner of hey and ghz.
func (r *result) write(w io.Writer, target, method string) {
	var b strings.Builder
	h := &r.hist
	fmt.Fprintf(&b, "\nSummary:\n")
	tw := tabwriter.NewWriter(&b, 0, 0, 1, ' ', 0)
	fmt.Fprintf(tw, "  Target:\t%s %s\n", target, method)
	fmt.Fprintf(tw, "  Total:\t%.4f s\n", r.elapsed.Seconds())
	fmt.Fprintf(tw, "  Calls:\t%d\n", h.total)
	fmt.Fprintf(tw, "  Slowest:\t%s\n", ms(h.max))
	fmt.Fprintf(tw, "  Fastest:\t%s\n", ms(h.min))
	fmt.Fprintf(tw, "  Average:\t%s\n", ms(h.mean()))
	rate := 0.0
	if r.elapsed > 0 {
		rate = float64(h.total) / r.elapsed.Seconds()
	}
	fmt.Fprintf(tw, "  Calls/sec:\t%.1f\n", rate)
	tw.Flush()

	if h.total > 0 {
		b.WriteString("\nLatency histogram (every call; each bar spans the same ratio):\n")
		bounds, counts := h.bars(10)
		var most int64
		for _, c := range counts {
			most = max(most, c)
		}
		tw = tabwriter.NewWriter(&b, 0, 0, 1, ' ', 0)
		for i, bound := range bounds {
			bar := ""
			if most > 0 {
				bar = strings.Repeat("■", int((40*counts[i]+most-1)/most))
			}
			fmt.Fprintf(tw, "  %s\t[%d]\t|%s\n", ms(bound), counts[i], bar)
		}
		tw.Flush()

		b.WriteString("\nLatency distribution:\n")
		for _, q := range []float64{0.10, 0.25, 0.50, 0.75, 0.90, 0.95, 0.99, 0.999} {
			fmt.Fprintf(&b, "  %s%% in %s\n", strings.TrimSuffix(fmt.Sprintf("%g", q*100), ".0"), ms(h.quantile(q)))
		}
	}

	b.WriteString("\nStatus counts:\n")
	tw = tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	statuses := slices.SortedFunc(maps.Keys(r.byStatus), func(a, c string) int {
		if a == "ok" || c == "ok" { // ok first, then by count
			return boolCmp(c == "ok", a == "ok")
		}
		return int(r.byStatus[c] - r.byStatus[a])
	})
	for _, s := range statuses {
		fmt.Fprintf(tw, "  [%s]\t%d calls\n", s, r.byStatus[s])
	}
	tw.Flush()
	if len(r.lastErr) > 0 {
		b.WriteString("\nLast error of each kind:\n")
		for _, s := range statuses {
			if msg, ok := r.lastErr[s]; ok {
				fmt.Fprintf(&b, "  [%s] %s\n", s, msg)
			}
		}
	}
	io.WriteString(w, b.String())
}

func boolCmp(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return 1
	}
	return -1
}

// ms formats a latency in milliseconds.
func ms(d time.Duration) string {
	return fmt.Sprintf("%.3f ms", float64(d)/float64(time.Millisecond))
}
