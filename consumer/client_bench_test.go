package consumer

import (
	"context"
	"encoding/binary"
	"io"
	"net"
	"testing"

	"github.com/shoalrpc/shoal/internal/cputime"
	"github.com/shoalrpc/shoal/internal/testmsg"
	"github.com/shoalrpc/shoal/protocol"
)

// rawResponder answers every request on ln with the same pre-encoded reply,
// its sequence number patched, and allocates nothing per request: what a
// benchmark then counts is the client's own work.
func rawResponder(ln net.Listener, frame []byte) {
	for {
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer nc.Close()
			var head [protocol.HeaderSize]byte
			body := make([]byte, 0, 4096)
			out := make([]byte, len(frame))
			copy(out, frame)
			for {
				if _, err := io.ReadFull(nc, head[:]); err != nil {
					return
				}
				n := int(binary.BigEndian.Uint32(head[16:20]))
				if cap(body) < n {
					body = make([]byte, n)
				}
				if _, err := io.ReadFull(nc, body[:n]); err != nil {
					return
				}
				if protocol.Kind(head[2]) != protocol.KindRequest {
					continue
				}
				protocol.SetSeq(out, binary.BigEndian.Uint64(head[8:16]))
				if _, err := nc.Write(out); err != nil {
					return
				}
			}
		}()
	}
}

// BenchmarkClientCall measures the client side of a call alone: encode the
// rpcx-benchmark message, send, match the reply, decode it. allocs/op is the
// client's allocations per call (the target is at most 10; the 8 strings of
// the reply account for 8 of them).
func BenchmarkClientCall(b *testing.B) {
	for _, codec := range []protocol.Codec{protocol.Msgpack, protocol.MsgpackCompact} {
		b.Run(codec.Name(), func(b *testing.B) {
			c := dialRawResponder(b, codec)
			args := testmsg.NewBenchmarkMessage()
			b.ReportAllocs()
			b.SetParallelism(50)
			defer reportCPU(b)()
			b.RunParallel(func(pb *testing.PB) {
				var reply testmsg.BenchmarkMessage
				for pb.Next() {
					if err := c.Call(context.Background(), "Hello.Say", args, &reply); err != nil {
						b.Fatal(err)
					}
					if reply.Field1 != "OK" {
						b.Fatalf("reply %q", reply.Field1)
					}
				}
			})
		})
	}
}

// reportCPU reports, when the returned function runs, the process's CPU
// time per op (client and responder together): a figure that other
// processes on a loaded machine disturb far less than ns/op.
func reportCPU(b *testing.B) func() {
	cpu0 := cputime.Process()
	return func() { b.ReportMetric(float64(cputime.Process()-cpu0)/float64(b.N)/1000, "cpu-µs/op") }
}

// BenchmarkPoolGet is the per-call cost of taking a pooled connection, from
// parallel callers, once the connections exist.
func BenchmarkPoolGet(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	go rawResponder(ln, nil)
	p, _ := NewPool(WithConnsPerAddr(2))
	defer p.Close()
	addr := ln.Addr().String()
	b.ReportAllocs()
	b.SetParallelism(50)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := p.Get(context.Background(), addr); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// dialRawResponder returns a Client of a server that answers every request
// with the benchmark message, encoded once with codec (rawResponder): what
// is measured is the client alone. Both close when b ends.
func dialRawResponder(b *testing.B, codec protocol.Codec) *Client {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })
	reply := testmsg.NewBenchmarkMessage()
	reply.Field1 = "OK"
	frame, err := protocol.AppendFrameEncode(nil, &protocol.Message{Header: protocol.Header{Kind: protocol.KindResponse}}, codec, reply, 0)
	if err != nil {
		b.Fatal(err)
	}
	go rawResponder(ln, frame)
	c, err := Dial(ln.Addr().String(), WithCodec(codec))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	return c
}
