// Package otel traces shoal calls with OpenTelemetry. It is a pair of stats
// handlers, one option on each side:
//
//	provider.NewServer(provider.WithStatsHandler(shoalotel.ServerHandler()))
//	consumer.Dial(addr, consumer.WithStatsHandler(shoalotel.ClientHandler()))
//
// A Client's call is one CLIENT span. A ClientProxy's logical call is an
// INTERNAL span, and each of its attempts a CLIENT span under it, so retries
// and hedges show as siblings, each with the address of the instance it
// went to. A server's request is a SERVER span, the child of the attempt
// (or call) that sent it, and the method runs under it: spans the method
// starts, and calls it makes, are its children.
//
// A stream is traced as a call is: its spans begin when it opens and end
// with its last frame, with the stream's outcome ("ok", the method's
// "service_error", "canceled" when the caller closed it early, "aborted" on
// the server when it was reset before its method returned). Through a
// ClientProxy, the open that reached an instance is the attempt, and the
// stream stays on it.
//
// Spans follow OpenTelemetry's RPC semantic conventions: named
// "Service/Method", with rpc.system "shoal", rpc.service, rpc.method,
// server.address and server.port (client spans), network.peer.address and
// network.peer.port (server spans) and rpc.shoal.status_code, shoal's
// outcome in one word (stats.RPCEnd.Code). A failed call's span has status
// Error, error.type set to that word, and the error recorded as an event.
// Attempt spans add shoal.attempt (1, 2, …), shoal.retry and shoal.hedge;
// a proxy's spans add shoal.registry_service, the registry's service name.
//
// Trace context (W3C traceparent and tracestate) and baggage travel in the
// call's metadata, next to what consumer.WithMetadata set; the server
// continues the trace and puts the baggage in the method's context.
//
// The package uses only the OpenTelemetry API: install any SDK and exporter
// with otel.SetTracerProvider, or give one with WithTracerProvider.
package otel

import (
	"context"
	"net"
	"strconv"
	"strings"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/shoalrpc/shoal/consumer"
	"github.com/shoalrpc/shoal/provider"
	"github.com/shoalrpc/shoal/stats"
)

// ScopeName is the instrumentation scope of shoal's spans: the name the
// tracer is obtained under.
const ScopeName = "github.com/shoalrpc/shoal/observability/otel"

// The attributes of shoal's spans, beyond the semantic conventions' own.
const (
	// StatusCodeKey is the outcome in one word: "ok", "service_error",
	// "unknown_method", … (stats.RPCEnd.Code).
	StatusCodeKey = attribute.Key("rpc.shoal.status_code")
	// AttemptKey numbers a ClientProxy call's attempts: 1, 2, ….
	AttemptKey = attribute.Key("shoal.attempt")
	// RetryKey marks an attempt made after an earlier one failed.
	RetryKey = attribute.Key("shoal.retry")
	// HedgeKey marks an attempt sent while an earlier one still ran.
	HedgeKey = attribute.Key("shoal.hedge")
	// RegistryServiceKey is a ClientProxy's service, as the registry names it.
	RegistryServiceKey = attribute.Key("shoal.registry_service")
)

// The semantic conventions' attributes shoal's spans carry.
const (
	rpcSystemKey   = attribute.Key("rpc.system")
	rpcServiceKey  = attribute.Key("rpc.service")
	rpcMethodKey   = attribute.Key("rpc.method")
	serverAddrKey  = attribute.Key("server.address")
	serverPortKey  = attribute.Key("server.port")
	peerAddrKey    = attribute.Key("network.peer.address")
	peerPortKey    = attribute.Key("network.peer.port")
	errorTypeKey   = attribute.Key("error.type")
	otherMethodKey = attribute.Key("rpc.method_original")
)

var (
	rpcSystem = rpcSystemKey.String("shoal")
	// The span kinds as start options, made once.
	clientKind   = trace.WithSpanKind(trace.SpanKindClient)
	internalKind = trace.WithSpanKind(trace.SpanKindInternal)
	serverKind   = trace.WithSpanKind(trace.SpanKindServer)
)

// Option configures a handler.
type Option func(*config)

type config struct {
	tp          trace.TracerProvider
	propagators propagation.TextMapPropagator
}

// WithTracerProvider makes spans with tp (default: otel.GetTracerProvider(),
// the global one, read when the handler is made).
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(c *config) {
		if tp != nil {
			c.tp = tp
		}
	}
}

// WithPropagators carries context across calls with p (default: W3C trace
// context and baggage, whatever the global propagator is, so that traces
// join up without further setup).
func WithPropagators(p propagation.TextMapPropagator) Option {
	return func(c *config) {
		if p != nil {
			c.propagators = p
		}
	}
}

func newConfig(opts []Option) config {
	c := config{propagators: propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})}
	for _, o := range opts {
		o(&c)
	}
	if c.tp == nil {
		c.tp = otel.GetTracerProvider()
	}
	return c
}

// ClientHandler returns the stats handler that traces the calls and
// attempts of Clients, pools and ClientProxies: install it with
// consumer.WithStatsHandler.
func ClientHandler(opts ...Option) stats.Handler {
	c := newConfig(opts)
	return &clientHandler{tracer: c.tp.Tracer(ScopeName), propagators: c.propagators}
}

// ServerHandler returns the stats handler that traces a server's requests:
// install it with provider.WithStatsHandler.
func ServerHandler(opts ...Option) stats.Handler {
	c := newConfig(opts)
	return &serverHandler{tracer: c.tp.Tracer(ScopeName), propagators: c.propagators}
}

// spanKey holds the span a handler began, for its RPCEnd: the context's
// current span may be another handler's by then.
type spanKey struct{}

type clientHandler struct {
	stats.Base
	tracer      trace.Tracer
	propagators propagation.TextMapPropagator
}

// RPCBegin starts the span of a call or an attempt; one that goes on the
// wire carries the trace context in the call's metadata.
func (h *clientHandler) RPCBegin(ctx context.Context, info *stats.RPCInfo) context.Context {
	kind, wire := clientKind, true
	switch {
	case info.Kind == stats.Call && info.Service != "":
		kind, wire = internalKind, false // a proxy's logical call: its attempts go on the wire
	case info.Kind != stats.Call && info.Kind != stats.Attempt:
		return ctx
	}
	svc, method := split(info.Method)
	ctx, span := h.tracer.Start(ctx, spanName(svc, method), kind)
	if span.IsRecording() {
		attrs := make([]attribute.KeyValue, 0, 9)
		attrs = append(attrs, rpcSystem, rpcServiceKey.String(svc), rpcMethodKey.String(method))
		if info.Service != "" {
			attrs = append(attrs, RegistryServiceKey.String(info.Service))
		}
		if info.Kind == stats.Attempt {
			attrs = append(attrs, AttemptKey.Int(info.Attempt), RetryKey.Bool(info.Retry), HedgeKey.Bool(info.Hedge))
		}
		if wire {
			attrs = appendAddr(attrs, serverAddrKey, serverPortKey, info.Addr)
		}
		span.SetAttributes(attrs...)
	}
	ctx = context.WithValue(ctx, spanKey{}, span)
	if wire {
		ctx = h.inject(ctx)
	}
	return ctx
}

// inject adds the trace context and baggage of ctx to the call's metadata.
func (h *clientHandler) inject(ctx context.Context) context.Context {
	old := consumer.OutgoingMetadata(ctx)
	md := make(propagation.MapCarrier, len(old)+3)
	for k, v := range old {
		md[k] = v
	}
	h.propagators.Inject(ctx, md)
	if len(md) == len(old) {
		return ctx
	}
	return consumer.WithMetadata(ctx, md)
}

// RPCEnd ends the span with the outcome.
func (h *clientHandler) RPCEnd(ctx context.Context, info *stats.RPCInfo, end *stats.RPCEnd) {
	finish(ctx, end)
}

type serverHandler struct {
	stats.Base
	tracer      trace.Tracer
	propagators propagation.TextMapPropagator
}

// RPCBegin continues the caller's trace with the request's span, and puts
// the caller's baggage in the context the method runs under.
func (h *serverHandler) RPCBegin(ctx context.Context, info *stats.RPCInfo) context.Context {
	if info.Kind != stats.Request {
		return ctx
	}
	if md := provider.Metadata(ctx); len(md) > 0 {
		ctx = h.propagators.Extract(ctx, propagation.MapCarrier(md))
	}
	svc, method := split(info.Method)
	ctx, span := h.tracer.Start(ctx, spanName(svc, method), serverKind)
	if span.IsRecording() {
		attrs := make([]attribute.KeyValue, 0, 5)
		attrs = append(attrs, rpcSystem, rpcServiceKey.String(svc), rpcMethodKey.String(method))
		span.SetAttributes(appendAddr(attrs, peerAddrKey, peerPortKey, info.Addr)...)
	}
	return context.WithValue(ctx, spanKey{}, span)
}

// RPCEnd ends the request's span. A request for a method the server does
// not have is renamed "shoal/_OTHER", so that what a peer sends cannot
// multiply span names; rpc.method_original keeps the name it asked for.
func (h *serverHandler) RPCEnd(ctx context.Context, info *stats.RPCInfo, end *stats.RPCEnd) {
	if info.Kind != stats.Request {
		return
	}
	switch end.Code() {
	case "unknown_method", "unknown_service", "bad_request":
		if span, ok := ctx.Value(spanKey{}).(trace.Span); ok {
			span.SetName("shoal/_OTHER")
			span.SetAttributes(otherMethodKey.String(info.Method))
		}
	}
	finish(ctx, end)
}

// finish ends the span of ctx with end's outcome.
func finish(ctx context.Context, end *stats.RPCEnd) {
	span, ok := ctx.Value(spanKey{}).(trace.Span)
	if !ok {
		return
	}
	if !span.IsRecording() {
		span.End()
		return
	}
	code := end.Code()
	span.SetAttributes(StatusCodeKey.String(code))
	if end.Err != nil {
		span.SetAttributes(errorTypeKey.String(code))
		span.RecordError(end.Err)
		span.SetStatus(codes.Error, end.Err.Error())
	}
	span.End()
}

// spanName is the semantic conventions' span name, "Service/Method".
func spanName(svc, method string) string { return svc + "/" + method }

// split cuts "Service.Method" in two; a name without a dot is all method.
func split(name string) (service, method string) {
	if dot := strings.LastIndexByte(name, '.'); dot >= 0 {
		return name[:dot], name[dot+1:]
	}
	return "", name
}

// appendAddr adds an address ("tcp@host:port", "unix@/path" or
// "host:port") as host and port attributes.
func appendAddr(attrs []attribute.KeyValue, hostKey, portKey attribute.Key, addr string) []attribute.KeyValue {
	if addr == "" {
		return attrs
	}
	network, rest, found := strings.Cut(addr, "@")
	if !found {
		network, rest = "tcp", addr
	}
	if network != "tcp" && !strings.HasPrefix(network, "tcp") {
		return append(attrs, hostKey.String(rest))
	}
	host, port, err := net.SplitHostPort(rest)
	if err != nil {
		return append(attrs, hostKey.String(rest))
	}
	attrs = append(attrs, hostKey.String(host))
	if p, err := strconv.Atoi(port); err == nil {
		attrs = append(attrs, portKey.Int(p))
	}
	return attrs
}
