package integration

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shoalrpc/shoal/consumer"
	"github.com/shoalrpc/shoal/internal/servetest"
	"github.com/shoalrpc/shoal/protocol"
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

// settled waits until count stops moving for a while (its sender is
// blocked on the window) and returns it.
func settled(t *testing.T, count func() int64) int64 {
	t.Helper()
	last, since := count(), time.Now()
	deadline := time.Now().Add(60 * time.Second)
	for time.Since(since) < 300*time.Millisecond {
		if time.Now().After(deadline) {
			t.Fatal("the sender never stopped: no flow control")
		}
		time.Sleep(10 * time.Millisecond)
		if n := count(); n != last {
			last, since = n, time.Now()
		}
	}
	return last
}

// WithStreamWindow widens a stream's receive window on either side: a
// receiver that does not read lets its sender run that far ahead, and no
// further.
func TestAWiderStreamWindowLetsMoreInFlight(t *testing.T) {
	const window = 1 << 20
	const size = 1000 // a Blob of 1,000 bytes costs a little more on the wire
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	t.Run("the caller's", func(t *testing.T) {
		_, svc, addr := serveStreams(t)
		c := dialStreams(t, addr, consumer.WithStreamWindow(window))
		s, err := consumer.OpenServerStream[Blob](ctx, c, "Streams.Flood", FloodArgs{Size: size})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		// The default window (64 KiB) stops Flood at about 63 messages.
		waitFor(t, "the server to send 900 messages unread", func() bool { return svc.sent.Load() >= 900 })
		n := settled(t, svc.sent.Load)
		t.Logf("the server sent %d messages of %d bytes before the window stopped it", n, size)
		if n > window/size+1 {
			t.Fatalf("the server sent %d messages of %d bytes into a window of %d", n, size, window)
		}
	})

	t.Run("the method's", func(t *testing.T) {
		_, _, addr := serveStreams(t, provider.WithStreamWindow(window))
		c := dialStreams(t, addr)
		s, err := consumer.OpenClientStream[Blob, int](ctx, c, "Streams.Stall")
		if err != nil {
			t.Fatal(err)
		}
		var sent atomic.Int64
		sendCtx, stop := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() {
			defer close(done)
			b := Blob{B: make([]byte, size)}
			for sendCtx.Err() == nil {
				if err := s.Send(&b); err != nil {
					return
				}
				sent.Add(1)
			}
		}()
		waitFor(t, "the caller to send 900 messages unread", func() bool { return sent.Load() >= 900 })
		n := settled(t, sent.Load)
		t.Logf("the caller sent %d messages of %d bytes before the window stopped it", n, size)
		s.Close() // ends the blocked Send
		stop()
		<-done
		if n > window/size+1 {
			t.Fatalf("the caller sent %d messages of %d bytes into a window of %d", n, size, window)
		}
	})

	t.Run("out of range", func(t *testing.T) {
		if _, err := consumer.Dial("127.0.0.1:1", consumer.WithStreamWindow(1000)); err == nil || !strings.Contains(err.Error(), "WithStreamWindow") {
			t.Fatalf("Dial with a window under 64 KiB: %v", err)
		}
		srv := provider.NewServer(provider.WithStreamWindow(1000))
		if err := srv.Serve(nil); err == nil || !strings.Contains(err.Error(), "no listener") {
			t.Fatalf("Serve(nil): %v", err)
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		if err := srv.Serve(ln); err == nil || !strings.Contains(err.Error(), "WithStreamWindow") {
			t.Fatalf("Serve with a window under 64 KiB: %v", err)
		}
	})
}

// With consumer.WithCompression, stream messages are compressed both ways
// (the server compresses its messages when the open asked for it), and a
// stream's window still counts them by their decompressed size: a receiver
// that stops reading holds at most a window of decompressed messages,
// however well they compress.
func TestStreamsCompressAndTheirWindowCountsDecompressedBytes(t *testing.T) {
	const size, n = 32 << 10, 50 // zeros: they compress to almost nothing
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	_, svc, addr := serveStreams(t)
	var read, written atomic.Int64
	dialer := func(ctx context.Context, network, address string) (net.Conn, error) {
		nc, err := (&net.Dialer{}).DialContext(ctx, network, address)
		if err != nil {
			return nil, err
		}
		return servetest.CountBytes(nc, &read, &written), nil
	}
	c := dialStreams(t, addr, consumer.WithCompression(), consumer.WithDialer(dialer))

	// From the server: n messages of 32 KiB.
	in, err := consumer.OpenServerStream[Blob](ctx, c, "Streams.Flood", FloodArgs{Size: size})
	if err != nil {
		t.Fatal(err)
	}
	before := read.Load()
	for i := range n {
		b, err := in.Recv()
		if err != nil || len(b.B) != size {
			t.Fatalf("message %d: %d bytes, %v", i, len(b.B), err)
		}
	}
	got := read.Load() - before
	t.Logf("%d messages of %d bytes from the server took %d bytes on the wire", n, size, got)
	if got > n*size/8 {
		t.Fatalf("%d messages of %d bytes took %d bytes: not compressed", n, size, got)
	}

	// The window counts decompressed bytes: with the caller not reading,
	// the server stops after about a window of them (64 KiB: 2 messages,
	// and one more within the slack), not a window of compressed bytes.
	if ahead := settled(t, svc.sent.Load) - n; ahead > protocol.StreamWindow/size+2 {
		t.Fatalf("the server sent %d messages of %d bytes more than the caller read, into a window of %d", ahead, size, protocol.StreamWindow)
	}
	in.Close()

	// To the server.
	out, err := consumer.OpenClientStream[Blob, int](ctx, c, "Streams.Sink")
	if err != nil {
		t.Fatal(err)
	}
	before = written.Load()
	blob := Blob{B: make([]byte, size)}
	for range n {
		if err := out.Send(&blob); err != nil {
			t.Fatal(err)
		}
	}
	count, err := out.CloseAndRecv()
	if err != nil || *count != n {
		t.Fatalf("the method read %v messages, %v; want %d", count, err, n)
	}
	got = written.Load() - before
	t.Logf("%d messages of %d bytes to the server took %d bytes on the wire", n, size, got)
	if got > n*size/8 {
		t.Fatalf("%d messages of %d bytes took %d bytes: not compressed", n, size, got)
	}
}
