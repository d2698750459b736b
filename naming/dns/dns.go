// Package dns is a naming.Registry that reads the instances of a service from
// DNS: A/AAAA records of a name (a Kubernetes headless Service, a round-robin
// name) or SRV records. The platform publishes the records; providers do not
// register (Register returns ErrReadOnly).
//
// It lives in its own package so the core never links it; a program that
// wants dns:// URLs imports it.
package dns

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shoalrpc/shoal/naming"
)

// Scheme is the URL scheme Open accepts: dns:///name:port or
// dns://resolver:53/name:port.
const Scheme = "dns"

// Defaults; each can be changed with an Option or a URL parameter (see Open).
const (
	// DefaultRefresh is how often a watch resolves the name again.
	DefaultRefresh = 30 * time.Second
	// DefaultTimeout bounds one resolution (all of its queries).
	DefaultTimeout = 5 * time.Second
	// DefaultMinResolveInterval is the least time between two resolutions
	// a watch makes on demand (ResolveNow); more requests are coalesced.
	DefaultMinResolveInterval = time.Second
)

// ErrReadOnly is returned by Register: DNS records are published by the
// platform (Kubernetes, the DNS operator), not by shoal providers.
var ErrReadOnly = errors.New("naming/dns: DNS registries are read-only: the platform publishes the DNS records (e.g. a Kubernetes headless Service); run the provider without a registry, or register it in consul:// or etcd://")

// servicePlaceholder in a name is replaced by the service asked for.
const servicePlaceholder = "{service}"

// Option configures a DNS registry.
type Option func(*options)

type options struct {
	refresh    time.Duration
	timeout    time.Duration
	minResolve time.Duration
	server     string // host:port of the resolver; "" for the system's
	logger     *slog.Logger
}

// WithRefresh sets how often a watch resolves again (default DefaultRefresh).
func WithRefresh(d time.Duration) Option { return func(o *options) { o.refresh = d } }

// WithTimeout bounds one resolution (default DefaultTimeout). A resolution
// that times out keeps the last list.
func WithTimeout(d time.Duration) Option { return func(o *options) { o.timeout = d } }

// WithMinResolveInterval sets the least time between two on-demand
// resolutions of a watch (default DefaultMinResolveInterval).
func WithMinResolveInterval(d time.Duration) Option {
	return func(o *options) { o.minResolve = d }
}

// WithServer sends every query to the DNS server at addr ("host:port")
// instead of the system's resolvers.
func WithServer(addr string) Option { return func(o *options) { o.server = addr } }

// WithLogger sets where failed resolutions are reported (default: discarded).
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// Stats counts what a registry has done since it was created.
type Stats struct {
	Resolves      uint64 // resolutions made by Fetch and watches
	ResolveErrors uint64 // resolutions that failed (the last list was kept)
	ResolveNows   uint64 // on-demand resolutions made by watches
}

// Registry resolves one DNS name into instances. Fetch resolves at once;
// Watch resolves every refresh interval and when ResolveNow is called.
type Registry struct {
	host string // the name, possibly with {service}
	port int    // 0: SRV records give ports and weights
	o    options
	res  *net.Resolver

	ctx    context.Context // ended by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	closed  bool
	watches map[*watch]struct{}

	resolves, resolveErrors, resolveNows atomic.Uint64
}

// New returns a registry for name. With a port ("name:port") the instances
// are the A and AAAA records of name, each at that port with weight 1.
// Without one, name is an SRV name (e.g. "_shoal._tcp.arith.default.svc.cluster.local"):
// the instances are the SRV targets of the lowest priority, at the SRV port,
// weighted by the SRV weight (0 is read as 1). "{service}" in name is replaced
// by the service Fetch or Watch is asked for.
func New(name string, opts ...Option) (*Registry, error) {
	o := options{refresh: DefaultRefresh, timeout: DefaultTimeout, minResolve: DefaultMinResolveInterval}
	for _, opt := range opts {
		opt(&o)
	}
	switch {
	case o.refresh <= 0:
		return nil, fmt.Errorf("naming/dns: refresh %v must be positive", o.refresh)
	case o.timeout <= 0:
		return nil, fmt.Errorf("naming/dns: timeout %v must be positive", o.timeout)
	case o.minResolve < 0:
		return nil, fmt.Errorf("naming/dns: min resolve interval %v must not be negative", o.minResolve)
	}
	if o.logger == nil {
		o.logger = slog.New(slog.DiscardHandler)
	}
	host, port := name, 0
	if h, p, err := net.SplitHostPort(name); err == nil {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return nil, fmt.Errorf("naming/dns: name %q: port %q is not in 1..65535", name, p)
		}
		host, port = h, n
	}
	if host == "" {
		return nil, fmt.Errorf("naming/dns: empty name in %q", name)
	}
	if o.server != "" {
		if _, _, err := net.SplitHostPort(o.server); err != nil {
			return nil, fmt.Errorf("naming/dns: resolver %q: want host:port: %w", o.server, err)
		}
	}
	res := &net.Resolver{PreferGo: true, Dial: dialer(o.server, o.timeout)}
	ctx, cancel := context.WithCancel(context.Background())
	return &Registry{host: host, port: port, o: o, res: res, ctx: ctx, cancel: cancel, watches: map[*watch]struct{}{}}, nil
}

// Backend lets naming.Open open dns:// URLs (see Open for their form):
//
//	reg, err := naming.Open("dns:///arith.default.svc.cluster.local:9001", dns.Backend())
func Backend() naming.Backend {
	return naming.Backend{Scheme: Scheme, Open: Open, PublicParams: []string{"refresh", "timeout", "min_resolve"}}
}

// Open returns the registry a dns:// URL names:
//
//	dns:///arith.default.svc.cluster.local:9001   A/AAAA records, port 9001, system resolver
//	dns://10.0.0.10:53/arith.example:9001          the same, asking the DNS server 10.0.0.10:53
//	dns:///_shoal._tcp.arith.example               SRV records (no port): ports and weights from SRV
//	dns:///{service}.default.svc.cluster.local:9001  the name of each service asked for
//
// Query parameters, as Go durations: refresh (WithRefresh), timeout
// (WithTimeout), min_resolve (WithMinResolveInterval), e.g.
// "dns:///arith.example:9001?refresh=10s". Errors do not repeat the URL
// (naming.Open quotes it).
func Open(rawURL string) (naming.Registry, error) {
	name, opts, err := parseURL(rawURL)
	if err != nil {
		return nil, err
	}
	return New(name, opts...)
}

func parseURL(rawURL string) (string, []Option, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // url.Error repeats the URL
		}
		return "", nil, fmt.Errorf("naming/dns: %w", err)
	}
	if !strings.EqualFold(u.Scheme, Scheme) {
		return "", nil, fmt.Errorf("naming/dns: scheme %q, want %s://", u.Scheme, Scheme)
	}
	if u.User != nil || u.Fragment != "" {
		return "", nil, fmt.Errorf("naming/dns: want dns://[resolver:port]/name[:port], without user or fragment")
	}
	name := strings.TrimPrefix(u.Path, "/")
	if name == "" || strings.Contains(name, "/") {
		return "", nil, fmt.Errorf("naming/dns: want dns:///name:port or dns://resolver:53/name:port (one name after the slash)")
	}
	var opts []Option
	if u.Host != "" {
		if _, p, err := net.SplitHostPort(u.Host); err != nil || p == "" {
			return "", nil, fmt.Errorf("naming/dns: resolver %q: want host:port, e.g. 10.0.0.10:53", u.Host)
		}
		opts = append(opts, WithServer(u.Host))
	}
	for key, vals := range u.Query() {
		if len(vals) != 1 {
			return "", nil, fmt.Errorf("naming/dns: parameter %q given %d times", key, len(vals))
		}
		var opt func(time.Duration) Option
		switch key {
		case "refresh":
			opt = WithRefresh
		case "timeout":
			opt = WithTimeout
		case "min_resolve":
			opt = WithMinResolveInterval
		default:
			return "", nil, fmt.Errorf("naming/dns: unknown parameter %q (want refresh, timeout or min_resolve)", key)
		}
		d, err := time.ParseDuration(vals[0])
		if err != nil {
			return "", nil, fmt.Errorf("naming/dns: parameter %s: %w", key, err)
		}
		opts = append(opts, opt(d))
	}
	return name, opts, nil
}

// Stats returns the registry's counters.
func (r *Registry) Stats() Stats {
	return Stats{Resolves: r.resolves.Load(), ResolveErrors: r.resolveErrors.Load(), ResolveNows: r.resolveNows.Load()}
}

// Register returns an error wrapping ErrReadOnly: the platform publishes DNS
// records, not the provider.
func (r *Registry) Register(_ context.Context, in *naming.Instance) (context.CancelFunc, error) {
	svc := ""
	if in != nil {
		svc = in.Service
	}
	return nil, fmt.Errorf("naming/dns: register %q: %w", svc, ErrReadOnly)
}

// Fetch resolves the name once. A name that does not exist (NXDOMAIN) or has
// no records is an empty list; any other failure, a timeout included, is an
// error.
func (r *Registry) Fetch(ctx context.Context, service string) ([]*naming.Instance, error) {
	if r.isClosed() {
		return nil, naming.ErrClosed
	}
	return r.resolve(ctx, service)
}

// ResolveNow asks every watch to resolve again soon, e.g. because a
// connection to one of its instances failed. Each watch resolves at most once
// every min-resolve interval; requests in between are coalesced into one.
func (r *Registry) ResolveNow() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for w := range r.watches {
		select {
		case w.now <- struct{}{}:
		default: // one already pending
		}
	}
}

// Close ends every watch, closes their channels and waits for them.
func (r *Registry) Close() error {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	r.cancel()
	r.wg.Wait()
	return nil
}

func (r *Registry) isClosed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.closed
}

// name returns the DNS name to resolve for service.
func (r *Registry) name(service string) string {
	return strings.ReplaceAll(r.host, servicePlaceholder, service)
}

// resolve looks the name up once, bounded by the timeout.
func (r *Registry) resolve(ctx context.Context, service string) ([]*naming.Instance, error) {
	r.resolves.Add(1)
	ctx, cancel := context.WithTimeout(ctx, r.o.timeout)
	defer cancel()
	name := r.name(service)
	var list []*naming.Instance
	var err error
	if r.port != 0 {
		list, err = r.lookupHost(ctx, service, name, r.port, 1)
	} else {
		list, err = r.lookupSRV(ctx, service, name)
	}
	if err != nil {
		r.resolveErrors.Add(1)
		return nil, err
	}
	naming.SortInstances(list)
	return list, nil
}

// lookupHost returns one instance per A/AAAA record of host.
func (r *Registry) lookupHost(ctx context.Context, service, host string, port, weight int) ([]*naming.Instance, error) {
	ips, err := r.res.LookupNetIP(ctx, "ip", host)
	if err != nil {
		if isNotFound(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("naming/dns: resolve %s: %w", host, err)
	}
	out := make([]*naming.Instance, 0, len(ips))
	seen := map[netip.Addr]bool{}
	for _, ip := range ips {
		ip = ip.Unmap()
		if seen[ip] {
			continue
		}
		seen[ip] = true
		addr := "tcp@" + netip.AddrPortFrom(ip, uint16(port)).String()
		out = append(out, &naming.Instance{ID: naming.DefaultID(service, addr), Service: service, Addr: addr, Weight: weight})
	}
	return out, nil
}

// lookupSRV returns the targets of the lowest-priority SRV records of name.
func (r *Registry) lookupSRV(ctx context.Context, service, name string) ([]*naming.Instance, error) {
	_, srvs, err := r.res.LookupSRV(ctx, "", "", name)
	if err != nil {
		if isNotFound(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("naming/dns: resolve SRV %s: %w", name, err)
	}
	if len(srvs) == 0 {
		return nil, nil
	}
	best := srvs[0].Priority
	for _, s := range srvs {
		best = min(best, s.Priority)
	}
	var out []*naming.Instance
	for _, s := range srvs {
		if s.Priority != best || s.Port == 0 {
			continue
		}
		weight := max(int(s.Weight), 1)
		var list []*naming.Instance
		if ip, err := netip.ParseAddr(strings.TrimSuffix(s.Target, ".")); err == nil {
			addr := "tcp@" + netip.AddrPortFrom(ip.Unmap(), s.Port).String()
			list = []*naming.Instance{{ID: naming.DefaultID(service, addr), Service: service, Addr: addr, Weight: weight}}
		} else if list, err = r.lookupHost(ctx, service, s.Target, int(s.Port), weight); err != nil {
			return nil, err
		}
		out = append(out, list...)
	}
	return dedup(out), nil
}

// isNotFound reports whether err says the name has no records: an answer,
// not a failure to get one.
func isNotFound(err error) bool {
	var de *net.DNSError
	return errors.As(err, &de) && de.IsNotFound
}

// dedup drops instances at an address already listed (two SRV records
// naming one target), keeping the first.
func dedup(list []*naming.Instance) []*naming.Instance {
	seen := map[string]bool{}
	out := list[:0]
	for _, in := range list {
		if !seen[in.Addr] {
			seen[in.Addr] = true
			out = append(out, in)
		}
	}
	return out
}

// dialer returns the resolver's Dial: to server when given (else to the
// address the resolver picked from the system's configuration), with every
// exchange bounded by timeout and connections closed when their context
// ends. Go's resolver runs an address lookup on a context of its own, which
// callers that time out may leave running (one lookup is shared by all
// callers asking for the same name at once); it reads until a deadline from
// the system's resolver timeout (5 s, several attempts). A lookup left
// running so would keep later resolutions, which join it, failing long after
// the resolver answers again, and its goroutines would outlive Close.
func dialer(server string, timeout time.Duration) func(ctx context.Context, network, address string) (net.Conn, error) {
	var d net.Dialer
	return func(ctx context.Context, network, address string) (net.Conn, error) {
		if server != "" {
			address = server
		}
		c, err := d.DialContext(ctx, network, address)
		if err != nil {
			return nil, err
		}
		b := bounds{max: time.Now().Add(timeout), stop: context.AfterFunc(ctx, func() { c.Close() })}
		_ = c.SetDeadline(b.max)
		if uc, ok := c.(*net.UDPConn); ok {
			// The resolver frames messages by whether the connection
			// is a net.PacketConn: keep it one.
			return &boundedUDPConn{UDPConn: uc, bounds: b}, nil
		}
		return &boundedConn{Conn: c, bounds: b}, nil
	}
}

// bounds caps a connection's deadlines and holds its close-on-cancel hook.
type bounds struct {
	max  time.Time
	stop func() bool
}

func (b bounds) cap(t time.Time) time.Time {
	if t.IsZero() || t.After(b.max) {
		return b.max
	}
	return t
}

type boundedConn struct {
	net.Conn
	bounds
}

func (c *boundedConn) SetDeadline(t time.Time) error      { return c.Conn.SetDeadline(c.cap(t)) }
func (c *boundedConn) SetReadDeadline(t time.Time) error  { return c.Conn.SetReadDeadline(c.cap(t)) }
func (c *boundedConn) SetWriteDeadline(t time.Time) error { return c.Conn.SetWriteDeadline(c.cap(t)) }
func (c *boundedConn) Close() error                       { c.stop(); return c.Conn.Close() }

type boundedUDPConn struct {
	*net.UDPConn
	bounds
}

func (c *boundedUDPConn) SetDeadline(t time.Time) error { return c.UDPConn.SetDeadline(c.cap(t)) }
func (c *boundedUDPConn) SetReadDeadline(t time.Time) error {
	return c.UDPConn.SetReadDeadline(c.cap(t))
}
func (c *boundedUDPConn) SetWriteDeadline(t time.Time) error {
	return c.UDPConn.SetWriteDeadline(c.cap(t))
}
func (c *boundedUDPConn) Close() error { c.stop(); return c.UDPConn.Close() }

var _ naming.Refresher = (*Registry)(nil)
