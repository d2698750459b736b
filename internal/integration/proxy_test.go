package integration

import (
	"context"
	"errors"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shoalrpc/shoal/consumer"
	"github.com/shoalrpc/shoal/loadbalance"
	"github.com/shoalrpc/shoal/naming"
)

var allFailModes = []consumer.FailMode{consumer.Failfast, consumer.Failover, consumer.Failretry, consumer.Failbackup}

func TestProxyJoinAndLeaveUnderLoad(t *testing.T) {
	reg := naming.NewMemory()
	defer reg.Close()
	testJoinAndLeave(t, reg)
}

// testJoinAndLeave: 16 callers; a third instance joins and must get calls
// (within a generous bound: the time it takes is logged, not asserted); one
// leaves gracefully; no call fails.
func testJoinAndLeave(t *testing.T, reg naming.Registry) {
	c := newCluster(t, reg, 2)
	p := newProxy(t, reg, consumer.WithWaitForInstances(10*time.Second))
	waitListed(t, p, 2)
	l := startLoad(p, 16, "Arith.Who", WhoArgs{SleepMS: 2})
	l.until(t, 200)

	joined := time.Now()
	n3 := c.add("")
	select {
	case <-n3.arith.firstWho:
	case <-time.After(30 * time.Second):
		t.Fatalf("the new instance got no call within 30s of joining")
	}
	t.Logf("new instance served its first call %v after joining", time.Since(joined).Round(time.Millisecond))
	l.until(t, 200)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.nodes[0].srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	waitListed(t, p, 2)
	l.until(t, 200)
	ok, failed, errs := l.finish()
	if failed != 0 {
		t.Fatalf("%d of %d calls failed, first: %v", failed, ok+failed, errs[0])
	}
}

func TestProxyGracefulShutdownLosesNoCallInAnyFailMode(t *testing.T) {
	reg := naming.NewMemory()
	defer reg.Close()
	testGracefulShutdownEveryMode(t, reg)
}

func testGracefulShutdownEveryMode(t *testing.T, reg naming.Registry) {
	for _, mode := range allFailModes {
		t.Run(mode.String(), func(t *testing.T) {
			c := newCluster(t, reg, 3)
			p := newProxy(t, reg, consumer.WithFailMode(mode), consumer.WithIdempotent("Arith.Who"),
				consumer.WithWaitForInstances(10*time.Second))
			waitListed(t, p, 3)
			l := startLoad(p, 16, "Arith.Who", WhoArgs{SleepMS: 5})
			l.until(t, 100)
			victim := c.nodes[1]
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := victim.srv.Shutdown(ctx); err != nil {
				t.Fatal(err)
			}
			waitListed(t, p, 2)
			l.until(t, 100)
			ok, failed, errs := l.finish()
			if failed != 0 {
				t.Fatalf("%s: %d of %d calls failed, first: %v", mode, failed, ok+failed, errs[0])
			}
			if victim.arith.whos.Load() == 0 {
				t.Fatal("the instance shut down never served a call")
			}
			for _, n := range c.nodes {
				n.srv.Close()
			}
			waitListed(t, p, 0)
		})
	}
}

func TestProxyKilledProvider(t *testing.T) {
	for _, mode := range []consumer.FailMode{consumer.Failover, consumer.Failfast} {
		t.Run(mode.String(), func(t *testing.T) {
			reg := naming.NewMemory()
			defer reg.Close()
			c := newCluster(t, reg, 3)
			p := newProxy(t, reg, consumer.WithFailMode(mode))
			l := startLoad(p, 16, "Arith.Who", WhoArgs{SleepMS: 20})
			l.until(t, 100)
			c.nodes[0].srv.Close() // abrupt: connections dropped, no go-away
			waitListed(t, p, 2)
			l.until(t, 100)
			ok, failed, errs := l.finish()
			switch mode {
			case consumer.Failover:
				if failed != 0 {
					t.Fatalf("Failover: %d of %d calls failed, first: %v", failed, ok+failed, errs[0])
				}
			case consumer.Failfast:
				// Only the calls in flight on the killed provider fail, each
				// with a connection error; at most one per caller.
				if failed > 16 {
					t.Fatalf("Failfast: %d calls failed with 16 callers", failed)
				}
				for _, err := range errs {
					if !isConnErr(err) {
						t.Fatalf("Failfast: a call failed with %v, want a connection error", err)
					}
				}
				t.Logf("Failfast: %d calls in flight on the killed provider failed, %d succeeded", failed, ok)
			}
		})
	}
}

func TestProxyFailretryReconnectsToARestartedProvider(t *testing.T) {
	reg := naming.NewMemory()
	defer reg.Close()
	c := newCluster(t, reg, 1)
	addr := strings.TrimPrefix(c.nodes[0].addr, "tcp@")
	// A static registry keeps listing the address while the provider is down,
	// as a fixed deployment would.
	static, err := naming.NewStatic(c.nodes[0].addr)
	if err != nil {
		t.Fatal(err)
	}
	p := newProxy(t, static, consumer.WithFailMode(consumer.Failretry), consumer.WithRetries(10),
		consumer.WithBackoff(20*time.Millisecond, 200*time.Millisecond, 0.2))
	var out string
	if err := p.Call(context.Background(), "Arith.Who", WhoArgs{}, &out); err != nil {
		t.Fatal(err)
	}
	c.nodes[0].srv.Close()
	restarted := make(chan struct{})
	go func() {
		time.Sleep(150 * time.Millisecond) // the outage the calls ride out
		c.add(addr)
		close(restarted)
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.Call(ctx, "Arith.Who", WhoArgs{}, &out); err != nil {
		t.Fatalf("call across the restart: %v", err)
	}
	<-restarted
	if out != c.nodes[1].id {
		t.Fatalf("answered by %q, want the restarted %q", out, c.nodes[1].id)
	}
}

func TestProxyHedgingCutsTheTailOfAStalledInstance(t *testing.T) {
	reg := naming.NewMemory()
	defer reg.Close()
	c := newCluster(t, reg, 2)
	c.nodes[0].arith.stallMS.Store(1000)
	p := newProxy(t, reg, consumer.WithFailMode(consumer.Failbackup), consumer.WithIdempotent("Arith.Who"),
		consumer.WithHedging(20*time.Millisecond), consumer.WithLoadBalance(loadbalance.RoundRobin))
	// Round robin sends every other call's first attempt to the stalled
	// instance; each must be answered by the other one, which only a hedge
	// can do before the stall ends. How long that takes is logged (a
	// latency bound would flake on a loaded machine).
	var lat []time.Duration
	for range 40 {
		start := time.Now()
		var out string
		if err := p.Call(context.Background(), "Arith.Who", WhoArgs{SleepMS: 2}, &out); err != nil {
			t.Fatal(err)
		}
		if out != c.nodes[1].id {
			t.Fatalf("answered by the stalled instance: not hedged")
		}
		lat = append(lat, time.Since(start))
	}
	if stalled := c.nodes[0].arith.whos.Load(); stalled < 10 {
		t.Fatalf("only %d of 40 first attempts reached the stalled instance: the hedge was not exercised", stalled)
	}
	slices.Sort(lat)
	t.Logf("%d of 40 first attempts went to the stalled instance and were hedged; p50 %v, p99 %v with one instance stalled 1 s and a 20 ms hedging delay",
		c.nodes[0].arith.whos.Load(), lat[len(lat)/2], lat[len(lat)*99/100])
	// Methods not marked idempotent are never hedged.
	start := time.Now()
	p2 := newProxy(t, reg, consumer.WithFailMode(consumer.Failbackup), consumer.WithHedging(20*time.Millisecond),
		consumer.WithLoadBalance(loadbalance.RoundRobin))
	for range 2 {
		var out string
		if err := p2.Call(context.Background(), "Arith.Who", WhoArgs{}, &out); err != nil {
			t.Fatal(err)
		}
	}
	if time.Since(start) < time.Second {
		t.Fatal("a call to a method not marked idempotent was hedged")
	}
}

func TestProxyRetryBudgetBoundsAttemptsOnAFailingCluster(t *testing.T) {
	reg := naming.NewMemory()
	defer reg.Close()
	c := newCluster(t, reg, 3)
	for _, n := range c.nodes {
		n.arith.stallMS.Store(10_000) // every attempt times out: maybe executed
	}
	const calls, retries = 20, 2
	p := newProxy(t, reg, consumer.WithFailMode(consumer.Failover), consumer.WithRetries(retries),
		consumer.WithAttemptTimeout(20*time.Millisecond), consumer.WithBackoff(time.Millisecond, time.Millisecond, 0),
		consumer.WithRetryBudget(10, 0.1), consumer.WithOutlierEjection(0, 0, 0))
	for range calls {
		var out string
		if err := p.Call(context.Background(), "Arith.Who", WhoArgs{}, &out); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("call: %v (%#v), want the attempt timeout", err, err)
		}
	}
	var attempts int64
	for _, n := range c.nodes {
		attempts += n.arith.whos.Load()
	}
	// Without a budget: calls × (1 + retries) = 60. With 10 tokens, retries
	// stop once half are spent: at most 5 retries in all.
	if attempts > calls+5 {
		t.Fatalf("%d attempts for %d calls: the budget did not hold", attempts, calls)
	}
	t.Logf("%d attempts for %d failing calls (unthrottled: %d)", attempts, calls, calls*(1+retries))
}

func TestProxyBroadcastAndFork(t *testing.T) {
	reg := naming.NewMemory()
	defer reg.Close()
	c := newCluster(t, reg, 3)
	p := newProxy(t, reg)
	ctx := context.Background()
	var out string
	if err := p.Broadcast(ctx, "Arith.Who", WhoArgs{}, &out); err != nil || !strings.HasPrefix(out, "node") {
		t.Fatalf("Broadcast: %q, %v", out, err)
	}
	for _, n := range c.nodes {
		if n.arith.whos.Load() != 1 {
			t.Fatalf("%s got %d broadcast calls", n.id, n.arith.whos.Load())
		}
	}

	// One instance fails: its error comes back, and the others, blocked
	// until then, are cancelled (or, if their request was still in the
	// client's queue, withdrawn: they never run).
	failing := c.nodes[1].id
	before := whosOf(c.nodes)
	err := p.Broadcast(ctx, "Arith.Who", WhoArgs{FailOn: failing, BlockUnless: failing}, &out)
	var se *consumer.ServiceError
	if !errors.As(err, &se) || se.Message != "failed on "+failing {
		t.Fatalf("Broadcast with a failing instance: %v", err)
	}
	for _, i := range []int{0, 2} {
		cancelledOrNeverRan(t, c.nodes[i], before[i], "after the first error")
	}

	// Fork: the one instance that answers wins; the rest are cancelled.
	winner := c.nodes[2].id
	before = whosOf(c.nodes)
	if err := p.Fork(ctx, "Arith.Who", WhoArgs{BlockUnless: winner}, &out); err != nil || out != winner {
		t.Fatalf("Fork: %q, %v", out, err)
	}
	for i := range 2 {
		cancelledOrNeverRan(t, c.nodes[i], before[i], "after Fork's winner")
	}
	// Fork where all fail returns them all.
	err = p.Fork(ctx, "Arith.Nope", WhoArgs{}, &out)
	if !errors.Is(err, consumer.ErrUnknownMethod) || strings.Count(err.Error(), "fork") != 3 {
		t.Fatalf("Fork, all failing: %v", err)
	}
}

// TestProxyEjectsAnInstanceThatKeepsFailing counts the attempts that reach a
// dead instance (its dials): after 3 consecutive refusals it is ejected and
// gets no attempt, then one probe once its ejection time is over; the probe
// fails and ejects it again at once, for twice as long. Without ejection,
// round robin would send it an attempt in every call.
func TestProxyEjectsAnInstanceThatKeepsFailing(t *testing.T) {
	reg := naming.NewMemory()
	defer reg.Close()
	c := newCluster(t, reg, 2)
	bad, good := c.nodes[0], c.nodes[1]
	// A static list keeps the dead address in rotation, as a registry that has
	// not noticed yet would.
	static, err := naming.NewStatic(bad.addr, good.addr)
	if err != nil {
		t.Fatal(err)
	}
	bad.srv.Close()
	badAddr := strings.TrimPrefix(bad.addr, "tcp@")
	var mu sync.Mutex
	var badDials []time.Time // when each attempt reached the dead instance
	dialer := func(ctx context.Context, network, address string) (net.Conn, error) {
		if address == badAddr {
			mu.Lock()
			badDials = append(badDials, time.Now())
			mu.Unlock()
		}
		var d net.Dialer
		return d.DialContext(ctx, network, address)
	}
	dials := func() []time.Time {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(badDials)
	}
	// within reports how many attempts reached the dead instance in [from, to).
	within := func(from, to time.Time) int {
		n := 0
		for _, d := range dials() {
			if !d.Before(from) && d.Before(to) {
				n++
			}
		}
		return n
	}
	const ejection = 300 * time.Millisecond
	p := newProxy(t, static, consumer.WithLoadBalance(loadbalance.RoundRobin), consumer.WithDialer(dialer),
		consumer.WithOutlierEjection(3, ejection, time.Minute))
	call := func() {
		t.Helper()
		var out string
		if err := p.Call(context.Background(), "Arith.Who", WhoArgs{}, &out); err != nil {
			t.Fatalf("call: %v (refused calls must go to another instance)", err)
		}
	}
	// 40 calls: round robin sends the first calls to the dead instance until
	// it has refused three times; then it is out for the ejection time.
	for range 40 {
		call()
	}
	if n := len(dials()); n < 3 {
		t.Fatalf("%d attempts reached the dead instance in 40 calls, want 3 before its ejection", n)
	}
	ejected := dials()[2]
	if n := within(time.Time{}, ejected.Add(ejection)); n != 3 {
		t.Fatalf("%d attempts reached the dead instance before the end of its ejection, want 3: ejected after 3 refusals", n)
	}

	// Its ejection time over, it gets one probe, which fails and ejects it
	// again at once, for twice as long.
	deadline := time.Now().Add(10 * time.Second)
	for len(dials()) == 3 {
		if time.Now().After(deadline) {
			t.Fatalf("no probe reached the dead instance within 10 s of an ejection of %v", ejection)
		}
		call()
		time.Sleep(5 * time.Millisecond) // calls spread over the ejection time
	}
	probe := dials()[3]
	if after := probe.Sub(ejected); after < ejection {
		t.Fatalf("the probe came %v after the ejection, before its end (%v)", after, ejection)
	}
	for range 20 {
		call()
	}
	if n := within(probe.Add(time.Nanosecond), probe.Add(2*ejection)); n != 0 {
		t.Fatalf("%d attempts reached the dead instance after its failed probe, want none: a failed probe ejects at once", n)
	}
	t.Logf("ejected after 3 refusals, probed %v later", probe.Sub(ejected).Round(time.Millisecond))
}

// fetchSignal is a registry that tells fetched what each Fetch returned.
type fetchSignal struct {
	naming.Registry
	fetched chan []*naming.Instance
}

func (f fetchSignal) Fetch(ctx context.Context, service string) ([]*naming.Instance, error) {
	list, err := f.Registry.Fetch(ctx, service)
	f.fetched <- list
	return list, err
}

func TestNewClientProxyWithoutInstances(t *testing.T) {
	reg := naming.NewMemory()
	defer reg.Close()
	if _, err := consumer.NewClientProxy("arith", reg); !errors.Is(err, loadbalance.ErrNoInstances) {
		t.Fatalf("NewClientProxy: %v, want ErrNoInstances", err)
	}
	// The instance appears only once the proxy has found none: it must
	// wait for the watch to deliver one.
	sig := fetchSignal{Registry: reg, fetched: make(chan []*naming.Instance, 1)}
	got := make(chan error, 1)
	go func() {
		p, err := consumer.NewClientProxy("arith", sig, consumer.WithWaitForInstances(30*time.Second))
		if err == nil {
			var out string
			err = p.Call(context.Background(), "Arith.Who", WhoArgs{}, &out)
			p.Close()
		}
		got <- err
	}()
	select {
	case list := <-sig.fetched:
		if len(list) != 0 {
			t.Fatalf("the proxy fetched %d instances before any was started", len(list))
		}
	case err := <-got:
		t.Fatalf("NewClientProxy returned (%v) without fetching", err)
	case <-time.After(30 * time.Second):
		t.Fatal("NewClientProxy did not fetch within 30s")
	}
	select {
	case err := <-got:
		t.Fatalf("NewClientProxy with no instance returned at once (%v); want it to wait", err)
	default:
	}
	newCluster(t, reg, 1)
	select {
	case err := <-got:
		if err != nil {
			t.Fatalf("waiting proxy: %v", err)
		}
	case <-time.After(40 * time.Second):
		t.Fatal("the waiting proxy neither called nor failed within 40s of the instance appearing")
	}

	p := newProxy(t, reg)
	p.Close()
	p.Close()
	if err := p.Call(context.Background(), "Arith.Who", WhoArgs{}, new(string)); !errors.Is(err, consumer.ErrProxyClosed) {
		t.Fatalf("Call after Close: %v", err)
	}
}

func TestProxyWhenEveryInstanceIsGone(t *testing.T) {
	reg := naming.NewMemory()
	defer reg.Close()
	c := newCluster(t, reg, 1)
	p := newProxy(t, reg)
	c.nodes[0].srv.Close()
	waitListed(t, p, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := p.Call(ctx, "Arith.Who", WhoArgs{}, new(string)); !errors.Is(err, loadbalance.ErrNoInstances) {
		t.Fatalf("Call with no instance: %v, want ErrNoInstances", err)
	}
}

// whosOf returns how many Who calls each node has run.
func whosOf(nodes []*node) []int64 {
	out := make([]int64, len(nodes))
	for i, n := range nodes {
		out[i] = n.arith.whos.Load()
	}
	return out
}

// cancelledOrNeverRan waits for n's blocked Who call to be cancelled. A call
// whose request was still queued in the client when its context ended was
// withdrawn instead and never ran (its count is still before); a request
// that was written runs and is then cancelled.
func cancelledOrNeverRan(t *testing.T, n *node, before int64, when string) {
	t.Helper()
	select {
	case <-n.arith.canceled:
	case <-time.After(5 * time.Second):
		if n.arith.whos.Load() != before {
			t.Fatalf("%s ran the call and was not cancelled %s", n.id, when)
		}
	}
}
