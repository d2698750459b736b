// Package prom exports shoal's calls, requests, connections and proxy
// decisions as Prometheus metrics. It is a pair of stats handlers: install
// Metrics.ServerHandler with provider.WithStatsHandler and
// Metrics.ClientHandler with consumer.WithStatsHandler, and serve
// Metrics.Handler (or Handler of any gatherer) at /metrics.
//
// Label values stay bounded. A server labels a request with its service and
// method only once the server has shown the method is registered (it ran it,
// or an interceptor refused it after lookup); any other name, an unknown
// one or one refused before lookup, is labelled "other". A client labels
// the methods it calls, up to WithMaxClientMethods of them, and folds the
// rest, and calls the server did not know, into "other". code is
// stats.RPCEnd.Code: "ok", "service_error", "unknown_method", ….
//
// The metrics:
//
//	shoal_server_handled_total{service,method,code}     requests answered
//	shoal_server_handling_seconds{service,method}       histogram of their durations
//	shoal_server_in_flight                              requests running now
//	shoal_server_connections                            connections open now
//	shoal_client_handled_total{service,method,code}     logical calls (a ClientProxy's retries and hedges are one call)
//	shoal_client_handling_seconds{service,method}       histogram of their durations
//	shoal_client_attempts_total{service,method,code}    attempts: each retry and hedge, and a Client's one call
//	shoal_client_connections                            client connections open now (pools and Clients)
//	shoal_proxy_instances{service}                      instances a ClientProxy holds
//	shoal_proxy_ejections_total{service}                instances ejected after repeated faults
//	shoal_proxy_readmissions_total{service}             ejections ended
//	shoal_proxy_unhealthy_total{service}                instances the active health check took out of picks
//	shoal_proxy_healthy_total{service}                  instances it put back
//	shoal_proxy_fallback{service}                       1 while the proxy calls instances the registry no longer lists
//	shoal_proxy_fallbacks_total{service}                registry fallbacks begun
//	shoal_proxy_retry_budget_refusals_total{service}    retries the retry budget refused
//
// service and method are the two halves of "Service.Method"; on the proxy
// metrics service is the registry's service name, the proxy's own.
//
// A stream counts as one request (and one call) from its open to its end,
// with its final code: in flight all that time, and its whole life in the
// handling histogram (long-lived streams, such as a ShoalHealth.Watch,
// sit in the top bucket of their own method's series). A stream the caller
// closes early ends "canceled" on the client and "aborted" on the server.
package prom

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Other is the label value that stands for every method not in the table:
// unknown to the server, or past the client's limit.
const Other = "other"

// Metrics is one set of shoal metrics, registered with one registry. Its
// handlers may be installed on any number of servers, Clients and proxies,
// which then add to the same series.
type Metrics struct {
	gatherer prometheus.Gatherer // what Handler serves; nil when the registerer is not one

	serverHandled  *prometheus.CounterVec
	serverSeconds  *prometheus.HistogramVec
	serverInFlight prometheus.Gauge
	serverConns    prometheus.Gauge

	clientHandled  *prometheus.CounterVec
	clientSeconds  *prometheus.HistogramVec
	clientAttempts *prometheus.CounterVec
	clientConns    prometheus.Gauge

	proxyInstances      *prometheus.GaugeVec
	proxyEjections      *prometheus.CounterVec
	proxyReadmissions   *prometheus.CounterVec
	proxyUnhealthy      *prometheus.CounterVec
	proxyHealthy        *prometheus.CounterVec
	proxyFallback       *prometheus.GaugeVec
	proxyFallbacks      *prometheus.CounterVec
	proxyBudgetRefusals *prometheus.CounterVec

	server methodTable // the server's methods, as its requests reveal them
	client methodTable // the methods clients called, up to maxClientMethods
}

// Option configures New.
type Option func(*config)

type config struct {
	reg        prometheus.Registerer
	buckets    []float64
	maxMethods int
	err        error
}

// WithRegisterer registers the metrics with reg instead of a registry of the
// Metrics' own. Handler serves reg if it is also a prometheus.Gatherer (a
// *prometheus.Registry is).
func WithRegisterer(reg prometheus.Registerer) Option {
	return func(c *config) {
		if reg == nil {
			c.fail("WithRegisterer", reg, "must not be nil")
			return
		}
		c.reg = reg
	}
}

// WithBuckets sets the histograms' upper bounds, in seconds, increasing
// (default: prometheus.DefBuckets, 5 ms to 10 s).
func WithBuckets(bounds ...float64) Option {
	return func(c *config) {
		for i := range bounds {
			if i > 0 && bounds[i] <= bounds[i-1] {
				c.fail("WithBuckets", bounds, "must increase")
				return
			}
		}
		c.buckets = bounds
	}
}

// WithMaxClientMethods sets how many methods clients label by name (default
// 200); calls of any further method are labelled "other".
func WithMaxClientMethods(n int) Option {
	return func(c *config) {
		if n < 1 {
			c.fail("WithMaxClientMethods", n, "must be at least 1")
			return
		}
		c.maxMethods = n
	}
}

// ErrInvalidOption is wrapped by New's error for an option given an invalid
// value.
var ErrInvalidOption = errors.New("prom: invalid option")

func (c *config) fail(name string, v any, why string) {
	if c.err == nil {
		c.err = fmt.Errorf("%w: %s(%v) %s", ErrInvalidOption, name, v, why)
	}
}

// New makes the metrics and registers them: with a new registry of their
// own, which also holds the Go runtime's and the process's collectors,
// unless WithRegisterer gives another. It fails if an option is invalid or
// the registerer already holds metrics of the same names.
func New(opts ...Option) (*Metrics, error) {
	cfg := config{buckets: prometheus.DefBuckets, maxMethods: 200}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.err != nil {
		return nil, cfg.err
	}
	m := &Metrics{}
	if cfg.reg == nil {
		reg := prometheus.NewRegistry()
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
		cfg.reg = reg
	}
	m.gatherer, _ = cfg.reg.(prometheus.Gatherer)

	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
	}
	histogram := func(name, help string) *prometheus.HistogramVec {
		return prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: help, Buckets: cfg.buckets}, []string{"service", "method"})
	}
	gauge := func(name, help string) prometheus.Gauge {
		return prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: help})
	}
	m.serverHandled = counter("shoal_server_handled_total", "Requests a server answered, by method and outcome.", "service", "method", "code")
	m.serverSeconds = histogram("shoal_server_handling_seconds", "How long a server took to answer a request, in seconds.")
	m.serverInFlight = gauge("shoal_server_in_flight", "Requests a server is running now.")
	m.serverConns = gauge("shoal_server_connections", "Connections open to a server now.")
	m.clientHandled = counter("shoal_client_handled_total", "Logical calls completed by clients, retries and hedges included in one, by method and outcome.", "service", "method", "code")
	m.clientSeconds = histogram("shoal_client_handling_seconds", "How long a logical call took, retries and hedges included, in seconds.")
	m.clientAttempts = counter("shoal_client_attempts_total", "Attempts clients made: each retry and hedge, and each call of a Client.", "service", "method", "code")
	m.clientConns = gauge("shoal_client_connections", "Client connections open now, of Clients and pools.")
	m.proxyInstances = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "shoal_proxy_instances", Help: "Instances a ClientProxy holds."}, []string{"service"})
	m.proxyEjections = counter("shoal_proxy_ejections_total", "Instances a ClientProxy ejected after repeated faults.", "service")
	m.proxyReadmissions = counter("shoal_proxy_readmissions_total", "Ejections a ClientProxy ended.", "service")
	m.proxyUnhealthy = counter("shoal_proxy_unhealthy_total", "Instances a ClientProxy's active health check took out of picks.", "service")
	m.proxyHealthy = counter("shoal_proxy_healthy_total", "Instances a ClientProxy's active health check put back in picks.", "service")
	m.proxyFallback = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "shoal_proxy_fallback", Help: "1 while a ClientProxy calls instances its registry no longer lists."}, []string{"service"})
	m.proxyFallbacks = counter("shoal_proxy_fallbacks_total", "Registry fallbacks a ClientProxy began.", "service")
	m.proxyBudgetRefusals = counter("shoal_proxy_retry_budget_refusals_total", "Retries a ClientProxy's retry budget refused.", "service")

	m.server.init(0, m.serverSeconds)
	m.client.init(cfg.maxMethods, m.clientSeconds)
	for _, c := range []prometheus.Collector{
		m.serverHandled, m.serverSeconds, m.serverInFlight, m.serverConns,
		m.clientHandled, m.clientSeconds, m.clientAttempts, m.clientConns,
		m.proxyInstances, m.proxyEjections, m.proxyReadmissions, m.proxyUnhealthy, m.proxyHealthy, m.proxyFallback, m.proxyFallbacks, m.proxyBudgetRefusals,
	} {
		if err := cfg.reg.Register(c); err != nil {
			return nil, fmt.Errorf("prom: register shoal metrics: %w", err)
		}
	}
	return m, nil
}

// Handler serves the registry the metrics are registered with in
// Prometheus's text format: the one New made, or the one WithRegisterer
// gave if it is a prometheus.Gatherer. For any other registerer it answers
// 404: serve that registry's own gatherer with the package's Handler.
func (m *Metrics) Handler() http.Handler {
	if m.gatherer == nil {
		return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			http.Error(w, "prom: the shoal metrics are registered with a registerer that cannot be gathered", http.StatusNotFound)
		})
	}
	return Handler(m.gatherer)
}

// Handler serves g's metrics in Prometheus's text (or negotiated) format:
// what to mount at /metrics.
func Handler(g prometheus.Gatherer) http.Handler {
	return promhttp.HandlerFor(g, promhttp.HandlerOpts{})
}

// labels is one method's label values and its series, resolved once.
type labels struct {
	service, method string
	seconds         prometheus.Observer
	handled         codeCounters
	attempts        codeCounters // clients'
}

// counter returns vec's series for l and code, from cache.
func (l *labels) counter(cache *codeCounters, vec *prometheus.CounterVec, code string) prometheus.Counter {
	if code == "ok" { // most calls: no map
		if r := cache.ok.Load(); r != nil {
			return r.c
		}
		r := &counterRef{vec.WithLabelValues(l.service, l.method, code)}
		cache.ok.Store(r) // a racing store holds the same series
		return r.c
	}
	if c, ok := cache.others.Load(code); ok {
		return c.(prometheus.Counter)
	}
	c, _ := cache.others.LoadOrStore(code, vec.WithLabelValues(l.service, l.method, code))
	return c.(prometheus.Counter)
}

// codeCounters caches one method's series of one counter by code.
type codeCounters struct {
	ok     atomic.Pointer[counterRef]
	others sync.Map // code → prometheus.Counter
}

type counterRef struct{ c prometheus.Counter }

// methodTable maps "Service.Method" to its labels: the methods admitted to
// the table, up to max (0: no limit), and Other for the rest. Reads take no
// lock: the map is replaced, never changed, when a method enters it.
type methodTable struct {
	byName atomic.Pointer[map[string]*labels]
	mu     sync.Mutex // serialises admissions
	max    int
	other  *labels // the labels of every method outside the table
}

// init readies an empty table of at most max methods (0: no limit).
func (t *methodTable) init(max int, seconds *prometheus.HistogramVec) {
	t.max = max
	t.other = &labels{service: Other, method: Other, seconds: seconds.WithLabelValues(Other, Other)}
	empty := map[string]*labels{}
	t.byName.Store(&empty)
}

// lookup returns name's labels; admit says whether a name not yet in the
// table may enter it.
func (t *methodTable) lookup(name string, admit bool, seconds *prometheus.HistogramVec) *labels {
	if l, ok := (*t.byName.Load())[name]; ok {
		return l
	}
	if !admit {
		return t.other
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	old := *t.byName.Load()
	if l, ok := old[name]; ok {
		return l
	}
	if t.max > 0 && len(old) >= t.max {
		return t.other
	}
	svc, meth := Other, Other
	if dot := strings.LastIndexByte(name, '.'); dot > 0 && dot < len(name)-1 {
		svc, meth = name[:dot], name[dot+1:]
	}
	l := &labels{service: svc, method: meth, seconds: seconds.WithLabelValues(svc, meth)}
	next := make(map[string]*labels, len(old)+1)
	for k, v := range old {
		next[k] = v
	}
	next[name] = l
	t.byName.Store(&next)
	return l
}
