package provider_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"testing"
	"time"

	"github.com/shoalrpc/shoal/consumer"
	"github.com/shoalrpc/shoal/health"
	"github.com/shoalrpc/shoal/provider"
	"github.com/shoalrpc/shoal/reflection"
)

// Late is registered after its name is watched.
type Late struct{}

// Ping answers.
func (Late) Ping(_ context.Context, _ int, out *int) error { *out = 1; return nil }

// openWatch opens a ShoalHealth.Watch of service on a new client.
func openWatch(t *testing.T, addr, service string) *consumer.RecvStream[health.CheckResponse] {
	t.Helper()
	c, err := consumer.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	w, err := consumer.OpenServerStream[health.CheckResponse](ctx, c, health.WatchMethod, &health.CheckRequest{Service: service})
	if err != nil {
		t.Fatalf("open a watch of %q: %v", service, err)
	}
	t.Cleanup(func() { w.Close() })
	return w
}

// next receives the next status of a watch, waiting at most 10 s.
func next(t *testing.T, w *consumer.RecvStream[health.CheckResponse]) (health.Status, error) {
	t.Helper()
	type got struct {
		resp *health.CheckResponse
		err  error
	}
	ch := make(chan got, 1)
	go func() { r, err := w.Recv(); ch <- got{r, err} }()
	select {
	case g := <-ch:
		if g.err != nil {
			return 0, g.err
		}
		return g.resp.Status, nil
	case <-time.After(10 * time.Second):
		w.Close() // ends the Recv above
		<-ch
		t.Fatal("no status from the watch within 10 s")
		return 0, nil
	}
}

func wantNext(t *testing.T, w *consumer.RecvStream[health.CheckResponse], want health.Status) {
	t.Helper()
	st, err := next(t, w)
	if err != nil {
		t.Fatalf("waiting for %v: %v", want, err)
	}
	if st != want {
		t.Fatalf("watch sent %v, want %v", st, want)
	}
}

// A watch sends the status now, then each change in order. SetStatus calls
// that change nothing of the watched name (the same status again, another
// service) send nothing: were they sent, the next status received would not
// be the next change.
func TestHealthWatchSendsEveryChangeInOrder(t *testing.T) {
	srv, _, addr := startHealthServer(t)
	w := openWatch(t, addr, "blocker")
	wantNext(t, w, health.Serving)
	h := srv.Health()
	set := func(service string, st health.Status) {
		t.Helper()
		if err := h.SetStatus(service, st); err != nil {
			t.Fatal(err)
		}
	}
	set("blocker", health.NotServing)
	wantNext(t, w, health.NotServing)
	set("blocker", health.NotServing) // no change: nothing sent
	set("Blocker", health.NotServing) // another service: nothing sent
	set("blocker", health.Serving)
	wantNext(t, w, health.Serving)
	set("", health.NotServing) // the whole server
	wantNext(t, w, health.NotServing)
	set("", health.Serving)
	wantNext(t, w, health.Serving)
}

// A watch of a name the server does not know answers SERVICE_UNKNOWN and
// goes on: the name may become known by SetStatus or by Register.
func TestHealthWatchOfAnUnknownServiceWaitsForIt(t *testing.T) {
	srv, _, addr := startHealthServer(t)
	bySet := openWatch(t, addr, "later")
	byRegister := openWatch(t, addr, "Late")
	wantNext(t, bySet, health.ServiceUnknown)
	wantNext(t, byRegister, health.ServiceUnknown)

	if err := srv.Health().SetStatus("later", health.NotServing); err != nil {
		t.Fatal(err)
	}
	wantNext(t, bySet, health.NotServing)
	if err := srv.Register(Late{}); err != nil {
		t.Fatal(err)
	}
	wantNext(t, byRegister, health.Serving)
}

// Shutdown does not wait for watchers: each is sent NOT_SERVING, then its
// stream ends cleanly, and Shutdown (with a long context) returns without
// error once the watches have ended.
func TestHealthWatchEndsAtShutdownWithoutHoldingIt(t *testing.T) {
	srv, _, addr := startHealthServer(t, provider.WithDrainGrace(50*time.Millisecond))
	w := openWatch(t, addr, "blocker")
	whole := openWatch(t, addr, "")
	wantNext(t, w, health.Serving)
	wantNext(t, whole, health.Serving)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	shutdown := make(chan error, 1)
	go func() { shutdown <- srv.Shutdown(ctx) }()
	for _, w := range []*consumer.RecvStream[health.CheckResponse]{w, whole} {
		wantNext(t, w, health.NotServing)
		if st, err := next(t, w); !errors.Is(err, io.EOF) {
			t.Fatalf("after NOT_SERVING the watch sent %v, %v; want a clean end (io.EOF)", st, err)
		}
	}
	select {
	case err := <-shutdown:
		if err != nil {
			t.Fatalf("Shutdown with open watches: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Shutdown still waits 30 s after the watches ended: the watches hold its drain")
	}
	if n := srv.InFlight(); n != 0 {
		t.Errorf("in flight after Shutdown: %d", n)
	}
}

// The reflection service lists Watch as a server stream.
func TestHealthWatchIsListedAsAServerStream(t *testing.T) {
	_, _, addr := startHealthServer(t)
	c, err := consumer.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var list reflection.ListResponse
	if err := c.Call(context.Background(), reflection.ListMethod, &reflection.ListRequest{}, &list); err != nil {
		t.Fatal(err)
	}
	kinds := map[string]reflection.Kind{}
	for _, svc := range list.Services {
		for _, m := range svc.Methods {
			kinds[svc.Name+"."+m.Name] = m.Kind
		}
	}
	if kinds[health.WatchMethod] != reflection.ServerStream || kinds[health.CheckMethod] != reflection.Unary {
		t.Errorf("reflection lists Watch as %q and Check as %q, want server_stream and unary", kinds[health.WatchMethod], kinds[health.CheckMethod])
	}
}

// ShoalHealth.Watch is a server stream of a service's status: the status
// now, then each change; at Shutdown the last one, NOT_SERVING, and a clean
// end, so that the watch does not hold the drain.
func ExampleHealth_watch() {
	srv := provider.NewServer()
	if err := srv.Register(Greeter{}); err != nil {
		log.Fatal(err)
	}
	ln, err := provider.Listen("127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	if err := srv.Start(ln); err != nil {
		log.Fatal(err)
	}
	c, err := consumer.Dial("tcp@" + ln.Addr().String())
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	w, err := consumer.OpenServerStream[health.CheckResponse](context.Background(), c, health.WatchMethod, &health.CheckRequest{Service: "Greeter"})
	if err != nil {
		log.Fatal(err)
	}
	next := func() {
		resp, err := w.Recv()
		if err != nil {
			fmt.Println("watch ended:", err)
			return
		}
		fmt.Println("Greeter:", resp.Status)
	}
	next()
	srv.Health().SetStatus("Greeter", health.NotServing)
	next()
	srv.Health().SetStatus("Greeter", health.Serving)
	next()
	stopped := make(chan error, 1)
	go func() { stopped <- srv.Shutdown(context.Background()) }()
	next()
	next()
	c.Close() // Shutdown's drain waits, a moment, for its clients to leave
	if err := <-stopped; err != nil {
		log.Fatal(err)
	}
	// Output:
	// Greeter: SERVING
	// Greeter: NOT_SERVING
	// Greeter: SERVING
	// Greeter: NOT_SERVING
	// watch ended: EOF
}
