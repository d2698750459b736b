package otel_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/baggage"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/goleak"

	"github.com/shoalrpc/shoal/consumer"
	"github.com/shoalrpc/shoal/internal/servetest"
	"github.com/shoalrpc/shoal/naming"
	shoalotel "github.com/shoalrpc/shoal/observability/otel"
	"github.com/shoalrpc/shoal/protocol"
	"github.com/shoalrpc/shoal/provider"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// seen is what a method saw of its context: its span and the baggage and
// metadata it was called with.
type seen struct {
	span     trace.SpanContext
	tenant   string
	metadata map[string]string
}

// Echo is the test service; it reports what its context held.
type Echo struct {
	seen  chan seen
	holds *atomic.Int64 // Hold calls, across the servers sharing it
}

// Hold answers at once, except the first call of all, which answers when
// its context ends: a slow instance to hedge against.
func (e *Echo) Hold(ctx context.Context, s string, reply *string) error {
	if e.holds.Add(1) == 1 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Second):
		}
	}
	*reply = s
	return nil
}

// Say answers its argument.
func (e *Echo) Say(ctx context.Context, s string, reply *string) error {
	e.seen <- seen{trace.SpanContextFromContext(ctx), baggage.FromContext(ctx).Member("tenant").Value(), provider.Metadata(ctx)}
	*reply = s
	return nil
}

// Fail fails.
func (e *Echo) Fail(_ context.Context, _ string, _ *string) error { return errors.New("no") }

// recorder collects ended spans and lets a test wait for them: a server's
// span ends after the caller has its reply.
type recorder struct{ ended chan sdktrace.ReadOnlySpan }

func (r *recorder) OnStart(context.Context, sdktrace.ReadWriteSpan) {}
func (r *recorder) OnEnd(s sdktrace.ReadOnlySpan)                   { r.ended <- s }
func (r *recorder) Shutdown(context.Context) error                  { return nil }
func (r *recorder) ForceFlush(context.Context) error                { return nil }

// newProvider returns a tracer provider whose ended spans go to the
// returned recorder.
func newProvider(t *testing.T) (*sdktrace.TracerProvider, *recorder) {
	r := &recorder{ended: make(chan sdktrace.ReadOnlySpan, 100)}
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(r))
	t.Cleanup(func() { tp.Shutdown(context.Background()) })
	return tp, r
}

// wait returns the next n spans to end.
func (r *recorder) wait(t *testing.T, n int) []sdktrace.ReadOnlySpan {
	t.Helper()
	var spans []sdktrace.ReadOnlySpan
	timeout := time.After(20 * time.Second)
	for len(spans) < n {
		select {
		case s := <-r.ended:
			spans = append(spans, s)
		case <-timeout:
			t.Fatalf("%d of %d spans ended", len(spans), n)
		}
	}
	return spans
}

// serve starts a server of Echo with opts and returns its registry address
// and what its method sees.
func serve(t *testing.T, opts ...provider.Option) (string, chan seen) {
	return serveHolds(t, new(atomic.Int64), opts...)
}

// serveHolds is serve with a count of Hold calls shared by several servers.
func serveHolds(t *testing.T, holds *atomic.Int64, opts ...provider.Option) (string, chan seen) {
	t.Helper()
	srv := provider.NewServer(opts...)
	svc := &Echo{seen: make(chan seen, 100), holds: holds}
	if err := srv.Register(svc); err != nil {
		t.Fatal(err)
	}
	addr := servetest.Start(t, srv)
	return "tcp@" + addr, svc.seen
}

func attr(s sdktrace.ReadOnlySpan, key attribute.Key) attribute.Value {
	for _, kv := range s.Attributes() {
		if kv.Key == key {
			return kv.Value
		}
	}
	return attribute.Value{}
}

// byKind picks the one span of kind (and, if attempt > 0, of that attempt).
func byKind(t *testing.T, spans []sdktrace.ReadOnlySpan, kind trace.SpanKind, attempt int) sdktrace.ReadOnlySpan {
	t.Helper()
	var found []sdktrace.ReadOnlySpan
	for _, s := range spans {
		if s.Name() != "root" && s.SpanKind() == kind && (attempt == 0 || attr(s, shoalotel.AttemptKey).AsInt64() == int64(attempt)) {
			found = append(found, s)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%d spans of kind %v, attempt %d, want 1: %v", len(found), kind, attempt, names(spans))
	}
	return found[0]
}

func names(spans []sdktrace.ReadOnlySpan) string {
	var out []string
	for _, s := range spans {
		out = append(out, fmt.Sprintf("%s(%v %v parent %v)", s.Name(), s.SpanKind(), s.SpanContext().SpanID(), s.Parent().SpanID()))
	}
	return strings.Join(out, ", ")
}

// portOf returns the port of a "tcp@host:port" address.
func portOf(t *testing.T, addr string) int64 {
	_, port, err := net.SplitHostPort(strings.TrimPrefix(addr, "tcp@"))
	if err != nil {
		t.Fatal(err)
	}
	var p int64
	fmt.Sscan(port, &p)
	return p
}

// TestClientCallLinks: a Client's call under a parent span is its child,
// the server's span is the call's child in the same trace, the method runs
// under the server's span with the caller's baggage and metadata, and both
// spans carry the RPC attributes; a failed call's spans are errors.
func TestClientCallLinks(t *testing.T) {
	serverTP, serverSpans := newProvider(t)
	clientTP, clientSpans := newProvider(t)
	addr, seenBy := serve(t, provider.WithStatsHandler(shoalotel.ServerHandler(shoalotel.WithTracerProvider(serverTP))))
	c, err := consumer.Dial(addr, consumer.WithStatsHandler(shoalotel.ClientHandler(shoalotel.WithTracerProvider(clientTP))))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	ctx, root := clientTP.Tracer("test").Start(context.Background(), "root")
	member, _ := baggage.NewMember("tenant", "acme")
	bag, _ := baggage.New(member)
	ctx = baggage.ContextWithBaggage(ctx, bag)
	ctx = consumer.WithMetadata(ctx, map[string]string{"request-id": "7"})
	var out string
	if err := c.Call(ctx, "Echo.Say", "hi", &out); err != nil || out != "hi" {
		t.Fatalf("Call: %q, %v", out, err)
	}
	root.End()

	cs := clientSpans.wait(t, 2)
	call := byKind(t, cs, trace.SpanKindClient, 0)
	ss := serverSpans.wait(t, 1)[0]
	got := <-seenBy
	switch {
	case call.Parent().SpanID() != root.SpanContext().SpanID():
		t.Errorf("the call's parent is %v, want the root %v", call.Parent().SpanID(), root.SpanContext().SpanID())
	case ss.Parent().SpanID() != call.SpanContext().SpanID() || ss.SpanContext().TraceID() != root.SpanContext().TraceID():
		t.Errorf("the server span's parent is %v in trace %v, want the call %v in trace %v", ss.Parent(), ss.SpanContext().TraceID(), call.SpanContext().SpanID(), root.SpanContext().TraceID())
	case !ss.Parent().IsRemote():
		t.Error("the server span's parent is not remote")
	case got.span.SpanID() != ss.SpanContext().SpanID():
		t.Errorf("the method ran under span %v, not the server's %v", got.span.SpanID(), ss.SpanContext().SpanID())
	case got.tenant != "acme":
		t.Errorf("the method's baggage has tenant %q, want acme", got.tenant)
	case got.metadata["request-id"] != "7" || got.metadata["traceparent"] == "":
		t.Errorf("the method's metadata is %v, want request-id and traceparent", got.metadata)
	}
	for _, s := range []sdktrace.ReadOnlySpan{call, ss} {
		if s.Name() != "Echo/Say" || attr(s, "rpc.system").AsString() != "shoal" || attr(s, "rpc.service").AsString() != "Echo" ||
			attr(s, "rpc.method").AsString() != "Say" || attr(s, shoalotel.StatusCodeKey).AsString() != "ok" || s.Status().Code == codes.Error {
			t.Errorf("span %s %v: attributes %v, status %v", s.Name(), s.SpanKind(), s.Attributes(), s.Status())
		}
	}
	if attr(call, "server.address").AsString() != "127.0.0.1" || attr(call, "server.port").AsInt64() != portOf(t, addr) {
		t.Errorf("the call's server address: %v", call.Attributes())
	}
	if attr(ss, "network.peer.address").AsString() != "127.0.0.1" {
		t.Errorf("the server span's peer address: %v", ss.Attributes())
	}

	if err := c.Call(context.Background(), "Echo.Fail", "", &out); err == nil {
		t.Fatal("Fail succeeded")
	}
	failed := clientSpans.wait(t, 1)[0]
	sfailed := serverSpans.wait(t, 1)[0]
	for _, s := range []sdktrace.ReadOnlySpan{failed, sfailed} {
		if s.Status().Code != codes.Error || attr(s, shoalotel.StatusCodeKey).AsString() != "service_error" ||
			len(s.Events()) != 1 || s.Events()[0].Name != "exception" {
			t.Errorf("failed span %s %v: status %v, attributes %v, events %v", s.Name(), s.SpanKind(), s.Status(), s.Attributes(), s.Events())
		}
	}
	if failed.Parent().IsValid() || sfailed.Parent().SpanID() != failed.SpanContext().SpanID() {
		t.Errorf("a call without a parent: %v, its server span's parent %v", names([]sdktrace.ReadOnlySpan{failed}), sfailed.Parent().SpanID())
	}
}

// TestFailoverAttemptSpans: a Failover call whose first attempt is refused
// has one call span and two sibling attempt spans under it, each with its
// instance's address, and each server's span is the child of the attempt
// that went to that server.
func TestFailoverAttemptSpans(t *testing.T) {
	var requests atomic.Int64
	refuseFirst := func(ctx context.Context, info *provider.RequestInfo, args any, next provider.Handler) (any, error) {
		if requests.Add(1) == 1 {
			return nil, provider.Refuse(protocol.StatusOverloaded, errors.New("busy"))
		}
		return next(ctx, args)
	}
	tpA, spansA := newProvider(t)
	tpB, spansB := newProvider(t)
	addrA, _ := serve(t, provider.WithInterceptors(refuseFirst), provider.WithStatsHandler(shoalotel.ServerHandler(shoalotel.WithTracerProvider(tpA))))
	addrB, _ := serve(t, provider.WithInterceptors(refuseFirst), provider.WithStatsHandler(shoalotel.ServerHandler(shoalotel.WithTracerProvider(tpB))))
	reg := naming.NewMemory()
	defer reg.Close()
	for i, addr := range []string{addrA, addrB} {
		if _, err := reg.Register(context.Background(), &naming.Instance{ID: fmt.Sprint(i), Service: "echo", Addr: addr}); err != nil {
			t.Fatal(err)
		}
	}
	clientTP, clientSpans := newProvider(t)
	p, err := consumer.NewClientProxy("echo", reg, consumer.WithFailMode(consumer.Failover),
		consumer.WithStatsHandler(shoalotel.ClientHandler(shoalotel.WithTracerProvider(clientTP))),
		consumer.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()

	ctx, root := clientTP.Tracer("test").Start(context.Background(), "root")
	var out string
	if err := p.Call(ctx, "Echo.Say", "hi", &out); err != nil {
		t.Fatal(err)
	}
	root.End()
	cs := clientSpans.wait(t, 4) // root, call, two attempts
	call := byKind(t, cs, trace.SpanKindInternal, 0)
	first, second := byKind(t, cs, trace.SpanKindClient, 1), byKind(t, cs, trace.SpanKindClient, 2)
	if call.Parent().SpanID() != root.SpanContext().SpanID() || attr(call, shoalotel.RegistryServiceKey).AsString() != "echo" {
		t.Errorf("call span: parent %v, attributes %v", call.Parent().SpanID(), call.Attributes())
	}
	for _, a := range []sdktrace.ReadOnlySpan{first, second} {
		if a.Parent().SpanID() != call.SpanContext().SpanID() {
			t.Errorf("attempt %v's parent is %v, not the call %v", attr(a, shoalotel.AttemptKey), a.Parent().SpanID(), call.SpanContext().SpanID())
		}
	}
	if attr(first, shoalotel.StatusCodeKey).AsString() != "overloaded" || first.Status().Code != codes.Error ||
		attr(second, shoalotel.StatusCodeKey).AsString() != "ok" || !attr(second, shoalotel.RetryKey).AsBool() {
		t.Errorf("attempts: first %v %v, second %v", first.Attributes(), first.Status(), second.Attributes())
	}
	// Each server's one span is the child of the attempt sent to its port.
	for _, srv := range []struct {
		addr  string
		spans *recorder
	}{{addrA, spansA}, {addrB, spansB}} {
		s := srv.spans.wait(t, 1)[0]
		var parent sdktrace.ReadOnlySpan
		for _, a := range []sdktrace.ReadOnlySpan{first, second} {
			if a.SpanContext().SpanID() == s.Parent().SpanID() {
				parent = a
			}
		}
		if parent == nil {
			t.Errorf("server %s: its span's parent %v is no attempt (%s)", srv.addr, s.Parent().SpanID(), names(cs))
			continue
		}
		if attr(parent, "server.port").AsInt64() != portOf(t, srv.addr) {
			t.Errorf("server %s's span is the child of the attempt to port %v", srv.addr, attr(parent, "server.port"))
		}
		if want := attr(parent, shoalotel.StatusCodeKey).AsString(); attr(s, shoalotel.StatusCodeKey).AsString() != want {
			t.Errorf("server %s's span ended %v, its attempt %v", srv.addr, attr(s, shoalotel.StatusCodeKey), want)
		}
	}
}

// TestUnknownMethodSpanName: a request for a method the server lacks does
// not name a span after what the peer sent.
func TestUnknownMethodSpanName(t *testing.T) {
	tp, spans := newProvider(t)
	addr, _ := serve(t, provider.WithStatsHandler(shoalotel.ServerHandler(shoalotel.WithTracerProvider(tp))))
	c, err := consumer.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Call(context.Background(), "Echo.Whatever123", "", nil); !errors.Is(err, consumer.ErrUnknownMethod) {
		t.Fatalf("Call: %v", err)
	}
	s := spans.wait(t, 1)[0]
	if s.Name() != "shoal/_OTHER" || attr(s, "rpc.method_original").AsString() != "Echo.Whatever123" {
		t.Errorf("span %q, attributes %v", s.Name(), s.Attributes())
	}
}

// TestHedgeSpans: a Failbackup call whose first attempt is slow has two
// sibling attempt spans under its call span, one marked a hedge, each with
// its own instance's address; the one that lost ends canceled.
func TestHedgeSpans(t *testing.T) {
	holds := new(atomic.Int64)
	addrA, _ := serveHolds(t, holds)
	addrB, _ := serveHolds(t, holds)
	reg := naming.NewMemory()
	defer reg.Close()
	for i, addr := range []string{addrA, addrB} {
		if _, err := reg.Register(context.Background(), &naming.Instance{ID: fmt.Sprint(i), Service: "echo", Addr: addr}); err != nil {
			t.Fatal(err)
		}
	}
	tp, spans := newProvider(t)
	p, err := consumer.NewClientProxy("echo", reg, consumer.WithFailMode(consumer.Failbackup),
		consumer.WithIdempotent("Echo.Hold"), consumer.WithHedging(10*time.Millisecond),
		consumer.WithStatsHandler(shoalotel.ClientHandler(shoalotel.WithTracerProvider(tp))),
		consumer.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	var out string
	if err := p.Call(context.Background(), "Echo.Hold", "hi", &out); err != nil {
		t.Fatal(err)
	}
	cs := spans.wait(t, 3)
	call := byKind(t, cs, trace.SpanKindInternal, 0)
	var hedge, slow sdktrace.ReadOnlySpan // slow: the first attempt
	for _, s := range cs {
		if s.SpanKind() != trace.SpanKindClient {
			continue
		}
		if s.Parent().SpanID() != call.SpanContext().SpanID() {
			t.Errorf("attempt %v's parent is %v, not the call", s.Attributes(), s.Parent().SpanID())
		}
		if attr(s, shoalotel.HedgeKey).AsBool() {
			hedge = s
		} else {
			slow = s
		}
	}
	if hedge == nil || slow == nil {
		t.Fatalf("no hedge and first attempt among %s", names(cs))
	}
	// Whichever request reached a server first was held: usually the first
	// attempt's, but on a loaded machine it may be the hedge's.
	codes := []string{attr(slow, shoalotel.StatusCodeKey).AsString(), attr(hedge, shoalotel.StatusCodeKey).AsString()}
	if !slices.Equal(codes, []string{"canceled", "ok"}) && !slices.Equal(codes, []string{"ok", "canceled"}) {
		t.Errorf("the first attempt ended %v, the hedge %v: want one ok and one canceled", codes[0], codes[1])
	}
	if attr(hedge, "server.port") == attr(slow, "server.port") {
		t.Errorf("both attempts went to port %v", attr(hedge, "server.port"))
	}
}
