package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shoalrpc/shoal/consumer"
	"github.com/shoalrpc/shoal/httpstatus"
	"github.com/shoalrpc/shoal/internal/servetest"
	"github.com/shoalrpc/shoal/naming"
	"github.com/shoalrpc/shoal/provider"
)

// Work is the test service. Its executions are counted by the service
// itself, independently of what any caller sees.
type Work struct {
	id       string
	executed atomic.Int64
	running  atomic.Int64
}

// DoArgs are Do's args.
type DoArgs struct {
	N       int
	SleepMs int
}

// DoReply is Do's reply.
type DoReply struct {
	N        int
	Instance string
	Meta     string
}

// Do sleeps SleepMs and echoes N with the instance's ID.
func (w *Work) Do(ctx context.Context, args DoArgs, reply *DoReply) error {
	w.executed.Add(1)
	w.running.Add(1)
	defer w.running.Add(-1)
	if args.SleepMs > 0 {
		select {
		case <-time.After(time.Duration(args.SleepMs) * time.Millisecond):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	*reply = DoReply{N: args.N, Instance: w.id, Meta: provider.Metadata(ctx)["tenant"]}
	return nil
}

// Fail returns the method's own error.
func (w *Work) Fail(ctx context.Context, args DoArgs, reply *DoReply) error {
	w.executed.Add(1)
	return errors.New("division by zero")
}

var quiet = slog.New(slog.DiscardHandler)

// startWork runs a provider of Work registered in reg as "work".
func startWork(t *testing.T, reg naming.Registry, id string) (*provider.Server, *Work) {
	t.Helper()
	w := &Work{id: id}
	srv := provider.NewServer(provider.WithLogger(quiet), provider.WithDrainGrace(0),
		provider.WithRegistry(reg, naming.Instance{ID: id, Service: "work"}))
	if err := srv.Register(w); err != nil {
		t.Fatal(err)
	}
	servetest.Start(t, srv)
	return srv, w
}

func newGateway(t *testing.T, reg naming.Registry, opts ...Option) *httptest.Server {
	t.Helper()
	g, err := New(reg, append([]Option{WithLogger(quiet)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(g)
	t.Cleanup(func() {
		hs.Close()
		if err := g.Close(); err != nil {
			t.Error(err)
		}
	})
	return hs
}

// post sends body to path and returns the status and the body.
func post(t *testing.T, c *http.Client, url, body string, header ...string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestCallsAndErrors(t *testing.T) {
	reg := naming.NewMemory()
	defer reg.Close()
	_, w := startWork(t, reg, "w1")
	hs := newGateway(t, reg, WithServiceName("Other", "work"))
	c := hs.Client()

	errBody := func(t *testing.T, body string) httpstatus.ErrorBody {
		t.Helper()
		var eb httpstatus.ErrorBody
		if err := json.Unmarshal([]byte(body), &eb); err != nil {
			t.Fatalf("error body %q: %v", body, err)
		}
		return eb
	}
	for _, tc := range []struct {
		name, path, body string
		header           []string
		code             int
		status           string // error body's status; "" for a reply
		contains         string
	}{
		{"ok", "/Work.Do", `{"N":42}`, nil, 200, "", `{"N":42,"Instance":"w1","Meta":""}`},
		{"metadata", "/Work.Do", `{"N":1}`, []string{"Shoal-Meta-Tenant", "acme"}, 200, "", `"Meta":"acme"`},
		{"empty body is the zero args", "/Work.Do", ``, nil, 200, "", `{"N":0,`},
		{"service error", "/Work.Fail", `{}`, nil, 422, "service_error", "division by zero"},
		{"unknown method", "/Work.Nope", `{}`, nil, 404, "unknown_method", "Nope"},
		{"not JSON", "/Work.Do", `{"N":`, nil, 400, "bad_request", "not JSON"},
		{"wrong type names the field", "/Work.Do", `{"N":"x"}`, nil, 400, "bad_request", "DoArgs.N"},
		{"no instances", "/Nothing.Do", `{}`, nil, 503, "no_instances", "looked up as"},
		{"mapped name", "/Other.Do", `{}`, nil, 404, "unknown_service", "Other"},
		{"bad path", "/Work", `{}`, nil, 404, "bad_request", "/Service.Method"},
		{"bad timeout", "/Work.Do?timeout=soon", `{}`, nil, 400, "bad_request", "timeout"},
		{"deadline", "/Work.Do?timeout=20ms", `{"SleepMs":2000}`, nil, 504, "deadline_exceeded", "deadline"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body := post(t, c, hs.URL+tc.path, tc.body, tc.header...)
			if code != tc.code || !strings.Contains(body, tc.contains) {
				t.Fatalf("%s: %d %s; want %d containing %q", tc.path, code, body, tc.code, tc.contains)
			}
			if tc.status != "" {
				if eb := errBody(t, body); eb.Status != tc.status {
					t.Errorf("error status %q, want %q", eb.Status, tc.status)
				}
			}
		})
	}
	resp, err := c.Get(hs.URL + "/Work.Do")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "POST" {
		t.Errorf("GET: %d Allow %q", resp.StatusCode, resp.Header.Get("Allow"))
	}
	if n := w.executed.Load(); n < 5 {
		t.Errorf("the provider ran %d calls, want at least 5", n)
	}
}

func TestBodyLimit(t *testing.T) {
	reg := naming.NewMemory()
	defer reg.Close()
	_, w := startWork(t, reg, "w1")
	hs := newGateway(t, reg, WithMaxBodySize(64))
	code, body := post(t, hs.Client(), hs.URL+"/Work.Do", `{"N":1,"SleepMs":0,"Pad":"`+strings.Repeat("x", 100)+`"}`)
	if code != http.StatusRequestEntityTooLarge || !strings.Contains(body, "64 bytes") {
		t.Errorf("%d %s", code, body)
	}
	if n := w.executed.Load(); n != 0 {
		t.Errorf("ran %d calls", n)
	}
}

func TestOptionsRejectBadValues(t *testing.T) {
	reg := naming.NewMemory()
	defer reg.Close()
	for _, opt := range []Option{WithTimeout(0), WithMaxBodySize(-1), WithServiceName("a.b", "x"), WithServiceName("A", "")} {
		if _, err := New(reg, opt); err == nil {
			t.Error("accepted a bad option")
		}
	}
	if _, err := New(nil); err == nil {
		t.Error("accepted a nil registry")
	}
}

// TestShutdownAndKillUnderLoad is the gateway's promise: three providers
// behind it, one shut down gracefully and one killed (its connections
// closed abruptly) while HTTP clients call through it, and no HTTP call
// fails. Executions are counted by the providers, HTTP results by the
// clients.
func TestShutdownAndKillUnderLoad(t *testing.T) {
	reg := naming.NewMemory()
	defer reg.Close()
	var srvs [3]*provider.Server
	var works [3]*Work
	for i := range srvs {
		srvs[i], works[i] = startWork(t, reg, fmt.Sprintf("w%d", i+1))
	}
	hs := newGateway(t, reg)
	tr := hs.Client().Transport.(*http.Transport)
	tr.MaxIdleConnsPerHost = 64
	c := &http.Client{Transport: tr, Timeout: 20 * time.Second}

	var (
		ok, failed atomic.Int64
		sampleMu   sync.Mutex
		samples    []string
		stop       = make(chan struct{})
		wg         sync.WaitGroup
	)
	const callers = 16
	for i := range callers {
		wg.Go(func() {
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				req, _ := http.NewRequest(http.MethodPost, hs.URL+"/Work.Do", strings.NewReader(fmt.Sprintf(`{"N":%d,"SleepMs":2}`, i*1_000_000+n)))
				resp, err := c.Do(req)
				var body []byte
				if err == nil {
					body, err = io.ReadAll(resp.Body)
					resp.Body.Close()
				}
				var reply DoReply
				if err == nil && resp.StatusCode == 200 && json.Unmarshal(body, &reply) == nil && reply.N == i*1_000_000+n {
					ok.Add(1)
					continue
				}
				failed.Add(1)
				sampleMu.Lock()
				if len(samples) < 5 {
					status := 0
					if resp != nil {
						status = resp.StatusCode
					}
					samples = append(samples, fmt.Sprintf("%d %s %v", status, body, err))
				}
				sampleMu.Unlock()
			}
		})
	}
	// waitCalls waits until the providers have run n more calls: load is
	// flowing, whatever the machine's speed.
	waitCalls := func(n int64) {
		t.Helper()
		total := func() (s int64) {
			for _, w := range works {
				s += w.executed.Load()
			}
			return s
		}
		target := total() + n
		deadline := time.Now().Add(30 * time.Second)
		for total() < target {
			if time.Now().After(deadline) {
				t.Fatalf("the providers ran fewer than %d calls in 30 s", n)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitCalls(300)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := srvs[0].Shutdown(ctx); err != nil {
		t.Errorf("shutdown: %v", err)
	}
	waitCalls(300)
	// Kill w2 while it runs calls: their connections break mid-call.
	for deadline := time.Now().Add(30 * time.Second); works[1].running.Load() == 0; {
		if time.Now().After(deadline) {
			t.Fatal("w2 never had a call running")
		}
		time.Sleep(100 * time.Microsecond)
	}
	killedAt := works[1].executed.Load()
	srvs[1].Close()
	lastBefore := works[2].executed.Load()
	waitCalls(300)
	close(stop)
	wg.Wait()

	var executed int64
	for _, w := range works {
		executed += w.executed.Load()
	}
	t.Logf("HTTP: %d ok, %d failed; executed by the providers: w1 %d (shut down), w2 %d (killed after %d), w3 %d; %d executed twice or unanswered",
		ok.Load(), failed.Load(), works[0].executed.Load(), works[1].executed.Load(), killedAt, works[2].executed.Load(), executed-ok.Load())
	if failed.Load() != 0 {
		t.Errorf("%d HTTP calls failed, e.g. %q", failed.Load(), samples)
	}
	if executed < ok.Load() {
		t.Errorf("the providers ran %d calls, fewer than the %d HTTP calls answered 200", executed, ok.Load())
	}
	if works[2].executed.Load() <= lastBefore {
		t.Error("the remaining provider ran nothing after the kill")
	}
	// Every call the killed provider ran twice was one it had in flight
	// when it died: at most one per caller.
	if dup := executed - ok.Load(); dup > callers {
		t.Errorf("%d calls ran without a 200 answer, more than the %d that could be in flight at the kill", dup, callers)
	}
}

func TestProxyCloseRace(t *testing.T) {
	reg := naming.NewMemory()
	defer reg.Close()
	startWork(t, reg, "w1")
	g, err := New(reg, WithLogger(quiet), WithProxyOptions(consumer.WithRetries(1)))
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(g)
	defer hs.Close()
	if code, body := post(t, hs.Client(), hs.URL+"/Work.Do", `{"N":1}`); code != 200 {
		t.Fatalf("%d %s", code, body)
	}
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	code, body := post(t, hs.Client(), hs.URL+"/Work.Do", `{"N":1}`)
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "closed") {
		t.Errorf("after Close: %d %s", code, body)
	}
}

// TestUnknownServicesHoldNoProxy: a static registry resolves every name,
// so a request for a service no provider serves must not leave a proxy
// behind, or names in requests would pile them up.
func TestUnknownServicesHoldNoProxy(t *testing.T) {
	reg := naming.NewMemory()
	defer reg.Close()
	startWork(t, reg, "w1")
	list, err := reg.Fetch(context.Background(), "work")
	if err != nil || len(list) != 1 {
		t.Fatal(list, err)
	}
	static, err := naming.NewStatic(list[0].Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer static.Close()
	g, err := New(static, WithLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	hs := httptest.NewServer(g)
	defer hs.Close()
	for i := range 20 {
		if code, body := post(t, hs.Client(), fmt.Sprintf("%s/Nope%d.Do", hs.URL, i), `{}`); code != http.StatusNotFound {
			t.Fatalf("%d %s", code, body)
		}
	}
	if code, body := post(t, hs.Client(), hs.URL+"/Work.Do", `{"N":1}`); code != 200 {
		t.Fatalf("%d %s", code, body)
	}
	if code, body := post(t, hs.Client(), hs.URL+"/Work.Nope", `{}`); code != http.StatusNotFound {
		t.Fatalf("%d %s", code, body)
	}
	g.mu.Lock()
	n := len(g.proxies)
	_, work := g.proxies["work"]
	g.mu.Unlock()
	if n != 1 || !work {
		t.Errorf("the gateway holds %d proxies (work among them: %v), want only work's", n, work)
	}
}
