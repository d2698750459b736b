package soak

import (
	"cmp"
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
	"unsafe"

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
	// retries is both proxies' WithRetries: a Failover call may run at most
	// this many more times than once, each after a maybe-executed attempt.
	retries = 3
	// settleWait bounds the wait for goroutines to return to their baseline
	// once the load has stopped: generous, for a loaded machine.
	settleWait = 30 * time.Second
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

// callRec is what a caller saw of one recorded call. Times are since the
// soak began.
type callRec struct {
	id         uint64
	start, end time.Duration
	px         uint8
	kind       uint8  // a callKind
	o          uint8  // an outcome
	from       int8   // the provider whose reply or service error ended the call; -1: none
	gen        uint16 // and its generation
}

var (
	callRecSize = int(unsafe.Sizeof(callRec{}))
	execRecSize = int(unsafe.Sizeof(execRec{}))
)

// ledger holds what the callers saw: counts by outcome for the table, and
// with record set, one callRec per call, reconciled at the end against the
// providers' own records of what they ran.
type ledger struct {
	begin  time.Time // when set, calls are recorded, their times relative to it
	made   [nProxies][nKinds]atomic.Int64
	counts [nProxies][nKinds][nOutcomes]atomic.Int64

	mu         sync.Mutex
	unexpected []string // the first few, with their errors
	nUnexp     int
	ffClosed   int         // Failfast calls that failed with ErrConnClosed
	recs       [][]callRec // one slice per caller that has returned
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
		l.ffClosed++
		return
	}
	l.nUnexp++
	if len(l.unexpected) < 20 {
		l.unexpected = append(l.unexpected, fmt.Sprintf("%s %s → %s after %v: %v",
			proxyNames[px], kindNames[kind], outcomeNames[o], sp.end.Sub(sp.start).Round(time.Microsecond), err))
	}
}

// calls returns every call record, sorted by ID, and the bytes the records
// hold.
func (l *ledger) calls() ([]callRec, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var all []callRec
	size := 0
	for _, r := range l.recs {
		all = append(all, r...)
		size += cap(r) * callRecSize
	}
	slices.SortFunc(all, func(a, b callRec) int { return cmp.Compare(a.id, b.id) })
	return all, size
}

// recordBytes is the memory the call records hold.
func (l *ledger) recordBytes() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	size := 0
	for _, r := range l.recs {
		size += cap(r) * callRecSize
	}
	return size
}

func (l *ledger) made64() int64 {
	var made int64
	for px := range nProxies {
		for k := range nKinds {
			made += l.made[px][k].Load()
		}
	}
	return made
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

// classify sorts a call's error; for a service error it also returns the
// provider and generation that ran the call. The order matters: a Failover
// call whose deadline ended during a retry carries the earlier attempt's
// error too, and a call whose deadline fired on both sides carries the
// handler's ctx.Err() as a *ServiceError besides context.DeadlineExceeded.
func classify(kind callKind, n int, err error) (o outcome, from string, gen int) {
	var se *consumer.ServiceError
	switch {
	case err == nil:
		return oOK, "", 0
	case errors.Is(err, context.DeadlineExceeded):
		return oDeadline, "", 0
	case errors.As(err, &se):
		var got int
		if kind == kFail {
			if k, _ := fmt.Sscanf(se.Message, "soak failure %d from %s gen %d", &got, &from, &gen); k == 3 && got == n {
				return oService, from, gen
			}
		}
		return oOther, "", 0
	case errors.Is(err, loadbalance.ErrNoInstances):
		return oNoInstances, "", 0
	case errors.Is(err, consumer.ErrConnClosed):
		return oConnClosed, "", 0
	case kind == kBroadcast && isRefusal(err):
		return oTransient, "", 0
	}
	return oOther, "", 0
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
	index  int
	addr   string // host:port, fixed by the first start
	gen    int    // how many times it was started
	srv    *provider.Server
	served chan error // Serve's result
	up     bool
}

// killRec is one provider life ended by Close.
type killRec struct {
	node, gen int
	span
}

// connRec is one connection the proxies dialed: to where, and when the
// client closed it. A client closes its connection only after it has
// stopped accepting calls on it, so a call that starts after closed cannot
// have been sent on it.
type connRec struct {
	addr           string
	dialed, closed time.Time // closed is zero while open
}

// trackedConn records when the client closes it.
type trackedConn struct {
	net.Conn
	h    *harness
	rec  *connRec
	once sync.Once
}

func (c *trackedConn) Close() error {
	c.once.Do(func() {
		c.h.mu.Lock()
		c.rec.closed = time.Now()
		c.h.mu.Unlock()
	})
	return c.Conn.Close()
}

// dial is the proxies' dialer: a net.Dialer whose connections record when
// they were dialed and closed.
func (h *harness) dial(ctx context.Context, network, address string) (net.Conn, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, network, address)
	if err != nil {
		return nil, err
	}
	rec := &connRec{addr: address, dialed: time.Now()}
	h.mu.Lock()
	h.conns = append(h.conns, rec)
	h.mu.Unlock()
	return &trackedConn{Conn: nc, h: h, rec: rec}, nil
}

// harness holds the registry, the providers and what the schedule did.
type harness struct {
	reg  *naming.Memory
	logs *levelCounter

	nodes []*node // touched only by the test goroutine and then the scheduler, never both at once

	mu    sync.Mutex
	soaks []*Soak    // every provider life's service, with its record of executions
	kills []killRec  // when each Close ran
	conns []*connRec // every connection the proxies dialed
	log   []string   // what the schedule did
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
	n.gen++
	svc := &Soak{id: n.id, node: n.index, gen: n.gen}
	if err := srv.RegisterName("Soak", svc); err != nil {
		ln.Close()
		return err
	}
	h.mu.Lock()
	h.soaks = append(h.soaks, svc)
	h.mu.Unlock()
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
		h.kills = append(h.kills, killRec{n.index, n.gen, span{start, time.Now()}})
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

// caller makes calls until stop is set. With l.begin set, each call has an
// ID the providers record and a callRec in l.
func caller(px int, p *consumer.ClientProxy, seed uint64, stop *atomic.Bool, l *ledger) {
	rng := rand.New(rand.NewPCG(seed, 0x50a450a4))
	var recs []callRec
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
		if !l.begin.IsZero() {
			args.ID = seed<<32 | uint64(n+1)
		}
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
		end := time.Now()
		o, from, gen := classify(kind, n, err)
		if o == oOK {
			from, gen = reply.From, reply.Gen
			if reply.N != n+1 || reply.Payload != args.Payload || !strings.HasPrefix(reply.From, "soak-") {
				o, err = oWrongReply, fmt.Errorf("reply %+v to args %+v", reply, args)
			}
		}
		if o == oDeadline && timeout == hangLimit {
			err = fmt.Errorf("no answer within %v: %w", hangLimit, err)
		}
		l.record(px, kind, o, err, span{start, end})
		if args.ID != 0 {
			r := callRec{id: args.ID, start: start.Sub(l.begin), end: end.Sub(l.begin), px: uint8(px), kind: uint8(kind), o: uint8(o), from: -1}
			var idx int
			if _, err := fmt.Sscanf(from, "soak-%d", &idx); err == nil && (o == oOK || o == oService) {
				r.from, r.gen = int8(idx), uint16(gen)
			}
			recs = append(recs, r)
		}
	}
	l.mu.Lock()
	l.recs = append(l.recs, recs)
	l.mu.Unlock()
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
		t.Fatalf("callers still running %v after stop: %d calls made", hangLimit+10*time.Second, l.made64())
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
		n := &node{id: fmt.Sprintf("soak-%d", i), index: i}
		h.nodes = append(h.nodes, n)
		if err := h.start(n); err != nil {
			t.Fatal(err)
		}
	}
	var proxies [nProxies]*consumer.ClientProxy
	for px, mode := range [nProxies]consumer.FailMode{consumer.Failover, consumer.Failfast} {
		p, err := consumer.NewClientProxy(soakService, h.reg,
			consumer.WithFailMode(mode), consumer.WithRetries(retries),
			consumer.WithLoadBalance(loadbalance.RoundRobin), consumer.WithDialer(h.dial))
		if err != nil {
			t.Fatal(err)
		}
		proxies[px] = p
	}

	// Warm-up: the same callers for a second with every provider up, so
	// that connections, worker goroutines and buffers exist before the
	// baseline. Nothing may fail here, not even a Failfast call.
	var warmStop atomic.Bool
	warmLedger := &ledger{}
	wg := runCallers(proxies, &warmStop, warmLedger)
	time.Sleep(time.Second) // the warm-up's length, not a synchronisation
	warmStop.Store(true)
	waitCallers(t, wg, warmLedger)
	if warmLedger.ffClosed > 0 || warmLedger.nUnexp > 0 {
		t.Fatalf("warm-up with every provider up: %d unexpected outcomes, %d Failfast ErrConnClosed:\n%s\n%s",
			warmLedger.nUnexp, warmLedger.ffClosed, strings.Join(warmLedger.unexpected, "\n"), warmLedger.table())
	}
	warmLedger = nil
	for _, p := range proxies {
		warm(t, p)
	}
	heapBefore := heapAlloc()
	goroutinesBefore := goroutines()

	// The soak.
	var stop atomic.Bool
	schedStop := make(chan struct{})
	type schedResult struct {
		shutdowns, kills, restarts int
		err                        error
	}
	schedDone := make(chan schedResult, 1)
	begin := time.Now()
	l := &ledger{begin: begin}
	wg = runCallers(proxies, &stop, l)
	go func() {
		var r schedResult
		r.shutdowns, r.kills, r.restarts, r.err = h.schedule(begin, tick, schedStop)
		schedDone <- r
	}()
	time.Sleep(d) // the soak's length, not a synchronisation
	close(schedStop)
	sr := <-schedDone // every provider is up again
	stop.Store(true)
	waitCallers(t, wg, l)
	elapsed := time.Since(begin)
	if sr.err != nil {
		t.Fatalf("schedule: %v\n%s", sr.err, strings.Join(h.log, "\n"))
	}

	made := l.made64()
	t.Logf("%d calls in %v (%.0f calls/s), %d callers; schedule every %v: %d graceful shutdowns, %d kills, %d restarts\n%s",
		made, elapsed.Round(time.Millisecond), float64(made)/elapsed.Seconds(), failoverCallers+failfastCallers,
		tick, sr.shutdowns, sr.kills, sr.restarts, l.table())
	t.Logf("schedule:\n%s", strings.Join(h.log, "\n"))
	if l.nUnexp > 0 {
		t.Errorf("%d calls ended unexpectedly; the first ones:\n%s", l.nUnexp, strings.Join(l.unexpected, "\n"))
	}
	for px := range nProxies {
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
	if n := h.logs.count(slog.LevelWarn); n > 0 {
		t.Errorf("providers logged %d warnings or errors: %s", n, h.logs.first())
	}
	t.Logf("providers logged %d info records (connections closing)", h.logs.count(slog.LevelInfo))

	// Back to the baseline: every provider up, connections to each, no
	// call running.
	for _, p := range proxies {
		warm(t, p)
	}
	heapAfter := heapAlloc()
	// The records of the soak's calls are live; they are not a leak.
	records := l.recordBytes() + h.execBytes()
	t.Logf("live heap %.2f MiB before, %.2f MiB after less %.2f MiB of call records (%+.2f MiB)",
		mib(heapBefore), mib(heapAfter-uint64(records)), mib(uint64(records)), mib(heapAfter-uint64(records))-mib(heapBefore))
	if heapAfter-uint64(records) > heapBefore+heapMargin {
		t.Errorf("live heap grew from %.2f to %.2f MiB (call records excluded) over %d calls: leak of per-call state?",
			mib(heapBefore), mib(heapAfter-uint64(records)), made)
	}
	settleGoroutines(t, goroutinesBefore)

	// Every call accounted for: what the callers saw against what the
	// providers ran.
	h.reconcile(t, l)

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

// execBytes is the memory the providers' records of executions hold.
func (h *harness) execBytes() int {
	h.mu.Lock()
	soaks := slices.Clone(h.soaks)
	h.mu.Unlock()
	size := 0
	for _, s := range soaks {
		s.mu.Lock()
		size += cap(s.execs) * execRecSize
		s.mu.Unlock()
	}
	return size
}

// executions returns every execution the providers recorded, sorted by
// call ID.
func (h *harness) executions() []execRec {
	h.mu.Lock()
	soaks := slices.Clone(h.soaks)
	h.mu.Unlock()
	var all []execRec
	for _, s := range soaks {
		r, _ := s.records()
		all = append(all, r...)
	}
	slices.SortFunc(all, func(a, b execRec) int { return cmp.Compare(a.id, b.id) })
	return all
}

// reconcile checks every recorded call against the providers' records of
// what they ran. The providers record a call when its method starts, so
// these are two independent counts: the callers' outcomes and the servers'
// executions. The rules:
//   - a call answered by a provider (a reply, or the method's own error) ran
//     exactly once on the provider life that answered;
//   - any other execution of it must be explained by a maybe-executed
//     attempt: a Failover call may run again elsewhere (at most retries
//     times) only after an attempt on a provider killed while the call was
//     in flight; a refusal ("shutting down", go-away, dial refused) is
//     never an execution;
//   - a Failfast call runs at most once, and never after a maybe-executed
//     error;
//   - a call that ended with ErrConnClosed or its deadline may have run
//     once where it was cut (the deadline) or on a killed provider;
//   - a Failfast ErrConnClosed call started before the client closed a
//     connection to a provider killed while the call was in flight: after
//     that, the client refuses calls on the connection (not executed);
//   - a Broadcast runs at most once on each provider life;
//   - nothing runs that no caller made.
func (h *harness) reconcile(t *testing.T, l *ledger) {
	t.Helper()
	calls, _ := l.calls()
	execs := h.executions()
	h.mu.Lock()
	kills := slices.Clone(h.kills)
	var conns []connRec
	for _, c := range h.conns {
		conns = append(conns, *c)
	}
	h.mu.Unlock()
	begin := l.begin

	killedDuring := func(e execRec, c callRec) bool {
		return slices.ContainsFunc(kills, func(k killRec) bool {
			return k.node == int(e.node) && k.gen == int(e.gen) &&
				k.start.Sub(begin) <= c.end && k.end.Sub(begin) >= c.start
		})
	}
	// brokenByKill: the call ended after a kill began, and started before
	// the client closed a connection to the killed provider that was dialed
	// before the kill ended (a dial can still succeed while Close is under
	// way) and closed after it began. The call may start after the kill has
	// ended: until the client's reader sees the connection close, a call can
	// still be written on it. It returns, for a failure message, the kills
	// and the connections closed around the call's end.
	brokenByKill := func(c callRec) (bool, []string) {
		var near []string
		for _, k := range kills {
			if k.start.Sub(begin) > c.end {
				continue
			}
			addr := h.nodes[k.node].addr
			for _, cn := range conns {
				if cn.addr != addr || !cn.dialed.Before(k.end) || (!cn.closed.IsZero() && cn.closed.Before(k.start)) {
					continue
				}
				if !cn.closed.IsZero() && c.start < cn.closed.Sub(begin) {
					return true, nil
				}
			}
		}
		for _, k := range kills {
			if (k.start.Sub(begin) - c.end).Abs() < time.Second {
				near = append(near, fmt.Sprintf("kill of %s %.4fs–%.4fs", h.nodes[k.node].addr, k.start.Sub(begin).Seconds(), k.end.Sub(begin).Seconds()))
			}
		}
		for _, cn := range conns {
			if !cn.closed.IsZero() && (cn.closed.Sub(begin)-c.end).Abs() < 50*time.Millisecond {
				near = append(near, fmt.Sprintf("conn to %s dialed %.4fs closed %.4fs", cn.addr, cn.dialed.Sub(begin).Seconds(), cn.closed.Sub(begin).Seconds()))
			}
		}
		return false, near
	}

	var (
		violations []string
		nViol      int
		answered   [nProxies]int64 // answered calls that ran once
		rerun      int64           // Failover calls that ran again after a kill
		maybe      [3]int64        // maybe-executed calls that ran 0, 1, 2+ times
	)
	bad := func(c callRec, e []execRec, format string, args ...any) {
		nViol++
		if len(violations) < 20 {
			violations = append(violations, fmt.Sprintf("call %#x (%s %s → %s, [%.4fs, %.4fs]) executions %v: %s",
				c.id, proxyNames[c.px], kindNames[c.kind], outcomeNames[c.o], c.start.Seconds(), c.end.Seconds(), e,
				fmt.Sprintf(format, args...)))
		}
	}
	i := 0
	for _, c := range calls {
		j := i
		for j < len(execs) && execs[j].id < c.id {
			bad(c, nil, "provider %d gen %d ran call %#x, which no caller made", execs[j].node, execs[j].gen, execs[j].id)
			j++
		}
		i = j
		for j < len(execs) && execs[j].id == c.id {
			j++
		}
		e := execs[i:j]
		i = j

		if callKind(c.kind) == kBroadcast {
			for a := range e {
				for b := range a {
					if e[a].node == e[b].node && e[a].gen == e[b].gen {
						bad(c, e, "a broadcast ran twice on one provider life")
					}
				}
			}
			if outcome(c.o) == oOK && len(e) == 0 {
				bad(c, e, "a broadcast answered without running anywhere")
			}
			continue
		}
		answer := -1
		if c.from >= 0 {
			for k, x := range e {
				if int8(x.node) == c.from && x.gen == c.gen {
					if answer >= 0 {
						bad(c, e, "ran twice on the provider life that answered")
					}
					answer = k
				}
			}
			if answer < 0 {
				bad(c, e, "answered by provider %d gen %d, which did not run it", c.from, c.gen)
				continue
			}
		}
		cutAllowed := outcome(c.o) == oDeadline // the attempt its deadline cut may have run anywhere
		unexplained := 0
		for k, x := range e {
			if k != answer && !killedDuring(x, c) {
				unexplained++
			}
		}
		if cutAllowed {
			unexplained = max(unexplained-1, 0)
		}
		others := len(e)
		if answer >= 0 {
			others--
		}
		switch {
		case unexplained > 0:
			bad(c, e, "ran on a provider that was not killed while the call was in flight: a refusal that ran, or a duplicate")
		case c.px == pFailfast && len(e) > 1:
			bad(c, e, "a Failfast call ran more than once")
		case c.px == pFailover && others > retries:
			bad(c, e, "ran %d times besides its answer, more than %d retries", others, retries)
		}
		if c.px == pFailfast && outcome(c.o) == oConnClosed {
			if ok, near := brokenByKill(c); !ok {
				bad(c, e, "ErrConnClosed, but no connection it could have been sent on was broken by a kill (nearby: %v)", near)
			}
		}
		switch {
		case answer >= 0 && others == 0:
			answered[c.px]++
		case answer >= 0:
			rerun++
		case outcome(c.o) == oConnClosed || outcome(c.o) == oDeadline:
			maybe[min(len(e), 2)]++
		}
	}
	for ; i < len(execs); i++ {
		nViol++
		if len(violations) < 20 {
			violations = append(violations, fmt.Sprintf("provider %d gen %d ran call %#x, which no caller made", execs[i].node, execs[i].gen, execs[i].id))
		}
	}
	t.Logf("reconciled %d calls with %d executions: answered and ran once: %d failover, %d failfast; answered after running on a killed provider too: %d; "+
		"ErrConnClosed or deadline, ran 0 / 1 / 2+ times: %d / %d / %d; %d Failfast ErrConnClosed",
		len(calls), len(execs), answered[pFailover], answered[pFailfast], rerun, maybe[0], maybe[1], maybe[2], l.ffClosed)
	if nViol > 0 {
		t.Errorf("%d calls not accounted for by the providers' executions; the first ones:\n%s\nkills: %v",
			nViol, strings.Join(violations, "\n"), h.killTimes(begin))
	}
}

// goroutineCounts counts this process's goroutines by what created them,
// leaving out the providers' idle workers: a provider keeps up to 1024 of
// them for reuse, as many as its busiest moment needed, so their number
// follows the load rather than leaks (and they end with the provider).
func goroutineCounts() (byCreator map[string]int, others, workers int) {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	byCreator = map[string]int{}
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "provider.(*Server).work(") {
			workers++
			continue
		}
		others++
		creator := "(main)"
		if i := strings.Index(g, "created by "); i >= 0 {
			creator = strings.SplitN(g[i+len("created by "):], "\n", 2)[0]
			creator = strings.SplitN(creator, " in goroutine", 2)[0]
		}
		byCreator[creator]++
	}
	return byCreator, others, workers
}

// baseline is the goroutines counted before the soak.
type baseline struct {
	byCreator       map[string]int
	others, workers int
}

func goroutines() baseline {
	b, o, w := goroutineCounts()
	return baseline{b, o, w}
}

// settleGoroutines waits, up to settleWait, for the goroutines other than
// idle workers to return to the baseline, and fails the test with the
// difference by creator if they do not.
func settleGoroutines(t *testing.T, before baseline) {
	t.Helper()
	deadline := time.Now().Add(settleWait)
	for {
		now, others, workers := goroutineCounts()
		if others <= before.others {
			t.Logf("goroutines: %d before, %d after (idle provider workers: %d before, %d after)",
				before.others, others, before.workers, workers)
			return
		}
		if time.Now().After(deadline) {
			var diff []string
			for c, n := range now {
				if n != before.byCreator[c] {
					diff = append(diff, fmt.Sprintf("%+d created by %s", n-before.byCreator[c], c))
				}
			}
			for c, n := range before.byCreator {
				if _, ok := now[c]; !ok {
					diff = append(diff, fmt.Sprintf("%+d created by %s", -n, c))
				}
			}
			slices.Sort(diff)
			t.Errorf("goroutines (idle provider workers aside) did not return to their baseline within %v: %d before, %d after:\n%s",
				settleWait, before.others, others, strings.Join(diff, "\n"))
			return
		}
		time.Sleep(50 * time.Millisecond) // polling the goroutine count, an outcome of other goroutines ending
	}
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
