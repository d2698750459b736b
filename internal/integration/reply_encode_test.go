package integration

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/shoalrpc/shoal/consumer"
	"github.com/shoalrpc/shoal/provider"
)

// Unencodable is a reply no codec can encode: msgpack and JSON both refuse
// a func field.
type Unencodable struct {
	N    int
	Hook func()
}

// Replies is a service whose Bad method returns a reply the server cannot
// encode, and whose Good method returns one it can.
type Replies struct{ bad, good atomic.Int64 }

// Bad fills a reply holding a func.
func (r *Replies) Bad(_ context.Context, n int, reply *Unencodable) error {
	r.bad.Add(1)
	*reply = Unencodable{N: n, Hook: func() {}}
	return nil
}

// Good returns n+1.
func (r *Replies) Good(_ context.Context, n int, reply *int) error {
	r.good.Add(1)
	*reply = n + 1
	return nil
}

// TestUnencodableReplyIsInternalError: a method that ran but whose reply the
// server cannot encode answers ErrInternal (the method ran: the call is not
// retried as "not executed"), and the connection keeps serving.
func TestUnencodableReplyIsInternalError(t *testing.T) {
	srv := provider.NewServer(provider.WithLogger(slog.New(slog.DiscardHandler)))
	svc := &Replies{}
	if err := srv.Register(svc); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-served; !errors.Is(err, provider.ErrServerClosed) {
			t.Errorf("Serve returned %v, want ErrServerClosed", err)
		}
	})
	c := dial(t, "tcp@"+ln.Addr().String())
	for i := range 3 {
		var reply Unencodable
		err := c.Call(context.Background(), "Replies.Bad", i, &reply)
		if !errors.Is(err, consumer.ErrInternal) || !strings.Contains(err.Error(), "encode reply") {
			t.Fatalf("call %d with an unencodable reply: %v, want ErrInternal saying \"encode reply\"", i, err)
		}
		var se *consumer.ServiceError
		if errors.As(err, &se) || errors.Is(err, consumer.ErrConnClosed) {
			t.Fatalf("call %d: %v is a service error or a broken connection, want an internal error", i, err)
		}
		if reply.N != 0 {
			t.Fatalf("call %d: the reply was filled (%+v) although the call failed", i, reply)
		}
	}
	if n := svc.bad.Load(); n != 3 {
		t.Fatalf("Replies.Bad ran %d times, want 3", n)
	}
	// The failure is the call's alone: the same connection still answers.
	var out int
	if err := c.Call(context.Background(), "Replies.Good", 41, &out); err != nil || out != 42 {
		t.Fatalf("call after the failed encodes: %d, %v; want 42", out, err)
	}
}
