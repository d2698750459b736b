package otel_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"

	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/shoalrpc/shoal/consumer"
	"github.com/shoalrpc/shoal/internal/servetest"
	"github.com/shoalrpc/shoal/naming"
	shoalotel "github.com/shoalrpc/shoal/observability/otel"
	"github.com/shoalrpc/shoal/provider"
)

// Counter is the stream service of these tests.
type Counter struct{ seen chan trace.SpanContext }

// Count sends 1..n, under the span its context holds; a negative n fails
// after one message.
func (c *Counter) Count(ctx context.Context, n int, s *provider.ServerStream[int]) error {
	c.seen <- trace.SpanContextFromContext(ctx)
	if n < 0 {
		one := 1
		if err := s.Send(&one); err != nil {
			return err
		}
		return errors.New("counting backwards")
	}
	for i := 1; i <= n; i++ {
		if err := s.Send(&i); err != nil {
			return err
		}
	}
	return nil
}

// serveCounter starts a server of Counter with the server handler on tp.
func serveCounter(t *testing.T, tp trace.TracerProvider) (string, chan trace.SpanContext) {
	t.Helper()
	srv := provider.NewServer(provider.WithLogger(slog.New(slog.DiscardHandler)),
		provider.WithStatsHandler(shoalotel.ServerHandler(shoalotel.WithTracerProvider(tp))))
	svc := &Counter{seen: make(chan trace.SpanContext, 10)}
	if err := srv.Register(svc); err != nil {
		t.Fatal(err)
	}
	addr := servetest.Start(t, srv)
	return "tcp@" + addr, svc.seen
}

// drain receives a stream to its end and returns the messages and how it
// ended (nil for a clean end).
func drain(s *consumer.RecvStream[int]) (int, error) {
	n := 0
	for {
		_, err := s.Recv()
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if err != nil {
			return n, err
		}
		n++
	}
}

// TestStreamSpans: a server stream opened by a Client under a parent span
// is a CLIENT span, the server's stream a SERVER span, its child in the
// same trace, under which the method runs; both end when the stream ends,
// with its outcome: ok for a clean end, an error for the method's.
func TestStreamSpans(t *testing.T) {
	serverTP, serverSpans := newProvider(t)
	clientTP, clientSpans := newProvider(t)
	addr, seenBy := serveCounter(t, serverTP)
	c, err := consumer.Dial(addr, consumer.WithStatsHandler(shoalotel.ClientHandler(shoalotel.WithTracerProvider(clientTP))))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	ctx, root := clientTP.Tracer("test").Start(context.Background(), "root")
	s, err := consumer.OpenServerStream[int](ctx, c, "Counter.Count", 3)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := drain(s); n != 3 || err != nil {
		t.Fatalf("stream: %d messages, %v", n, err)
	}
	root.End()
	cs := clientSpans.wait(t, 2)
	call := byKind(t, cs, trace.SpanKindClient, 0)
	ss := serverSpans.wait(t, 1)[0]
	ran := <-seenBy
	switch {
	case call.Parent().SpanID() != root.SpanContext().SpanID():
		t.Errorf("the stream's parent is %v, want the root %v", call.Parent().SpanID(), root.SpanContext().SpanID())
	case ss.SpanKind() != trace.SpanKindServer:
		t.Errorf("the server's stream span is %v", ss.SpanKind())
	case ss.Parent().SpanID() != call.SpanContext().SpanID() || ss.SpanContext().TraceID() != root.SpanContext().TraceID() || !ss.Parent().IsRemote():
		t.Errorf("the server span's parent is %v in trace %v, want the stream's %v in trace %v", ss.Parent(), ss.SpanContext().TraceID(), call.SpanContext().SpanID(), root.SpanContext().TraceID())
	case ran.SpanID() != ss.SpanContext().SpanID():
		t.Errorf("the method ran under span %v, not the server's %v", ran.SpanID(), ss.SpanContext().SpanID())
	}
	for _, s := range []sdktrace.ReadOnlySpan{call, ss} {
		if s.Name() != "Counter/Count" || attr(s, "rpc.method").AsString() != "Count" || attr(s, "rpc.service").AsString() != "Counter" ||
			attr(s, shoalotel.StatusCodeKey).AsString() != "ok" || s.Status().Code == codes.Error {
			t.Errorf("span %s %v: attributes %v, status %v", s.Name(), s.SpanKind(), s.Attributes(), s.Status())
		}
	}

	// The method's error ends both spans as errors.
	s, err = consumer.OpenServerStream[int](context.Background(), c, "Counter.Count", -1)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := drain(s); n != 1 || err == nil {
		t.Fatalf("failing stream: %d messages, %v", n, err)
	}
	<-seenBy
	failed, sfailed := clientSpans.wait(t, 1)[0], serverSpans.wait(t, 1)[0]
	for _, s := range []sdktrace.ReadOnlySpan{failed, sfailed} {
		if s.Status().Code != codes.Error || attr(s, shoalotel.StatusCodeKey).AsString() != "service_error" {
			t.Errorf("failed stream's span %s %v: status %v, attributes %v", s.Name(), s.SpanKind(), s.Status(), s.Attributes())
		}
	}
	if sfailed.Parent().SpanID() != failed.SpanContext().SpanID() {
		t.Errorf("the failed stream's server span's parent is %v, want %v", sfailed.Parent().SpanID(), failed.SpanContext().SpanID())
	}
}

// TestProxyStreamSpans: a stream opened through a ClientProxy is an
// INTERNAL span for the logical stream and a CLIENT span for the attempt
// that opened it on an instance, with the instance's address; the server's
// span is that attempt's child.
func TestProxyStreamSpans(t *testing.T) {
	serverTP, serverSpans := newProvider(t)
	addr, _ := serveCounter(t, serverTP)
	reg := naming.NewMemory()
	defer reg.Close()
	if _, err := reg.Register(context.Background(), &naming.Instance{ID: "1", Service: "counter", Addr: addr}); err != nil {
		t.Fatal(err)
	}
	clientTP, clientSpans := newProvider(t)
	p, err := consumer.NewClientProxy("counter", reg,
		consumer.WithStatsHandler(shoalotel.ClientHandler(shoalotel.WithTracerProvider(clientTP))),
		consumer.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()

	ctx, root := clientTP.Tracer("test").Start(context.Background(), "root")
	s, err := consumer.OpenServerStream[int](ctx, p, "Counter.Count", 2)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := drain(s); n != 2 || err != nil {
		t.Fatalf("stream: %d messages, %v", n, err)
	}
	root.End()
	cs := clientSpans.wait(t, 3) // root, the stream, its attempt
	call := byKind(t, cs, trace.SpanKindInternal, 0)
	attempt := byKind(t, cs, trace.SpanKindClient, 1)
	ss := serverSpans.wait(t, 1)[0]
	switch {
	case call.Parent().SpanID() != root.SpanContext().SpanID() || attr(call, shoalotel.RegistryServiceKey).AsString() != "counter":
		t.Errorf("the stream's span: parent %v, attributes %v", call.Parent().SpanID(), call.Attributes())
	case attempt.Parent().SpanID() != call.SpanContext().SpanID():
		t.Errorf("the attempt's parent is %v, not the stream's %v", attempt.Parent().SpanID(), call.SpanContext().SpanID())
	case attr(attempt, "server.port").AsInt64() != portOf(t, addr):
		t.Errorf("the attempt's address: %v", attempt.Attributes())
	case ss.Parent().SpanID() != attempt.SpanContext().SpanID() || ss.SpanContext().TraceID() != root.SpanContext().TraceID():
		t.Errorf("the server span's parent is %v, want the attempt %v (%s)", ss.Parent().SpanID(), attempt.SpanContext().SpanID(), names(cs))
	}
	for _, s := range []sdktrace.ReadOnlySpan{call, attempt, ss} {
		if attr(s, shoalotel.StatusCodeKey).AsString() != "ok" || s.Status().Code == codes.Error {
			t.Errorf("span %s %v: attributes %v, status %v", s.Name(), s.SpanKind(), s.Attributes(), s.Status())
		}
	}
}

// TestAbandonedStreamSpans: a stream the caller closes before its end ends
// its client span "canceled" and the server's "aborted": the method's
// error (its Send failed) is not the method's own failure.
func TestAbandonedStreamSpans(t *testing.T) {
	serverTP, serverSpans := newProvider(t)
	clientTP, clientSpans := newProvider(t)
	addr, seenBy := serveCounter(t, serverTP)
	c, err := consumer.Dial(addr, consumer.WithStatsHandler(shoalotel.ClientHandler(shoalotel.WithTracerProvider(clientTP))))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := consumer.OpenServerStream[int](context.Background(), c, "Counter.Count", 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Recv(); err != nil {
		t.Fatal(err)
	}
	<-seenBy
	s.Close()
	cs, ss := clientSpans.wait(t, 1)[0], serverSpans.wait(t, 1)[0]
	if got := attr(cs, shoalotel.StatusCodeKey).AsString(); got != "canceled" {
		t.Errorf("the abandoned stream's client span ended %q (%v), want canceled", got, cs.Status())
	}
	if got := attr(ss, shoalotel.StatusCodeKey).AsString(); got != "aborted" {
		t.Errorf("the abandoned stream's server span ended %q (%v), want aborted", got, ss.Status())
	}
}
