package admin

import (
	"context"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shoalrpc/shoal/stats"
)

// maxKeys bounds the methods (and instances) a collector keeps counts for,
// each side: past it, new names are counted together under "(other)". The
// names come from the program's own tables and registry, so this bound is
// only a backstop against a caller inventing names.
const maxKeys = 1000

// Names that counts of several methods fold into.
const (
	// unknownName counts requests for a method the server does not serve,
	// or whose name it could not read: a caller chooses those names, so
	// they are not kept one by one.
	unknownName = "(unknown)"
	// otherName counts names past maxKeys.
	otherName = "(other)"
)

// recentEvents is how many proxy events the page lists.
const recentEvents = 50

// collector is the admin page's stats.Handler: it counts requests, calls
// and attempts by method, instances' picks, in-flight and latency,
// connections, and keeps the latest proxy events. Every count is an atomic
// counter in a map entry made once per name, so the call path takes no lock
// once a name has been seen.
type collector struct {
	started time.Time

	server      table[string]      // requests by "Service.Method"
	calls       table[callKey]     // client calls by service and method
	instances   table[instanceKey] // attempts by service and instance address
	serverConns atomic.Int64
	clientConns atomic.Int64

	mu     sync.Mutex
	events []stats.ProxyEvent // the latest recentEvents, oldest first
}

type callKey struct{ service, method string } // service "" for a Client's calls; then method is "addr method"

type instanceKey struct{ service, addr string }

func newCollector() *collector { return &collector{started: time.Now()} }

// methodStats counts one method's requests or calls.
type methodStats struct {
	count   atomic.Uint64
	errors  atomic.Uint64
	latency histogram
}

// instanceStats counts one instance's attempts.
type instanceStats struct {
	picks  atomic.Uint64
	errors atomic.Uint64
	ewma   atomic.Uint64 // math.Float64bits of the latency average, in seconds
}

// ewmaWeight is the weight of each new latency in the instance's average.
const ewmaWeight = 0.2

func (s *instanceStats) observe(d time.Duration) {
	for {
		old := s.ewma.Load()
		v := d.Seconds()
		if old != 0 {
			v = (1-ewmaWeight)*math.Float64frombits(old) + ewmaWeight*v
		}
		if s.ewma.CompareAndSwap(old, math.Float64bits(v)) {
			return
		}
	}
}

func (s *instanceStats) latency() time.Duration {
	return time.Duration(math.Float64frombits(s.ewma.Load()) * float64(time.Second))
}

// table maps names to their counters, bounded by maxKeys.
type table[K comparable] struct {
	m sync.Map // K → *V
	n atomic.Int64
}

// entry returns key's counters, made on first use; past maxKeys, those of
// other.
func entry[K comparable, V any](t *table[K], key, other K) *V {
	if v, ok := t.m.Load(key); ok {
		return v.(*V)
	}
	if t.n.Load() >= maxKeys {
		key = other
		if v, ok := t.m.Load(key); ok {
			return v.(*V)
		}
	}
	v, loaded := t.m.LoadOrStore(key, new(V))
	if !loaded {
		t.n.Add(1)
	}
	return v.(*V)
}

// folded reports whether a request's status says its method name is not
// one the server serves (or could not be read), and is counted under
// unknownName.
func folded(status string) bool {
	switch status {
	case "unknown service", "unknown method", "bad request", "too large":
		return true
	}
	return false
}

// RPCBegin implements stats.Handler.
func (c *collector) RPCBegin(ctx context.Context, info *stats.RPCInfo) context.Context {
	if info.Kind == stats.Attempt {
		s := entry[instanceKey, instanceStats](&c.instances, instanceKey{info.Service, info.Addr}, instanceKey{info.Service, otherName})
		s.picks.Add(1)
	}
	return ctx
}

// RPCEnd implements stats.Handler.
func (c *collector) RPCEnd(_ context.Context, info *stats.RPCInfo, end *stats.RPCEnd) {
	failed := end.Err != nil
	switch info.Kind {
	case stats.Request:
		name := info.Method
		if folded(end.Status) {
			name = unknownName
		}
		s := entry[string, methodStats](&c.server, name, otherName)
		s.count.Add(1)
		if failed {
			s.errors.Add(1)
		}
		s.latency.observe(end.Duration)
	case stats.Call:
		key := callKey{info.Service, info.Method}
		if info.Service == "" { // a Client's call: its address tells the connections apart
			key.method = info.Addr + " " + info.Method
		}
		if folded(end.Status) {
			key.method = unknownName
		}
		s := entry[callKey, methodStats](&c.calls, key, callKey{info.Service, otherName})
		s.count.Add(1)
		if failed {
			s.errors.Add(1)
		}
		s.latency.observe(end.Duration)
	case stats.Attempt:
		s := entry[instanceKey, instanceStats](&c.instances, instanceKey{info.Service, info.Addr}, instanceKey{info.Service, otherName})
		if failed {
			s.errors.Add(1)
		}
		if end.Class == stats.OK || end.Class == stats.Final {
			s.observe(end.Duration) // it answered: its latency says something
		}
	}
}

// HandleConn implements stats.Handler.
func (c *collector) HandleConn(ev *stats.ConnEvent) {
	n := &c.clientConns
	if ev.Side == stats.Server {
		n = &c.serverConns
	}
	if ev.Begin {
		n.Add(1)
	} else {
		n.Add(-1)
	}
}

// HandleProxy implements stats.Handler.
func (c *collector) HandleProxy(ev *stats.ProxyEvent) {
	if ev.Kind == stats.InstancesChanged {
		return // every registry update: too many to list, and the page shows the instances
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.events) == recentEvents {
		c.events = append(c.events[:0], c.events[1:]...)
	}
	c.events = append(c.events, *ev)
}

// latestEvents returns the latest proxy events, newest first.
func (c *collector) latestEvents() []stats.ProxyEvent {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]stats.ProxyEvent, len(c.events))
	for i, ev := range c.events {
		out[len(out)-1-i] = ev
	}
	return out
}
