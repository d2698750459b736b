package consumer_test

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shoalrpc/shoal/consumer"
	"github.com/shoalrpc/shoal/health"
	"github.com/shoalrpc/shoal/internal/servetest"
	"github.com/shoalrpc/shoal/naming"
	"github.com/shoalrpc/shoal/provider"
	"github.com/shoalrpc/shoal/stats"
)

// Hits counts, on the server, the calls it ran, by the phase of the test
// the caller was in (the argument).
type Hits struct{ phase [3]atomic.Int64 }

// Hit counts one call of phase.
func (h *Hits) Hit(phase int, out *int) error { h.phase[phase].Add(1); *out = phase; return nil }

// hitServer is one provider of "hits" for the health-check tests.
type hitServer struct {
	srv  *provider.Server
	hits *Hits
	addr string // "tcp@host:port"

	notServing atomic.Int64 // health checks it answered NOT_SERVING
}

func startHitServer(t *testing.T, reg naming.Registry, opts ...provider.Option) *hitServer {
	t.Helper()
	hs := &hitServer{hits: &Hits{}}
	countNotServing := func(ctx context.Context, info *provider.RequestInfo, args any, next provider.Handler) (any, error) {
		reply, err := next(ctx, args)
		if r, ok := reply.(*health.CheckResponse); ok && r.Status == health.NotServing {
			hs.notServing.Add(1)
		}
		return reply, err
	}
	opts = append([]provider.Option{provider.WithLogger(slog.New(slog.DiscardHandler)), provider.WithInterceptors(countNotServing)}, opts...)
	if reg != nil {
		opts = append(opts, provider.WithRegistry(reg, naming.Instance{Service: "hits"}))
	}
	hs.srv = provider.NewServer(opts...)
	if err := hs.srv.Register(hs.hits); err != nil {
		t.Fatal(err)
	}
	addr := servetest.Start(t, hs.srv)
	hs.addr = "tcp@" + addr
	return hs
}

// healthEvent is a health event as the stats handler saw it, with what the
// instance's server had answered NOT_SERVING by then.
type healthEvent struct {
	stats.ProxyEvent
	notServing int64
}

// healthEvents passes the proxy's health events on, as they happen.
type healthEvents struct {
	stats.Base
	servers []*hitServer
	events  chan healthEvent
	skipped []healthEvent // await's: other instances' events, for their own await
}

func (h *healthEvents) HandleProxy(ev *stats.ProxyEvent) {
	if ev.Kind != stats.InstanceHealthy && ev.Kind != stats.InstanceUnhealthy {
		return
	}
	he := healthEvent{ProxyEvent: *ev}
	for _, s := range h.servers {
		if s.addr == ev.Addr {
			he.notServing = s.notServing.Load() // before the next round of checks
		}
	}
	h.events <- he
}

// await returns the next health event of addr, failing the test after a
// generous bound; other instances' events are kept for their own await.
func (h *healthEvents) await(t *testing.T, kind stats.ProxyEventKind, addr string) healthEvent {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		var ev healthEvent
		if i := slices.IndexFunc(h.skipped, func(e healthEvent) bool { return e.Addr == addr }); i >= 0 {
			ev = h.skipped[i]
			h.skipped = slices.Delete(h.skipped, i, i+1)
		} else {
			select {
			case ev = <-h.events:
			case <-timeout:
				t.Fatalf("no %v event for %s", kind, addr)
			}
		}
		if ev.Addr != addr {
			h.skipped = append(h.skipped, ev)
			continue
		}
		if ev.Kind != kind {
			t.Fatalf("%s: %v (%s), want %v", addr, ev.Kind, ev.Detail, kind)
		}
		return ev
	}
}

// callPhase makes n calls of phase through p and fails the test on any error.
func callPhase(t *testing.T, p *consumer.ClientProxy, phase, n int) {
	t.Helper()
	for range n {
		var out int
		if err := p.Call(context.Background(), "Hits.Hit", phase, &out); err != nil {
			t.Fatalf("phase %d call: %v", phase, err)
		}
	}
}

// background calls p until stop is closed, counting what the callers saw.
func background(p *consumer.ClientProxy, stop chan struct{}) (wait func() (ok, failed int64, last error)) {
	var ok, failed atomic.Int64
	var last atomic.Value
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				var out int
				if err := p.Call(context.Background(), "Hits.Hit", 0, &out); err != nil {
					failed.Add(1)
					last.Store(err)
				} else {
					ok.Add(1)
				}
			}
		})
	}
	return func() (int64, int64, error) {
		wg.Wait()
		err, _ := last.Load().(error)
		return ok.Load(), failed.Load(), err
	}
}

func TestHealthCheckTakesANotServingInstanceOutAndBack(t *testing.T) {
	reg := naming.NewMemory()
	a, b := startHitServer(t, reg), startHitServer(t, reg)
	events := &healthEvents{servers: []*hitServer{a, b}, events: make(chan healthEvent, 64)}
	p, err := consumer.NewClientProxy("hits", reg,
		consumer.WithHealthCheck(250*time.Millisecond, 250*time.Millisecond),
		consumer.WithStatsHandler(events), consumer.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	stop := make(chan struct{})
	wait := background(p, stop)

	if err := b.srv.Health().SetStatus("hits", health.NotServing); err != nil {
		t.Fatal(err)
	}
	out := events.await(t, stats.InstanceUnhealthy, b.addr)
	if out.Detail != "NOT_SERVING" || out.notServing != 1 {
		t.Errorf("left out after %d NOT_SERVING answers, saying %q; want the first check to take it out, saying NOT_SERVING", out.notServing, out.Detail)
	}
	callPhase(t, p, 1, 40)
	snap := p.Snapshot()
	if len(snap.Instances) != 2 || snap.HealthCheck != 250*time.Millisecond {
		t.Fatalf("Snapshot: %+v", snap)
	}
	for _, in := range snap.Instances {
		out := in.Addr == b.addr
		if in.InPicks == out || in.Health.OK == out || !in.Health.Checked || !in.Listed {
			t.Errorf("Snapshot of %s (NOT_SERVING: %v): in picks %v, health %+v, listed %v", in.Addr, out, in.InPicks, in.Health, in.Listed)
		}
		if out && in.Health.Detail != "NOT_SERVING" {
			t.Errorf("Snapshot of the NOT_SERVING instance: health %+v", in.Health)
		}
	}
	if got := b.hits.phase[1].Load(); got != 0 {
		t.Errorf("the NOT_SERVING instance ran %d calls made after it was left out", got)
	}
	if got := a.hits.phase[1].Load(); got != 40 {
		t.Errorf("the serving instance ran %d of the 40 calls", got)
	}

	if err := b.srv.Health().SetStatus("hits", health.Serving); err != nil {
		t.Fatal(err)
	}
	back := events.await(t, stats.InstanceHealthy, b.addr)
	if back.Detail != "SERVING" {
		t.Errorf("back in saying %q", back.Detail)
	}
	callPhase(t, p, 2, 40)
	if got := b.hits.phase[2].Load(); got == 0 {
		t.Error("the instance that recovered got no calls")
	}
	close(stop)
	ok, failed, last := wait()
	if failed != 0 {
		t.Errorf("%d calls failed meanwhile; the last: %v", failed, last)
	}
	if ran := a.hits.phase[0].Load() + b.hits.phase[0].Load(); ran != ok {
		t.Errorf("the servers ran %d background calls, the callers saw %d succeed", ran, ok)
	}
}

func TestHealthCheckLeavesEveryInstanceInWhenAllFail(t *testing.T) {
	reg := naming.NewMemory()
	a, b := startHitServer(t, reg), startHitServer(t, reg)
	events := &healthEvents{servers: []*hitServer{a, b}, events: make(chan healthEvent, 64)}
	p, err := consumer.NewClientProxy("hits", reg,
		consumer.WithHealthCheck(100*time.Millisecond, 100*time.Millisecond),
		consumer.WithStatsHandler(events), consumer.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	for _, s := range []*hitServer{a, b} {
		if err := s.srv.Health().SetStatus("", health.NotServing); err != nil {
			t.Fatal(err)
		}
	}
	events.await(t, stats.InstanceUnhealthy, a.addr)
	events.await(t, stats.InstanceUnhealthy, b.addr)
	callPhase(t, p, 1, 20)
	if a.hits.phase[1].Load() == 0 || b.hits.phase[1].Load() == 0 {
		t.Errorf("with every instance failing its check, calls went %d to one and %d to the other; want both kept",
			a.hits.phase[1].Load(), b.hits.phase[1].Load())
	}
}

// A provider without the health service answers the check "unknown
// service": it is up. One whose process is gone (its listener closed, and
// still listed, as a static registry does) fails its check and is left out.
func TestHealthCheckTakesUnknownServiceAsAHeartbeatAndCatchesADeadInstance(t *testing.T) {
	a := startHitServer(t, nil)                           // health service, no registry name: Check("hits") is unknown, Check("") serves
	b := startHitServer(t, nil, provider.WithoutHealth()) // no health service
	reg, err := naming.Open("static://" + a.addr + "," + b.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	events := &healthEvents{servers: []*hitServer{a, b}, events: make(chan healthEvent, 64)}
	p, err := consumer.NewClientProxy("hits", reg,
		consumer.WithHealthCheck(100*time.Millisecond, 100*time.Millisecond),
		consumer.WithOutlierEjection(0, 0, 0), // only the health check leaves instances out
		consumer.WithStatsHandler(events), consumer.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	callPhase(t, p, 1, 10)
	b.srv.Close()
	out := events.await(t, stats.InstanceUnhealthy, b.addr)
	if !strings.Contains(out.Detail, "dial") {
		t.Errorf("left out saying %q: want the failed dial, not the answer of a live provider without health", out.Detail)
	}
	// The round that found b dead checked a too, and an earlier one had.
	for _, in := range p.Snapshot().Instances {
		if in.Addr == a.addr && (!in.Health.OK || in.Health.Detail != "SERVING") {
			t.Errorf("the instance that serves health but not the name %q: %+v; want SERVING, from its Check(\"\")", "hits", in.Health)
		}
	}
	callPhase(t, p, 2, 20)
	if got := a.hits.phase[2].Load(); got != 20 {
		t.Errorf("the live instance ran %d of the 20 calls made after the dead one was left out", got)
	}
	select {
	case ev := <-events.events:
		if ev.Addr == a.addr {
			t.Errorf("the live instance with a health service but no registry name: %v (%s)", ev.Kind, ev.Detail)
		}
	default:
	}
}

func TestWithHealthCheckRejectsBadValues(t *testing.T) {
	for _, c := range []struct{ interval, timeout time.Duration }{{0, 0}, {-time.Second, 0}, {time.Second, 2 * time.Second}, {time.Second, -1}} {
		_, err := consumer.NewClientProxy("x", naming.NewMemory(), consumer.WithHealthCheck(c.interval, c.timeout))
		if err == nil || !strings.Contains(err.Error(), "WithHealthCheck") {
			t.Errorf("WithHealthCheck(%v, %v): %v", c.interval, c.timeout, err)
		}
	}
}
