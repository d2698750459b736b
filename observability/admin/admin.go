// Package admin is shoal's admin page: an http.Handler, mountable anywhere,
// that answers an operator's first questions about a process:
//
//   - /debug/shoal: an HTML page of the provider's services, its methods
//     with call counts, error counts and latency percentiles, the requests
//     in flight, the open connections and their peers, the registration;
//     and for each ClientProxy, its instances with their picks, in-flight
//     calls, latency, ejection, fallback and health state, and its
//     balancing mode; then the latest decisions the proxies took;
//   - /metrics: the handler given to WithMetrics (the Prometheus package's,
//     say), or a 404 that says so;
//   - /healthz: the provider's health as a whole: 200 "SERVING", or 503
//     and the status once it is not (Shutdown began, or
//     Health().SetStatus("", health.NotServing));
//   - /debug/pprof/: Go's profiles (net/http/pprof).
//
// The counts come from the page's own stats handler, installed on the
// provider and the consumers with provider.WithStatsHandler and
// consumer.WithStatsHandler (StatsHandler); the rest from Server.Snapshot
// and ClientProxy.Snapshot when the page is drawn. Counts are since the
// handler was made.
//
// The page takes no lock on the call path and holds no global state: two
// pages in one process are independent. It shows what the process serves
// and calls, and pprof can stall a process for its profile's duration:
// serve it on a loopback or otherwise protected address. Importing this
// package imports net/http/pprof, which registers its handlers on
// http.DefaultServeMux, as every import of it does: do not serve
// DefaultServeMux where profiles must not be seen.
package admin

import (
	"fmt"
	"net/http"
	"net/http/pprof"
	"slices"
	"sync"

	"github.com/shoalrpc/shoal/consumer"
	"github.com/shoalrpc/shoal/health"
	"github.com/shoalrpc/shoal/provider"
	"github.com/shoalrpc/shoal/stats"
)

// Page is the admin page: an http.Handler serving /debug/shoal, /metrics,
// /healthz and /debug/pprof/ under wherever it is mounted. Mount it at the
// root of a server of its own, or under a prefix with http.StripPrefix:
//
//	mux.Handle("/admin/", http.StripPrefix("/admin", page))
//
// The page's links are relative, so they work under a prefix.
type Page struct {
	stats   *collector
	metrics http.Handler
	mux     *http.ServeMux

	mu      sync.Mutex
	server  *provider.Server
	proxies []*consumer.ClientProxy
}

// Option configures a Page.
type Option func(*Page)

// WithServer shows srv on the page, and answers /healthz with its health.
func WithServer(srv *provider.Server) Option {
	return func(p *Page) { p.server = srv }
}

// WithProxies shows each of proxies on the page.
func WithProxies(proxies ...*consumer.ClientProxy) Option {
	return func(p *Page) { p.proxies = append(p.proxies, proxies...) }
}

// WithMetrics serves h at /metrics: a Prometheus handler, typically. Without
// it, /metrics answers 404 and says how to get one.
func WithMetrics(h http.Handler) Option {
	return func(p *Page) { p.metrics = h }
}

// New returns a page. A server and proxies are often made after the page,
// since they take its StatsHandler: give them with SetServer and AddProxy.
func New(opts ...Option) *Page {
	p := &Page{stats: newCollector(), mux: http.NewServeMux()}
	for _, o := range opts {
		if o != nil {
			o(p)
		}
	}
	p.mux.HandleFunc("GET /debug/shoal", p.serveDebug)
	p.mux.HandleFunc("GET /healthz", p.serveHealth)
	p.mux.HandleFunc("/metrics", p.serveMetrics)
	p.mux.HandleFunc("/debug/pprof/", pprof.Index)
	p.mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	p.mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	p.mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	p.mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	p.mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "debug/shoal", http.StatusFound)
	})
	return p
}

// StatsHandler returns the handler that counts what the page shows: install
// it on the provider (provider.WithStatsHandler) and on each consumer
// (consumer.WithStatsHandler). It is one handler for both ends; it does not
// block and takes no lock on the call path once a method has been seen.
func (p *Page) StatsHandler() stats.Handler { return p.stats }

// SetServer shows srv on the page (in place of one given before), and
// answers /healthz with its health.
func (p *Page) SetServer(srv *provider.Server) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.server = srv
}

// AddProxy shows proxy on the page. A proxy added twice is shown once.
func (p *Page) AddProxy(proxy *consumer.ClientProxy) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if proxy != nil && !slices.Contains(p.proxies, proxy) {
		p.proxies = append(p.proxies, proxy)
	}
}

// ServeHTTP serves the page's paths; any other is a 404.
func (p *Page) ServeHTTP(w http.ResponseWriter, r *http.Request) { p.mux.ServeHTTP(w, r) }

// parts returns the server and proxies to show.
func (p *Page) parts() (*provider.Server, []*consumer.ClientProxy) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.server, slices.Clone(p.proxies)
}

// serveHealth answers /healthz: 200 while the server as a whole is
// SERVING, 503 otherwise; 200 when the page shows no server (the process
// answers).
func (p *Page) serveHealth(w http.ResponseWriter, _ *http.Request) {
	srv, _ := p.parts()
	st := health.Serving
	if srv != nil {
		st = srv.Health().Status("")
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if st != health.Serving {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	fmt.Fprintln(w, st)
}

// serveMetrics serves /metrics with WithMetrics's handler.
func (p *Page) serveMetrics(w http.ResponseWriter, r *http.Request) {
	if p.metrics == nil {
		http.Error(w, "no metrics handler on this admin page: give one with admin.WithMetrics (the Prometheus package's handler, say)", http.StatusNotFound)
		return
	}
	p.metrics.ServeHTTP(w, r)
}
