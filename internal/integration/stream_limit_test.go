package integration

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/shoalrpc/shoal/consumer"
	"github.com/shoalrpc/shoal/provider"
)

// A stream message over the receiver's body limit resets that stream, both
// ways, with a clear error: the stream does not go on without it (nothing
// is lost silently), and the connection and its other calls go on.
func TestAStreamMessageOverTheLimitResetsOnlyItsStream(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	t.Run("to the client", func(t *testing.T) {
		_, svc, addr := serveStreams(t)
		c := dialStreams(t, addr, consumer.WithMaxBodySize(1024))
		s, err := consumer.OpenServerStream[Blob](ctx, c, "Streams.Flood", FloodArgs{Size: 4096})
		if err != nil {
			t.Fatal(err)
		}
		_, err = s.Recv()
		if !errors.Is(err, consumer.ErrReplyTooLarge) || !strings.Contains(err.Error(), "over the client's limit of 1024") {
			t.Fatalf("Recv of a message over the limit: %v, want ErrReplyTooLarge", err)
		}
		// The server's method saw its stream reset: its context ended.
		if err := <-svc.ctxEnded; !errors.Is(err, context.Canceled) {
			t.Fatalf("the method's context ended with %v", err)
		}
		var out int
		if err := c.Call(ctx, "Streams.Ping", 7, &out); err != nil || out != 7 {
			t.Fatalf("a call on the same connection after the reset: %d, %v", out, err)
		}
	})

	t.Run("to the server", func(t *testing.T) {
		_, svc, addr := serveStreams(t, provider.WithMaxBodySize(1024))
		c := dialStreams(t, addr)
		s, err := consumer.OpenClientStream[Blob, int](ctx, c, "Streams.Sink")
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Send(&Blob{B: make([]byte, 100)}); err != nil {
			t.Fatal(err)
		}
		if err := s.Send(&Blob{B: make([]byte, 4096)}); err != nil && !errors.Is(err, consumer.ErrRequestTooLarge) {
			t.Fatalf("Send: %v", err) // the reset may already have arrived
		}
		n, err := s.CloseAndRecv()
		if !errors.Is(err, consumer.ErrRequestTooLarge) || !strings.Contains(err.Error(), "over the server's limit of 1024") {
			t.Fatalf("CloseAndRecv after a message over the server's limit: %v, %v; want ErrRequestTooLarge", n, err)
		}
		// The method read the first message, then its Recv failed.
		if err := <-svc.ctxEnded; err == nil || !strings.Contains(err.Error(), "over the server's limit") {
			t.Fatalf("the method's Recv failed with %v", err)
		}
		var out int
		if err := c.Call(ctx, "Streams.Ping", 8, &out); err != nil || out != 8 {
			t.Fatalf("a call on the same connection after the reset: %d, %v", out, err)
		}
	})
}
