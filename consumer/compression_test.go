package consumer_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/shoalrpc/shoal/consumer"
	"github.com/shoalrpc/shoal/internal/servetest"
	"github.com/shoalrpc/shoal/provider"
)

// Blob is the payload of the compression tests.
type Blob struct{ Text string }

// BlobService echoes and makes Blobs.
type BlobService struct{ calls atomic.Int64 }

// Echo returns args.
func (s *BlobService) Echo(args Blob, reply *Blob) error { s.calls.Add(1); *reply = args; return nil }

// Make returns a Blob of n bytes of text.
func (s *BlobService) Make(n int, reply *Blob) error {
	s.calls.Add(1)
	reply.Text = strings.Repeat("shoal ", n/6+1)[:n]
	return nil
}

// serveBlobs serves a BlobService with opts and returns its address.
func serveBlobs(t *testing.T, opts ...provider.Option) (string, *BlobService) {
	t.Helper()
	svc := &BlobService{}
	srv := provider.NewServer(opts...)
	if err := srv.RegisterName("Blob", svc); err != nil {
		t.Fatal(err)
	}
	addr := servetest.Start(t, srv)
	return addr, svc
}

// dialCounting dials addr with opts, counting the bytes on the wire.
func dialCounting(t *testing.T, addr string, opts ...consumer.DialOption) (c *consumer.Client, read, written *atomic.Int64) {
	t.Helper()
	read, written = new(atomic.Int64), new(atomic.Int64)
	dial := func(ctx context.Context, network, address string) (net.Conn, error) {
		nc, err := (&net.Dialer{}).DialContext(ctx, network, address)
		if err != nil {
			return nil, err
		}
		return servetest.CountBytes(nc, read, written), nil
	}
	c, err := consumer.Dial(addr, append(opts, consumer.WithDialer(dial))...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, read, written
}

// TestCompressionBothWays: with WithCompression a large compressible payload
// crosses the wire compressed both ways (the server answers alike) and
// arrives whole; without it, it crosses as it is.
func TestCompressionBothWays(t *testing.T) {
	addr, _ := serveBlobs(t)
	big := Blob{Text: strings.Repeat("a compressible payload ", 1<<16)} // 1.4 MiB
	for _, compress := range []bool{true, false} {
		var opts []consumer.DialOption
		if compress {
			opts = append(opts, consumer.WithCompression())
		}
		c, read, written := dialCounting(t, addr, opts...)
		var reply Blob
		if err := c.Call(context.Background(), "Blob.Echo", big, &reply); err != nil {
			t.Fatalf("compress=%v: %v", compress, err)
		}
		if reply.Text != big.Text {
			t.Fatalf("compress=%v: reply of %d bytes, want the %d sent", compress, len(reply.Text), len(big.Text))
		}
		n := int64(len(big.Text))
		if compress && (written.Load() > n/10 || read.Load() > n/10) {
			t.Errorf("compressed: %d bytes written and %d read for a %d-byte payload each way", written.Load(), read.Load(), n)
		}
		if !compress && (written.Load() < n || read.Load() < n) {
			t.Errorf("uncompressed: %d bytes written and %d read for a %d-byte payload each way", written.Load(), read.Load(), n)
		}
		// A small payload goes as it is: the call still works.
		if err := c.Call(context.Background(), "Blob.Echo", Blob{Text: "hi"}, &reply); err != nil || reply.Text != "hi" {
			t.Errorf("compress=%v: small call: %q, %v", compress, reply.Text, err)
		}
	}
}

// TestCompressedPastTheLimitIsTooLarge: a compressed payload that would
// decompress past the reader's body limit fails like an oversized body, on
// either side, although its frame is within the limit: a request is not
// executed (the server answers "too large"), a reply fails the call with
// ErrReplyTooLarge; the connection carries on.
func TestCompressedPastTheLimitIsTooLarge(t *testing.T) {
	const limit = 64 << 10
	addr, svc := serveBlobs(t, provider.WithMaxBodySize(limit))
	c, _, _ := dialCounting(t, addr, consumer.WithCompression())
	big := Blob{Text: strings.Repeat("z", 1<<20)} // compresses to a few KiB
	var reply Blob
	err := c.Call(context.Background(), "Blob.Echo", big, &reply)
	if !errors.Is(err, consumer.ErrRequestTooLarge) {
		t.Errorf("a request decompressing past the server's limit: %v, want ErrRequestTooLarge", err)
	}
	if n := svc.calls.Load(); n != 0 {
		t.Errorf("the server ran %d calls, want none", n)
	}

	open, _ := serveBlobs(t) // the default limit: it sends the reply
	small, _, _ := dialCounting(t, open, consumer.WithCompression(), consumer.WithMaxBodySize(limit))
	err = small.Call(context.Background(), "Blob.Make", 1<<20, &reply)
	if !errors.Is(err, consumer.ErrReplyTooLarge) {
		t.Errorf("a reply decompressing past the client's limit: %v, want ErrReplyTooLarge", err)
	}
	if err := small.Call(context.Background(), "Blob.Make", 10, &reply); err != nil || len(reply.Text) != 10 {
		t.Errorf("the next call on that connection: %d bytes, %v", len(reply.Text), err)
	}
}
