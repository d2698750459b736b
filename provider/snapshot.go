package provider

import (
	"crypto/tls"
	"maps"
	"slices"
	"strings"

	"github.com/shoalrpc/shoal/health"
	"github.com/shoalrpc/shoal/naming"
)

// Snapshot is what a server is doing at one moment, for an admin page
// (observability/admin) or a debug dump: plain values, copied, that the
// caller may keep. Counts per method (calls, errors, latencies) are not
// here: a stats handler gathers those.
type Snapshot struct {
	Services     []ServiceSnapshot // sorted by name; built-in services (the health service) included, marked
	InFlight     int               // requests read and not yet answered
	Conns        []ConnSnapshot    // open connections, by remote address
	Listeners    []string          // the addresses being served
	Registration Registration      // the instance's state in the registry
	ShuttingDown bool              // Shutdown or Close has begun
	Health       health.Status     // the server as a whole, as the health service answers for ""
}

// ServiceSnapshot is one registered service.
type ServiceSnapshot struct {
	Name    string        // as Register or RegisterName named it: "Arith"
	Builtin bool          // served by every server (the health service), not registered by the program
	Methods []string      // its methods' names ("Add"), sorted
	Health  health.Status // as the health service answers for Name
}

// ConnSnapshot is one open connection.
type ConnSnapshot struct {
	Remote   string // the peer's address
	Local    string // the listener's side
	InFlight int    // its requests read and not yet answered
	TLS      bool   // served over TLS
	GoneAway bool   // told to go away (shutting down, or past WithMaxConns)
}

// Registration is the instance's state in the registry of WithRegistry.
type Registration struct {
	// State is "none" (no WithRegistry), "pending" (not yet published:
	// Serve or Start has not been called), "registering", "registered",
	// "failed" (every attempt failed) or "withdrawn" (Shutdown or Close).
	State    string
	Instance naming.Instance // as registered, ID and Addr filled in; as given before
}

// Snapshot returns what the server is doing now. It takes the server's
// lock briefly, once, and reads the connections' counters without
// stopping them, so the numbers are each exact but not one instant's.
func (s *Server) Snapshot() Snapshot {
	snap := Snapshot{
		InFlight:     s.InFlight(),
		ShuttingDown: s.shuttingDown.Load(),
		Health:       s.health.Status(""),
	}
	bySvc := map[string]*ServiceSnapshot{}
	for name := range *s.methods.Load() {
		svc, meth, _ := strings.Cut(name, ".")
		ss := bySvc[svc]
		if ss == nil {
			ss = &ServiceSnapshot{Name: svc, Builtin: builtinService(svc)}
			bySvc[svc] = ss
		}
		ss.Methods = append(ss.Methods, meth)
	}
	for _, ss := range bySvc {
		slices.Sort(ss.Methods)
		ss.Health = s.health.Status(ss.Name)
		snap.Services = append(snap.Services, *ss)
	}
	slices.SortFunc(snap.Services, func(a, b ServiceSnapshot) int { return strings.Compare(a.Name, b.Name) })

	s.mu.Lock()
	for ln := range s.listeners {
		snap.Listeners = append(snap.Listeners, ln.Addr().Network()+"@"+ln.Addr().String())
	}
	for c := range s.conns {
		_, isTLS := c.nc.(*tls.Conn)
		snap.Conns = append(snap.Conns, ConnSnapshot{
			Remote: c.nc.RemoteAddr().String(), Local: c.nc.LocalAddr().String(),
			InFlight: int(c.inFlight.Load()), TLS: isTLS, GoneAway: c.e.WentAway(),
		})
	}
	snap.Registration = s.registration()
	s.mu.Unlock()
	slices.Sort(snap.Listeners)
	slices.SortFunc(snap.Conns, func(a, b ConnSnapshot) int { return strings.Compare(a.Remote, b.Remote) })
	return snap
}

// registration is the instance's state in the registry. s.mu is held.
func (s *Server) registration() Registration {
	r := Registration{Instance: s.opts.instance}
	switch {
	case s.opts.registry == nil:
		r.State = "none"
	case s.withdrawn:
		r.State = "withdrawn"
	case s.deregister != nil:
		r.State, r.Instance = "registered", s.registered
	case !s.published:
		r.State = "pending"
	default:
		select {
		case <-s.publishDone:
			r.State = "failed"
		default:
			r.State = "registering"
		}
	}
	if s.withdrawn && s.registered.ID != "" {
		r.Instance = s.registered
	}
	r.Instance.Tags = slices.Clone(r.Instance.Tags)
	r.Instance.Meta = maps.Clone(r.Instance.Meta)
	return r
}
