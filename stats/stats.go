// Package stats is shoal's lowest-level hook: a Handler observes every call,
// attempt and request, every connection opening and closing, and the
// decisions a ClientProxy takes on its own. It changes nothing: a handler
// that wants to refuse or alter a call is an interceptor instead
// (provider.WithInterceptors, consumer.WithInterceptors).
//
// Install handlers with provider.WithStatsHandler and
// consumer.WithStatsHandler; several may be installed, and each sees every
// event in the order they were given. With none installed, shoal's call path
// does no work for them.
//
// The shape follows grpc-go's stats.Handler: RPCBegin may return a context
// derived from its argument (to carry a span or a start time), and that
// context is the one RPCEnd receives. Handlers are called on the call's own
// goroutine, or the connection's; they must not block.
package stats

import (
	"context"
	"time"
)

// Handler observes calls, attempts, requests, connections and proxy events.
// Embed Base to implement only what you need.
type Handler interface {
	// RPCBegin is called when a call, an attempt or a request begins. The
	// context it returns is the one the rest of it runs under and the one
	// RPCEnd receives; return ctx to add nothing.
	RPCBegin(ctx context.Context, info *RPCInfo) context.Context
	// RPCEnd is called once when the call, attempt or request has ended.
	RPCEnd(ctx context.Context, info *RPCInfo, end *RPCEnd)
	// HandleConn is called when a connection opens or closes.
	HandleConn(ev *ConnEvent)
	// HandleProxy is called when a ClientProxy decides something on its
	// own: its instance list changed, an instance was ejected or readmitted,
	// the retry budget refused a retry, the registry fallback began or ended.
	HandleProxy(ev *ProxyEvent)
}

// Base implements Handler with methods that do nothing; embed it to
// implement only some of them.
type Base struct{}

// RPCBegin implements Handler and returns ctx.
func (Base) RPCBegin(ctx context.Context, _ *RPCInfo) context.Context { return ctx }

// RPCEnd implements Handler and does nothing.
func (Base) RPCEnd(context.Context, *RPCInfo, *RPCEnd) {}

// HandleConn implements Handler and does nothing.
func (Base) HandleConn(*ConnEvent) {}

// HandleProxy implements Handler and does nothing.
func (Base) HandleProxy(*ProxyEvent) {}

// Kind says what an RPCInfo describes.
type Kind uint8

// The kinds of RPC event.
const (
	// Call is one logical call made by a client: on a ClientProxy, retries
	// and hedges included; on a Client, the same as its one attempt.
	Call Kind = iota + 1
	// Attempt is one try of a ClientProxy call on one instance.
	Attempt
	// Request is one request as a server runs it.
	Request
)

// String returns the kind's name.
func (k Kind) String() string {
	switch k {
	case Call:
		return "call"
	case Attempt:
		return "attempt"
	case Request:
		return "request"
	}
	return "kind(?)"
}

// Class is what an outcome says about whether the method ran, the
// distinction shoal's fail policies are built on.
type Class uint8

// The classes of outcome.
const (
	// OK: the method ran and returned no error.
	OK Class = iota
	// Final: the method ran and returned its own error, or the call failed
	// in a way retrying cannot help (bad request, unknown method, the
	// caller's deadline).
	Final
	// NotExecuted: the call was refused or never sent; it did not run.
	NotExecuted
	// MaybeExecuted: the connection broke or the attempt timed out while the
	// call was in flight; it may or may not have run.
	MaybeExecuted
)

// String returns the class's name.
func (c Class) String() string {
	switch c {
	case OK:
		return "ok"
	case Final:
		return "final"
	case NotExecuted:
		return "not executed"
	case MaybeExecuted:
		return "maybe executed"
	}
	return "class(?)"
}

// RPCInfo describes a call, an attempt or a request. It is given to RPCBegin
// and again, unchanged, to RPCEnd; a handler must not keep it after RPCEnd.
type RPCInfo struct {
	Kind    Kind      // what is being reported: a call, an attempt or a request
	Method  string    // "Service.Method"
	Service string    // the registry's service name (ClientProxy calls and attempts); "" otherwise
	Addr    string    // the other end: the instance's address (attempt, Client call) or the peer's (request)
	Attempt int       // attempts: 1 for the first try of a call, 2 for the next…
	Retry   bool      // attempts: a retry after a failed attempt
	Hedge   bool      // attempts: a hedge, sent while an earlier attempt was still running
	Codec   string    // the payload codec's name, where known
	Begin   time.Time // when it began
	Stream  bool      // a stream rather than a unary call: it begins when it opens and ends with its last frame
}

// RPCEnd is how a call, an attempt or a request ended. Like RPCInfo, a
// handler must not keep it after RPCEnd returns.
type RPCEnd struct {
	Err      error         // nil on success
	Class    Class         // what Err says about whether the method ran
	Status   string        // the wire status ("ok", "service error", "shutting down"…), where known
	BytesIn  int           // bytes received on the wire for it (frame header included), where known
	BytesOut int           // bytes sent on the wire for it, where known
	Duration time.Duration // from Begin to end
}

// Side says which end of a connection an event is from.
type Side uint8

// The sides of a connection.
const (
	Client Side = iota + 1
	Server
)

// String returns "client" or "server".
func (s Side) String() string {
	if s == Server {
		return "server"
	}
	return "client"
}

// ConnEvent is a connection opening (Begin) or closing (!Begin).
type ConnEvent struct {
	Side   Side   // which end of the connection reports it
	Begin  bool   // true when it opened, false when it closed
	Local  string // local address
	Remote string // remote address
	Err    error  // when it closed: why, or nil for an orderly close
}

// ProxyEventKind says what a ClientProxy decided.
type ProxyEventKind uint8

// The kinds of proxy event.
const (
	// InstancesChanged: the registry delivered a new list; Instances is its length.
	InstancesChanged ProxyEventKind = iota + 1
	// InstanceEjected: Instance was left out of picks after repeated faults.
	InstanceEjected
	// InstanceReadmitted: Instance's ejection ended; its next call decides.
	InstanceReadmitted
	// BudgetExhausted: the retry budget refused a retry of Method.
	BudgetExhausted
	// FallbackBegin: the registry listed no instance while the proxy held
	// instances that answered lately; it keeps calling those.
	FallbackBegin
	// FallbackEnd: the registry lists instances again.
	FallbackEnd
	// InstanceUnhealthy: Instance was left out of picks because its active
	// health check failed or said NOT_SERVING; Detail says which.
	InstanceUnhealthy
	// InstanceHealthy: Instance's active health check passes again (or
	// passes for the first time after failing); it is back in picks.
	InstanceHealthy
)

// String returns the event kind's name.
func (k ProxyEventKind) String() string {
	switch k {
	case InstancesChanged:
		return "instances changed"
	case InstanceEjected:
		return "instance ejected"
	case InstanceReadmitted:
		return "instance readmitted"
	case BudgetExhausted:
		return "retry budget exhausted"
	case FallbackBegin:
		return "registry fallback begins"
	case FallbackEnd:
		return "registry fallback ends"
	case InstanceUnhealthy:
		return "instance unhealthy"
	case InstanceHealthy:
		return "instance healthy"
	}
	return "proxy event(?)"
}

// ProxyEvent is a decision a ClientProxy took on its own.
type ProxyEvent struct {
	Kind      ProxyEventKind // what the proxy decided
	Service   string         // the proxy's service
	Instance  string         // the instance's ID (ejected, readmitted)
	Addr      string         // the instance's address (ejected, readmitted)
	Instances int            // how many instances the proxy now holds (changed, fallback)
	Method    string         // the call's method (budget exhausted)
	Detail    string         // what the health check saw: a status such as "NOT_SERVING", or the probe's error (unhealthy, healthy)
	Time      time.Time      // when it happened
}

// Handlers is a list of handlers called in order; the zero value holds none.
// It is what provider and consumer keep, and a handler of its own.
type Handlers []Handler

// RPCBegin calls every handler's RPCBegin, each with the context the one
// before returned.
func (hs Handlers) RPCBegin(ctx context.Context, info *RPCInfo) context.Context {
	for _, h := range hs {
		ctx = h.RPCBegin(ctx, info)
	}
	return ctx
}

// RPCEnd calls every handler's RPCEnd.
func (hs Handlers) RPCEnd(ctx context.Context, info *RPCInfo, end *RPCEnd) {
	for _, h := range hs {
		h.RPCEnd(ctx, info, end)
	}
}

// HandleConn calls every handler's HandleConn.
func (hs Handlers) HandleConn(ev *ConnEvent) {
	for _, h := range hs {
		h.HandleConn(ev)
	}
}

// HandleProxy calls every handler's HandleProxy.
func (hs Handlers) HandleProxy(ev *ProxyEvent) {
	for _, h := range hs {
		h.HandleProxy(ev)
	}
}

// codes maps every status the core reports in RPCEnd.Status (the server's
// wire statuses and what a client says kept a response from arriving) to
// its code.
var codes = map[string]string{
	"ok":                "ok",
	"service error":     "service_error",
	"unknown service":   "unknown_service",
	"unknown method":    "unknown_method",
	"bad request":       "bad_request",
	"shutting down":     "shutting_down",
	"internal error":    "internal",
	"overloaded":        "overloaded",
	"unauthenticated":   "unauthenticated",
	"too large":         "too_large",
	"refused":           "refused",
	"aborted":           "aborted",
	"deadline exceeded": "deadline_exceeded",
	"canceled":          "canceled",
	"dial failed":       "dial_failed",
	"connection closed": "conn_closed",
	"error":             "error",
}

// Code returns the outcome as one snake_case word, the value metrics and
// traces label it with: "ok", "service_error", "unknown_service",
// "unknown_method", "bad_request", "shutting_down", "internal",
// "overloaded", "unauthenticated", "too_large", "refused", "aborted" (a
// stream reset before its method returned),
// "deadline_exceeded", "canceled", "dial_failed", "conn_closed", or "error"
// for anything else. It is the one place that names outcomes, so a
// dashboard reads the same words on both sides of a call.
func (e *RPCEnd) Code() string {
	if c, ok := codes[e.Status]; ok {
		return c
	}
	if e.Status == "" && e.Err == nil {
		return "ok"
	}
	return "error"
}
