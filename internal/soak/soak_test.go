package soak

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/shoalrpc/shoal/consumer"
	"github.com/shoalrpc/shoal/loadbalance"
	"github.com/shoalrpc/shoal/naming"
	"github.com/shoalrpc/shoal/provider"
)

const (
	soakService     = "soak"
	nProviders      = 4
	minUp           = 2  // the schedule never leaves fewer providers up
	failoverCallers = 40 // a killed provider takes at most this many Failover calls with it,
	failfastCallers = 24 // within the default retry budget's burst of 50
	// heapMargin is how much more live heap the run may leave behind than
	// the warm-up did: far above noise, far below what 100,000 leaked
	// calls would hold.
	heapMargin = 8 << 20
	// killGrace is how long after a kill a Failfast call may still fail
	// with ErrConnClosed: a call can be written on the dead connection
	// before the client's reader has seen it close.
	killGrace = time.Second
	// hangLimit bounds every call that has no deadline of its own: one that
	// takes longer is reported as unexpected.
	hangLimit = 30 * time.Second
)

// soakDuration is 60 s, 5 s with -short, or SHOAL_SOAK.
func soakDuration(t *testing.T) time.Duration {
	if s := os.Getenv("SHOAL_SOAK"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			t.Fatalf("SHOAL_SOAK=%q: want a positive Go duration such as 10s", s)
		}
		return d
	}
	if testing.Short() {
		return 5 * time.Second
	}
	return 60 * time.Second
}

// The kinds of call a caller makes.
type callKind int

const (
	kFast      callKind = iota // answers at once
	kSleep                     // sleeps 1–5 ms
	kFail                      // returns a service error
	kDeadline                  // sleeps 1 s under a 5 ms deadline
	kBroadcast                 // Fast on every instance
	nKinds
)

var kindNames = [nKinds]string{"fast", "sleep", "fail", "deadline", "broadcast"}

// The kinds of outcome.
type outcome int

const (
	oOK          outcome = iota
	oService             // *consumer.ServiceError with the expected text
	oDeadline            // context.DeadlineExceeded
	oConnClosed          // consumer.ErrConnClosed
	oNoInstances         // loadbalance.ErrNoInstances
	oTransient           // a Broadcast leg refused or broken: ErrDial, ErrClientClosed, ErrShuttingDown
	oWrongReply          // success with a reply that is not this call's
	oOther               // anything else
	nOutcomes
)

var outcomeNames = [nOutcomes]string{"ok", "service-error", "deadline", "conn-closed", "no-instances", "broadcast-refused", "wrong-reply", "other"}

// The two proxies.
const (
	pFailover = iota
	pFailfast
	nProxies
)

var proxyNames = [nProxies]string{"failover", "failfast"}

// expected says whether a call of kind through proxy px may end with o.
func expected(px int, kind callKind, o outcome) bool {
	if px == pFailfast && o == oConnClosed && kind != kBroadcast {
		return true // checked against the kill windows afterwards
	}
	switch kind {
	case kFast, kSleep:
		return o == oOK
	case kFail:
		return o == oService
	case kDeadline:
		return o == oDeadline
	case kBroadcast:
		// Broadcast makes one attempt per instance, without retries: an
		// instance that is going away refuses or breaks its leg.
		return o == oOK || o == oTransient || o == oConnClosed
	}
	return false
}

// span is a call's start and end.
type span struct{ start, end time.Time }

// ledger accounts for every call.
type ledger struct {
	made   [nProxies][nKinds]atomic.Int64
	counts [nProxies][nKinds][nOutcomes]atomic.Int64

	mu         sync.Mutex
	unexpected []string // the first few, with their errors
	nUnexp     int
	ffClosed   []span // Failfast calls that failed with ErrConnClosed
}

func (l *ledger) record(px int, kind callKind, o outcome, err error, sp span) {
	l.counts[px][kind][o].Add(1)
	ok := expected(px, kind, o)
	if ok && !(px == pFailfast && o == oConnClosed && kind != kBroadcast) {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if ok {
		l.ffClosed = append(l.ffClosed, sp)
		return
	}
	l.nUnexp++
	if len(l.unexpected) < 20 {
		l.unexpected = append(l.unexpected, fmt.Sprintf("%s %s → %s after %v: %v",
			proxyNames[px], kindNames[kind], outcomeNames[o], sp.end.Sub(sp.start).Round(time.Microsecond), err))
	}
}

func (l *ledger) totals() (made, accounted int64) {
	for px := range nProxies {
		for k := range nKinds {
			made += l.made[px][k].Load()
			for o := range nOutcomes {
				accounted += l.counts[px][k][o].Load()
			}
		}
	}
	return made, accounted
}

func (l *ledger) table() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%-9s %-9s %9s", "proxy", "kind", "made")
	for o := range nOutcomes {
		fmt.Fprintf(&b, " %9s", outcomeNames[o])
	}
	for px := range nProxies {
		for k := range nKinds {
			if l.made[px][k].Load() == 0 {
				continue
			}
			fmt.Fprintf(&b, "\n%-9s %-9s %9d", proxyNames[px], kindNames[k], l.made[px][k].Load())
			for o := range nOutcomes {
				fmt.Fprintf(&b, " %9d", l.counts[px][k][o].Load())
			}
		}
	}
	return b.String()
}

// classify sorts a call's error. The order matters: a Failover call whose
// deadline ended during a retry carries the earlier attempt's error too, and
// a call whose deadline fired on both sides carries the handler's
// ctx.Err() as a *ServiceError besides context.DeadlineExceeded.
func classify(kind callKind, n int, err error) outcome {
	var se *consumer.ServiceError
	switch {
	case err == nil:
		return oOK
	case errors.Is(err, context.DeadlineExceeded):
		return oDeadline
	case errors.As(err, &se):
		if kind == kFail && se.Message == fmt.Sprintf("soak failure %d", n) {
			return oService
		}
		return oOther
	case errors.Is(err, loadbalance.ErrNoInstances):
		return oNoInstances
	case errors.Is(err, consumer.ErrConnClosed):
		return oConnClosed
	case kind == kBroadcast && isRefusal(err):
		return oTransient
	}
	return oOther
}

// isRefusal reports whether err says the call was not executed: no
// connection, a connection told to go away, a draining server.
func isRefusal(err error) bool {
	return errors.Is(err, consumer.ErrDial) || errors.Is(err, consumer.ErrClientClosed) || errors.Is(err, consumer.ErrShuttingDown)
}

// node is one provider of the soak service; its ID and address stay the
// same across restarts.
type node struct {
	id     string
	addr   string // host:port, fixed by the first start
	srv    *provider.Server
	served chan error // Serve's result
	up     bool
}

// harness holds the registry, the providers and what the schedule did.
type harness struct {
	reg  *naming.Memory
	logs *levelCounter

	nodes []*node // touched only by the test goroutine and then the scheduler, never both at once

	mu    sync.Mutex
	kills []span   // when each Close ran
	log   []string // what the schedule did
}

// start serves a provider on n.addr (a free port the first time), retrying
// briefly when the old port is not free yet, and waits until the registry
// has it.
func (h *harness) start(n *node) error {
	addr := n.addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	var ln net.Listener
	var err error
	for attempt := 0; attempt < 50; attempt++ {
		if ln, err = net.Listen("tcp", addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond) // the port is briefly unavailable: retry
	}
	if err != nil {
		return fmt.Errorf("listen on %s for %s: %w", addr, n.id, err)
	}
	n.addr = ln.Addr().String()
	srv := provider.NewServer(
		provider.WithRegistry(h.reg, naming.Instance{Service: soakService, ID: n.id}),
		provider.WithLogger(slog.New(h.logs)),
	)
	if err := srv.RegisterName("Soak", &Soak{id: n.id}); err != nil {
		ln.Close()
		return err
	}
	n.srv, n.served, n.up = srv, make(chan error, 1), true
	go func() { n.served <- srv.Serve(ln) }()
	// Registration happens inside Serve; wait until the registry has it.
	deadline := time.Now().Add(10 * time.Second)
	for {
		list, err := h.reg.Fetch(context.Background(), soakService)
		if err != nil {
			return err
		}
		if slices.ContainsFunc(list, func(in *naming.Instance) bool { return in.ID == n.id }) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not in the registry 10s after Serve", n.id)
		}
		time.Sleep(2 * time.Millisecond) // polling the registry
	}
}

// stop shuts n down gracefully or kills it, and checks Serve's result.
func (h *harness) stop(n *node, kill bool) error {
	start := time.Now()
	if kill {
		n.srv.Close()
		h.mu.Lock()
		h.kills = append(h.kills, span{start, time.Now()})
		h.mu.Unlock()
	} else {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := n.srv.Shutdown(ctx)
		cancel()
		if err != nil {
			return fmt.Errorf("shutdown %s: %w", n.id, err)
		}
	}
	n.up = false
	select {
	case err := <-n.served:
		if !errors.Is(err, provider.ErrServerClosed) {
			return fmt.Errorf("%s: Serve returned %v, want ErrServerClosed", n.id, err)
		}
	case <-time.After(10 * time.Second):
		return fmt.Errorf("%s: Serve did not return within 10s of stopping", n.id)
	}
	return nil
}

func (h *harness) note(format string, args ...any) {
	h.mu.Lock()
	h.log = append(h.log, fmt.Sprintf(format, args...))
	h.mu.Unlock()
}

func (h *harness) upCount() int {
	c := 0
	for _, n := range h.nodes {
		if n.up {
			c++
		}
	}
	return c
}

// schedule runs the deterministic schedule until stop is closed: every
// tick, the next action of shut down, kill, restart, restart. Stops rotate
// over the providers and never leave fewer than minUp up; restarts take the
// provider that has been down longest. At the end every provider is up.
// It returns how many of each action it performed.
func (h *harness) schedule(begin time.Time, tick time.Duration, stop <-chan struct{}) (shutdowns, kills, restarts int, err error) {
	ticker := time.NewTicker(tick)
	defer ticker.Stop()
	var down []*node // oldest first
	nextStop := 0
	restart := func() error {
		n := down[0]
		down = down[1:]
		t0 := time.Now()
		if err := h.start(n); err != nil {
			return err
		}
		restarts++
		h.note("%6.2fs restart %s on %s (%v)", time.Since(begin).Seconds(), n.id, n.addr, time.Since(t0).Round(time.Millisecond))
		return nil
	}
	actions := []string{"shutdown", "kill", "restart", "restart"}
	for step := 0; ; step++ {
		select {
		case <-stop:
			for len(down) > 0 {
				if err := restart(); err != nil {
					return shutdowns, kills, restarts, err
				}
			}
			return shutdowns, kills, restarts, nil
		case <-ticker.C:
		}
		switch a := actions[step%len(actions)]; {
		case a == "restart" && len(down) > 0:
			if err := restart(); err != nil {
				return shutdowns, kills, restarts, err
			}
		case a != "restart" && h.upCount() > minUp:
			var n *node
			for n == nil || !n.up {
				n = h.nodes[nextStop%len(h.nodes)]
				nextStop++
			}
			t0 := time.Now()
			if err := h.stop(n, a == "kill"); err != nil {
				return shutdowns, kills, restarts, err
			}
			if a == "kill" {
				kills++
			} else {
				shutdowns++
			}
			down = append(down, n)
			h.note("%6.2fs %-8s %s (%v)", time.Since(begin).Seconds(), a, n.id, time.Since(t0).Round(time.Millisecond))
		}
	}
}

// caller makes calls until stop is set.
func caller(px int, p *consumer.ClientProxy, seed uint64, stop *atomic.Bool, l *ledger) {
	rng := rand.New(rand.NewPCG(seed, 0x50a450a4))
	for n := 0; !stop.Load(); n++ {
		var kind callKind
		switch r := rng.IntN(100); {
		case r < 45:
			kind = kFast
		case r < 70:
			kind = kSleep
		case r < 85:
			kind = kFail
		case r < 95:
			kind = kDeadline
		case px == pFailover:
			kind = kBroadcast
		default:
			kind = kFast
		}
		args := Args{N: n, Payload: fmt.Sprintf("%s-%d-%d", proxyNames[px], seed, n)}
		method, timeout := "Soak.Fast", hangLimit
		switch kind {
		case kSleep:
			method, args.SleepMs = "Soak.Sleep", 1+rng.IntN(5)
		case kFail:
			method = "Soak.Fail"
		case kDeadline:
			method, args.SleepMs, timeout = "Soak.Sleep", 1000, 5*time.Millisecond
		}
		l.made[px][kind].Add(1)
		start := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		var reply Reply
		var err error
		if kind == kBroadcast {
			err = p.Broadcast(ctx, method, args, &reply)
		} else {
			err = p.Call(ctx, method, args, &reply)
		}
		cancel()
		o := classify(kind, n, err)
		if o == oOK && (reply.N != n+1 || reply.Payload != args.Payload || !strings.HasPrefix(reply.From, "soak-")) {
			o, err = oWrongReply, fmt.Errorf("reply %+v to args %+v", reply, args)
		}
		if o == oDeadline && timeout == hangLimit {
			err = fmt.Errorf("no answer within %v: %w", hangLimit, err)
		}
		l.record(px, kind, o, err, span{start, time.Now()})
	}
}

// runCallers runs the callers on both proxies until stop is set, and
// returns once every one has returned.
func runCallers(proxies [nProxies]*consumer.ClientProxy, stop *atomic.Bool, l *ledger) *sync.WaitGroup {
	var wg sync.WaitGroup
	for i := range failoverCallers + failfastCallers {
		px := pFailover
		if i >= failoverCallers {
			px = pFailfast
		}
		wg.Go(func() { caller(px, proxies[px], uint64(i+1), stop, l) })
	}
	return &wg
}

// heapAlloc returns the live heap after two collections (the second frees
// what the first's finalizers and sync.Pool victims left).
func heapAlloc() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// waitCallers waits for the callers, failing the test if some hang.
func waitCallers(t *testing.T, wg *sync.WaitGroup, l *ledger) {
	t.Helper()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(hangLimit + 10*time.Second):
		made, accounted := l.totals()
		t.Fatalf("callers still running %v after stop: %d calls made, %d accounted for", hangLimit+10*time.Second, made, accounted)
	}
}

// warm makes calls through p until it has a connection to every provider.
func warm(t *testing.T, p *consumer.ClientProxy) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for len(p.Instances()) != nProviders {
		if time.Now().After(deadline) {
			t.Fatalf("proxy sees %d instances, want %d", len(p.Instances()), nProviders)
		}
		time.Sleep(5 * time.Millisecond) // polling the proxy's view of the registry
	}
	seen := map[string]bool{}
	for i := 0; len(seen) < nProviders; i++ {
		if time.Now().After(deadline) {
			t.Fatalf("calls reached only %v", seen)
		}
		var r Reply
		if err := p.Call(t.Context(), "Soak.Fast", Args{N: i}, &r); err != nil {
			t.Fatalf("warm-up call: %v", err)
		}
		seen[r.From] = true
	}
}

func TestSoak(t *testing.T) {
	d := soakDuration(t)
	tick := min(max(d/24, 250*time.Millisecond), 2500*time.Millisecond)
	h := &harness{reg: naming.NewMemory(), logs: &levelCounter{}}
	for i := range nProviders {
		n := &node{id: fmt.Sprintf("soak-%d", i)}
		h.nodes = append(h.nodes, n)
		if err := h.start(n); err != nil {
			t.Fatal(err)
		}
	}
	var proxies [nProxies]*consumer.ClientProxy
	for px, mode := range [nProxies]consumer.FailMode{consumer.Failover, consumer.Failfast} {
		p, err := consumer.NewClientProxy(soakService, h.reg,
			consumer.WithFailMode(mode), consumer.WithRetries(3),
			consumer.WithLoadBalance(loadbalance.RoundRobin))
		if err != nil {
			t.Fatal(err)
		}
		proxies[px] = p
	}

	// Warm-up: the same callers for a second with every provider up, so
	// that connections, worker goroutines and buffers exist before the
	// baseline. Nothing may fail here, not even a Failfast call.
	var warmStop atomic.Bool
	var warmLedger ledger
	wg := runCallers(proxies, &warmStop, &warmLedger)
	time.Sleep(time.Second) // the warm-up's length, not a synchronisation
	warmStop.Store(true)
	waitCallers(t, wg, &warmLedger)
	if n := warmLedger.ffClosed; len(n) > 0 || warmLedger.nUnexp > 0 {
		t.Fatalf("warm-up with every provider up: %d unexpected outcomes, %d Failfast ErrConnClosed:\n%s\n%s",
			warmLedger.nUnexp, len(n), strings.Join(warmLedger.unexpected, "\n"), warmLedger.table())
	}
	for _, p := range proxies {
		warm(t, p)
	}
	heapBefore := heapAlloc()
	goroutinesBefore := runtime.NumGoroutine()

	// The soak.
	var l ledger
	var stop atomic.Bool
	schedStop := make(chan struct{})
	type schedResult struct {
		shutdowns, kills, restarts int
		err                        error
	}
	schedDone := make(chan schedResult, 1)
	begin := time.Now()
	wg = runCallers(proxies, &stop, &l)
	go func() {
		var r schedResult
		r.shutdowns, r.kills, r.restarts, r.err = h.schedule(begin, tick, schedStop)
		schedDone <- r
	}()
	time.Sleep(d) // the soak's length, not a synchronisation
	close(schedStop)
	sr := <-schedDone // every provider is up again
	stop.Store(true)
	waitCallers(t, wg, &l)
	elapsed := time.Since(begin)
	if sr.err != nil {
		t.Fatalf("schedule: %v\n%s", sr.err, strings.Join(h.log, "\n"))
	}

	// Account for every call.
	made, accounted := l.totals()
	t.Logf("%d calls in %v (%.0f calls/s), %d callers; schedule every %v: %d graceful shutdowns, %d kills, %d restarts\n%s",
		made, elapsed.Round(time.Millisecond), float64(made)/elapsed.Seconds(), failoverCallers+failfastCallers,
		tick, sr.shutdowns, sr.kills, sr.restarts, l.table())
	t.Logf("schedule:\n%s", strings.Join(h.log, "\n"))
	if made != accounted {
		t.Errorf("%d calls made, %d accounted for", made, accounted)
	}
	if l.nUnexp > 0 {
		t.Errorf("%d calls ended unexpectedly; the first ones:\n%s", l.nUnexp, strings.Join(l.unexpected, "\n"))
	}
	for px := range nProxies {
		failMade := l.made[px][kFail].Load()
		failed := l.counts[px][kFail][oService].Load() + l.counts[px][kFail][oConnClosed].Load()
		if failMade != failed || (px == pFailover && l.counts[px][kFail][oConnClosed].Load() != 0) {
			t.Errorf("%s: %d error calls made, %d service errors, %d connections closed", proxyNames[px],
				failMade, l.counts[px][kFail][oService].Load(), l.counts[px][kFail][oConnClosed].Load())
		}
		for k := range nKinds {
			if k == kBroadcast && px == pFailfast {
				continue
			}
			want := map[callKind]outcome{kFast: oOK, kSleep: oOK, kFail: oService, kDeadline: oDeadline, kBroadcast: oOK}[k]
			if l.counts[px][k][want].Load() == 0 {
				t.Errorf("%s: no %s call ended %s: the mix did not run", proxyNames[px], kindNames[k], outcomeNames[want])
			}
		}
	}
	if sr.shutdowns == 0 || sr.kills == 0 || sr.restarts == 0 {
		t.Errorf("the schedule did not run every action: %+v", sr)
	}
	// A Failfast call may fail with ErrConnClosed only if it was in flight
	// when a provider was killed.
	var outside []string
	for _, c := range l.ffClosed {
		if !slices.ContainsFunc(h.kills, func(k span) bool {
			return !c.start.After(k.end.Add(killGrace)) && !c.end.Before(k.start)
		}) {
			outside = append(outside, fmt.Sprintf("[%.3fs, %.3fs]", c.start.Sub(begin).Seconds(), c.end.Sub(begin).Seconds()))
		}
	}
	if len(outside) > 0 {
		t.Errorf("%d of %d Failfast ErrConnClosed calls were not in flight during a kill: %v (kills: %v)",
			len(outside), len(l.ffClosed), outside[:min(len(outside), 10)], h.killTimes(begin))
	}
	if n := h.logs.count(slog.LevelWarn); n > 0 {
		t.Errorf("providers logged %d warnings or errors: %s", n, h.logs.first())
	}
	t.Logf("providers logged %d info records (connections closing)", h.logs.count(slog.LevelInfo))

	// Back to the baseline: every provider up, connections to each.
	for _, p := range proxies {
		warm(t, p)
	}
	heapAfter := heapAlloc()
	goroutinesAfter := runtime.NumGoroutine()
	t.Logf("live heap %.2f MiB before, %.2f MiB after (%+.2f MiB); goroutines %d before, %d after",
		mib(heapBefore), mib(heapAfter), mib(heapAfter)-mib(heapBefore), goroutinesBefore, goroutinesAfter)
	if heapAfter > heapBefore+heapMargin {
		t.Errorf("live heap grew from %.2f to %.2f MiB over %d calls: leak of per-call state?",
			mib(heapBefore), mib(heapAfter), made)
	}

	for _, p := range proxies {
		if err := p.Close(); err != nil {
			t.Errorf("closing a proxy: %v", err)
		}
	}
	for _, n := range h.nodes {
		if err := h.stop(n, false); err != nil {
			t.Error(err)
		}
	}
	if err := h.reg.Close(); err != nil {
		t.Error(err)
	}
	goleak.VerifyNone(t)
}

func (h *harness) killTimes(begin time.Time) []string {
	var out []string
	for _, k := range h.kills {
		out = append(out, fmt.Sprintf("%.3fs", k.start.Sub(begin).Seconds()))
	}
	return out
}

func mib(b uint64) float64 { return float64(b) / (1 << 20) }

// levelCounter is a slog handler that counts records by level and keeps
// the first warning or error.
type levelCounter struct {
	mu     sync.Mutex
	counts map[slog.Level]int
	warn   string
}

func (c *levelCounter) Enabled(context.Context, slog.Level) bool { return true }
func (c *levelCounter) Handle(_ context.Context, r slog.Record) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.counts == nil {
		c.counts = map[slog.Level]int{}
	}
	c.counts[r.Level]++
	if r.Level >= slog.LevelWarn && c.warn == "" {
		var b strings.Builder
		b.WriteString(r.Level.String() + " " + r.Message)
		r.Attrs(func(a slog.Attr) bool { b.WriteString(" " + a.String()); return true })
		c.warn = b.String()
	}
	return nil
}
func (c *levelCounter) WithAttrs([]slog.Attr) slog.Handler { return c }
func (c *levelCounter) WithGroup(string) slog.Handler      { return c }

// count returns how many records at level or above were logged.
func (c *levelCounter) count(level slog.Level) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for l, k := range c.counts {
		if l >= level {
			n += k
		}
	}
	return n
}

func (c *levelCounter) first() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.warn
}
