package admin_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/shoalrpc/shoal/consumer"
	"github.com/shoalrpc/shoal/health"
	"github.com/shoalrpc/shoal/internal/servetest"
	"github.com/shoalrpc/shoal/naming"
	"github.com/shoalrpc/shoal/observability/admin"
	"github.com/shoalrpc/shoal/provider"
)

// Args are Arith's operands.
type Args struct{ A, B int }

// Arith is the service the tests call.
type Arith struct{}

// Add returns A+B.
func (Arith) Add(args Args, sum *int) error { *sum = args.A + args.B; return nil }

// Fail always fails.
func (Arith) Fail(args Args, sum *int) error { return errors.New("it fails") }

// fixture is a provider, a ClientProxy calling it and the admin page of
// both, served over HTTP.
type fixture struct {
	srv   *provider.Server
	proxy *consumer.ClientProxy
	page  *admin.Page
	web   *httptest.Server
}

// newFixture serves Arith (under name, "Arith" if empty) as service
// "arith" with meta, and a page showing it, made with opts.
func newFixture(t *testing.T, name string, meta map[string]string, opts ...admin.Option) *fixture {
	t.Helper()
	f := &fixture{page: admin.New(opts...)}
	reg := naming.NewMemory()
	f.srv = provider.NewServer(
		provider.WithLogger(slog.New(slog.DiscardHandler)),
		provider.WithStatsHandler(f.page.StatsHandler()),
		provider.WithRegistry(reg, naming.Instance{Service: "arith", Meta: meta}))
	var err error
	if name == "" {
		err = f.srv.Register(Arith{})
	} else {
		err = f.srv.RegisterName(name, Arith{})
	}
	if err != nil {
		t.Fatal(err)
	}
	servetest.Start(t, f.srv)
	f.proxy, err = consumer.NewClientProxy("arith", reg, consumer.WithStatsHandler(f.page.StatsHandler()),
		consumer.WithHealthCheck(time.Minute, 0), consumer.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.proxy.Close() })
	f.page.SetServer(f.srv)
	f.page.AddProxy(f.proxy)
	f.web = httptest.NewServer(f.page)
	t.Cleanup(f.web.Close)
	return f
}

// calls makes n calls of method through the proxy; errs says whether they
// are to fail.
func (f *fixture) calls(t *testing.T, method string, n int, errs bool) {
	t.Helper()
	for range n {
		var sum int
		err := f.proxy.Call(context.Background(), method, Args{A: 1, B: 2}, &sum)
		if (err != nil) != errs {
			t.Fatalf("%s: %v", method, err)
		}
	}
}

// get fetches path from the page's server and returns the status, the
// content type and the body.
func get(t *testing.T, base, path string) (int, string, string) {
	t.Helper()
	resp, err := http.Get(base + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header.Get("Content-Type"), string(body)
}

func TestEveryEndpointOverHTTP(t *testing.T) {
	metrics := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, "# the metrics handler's own answer\n")
	})
	f := newFixture(t, "", nil, admin.WithMetrics(metrics))
	f.calls(t, "Arith.Add", 3, false)
	f.calls(t, "Arith.Fail", 2, true)

	// A server counts a request just after its reply is on its way: the
	// last one may take a moment to show.
	code, ctype, body := get(t, f.web.URL, "/debug/shoal")
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline) &&
		!strings.Contains(body, `<td>Arith.Fail</td><td class="n">2</td><td class="n">2</td>`); time.Sleep(10 * time.Millisecond) {
		code, ctype, body = get(t, f.web.URL, "/debug/shoal")
	}
	if code != 200 || !strings.HasPrefix(ctype, "text/html") {
		t.Fatalf("/debug/shoal: %d %s", code, ctype)
	}
	for _, want := range []string{"<td>Arith</td>", "Add, Fail", "<td>Arith.Add</td><td class=\"n\">3</td><td class=\"n\">0</td>",
		"<td>Arith.Fail</td><td class=\"n\">2</td><td class=\"n\">2</td>", "ShoalHealth", "registered · service arith",
		"ClientProxy “arith”", "roundrobin", "failfast", "every 1m0s", "in picks"} {
		if !strings.Contains(body, want) {
			t.Errorf("/debug/shoal lacks %q", want)
		}
	}

	if code, _, body := get(t, f.web.URL, "/healthz"); code != 200 || body != "SERVING\n" {
		t.Errorf("/healthz while serving: %d %q", code, body)
	}
	if err := f.srv.Health().SetStatus("", health.NotServing); err != nil {
		t.Fatal(err)
	}
	if code, _, body := get(t, f.web.URL, "/healthz"); code != 503 || body != "NOT_SERVING\n" {
		t.Errorf("/healthz while not serving: %d %q", code, body)
	}

	if code, _, body := get(t, f.web.URL, "/metrics"); code != 200 || body != "# the metrics handler's own answer\n" {
		t.Errorf("/metrics: %d %q", code, body)
	}
	if code, _, body := get(t, f.web.URL, "/debug/pprof/"); code != 200 || !strings.Contains(body, "goroutine") {
		t.Errorf("/debug/pprof/: %d", code)
	}
	if code, _, body := get(t, f.web.URL, "/debug/pprof/goroutine?debug=1"); code != 200 || !strings.Contains(body, "goroutine profile") {
		t.Errorf("/debug/pprof/goroutine: %d", code)
	}
	if code, _, _ := get(t, f.web.URL, "/nothing"); code != 404 {
		t.Errorf("/nothing: %d", code)
	}

	// Under a prefix, the page's relative links still lead to its parts.
	mux := http.NewServeMux()
	mux.Handle("/admin/", http.StripPrefix("/admin", f.page))
	prefixed := httptest.NewServer(mux)
	defer prefixed.Close()
	if code, _, body := get(t, prefixed.URL, "/admin/debug/shoal"); code != 200 || !strings.Contains(body, `href="../metrics"`) {
		t.Errorf("/admin/debug/shoal: %d", code)
	}
	if code, _, _ := get(t, prefixed.URL, "/admin/healthz"); code != 503 {
		t.Errorf("/admin/healthz: %d", code)
	}
}

func TestMetricsWithoutAHandlerSaysHowToGetOne(t *testing.T) {
	web := httptest.NewServer(admin.New())
	defer web.Close()
	code, _, body := get(t, web.URL, "/metrics")
	if code != 404 || !strings.Contains(body, "admin.WithMetrics") {
		t.Errorf("/metrics without a handler: %d %q", code, body)
	}
	// A page without a provider answers for the process, and says what it lacks.
	if code, _, body := get(t, web.URL, "/healthz"); code != 200 || body != "SERVING\n" {
		t.Errorf("/healthz without a server: %d %q", code, body)
	}
	if code, _, body := get(t, web.URL, "/debug/shoal"); code != 200 || !strings.Contains(body, "No provider given") {
		t.Errorf("/debug/shoal without a server: %d", code)
	}
}

func TestThePageEscapesNamesAndMetadata(t *testing.T) {
	f := newFixture(t, "X<script>alert(1)</script>", map[string]string{"<b>zone</b>": "<script>alert(2)</script>"})
	f.calls(t, "X<script>alert(1)</script>.Add", 1, false)
	_, _, body := get(t, f.web.URL, "/debug/shoal")
	if strings.Contains(body, "<script>") || strings.Contains(body, "<b>zone") {
		t.Errorf("the page carries markup from names it shows:\n%s", body)
	}
	for _, want := range []string{"X&lt;script&gt;alert(1)&lt;/script&gt;.Add", "&lt;b&gt;zone&lt;/b&gt;=&lt;script&gt;alert(2)&lt;/script&gt;"} {
		if !strings.Contains(body, want) {
			t.Errorf("the page does not show %q", want)
		}
	}
}

// tool returns the path of a program a test needs: missing, the test is
// skipped, or fails under CI=true.
func tool(t *testing.T, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is required under CI=true (scripts/tools.sh installs it): %v", name, err)
		}
		t.Skipf("%s not installed: %v", name, err)
	}
	return path
}

func TestEveryEndpointWithCurl(t *testing.T) {
	curl := tool(t, "curl")
	f := newFixture(t, "", nil)
	f.calls(t, "Arith.Add", 2, false)
	for _, c := range []struct {
		path string
		code string
		want string
	}{
		{"/debug/shoal", "200", "<td>Arith.Add</td><td class=\"n\">2</td>"},
		{"/healthz", "200", "SERVING"},
		{"/metrics", "404", "admin.WithMetrics"},
		{"/debug/pprof/", "200", "goroutine"},
	} {
		out, err := exec.Command(curl, "-sS", "-o", "-", "-w", "\n%{http_code}", f.web.URL+c.path).Output()
		if err != nil {
			t.Fatalf("curl %s: %v", c.path, err)
		}
		body, code, _ := strings.Cut(string(out), "\n"+c.code)
		if code != "" || !strings.HasSuffix(string(out), "\n"+c.code) || !strings.Contains(body, c.want) {
			t.Errorf("curl %s: want %s and %q; got\n%s", c.path, c.code, c.want, out)
		}
	}
}
