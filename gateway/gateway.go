// Package gateway is an HTTP/JSON front for shoal services: each
// POST /Service.Method is called on one of the service's instances, found in
// a registry, through a consumer.ClientProxy per service, with its load
// balancing, its fail mode and its retry of calls that did not run on the
// next instance — the seeds' HTTP balancer, for shoal services. The shoal
// command runs it as `shoal gateway`.
//
// A request's body is the method's args as JSON, passed through as it is (the
// gateway needs no Go types: calls use the JSON codec, and the provider
// decodes the body into the method's args type); the reply's JSON is the
// answer's body. Headers named httpstatus.MetadataPrefix+"Key" (and
// Authorization) become the call's metadata, httpstatus.TimeoutHeader or
// ?timeout= its deadline. Errors answer with httpstatus.Code's statuses and
// an httpstatus.ErrorBody. Active health checks are the proxies' own:
// WithProxyOptions(consumer.WithHealthCheck(5*time.Second, 0)).
//
// The service in the path is found in the registry under its lower-cased
// name ("Arith" under "arith", as the demo registers it), unless
// WithServiceName maps it to another.
package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"

	"github.com/shoalrpc/shoal/consumer"
	"github.com/shoalrpc/shoal/httpstatus"
	"github.com/shoalrpc/shoal/naming"
	"github.com/shoalrpc/shoal/protocol"
)

// Defaults.
const (
	// DefaultTimeout bounds a call whose request gives no deadline.
	DefaultTimeout = 30 * time.Second
	// DefaultMaxBodySize bounds a request's body, as protocol's limit
	// bounds a frame's.
	DefaultMaxBodySize = protocol.DefaultMaxBodySize
)

// ErrClosed is what a call through a closed Gateway meets.
var ErrClosed = errors.New("gateway: closed")

// Option configures a Gateway.
type Option func(*options)

type options struct {
	proxy    []consumer.ProxyOption
	names    map[string]string
	timeout  time.Duration
	maxBody  int64
	logger   *slog.Logger
	invalids []error
}

// WithProxyOptions adds options to every service's ClientProxy, after the
// gateway's own (consumer.WithCodec(protocol.JSON) and
// consumer.WithFailMode(consumer.Failover)), so they override them:
// consumer.WithLoadBalance, consumer.WithFailMode, consumer.WithRetries, ….
func WithProxyOptions(opts ...consumer.ProxyOption) Option {
	return func(o *options) { o.proxy = append(o.proxy, opts...) }
}

// WithServiceName makes calls to service (as in the path, "Arith") go to
// the instances registered under registryName instead of
// strings.ToLower(service).
func WithServiceName(service, registryName string) Option {
	return func(o *options) {
		if !isIdent(service) || registryName == "" {
			o.invalids = append(o.invalids, fmt.Errorf("gateway: WithServiceName(%q, %q): want a Go identifier and a non-empty registry name", service, registryName))
			return
		}
		o.names[service] = registryName
	}
}

// WithTimeout sets the deadline of a call whose request gives none (default
// DefaultTimeout); a request may ask for a shorter or longer one.
func WithTimeout(d time.Duration) Option {
	return func(o *options) {
		if d <= 0 {
			o.invalids = append(o.invalids, fmt.Errorf("gateway: WithTimeout(%v): want more than 0", d))
			return
		}
		o.timeout = d
	}
}

// WithMaxBodySize bounds a request's body (default DefaultMaxBodySize); a
// longer one is answered 413 without being read whole.
func WithMaxBodySize(n int64) Option {
	return func(o *options) {
		if n <= 0 {
			o.invalids = append(o.invalids, fmt.Errorf("gateway: WithMaxBodySize(%d): want more than 0", n))
			return
		}
		o.maxBody = n
	}
}

// WithLogger sets where the gateway logs (default slog.Default()).
func WithLogger(l *slog.Logger) Option {
	return func(o *options) {
		if l != nil {
			o.logger = l
		}
	}
}

// Gateway is an http.Handler that calls shoal services. Make it with New;
// Close it after the HTTP server that uses it has shut down.
type Gateway struct {
	reg  naming.Registry
	opts options

	mu      sync.Mutex
	closed  bool
	proxies map[string]*entry // by registry name
	closers sync.WaitGroup    // closing dropped proxies
}

// entry is one service's proxy, made by the first request that needs it.
type entry struct {
	ready  chan struct{} // closed once p or err is set
	p      *consumer.ClientProxy
	err    error
	users  sync.WaitGroup // requests using p; added to under Gateway.mu only
	served atomic.Bool    // a call through p got an answer from the service
}

// New returns a gateway to the services in reg. The gateway does not close
// reg.
func New(reg naming.Registry, opts ...Option) (*Gateway, error) {
	if reg == nil {
		return nil, errors.New("gateway: New with a nil registry")
	}
	o := options{names: map[string]string{}, timeout: DefaultTimeout, maxBody: DefaultMaxBodySize, logger: slog.Default()}
	for _, opt := range opts {
		if opt != nil {
			opt(&o)
		}
	}
	if err := errors.Join(o.invalids...); err != nil {
		return nil, err
	}
	o.proxy = append([]consumer.ProxyOption{
		consumer.WithCodec(protocol.JSON),
		consumer.WithFailMode(consumer.Failover),
		consumer.WithLogger(o.logger),
	}, o.proxy...)
	return &Gateway{reg: reg, opts: o, proxies: map[string]*entry{}}, nil
}

// RegistryName returns the name under which the instances of service (as
// in a path, "Arith") are looked up: WithServiceName's, or the service's
// name lower-cased.
func (g *Gateway) RegistryName(service string) string {
	if n, ok := g.opts.names[service]; ok {
		return n
	}
	return strings.ToLower(service)
}

// acquire returns the entry of the service registered as name, making its
// proxy on first use, and counts the caller as its user until release. A
// service the registry lists no instance of is an error wrapping
// loadbalance.ErrNoInstances, and is looked up afresh next time, so that a
// name in a request cannot make the gateway hold a proxy for a service that
// does not exist.
func (g *Gateway) acquire(ctx context.Context, name string) (*entry, error) {
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return nil, ErrClosed
	}
	e := g.proxies[name]
	made := e == nil
	if made {
		e = &entry{ready: make(chan struct{})}
		g.proxies[name] = e
	}
	e.users.Add(1)
	g.mu.Unlock()
	if made {
		e.p, e.err = consumer.NewClientProxy(name, g.reg, g.opts.proxy...)
		if e.err != nil {
			g.drop(name, e)
		} else {
			g.opts.logger.Info("gateway: following a service", "service", name)
		}
		close(e.ready)
	}
	select {
	case <-e.ready:
		if e.err != nil {
			e.users.Done()
			return nil, e.err
		}
		return e, nil
	case <-ctx.Done():
		e.users.Done()
		return nil, ctx.Err()
	}
}

// release ends a use of e, whose call ended with err. A call the instances
// answered "unknown service" through a proxy that never had an answer from
// the service means the registry resolved a name no provider serves (a
// static registry resolves every name): the proxy is dropped, so that names
// in requests cannot pile proxies up.
func (g *Gateway) release(name string, e *entry, err error) {
	switch {
	case err == nil || errors.As(err, new(*consumer.ServiceError)):
		e.served.Store(true)
	case errors.Is(err, consumer.ErrUnknownService) && !e.served.Load():
		g.drop(name, e)
	}
	e.users.Done()
}

// drop forgets e, and closes its proxy once its users are done.
func (g *Gateway) drop(name string, e *entry) {
	g.mu.Lock()
	if g.proxies[name] != e {
		g.mu.Unlock()
		return // dropped already, or Close took it
	}
	delete(g.proxies, name)
	g.closers.Add(1)
	g.mu.Unlock()
	go func() {
		defer g.closers.Done()
		<-e.ready
		e.users.Wait()
		if e.p != nil {
			e.p.Close()
		}
	}()
}

// Close closes every service's ClientProxy. Calls still running fail; shut
// the HTTP server down first (http.Server.Shutdown) so that none is.
func (g *Gateway) Close() error {
	g.mu.Lock()
	g.closed = true
	entries := g.proxies
	g.proxies = map[string]*entry{}
	g.mu.Unlock()
	var errs []error
	for _, e := range entries {
		<-e.ready
		if e.p != nil {
			errs = append(errs, e.p.Close())
		}
	}
	g.closers.Wait()
	return errors.Join(errs...)
}

// ServeHTTP answers POST /Service.Method by calling the method with the
// body as its args, and GET /healthz with 200 "ok".
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/healthz" && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, "ok\n")
		return
	}
	method := strings.TrimPrefix(r.URL.Path, "/")
	service, _, ok := splitMethod(method)
	if !ok {
		writeError(w, http.StatusNotFound, protocol.StatusBadRequest.String(),
			fmt.Sprintf("path %q: want POST /Service.Method, e.g. POST /Arith.Add", r.URL.Path))
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeError(w, http.StatusMethodNotAllowed, protocol.StatusBadRequest.String(),
			fmt.Sprintf("%s %s: want POST with the args as a JSON body", r.Method, r.URL.Path))
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, g.opts.maxBody))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			writeError(w, http.StatusRequestEntityTooLarge, protocol.StatusTooLarge.String(),
				fmt.Sprintf("request body over the gateway's limit of %d bytes", tooLarge.Limit))
			return
		}
		writeError(w, http.StatusBadRequest, protocol.StatusBadRequest.String(), "reading the body: "+err.Error())
		return
	}
	if len(strings.TrimSpace(string(body))) == 0 {
		body = []byte("null") // no args: the zero value of the args type
	}
	var args json.RawMessage
	if err := json.Unmarshal(body, &args); err != nil {
		writeError(w, http.StatusBadRequest, protocol.StatusBadRequest.String(), "the body is not JSON: "+err.Error())
		return
	}
	timeout := g.opts.timeout
	if s := firstNonEmpty(r.Header.Get(httpstatus.TimeoutHeader), r.URL.Query().Get(httpstatus.TimeoutParam)); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			writeError(w, http.StatusBadRequest, protocol.StatusBadRequest.String(),
				fmt.Sprintf("timeout %q: want a positive Go duration such as 500ms or 2s", s))
			return
		}
		timeout = d
	}
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()
	if md := httpstatus.Metadata(r.Header); md != nil {
		ctx = consumer.WithMetadata(ctx, md)
	}

	name := g.RegistryName(service)
	var reply json.RawMessage
	e, err := g.acquire(ctx, name)
	if err == nil {
		err = e.p.Call(ctx, method, args, &reply)
		g.release(name, e, err)
	}
	if err != nil {
		status := StatusOf(err)
		// The consumer's text starts with "shoal: <status>: ", which the
		// body's status says already: the rest is what the provider said.
		msg := strings.Replace(err.Error(), "shoal: "+status+": ", "", 1)
		if status == httpstatus.NoInstances {
			msg = fmt.Sprintf("no instance of %q in the registry (service %s is looked up as %q): %v", name, service, name, err)
		}
		if status == httpstatus.Canceled {
			return // the client went away: nobody reads an answer
		}
		if status == protocol.StatusInternal.String() {
			g.opts.logger.Warn("gateway: call failed", "method", method, "err", err)
		}
		if ra := httpstatus.RetryAfter(status); ra != "" {
			w.Header().Set("Retry-After", ra)
		}
		writeError(w, httpstatus.CodeOf(status), status, msg)
		return
	}
	w.Header().Set("Content-Type", httpstatus.ContentType)
	w.WriteHeader(http.StatusOK)
	w.Write(append(reply, '\n'))
}

// writeError answers with an httpstatus.ErrorBody.
func writeError(w http.ResponseWriter, code int, status, msg string) {
	b, _ := json.Marshal(httpstatus.ErrorBody{Status: httpstatus.Name(status), Error: msg})
	w.Header().Set("Content-Type", httpstatus.ContentType)
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	w.Write(append(b, '\n'))
}

// splitMethod splits "Service.Method" into its two Go identifiers.
func splitMethod(name string) (service, method string, ok bool) {
	service, method, ok = strings.Cut(name, ".")
	return service, method, ok && isIdent(service) && isIdent(method)
}

// isIdent reports whether s is a Go identifier, as service and method
// names are.
func isIdent(s string) bool {
	if s == "" {
		return false
	}
	for i, r := range s {
		if !(r == '_' || unicode.IsLetter(r) || (i > 0 && unicode.IsDigit(r))) {
			return false
		}
	}
	return true
}

func firstNonEmpty(ss ...string) string {
	for _, s := range ss {
		if s != "" {
			return s
		}
	}
	return ""
}
