package consumer

import (
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/shoalrpc/shoal/naming"
)

// ProxySnapshot is what a ClientProxy is doing at one moment, for an admin
// page (observability/admin) or a debug dump: plain values, copied, that
// the caller may keep. Counts per call and latencies are not here: a stats
// handler gathers those.
type ProxySnapshot struct {
	Service     string             // the registry's service name
	Balancer    string             // the load-balancing mode ("roundrobin", "p2c_ewma"…), or "custom" (WithBalancer)
	FailMode    string             // "failfast", "failover"…
	InFallback  bool               // calling the last known instances: the registry lists none (see WithRegistryFallback)
	Fallbacks   int64              // registry fallbacks entered so far
	HealthCheck time.Duration      // WithHealthCheck's interval; 0: no active health checks
	Instances   []InstanceSnapshot // every instance calls may go to, by address
}

// InstanceSnapshot is one instance as a ClientProxy sees it.
type InstanceSnapshot struct {
	naming.Instance           // as the registry listed it (copied)
	Listed          bool      // the registry lists it now (false: kept by the registry fallback)
	InPicks         bool      // the balancer may pick it: not ejected, not failing its health check (or kept as the last)
	Ejected         bool      // left out by outlier ejection until EjectedUntil
	EjectedUntil    time.Time // when its ejection ends
	Probation       bool      // its ejection ended; its next call decides
	Health          CheckResult
	Conns           int // open connections to it in the proxy's pool
	Pending         int // calls awaiting replies on them: in flight now
}

// Snapshot returns what the proxy is doing now. It reads the proxy's
// lists without locking them, and takes the outlier detector's, the health
// checks' and each connection's lock briefly.
func (p *ClientProxy) Snapshot() ProxySnapshot {
	snap := ProxySnapshot{
		Service:     p.service,
		Balancer:    p.opts.lbMode.String(),
		FailMode:    p.opts.failMode.String(),
		InFallback:  p.inFallback.Load(),
		Fallbacks:   p.fallbacks.Load(),
		HealthCheck: p.opts.healthInterval,
	}
	if p.opts.newBalancer != nil {
		snap.Balancer = "custom"
	}
	listed, instances, healthy := *p.listed.Load(), *p.instances.Load(), *p.healthy.Load()
	byID := func(list []*naming.Instance, id string) bool {
		return slices.ContainsFunc(list, func(in *naming.Instance) bool { return in.ID == id })
	}
	for _, in := range instances {
		is := InstanceSnapshot{Instance: *in, Listed: byID(listed, in.ID), InPicks: byID(healthy, in.ID), Health: p.checks.result(in.ID)}
		is.Tags = slices.Clone(in.Tags)
		is.Meta = maps.Clone(in.Meta)
		is.EjectedUntil, is.Probation = p.outliers.state(in.ID)
		is.Ejected = time.Now().Before(is.EjectedUntil)
		is.Conns, is.Pending = p.pool.load(in.Addr)
		snap.Instances = append(snap.Instances, is)
	}
	slices.SortFunc(snap.Instances, func(a, b InstanceSnapshot) int { return strings.Compare(a.Addr, b.Addr) })
	return snap
}

// state returns when id's ejection ends (zero: not ejected) and whether it
// is on probation.
func (o *outliers) state(id string) (until time.Time, probing bool) {
	if o.tracked.Load() == 0 {
		return time.Time{}, false
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if h := o.byID[id]; h != nil {
		return h.until, h.probing
	}
	return time.Time{}, false
}

// load returns how many usable connections the pool holds to addr and how
// many calls await replies on its connections.
func (p *Pool) load(addr string) (conns, pending int) {
	s, ok := p.addrs.Load(addr)
	if !ok {
		return 0, 0
	}
	for i := range s.(*slots).conns {
		if c := s.(*slots).conns[i].Load(); c != nil {
			if c.Usable() {
				conns++
			}
			pending += c.Pending() // a draining connection's calls are in flight too
		}
	}
	return conns, pending
}
