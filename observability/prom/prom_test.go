package prom_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.uber.org/goleak"

	"github.com/shoalrpc/shoal/consumer"
	"github.com/shoalrpc/shoal/health"
	"github.com/shoalrpc/shoal/internal/servetest"
	"github.com/shoalrpc/shoal/naming"
	"github.com/shoalrpc/shoal/observability/prom"
	"github.com/shoalrpc/shoal/protocol"
	"github.com/shoalrpc/shoal/provider"
	"github.com/shoalrpc/shoal/stats"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// Counter is the test service; it counts its own executions, apart from
// any metric.
type Counter struct {
	adds, fails atomic.Int64
}

// Add adds.
func (c *Counter) Add(args [2]int, reply *int) error {
	c.adds.Add(1)
	*reply = args[0] + args[1]
	return nil
}

// Fail fails.
func (c *Counter) Fail(_ [2]int, _ *int) error {
	c.fails.Add(1)
	return errors.New("failed")
}

// Slow answers when its context ends.
func (c *Counter) Slow(ctx context.Context, _ int, _ *int) error {
	<-ctx.Done()
	return ctx.Err()
}

// ended is a stats handler installed after the metrics' own: it signals
// each request's end once the metrics have counted it, and passes proxy
// events on.
type ended struct {
	stats.Base
	requests chan string           // the code of each request ended
	proxy    chan stats.ProxyEvent // proxy events

	mu     sync.Mutex
	byKind map[stats.ProxyEventKind]int // proxy events seen, by kind
}

func newEnded() *ended {
	return &ended{requests: make(chan string, 1000), proxy: make(chan stats.ProxyEvent, 1000), byKind: map[stats.ProxyEventKind]int{}}
}

func (e *ended) RPCEnd(_ context.Context, info *stats.RPCInfo, end *stats.RPCEnd) {
	if info.Kind == stats.Request {
		e.requests <- end.Code()
	}
}

func (e *ended) HandleProxy(ev *stats.ProxyEvent) {
	e.mu.Lock()
	e.byKind[ev.Kind]++
	e.mu.Unlock()
	e.proxy <- *ev
}

// seen returns how many proxy events of kind the handler saw.
func (e *ended) seen(kind stats.ProxyEventKind) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.byKind[kind]
}

// scrapeSteady scrapes url until the counts of kinds the handler saw are
// the same before and after, and returns the scrape and those counts: a
// proxy may report more events meanwhile (a probe timing out on a loaded
// machine).
func (e *ended) scrapeSteady(t *testing.T, url string, kinds ...stats.ProxyEventKind) (map[string]float64, map[stats.ProxyEventKind]int) {
	t.Helper()
	for {
		before := map[stats.ProxyEventKind]int{}
		for _, k := range kinds {
			before[k] = e.seen(k)
		}
		got := scrape(t, url)
		steady := true
		for _, k := range kinds {
			steady = steady && e.seen(k) == before[k]
		}
		if steady {
			return got, before
		}
	}
}

// wait waits for n requests to have ended.
func (e *ended) wait(t *testing.T, n int) {
	t.Helper()
	timeout := time.After(20 * time.Second)
	for i := range n {
		select {
		case <-e.requests:
		case <-timeout:
			t.Fatalf("%d of %d requests ended", i, n)
		}
	}
}

// waitProxy waits for a proxy event of kind and returns it.
func (e *ended) waitProxy(t *testing.T, kind stats.ProxyEventKind, ok func(stats.ProxyEvent) bool) stats.ProxyEvent {
	t.Helper()
	timeout := time.After(20 * time.Second)
	for {
		select {
		case ev := <-e.proxy:
			if ev.Kind == kind && (ok == nil || ok(ev)) {
				return ev
			}
		case <-timeout:
			t.Fatalf("no %v event", kind)
		}
	}
}

// serve starts a server of Counter with opts and returns its registry
// address ("tcp@…") and the service.
func serve(t *testing.T, opts ...provider.Option) (string, *Counter) {
	t.Helper()
	srv := provider.NewServer(opts...)
	svc := &Counter{}
	if err := srv.Register(svc); err != nil {
		t.Fatal(err)
	}
	addr := servetest.Start(t, srv)
	return "tcp@" + addr, svc
}

// scrape gets url over HTTP and returns every sample by its series:
// name{label="value",…} with labels sorted, histograms by _count.
func scrape(t *testing.T, url string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET %s: %s: %s", url, resp.Status, b)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for name, f := range families {
		for _, m := range f.GetMetric() {
			var ls []string
			for _, l := range m.GetLabel() {
				ls = append(ls, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			sort.Strings(ls)
			key := name
			if len(ls) > 0 {
				key += "{" + strings.Join(ls, ",") + "}"
			}
			switch {
			case m.Counter != nil:
				out[key] = m.GetCounter().GetValue()
			case m.Gauge != nil:
				out[key] = m.GetGauge().GetValue()
			case m.Histogram != nil:
				out[strings.Replace(key, name, name+"_count", 1)] = float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return out
}

// check compares the samples named in want with got.
func check(t *testing.T, got map[string]float64, want map[string]float64) {
	t.Helper()
	for k, v := range want {
		if g, ok := got[k]; !ok || g != v {
			var near []string
			for gk := range got {
				if strings.HasPrefix(gk, strings.SplitN(k, "{", 2)[0]) {
					near = append(near, fmt.Sprintf("%s %v", gk, got[gk]))
				}
			}
			slices.Sort(near)
			t.Errorf("%s = %v (present %v), want %v; the series of that name:\n%s", k, g, ok, v, strings.Join(near, "\n"))
		}
	}
}

func series(name string, labels ...string) string {
	var ls []string
	for i := 0; i+1 < len(labels); i += 2 {
		ls = append(ls, fmt.Sprintf("%s=%q", labels[i], labels[i+1]))
	}
	sort.Strings(ls)
	if len(ls) == 0 {
		return name
	}
	return name + "{" + strings.Join(ls, ",") + "}"
}

// TestClientAndServerCounts: after real calls over loopback, the scraped
// counts are what the service counted it ran and what the caller saw;
// unknown methods fold into "other"; connections are counted.
func TestClientAndServerCounts(t *testing.T) {
	m, err := prom.New()
	if err != nil {
		t.Fatal(err)
	}
	done := newEnded()
	addr, svc := serve(t, provider.WithStatsHandler(m.ServerHandler()), provider.WithStatsHandler(done))
	c, err := consumer.Dial(addr, consumer.WithStatsHandler(m.ClientHandler()))
	if err != nil {
		t.Fatal(err)
	}
	calls := []string{"Counter.Add", "Counter.Fail", "Counter.Nope", "Nobody.Add"}
	seen := map[string]int{} // the caller's view: outcome → calls
	const rounds = 5
	for i := range rounds * len(calls) {
		var sum int
		err := c.Call(context.Background(), calls[i%len(calls)], [2]int{1, 2}, &sum)
		var se *consumer.ServiceError
		switch {
		case err == nil:
			seen["ok"]++
		case errors.As(err, &se):
			seen["service_error"]++
		case errors.Is(err, consumer.ErrUnknownMethod):
			seen["unknown_method"]++
		case errors.Is(err, consumer.ErrUnknownService):
			seen["unknown_service"]++
		default:
			t.Fatalf("call %d: %v", i, err)
		}
	}
	done.wait(t, rounds*len(calls))
	hs := httptest.NewServer(m.Handler())
	defer hs.Close()
	got := scrape(t, hs.URL)
	adds, fails := float64(svc.adds.Load()), float64(svc.fails.Load())
	if adds != rounds || fails != rounds {
		t.Fatalf("the service ran Add %v and Fail %v times, want %d", adds, fails, rounds)
	}
	check(t, got, map[string]float64{
		series("shoal_server_handled_total", "service", "Counter", "method", "Add", "code", "ok"):              adds,
		series("shoal_server_handled_total", "service", "Counter", "method", "Fail", "code", "service_error"):  fails,
		series("shoal_server_handled_total", "service", "other", "method", "other", "code", "unknown_method"):  rounds,
		series("shoal_server_handled_total", "service", "other", "method", "other", "code", "unknown_service"): rounds,
		series("shoal_server_handling_seconds_count", "service", "Counter", "method", "Add"):                   adds,
		series("shoal_server_in_flight"):   0,
		series("shoal_server_connections"): 1,
		series("shoal_client_handled_total", "service", "Counter", "method", "Add", "code", "ok"):              float64(seen["ok"]),
		series("shoal_client_handled_total", "service", "Counter", "method", "Fail", "code", "service_error"):  float64(seen["service_error"]),
		series("shoal_client_handled_total", "service", "other", "method", "other", "code", "unknown_method"):  float64(seen["unknown_method"]),
		series("shoal_client_handled_total", "service", "other", "method", "other", "code", "unknown_service"): float64(seen["unknown_service"]),
		series("shoal_client_attempts_total", "service", "Counter", "method", "Add", "code", "ok"):             float64(seen["ok"]),
		series("shoal_client_handling_seconds_count", "service", "Counter", "method", "Fail"):                  float64(seen["service_error"]),
		series("shoal_client_connections"): 1,
	})
	for k := range got {
		if strings.Contains(k, "Nope") || strings.Contains(k, "Nobody") {
			t.Errorf("an unknown method has a series of its own: %s", k)
		}
	}
	c.Close()
	if v := scrape(t, hs.URL)["shoal_client_connections"]; v != 0 {
		t.Errorf("shoal_client_connections = %v after Close, want 0", v)
	}
}

// TestClientMethodLimit: past WithMaxClientMethods, methods are "other".
func TestClientMethodLimit(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := prom.New(prom.WithRegisterer(reg), prom.WithMaxClientMethods(1))
	if err != nil {
		t.Fatal(err)
	}
	addr, _ := serve(t)
	c, err := consumer.Dial(addr, consumer.WithStatsHandler(m.ClientHandler()))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var out int
	c.Call(context.Background(), "Counter.Add", [2]int{1, 2}, &out)
	c.Call(context.Background(), "Counter.Fail", [2]int{}, &out)
	c.Call(context.Background(), "Counter.Add", [2]int{1, 2}, &out)
	hs := httptest.NewServer(prom.Handler(reg))
	defer hs.Close()
	check(t, scrape(t, hs.URL), map[string]float64{
		series("shoal_client_handled_total", "service", "Counter", "method", "Add", "code", "ok"):            2,
		series("shoal_client_handled_total", "service", "other", "method", "other", "code", "service_error"): 1,
	})
}

// TestProxyCounts: a Failover proxy's logical calls, attempts, instances,
// ejections, retry-budget refusals and registry fallback, as scraped.
func TestProxyCounts(t *testing.T) {
	m, err := prom.New()
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(m.Handler())
	defer hs.Close()

	// Every other request is refused "overloaded", not executed: Failover
	// retries it on the other instance.
	var requests atomic.Int64
	refuseOdd := func(ctx context.Context, info *provider.RequestInfo, args any, next provider.Handler) (any, error) {
		if info.Name == "Add" && requests.Add(1)%2 == 1 {
			return nil, provider.Refuse(protocol.StatusOverloaded, errors.New("busy"))
		}
		return next(ctx, args)
	}
	addrA, svcA := serve(t, provider.WithInterceptors(refuseOdd))
	addrB, svcB := serve(t, provider.WithInterceptors(refuseOdd))
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := "tcp@" + dead.Addr().String()
	dead.Close() // dials to it are refused

	reg := naming.NewMemory()
	defer reg.Close()
	var deregister []context.CancelFunc
	for i, addr := range []string{addrA, addrB, deadAddr} {
		cancel, err := reg.Register(context.Background(), &naming.Instance{ID: fmt.Sprint("i", i), Service: "counter", Addr: addr})
		if err != nil {
			t.Fatal(err)
		}
		deregister = append(deregister, cancel)
	}
	events := newEnded()
	p, err := consumer.NewClientProxy("counter", reg,
		consumer.WithStatsHandler(m.ClientHandler()), consumer.WithStatsHandler(events),
		consumer.WithFailMode(consumer.Failover), consumer.WithRetries(3),
		consumer.WithBackoff(time.Millisecond, time.Millisecond, 0),
		consumer.WithOutlierEjection(1, time.Hour, time.Hour),
		consumer.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()

	const calls = 6
	var ok, failed int
	for range calls {
		var sum int
		if err := p.Call(context.Background(), "Counter.Add", [2]int{1, 2}, &sum); err != nil {
			failed++
			t.Logf("call: %v", err)
		} else {
			ok++
		}
	}
	ran := svcA.adds.Load() + svcB.adds.Load()
	check(t, scrape(t, hs.URL), map[string]float64{
		series("shoal_client_handled_total", "service", "Counter", "method", "Add", "code", "ok"):           float64(ok),
		series("shoal_client_handling_seconds_count", "service", "Counter", "method", "Add"):                calls,
		series("shoal_client_attempts_total", "service", "Counter", "method", "Add", "code", "ok"):          float64(ran),
		series("shoal_client_attempts_total", "service", "Counter", "method", "Add", "code", "overloaded"):  float64(requests.Load() - ran),
		series("shoal_client_attempts_total", "service", "Counter", "method", "Add", "code", "dial_failed"): 1,
		series("shoal_proxy_instances", "service", "counter"):                                               3,
		series("shoal_proxy_ejections_total", "service", "counter"):                                         1,
	})
	// On a proxy of one retry token, Slow times out (maybe executed): its
	// token spent, the budget refuses the retry.
	budget, err := consumer.NewClientProxy("counter", reg, consumer.WithStatsHandler(m.ClientHandler()),
		consumer.WithFailMode(consumer.Failover), consumer.WithRetryBudget(1, 0),
		consumer.WithAttemptTimeout(100*time.Millisecond), consumer.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	defer budget.Close()
	if err := budget.Call(context.Background(), "Counter.Slow", 0, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Slow: %v, want a deadline", err)
	}
	check(t, scrape(t, hs.URL), map[string]float64{
		series("shoal_client_attempts_total", "service", "Counter", "method", "Slow", "code", "deadline_exceeded"): 1,
		series("shoal_proxy_retry_budget_refusals_total", "service", "counter"):                                    1,
	})
	budget.Close() // the fallback below is the first proxy's alone
	if failed != 0 || ran != calls {
		t.Errorf("%d calls failed, the services ran %d of %d", failed, ran, calls)
	}

	// The registry empties while the instances answered lately: fallback.
	for _, cancel := range deregister {
		cancel()
	}
	events.waitProxy(t, stats.FallbackBegin, nil)
	check(t, scrape(t, hs.URL), map[string]float64{
		series("shoal_proxy_fallback", "service", "counter"):        1,
		series("shoal_proxy_fallbacks_total", "service", "counter"): 1,
	})
	cancel, err := reg.Register(context.Background(), &naming.Instance{ID: "again", Service: "counter", Addr: addrA})
	if err != nil {
		t.Fatal(err)
	}
	defer cancel()
	events.waitProxy(t, stats.FallbackEnd, nil)
	check(t, scrape(t, hs.URL), map[string]float64{
		series("shoal_proxy_fallback", "service", "counter"):  0,
		series("shoal_proxy_instances", "service", "counter"): 1,
	})
}

// TestOptions: invalid values and a registerer holding the names already
// are errors New returns.
func TestOptions(t *testing.T) {
	for _, opt := range []prom.Option{prom.WithRegisterer(nil), prom.WithBuckets(1, 1), prom.WithMaxClientMethods(0)} {
		if _, err := prom.New(opt); !errors.Is(err, prom.ErrInvalidOption) {
			t.Errorf("New: %v, want ErrInvalidOption", err)
		}
	}
	reg := prometheus.NewRegistry()
	if _, err := prom.New(prom.WithRegisterer(reg)); err != nil {
		t.Fatal(err)
	}
	if _, err := prom.New(prom.WithRegisterer(reg)); err == nil {
		t.Error("a second New on one registry: no error")
	}
}

// TestProxyHealthCounts: an instance whose health turns NOT_SERVING is
// counted out of picks, and back in when it serves again.
func TestProxyHealthCounts(t *testing.T) {
	m, err := prom.New()
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(m.Handler())
	defer hs.Close()
	srvA := provider.NewServer()
	if err := srvA.Register(&Counter{}); err != nil {
		t.Fatal(err)
	}
	lnA, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := srvA.Start(lnA); err != nil {
		t.Fatal(err)
	}
	defer srvA.Close()
	addrB, _ := serve(t)
	reg := naming.NewMemory()
	defer reg.Close()
	for i, addr := range []string{"tcp@" + lnA.Addr().String(), addrB} {
		if _, err := reg.Register(context.Background(), &naming.Instance{ID: fmt.Sprint("i", i), Service: "counter", Addr: addr}); err != nil {
			t.Fatal(err)
		}
	}
	events := newEnded()
	p, err := consumer.NewClientProxy("counter", reg,
		consumer.WithStatsHandler(m.ClientHandler()), consumer.WithStatsHandler(events),
		consumer.WithHealthCheck(50*time.Millisecond, 0), consumer.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()

	// On a loaded machine a probe of the healthy instance may time out too:
	// the metrics count what the proxy reported, as the test's own handler
	// counts it.
	if err := srvA.Health().SetStatus("", health.NotServing); err != nil {
		t.Fatal(err)
	}
	isA := func(ev stats.ProxyEvent) bool { return ev.Instance == "i0" }
	events.waitProxy(t, stats.InstanceUnhealthy, isA)
	if err := srvA.Health().SetStatus("", health.Serving); err != nil {
		t.Fatal(err)
	}
	events.waitProxy(t, stats.InstanceHealthy, isA)
	got, seen := events.scrapeSteady(t, hs.URL, stats.InstanceUnhealthy, stats.InstanceHealthy)
	check(t, got, map[string]float64{
		series("shoal_proxy_unhealthy_total", "service", "counter"): float64(seen[stats.InstanceUnhealthy]),
		series("shoal_proxy_healthy_total", "service", "counter"):   float64(seen[stats.InstanceHealthy]),
	})
}
