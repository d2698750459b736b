package provider_test

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/shoalrpc/shoal/consumer"
	"github.com/shoalrpc/shoal/health"
	"github.com/shoalrpc/shoal/naming"
	"github.com/shoalrpc/shoal/protocol"
	"github.com/shoalrpc/shoal/provider"
)

// Blocker's Wait runs until release is closed, to hold a request in flight.
type Blocker struct {
	started chan struct{}
	release chan struct{}
}

// Wait signals it started and returns once released.
func (b *Blocker) Wait(ctx context.Context, _ int, out *int) error {
	b.started <- struct{}{}
	<-b.release
	*out = 1
	return nil
}

// startHealthServer serves a Blocker under "Blocker", registered as
// service "blocker" in a memory registry, and returns its address
// ("tcp@host:port").
func startHealthServer(t *testing.T, opts ...provider.Option) (*provider.Server, *Blocker, string) {
	t.Helper()
	b := &Blocker{started: make(chan struct{}, 8), release: make(chan struct{})}
	opts = append([]provider.Option{
		provider.WithLogger(slog.New(slog.DiscardHandler)),
		provider.WithRegistry(naming.NewMemory(), naming.Instance{Service: "blocker"}),
	}, opts...)
	srv := provider.NewServer(opts...)
	if err := srv.Register(b); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(ln); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv, b, "tcp@" + ln.Addr().String()
}

func check(t *testing.T, c *consumer.Client, service string) health.Status {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var resp health.CheckResponse
	if err := c.Call(ctx, health.CheckMethod, &health.CheckRequest{Service: service}, &resp); err != nil {
		t.Fatalf("Check(%q): %v", service, err)
	}
	return resp.Status
}

func TestHealthServiceAnswersPerServiceStatuses(t *testing.T) {
	srv, _, addr := startHealthServer(t)
	c, err := consumer.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	want := func(service string, st health.Status) {
		t.Helper()
		if got := check(t, c, service); got != st {
			t.Errorf("Check(%q) = %v, want %v", service, got, st)
		}
	}
	want("", health.Serving)
	want("Blocker", health.Serving) // the registered service
	want("blocker", health.Serving) // the registry's service name
	want("nope", health.ServiceUnknown)

	h := srv.Health()
	if err := h.SetStatus("blocker", health.NotServing); err != nil {
		t.Fatal(err)
	}
	want("blocker", health.NotServing)
	want("Blocker", health.Serving)
	if err := h.SetStatus("extra", health.Serving); err != nil {
		t.Fatal(err)
	}
	want("extra", health.Serving) // a name SetStatus gave is known

	if err := h.SetStatus("", health.NotServing); err != nil {
		t.Fatal(err)
	}
	want("", health.NotServing)
	want("Blocker", health.NotServing) // the whole server is not serving
	want("nope", health.ServiceUnknown)
	if err := h.SetStatus("", health.Serving); err != nil {
		t.Fatal(err)
	}
	want("", health.Serving)
	if err := h.SetStatus("blocker", health.Serving); err != nil {
		t.Fatal(err)
	}
	want("blocker", health.Serving)

	if err := h.SetStatus("x", health.ServiceUnknown); err == nil {
		t.Error("SetStatus took SERVICE_UNKNOWN")
	}
}

func TestWithoutHealthTheCheckIsAnUnknownService(t *testing.T) {
	_, _, addr := startHealthServer(t, provider.WithoutHealth())
	c, err := consumer.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var resp health.CheckResponse
	err = c.Call(context.Background(), health.CheckMethod, &health.CheckRequest{}, &resp)
	if !errors.Is(err, consumer.ErrUnknownService) {
		t.Fatalf("Check without the health service: %v, want ErrUnknownService", err)
	}
	if strings.Contains(err.Error(), health.Service+",") || strings.Contains(err.Error(), ", "+health.Service) {
		t.Errorf("the unknown-service answer lists the health service: %v", err)
	}
}

// A request for a user's method during the drain is refused "shutting
// down"; a health check is answered, NOT_SERVING, from Shutdown's first
// step on.
func TestShutdownAnswersHealthChecksNotServingWhileDraining(t *testing.T) {
	srv, b, addr := startHealthServer(t)
	c, err := consumer.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	held := make(chan error, 1)
	go func() { var out int; held <- c.Call(context.Background(), "Blocker.Wait", 0, &out) }()
	<-b.started // in flight: Shutdown drains until it ends

	// A raw connection, opened before Shutdown: it reads the go-away, and
	// keeps sending, as a client that has not read it yet would.
	raw, err := net.Dial("tcp", strings.TrimPrefix(addr, "tcp@"))
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	raw.SetDeadline(time.Now().Add(30 * time.Second))
	r := protocol.NewReader(raw, 0)
	var m protocol.Message
	send := func(seq uint64, method string, args any) {
		t.Helper()
		frame, err := protocol.AppendFrameEncode(nil, &protocol.Message{Header: protocol.Header{Kind: protocol.KindRequest, Seq: seq}, Method: method}, protocol.Msgpack, args, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := raw.Write(frame); err != nil {
			t.Fatal(err)
		}
	}
	send(1, health.CheckMethod, &health.CheckRequest{Service: "blocker"})
	if err := r.Read(&m); err != nil || m.Kind != protocol.KindResponse || m.Status != protocol.StatusOK {
		t.Fatalf("check before Shutdown: %v, %v %v", err, m.Kind, m.Status)
	}

	shutdown := make(chan error, 1)
	go func() { shutdown <- srv.Shutdown(context.Background()) }()
	if err := r.Read(&m); err != nil || m.Kind != protocol.KindGoAway { // step 4: step 1 is done
		t.Fatalf("waiting for the go-away: %v, %v", err, m.Kind)
	}
	send(2, "Blocker.Wait", 0)
	send(3, health.CheckMethod, &health.CheckRequest{Service: "blocker"})
	send(4, health.CheckMethod, &health.CheckRequest{Service: ""})
	got := map[uint64]string{}
	for range 3 {
		if err := r.Read(&m); err != nil {
			t.Fatal(err)
		}
		switch {
		case m.Status != protocol.StatusOK:
			got[m.Seq] = m.Status.String()
		default:
			var resp health.CheckResponse
			if err := protocol.Msgpack.Decode(m.Payload, &resp); err != nil {
				t.Fatal(err)
			}
			got[m.Seq] = resp.Status.String()
		}
	}
	want := map[uint64]string{2: "shutting down", 3: "NOT_SERVING", 4: "NOT_SERVING"}
	for seq, w := range want {
		if got[seq] != w {
			t.Errorf("request %d while draining: answered %q, want %q", seq, got[seq], w)
		}
	}
	if st := srv.Health().Status("Blocker"); st != health.NotServing {
		t.Errorf("Status(Blocker) while draining = %v", st)
	}
	if err := srv.Health().SetStatus("blocker", health.Serving); !errors.Is(err, provider.ErrServerClosed) {
		t.Errorf("SetStatus while shutting down: %v, want ErrServerClosed", err)
	}
	raw.Close()
	close(b.release)
	if err := <-held; err != nil {
		t.Errorf("the request in flight: %v", err)
	}
	if err := <-shutdown; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
}
