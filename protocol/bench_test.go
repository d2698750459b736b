package protocol

import (
	"testing"

	"github.com/shoalrpc/shoal/internal/testmsg"
)

func benchmarkRequest(b *testing.B) (*Message, *testmsg.BenchmarkMessage) {
	b.Helper()
	return &Message{Header: Header{Kind: KindRequest, Seq: 42}, Method: "Hello.Say"}, testmsg.NewBenchmarkMessage()
}

func BenchmarkEncodeRequest(b *testing.B) {
	for _, c := range []Codec{Msgpack, MsgpackCompact} {
		b.Run(c.Name(), func(b *testing.B) {
			m, args := benchmarkRequest(b)
			buf := make([]byte, 0, 4096)
			b.ReportAllocs()
			for b.Loop() {
				var err error
				buf, err = AppendFrameEncode(buf[:0], m, c, args, 0)
				if err != nil {
					b.Fatal(err)
				}
			}
			b.SetBytes(int64(len(buf)))
		})
	}
}

func BenchmarkDecodeRequest(b *testing.B) {
	for _, c := range []Codec{Msgpack, MsgpackCompact} {
		b.Run(c.Name(), func(b *testing.B) {
			m, args := benchmarkRequest(b)
			frame, err := AppendFrameEncode(nil, m, c, args, 0)
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(frame)))
			b.ReportAllocs()
			var got Message
			var out testmsg.BenchmarkMessage
			for b.Loop() {
				got.Reset()
				if _, err := DecodeFrame(frame, 0, &got); err != nil {
					b.Fatal(err)
				}
				if err := c.Decode(got.Payload, &out); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkHeaderOnly(b *testing.B) {
	m := &Message{Header: Header{Kind: KindResponse, Seq: 42}}
	buf := make([]byte, 0, 64)
	b.ReportAllocs()
	for b.Loop() {
		frame, _ := AppendFrame(buf[:0], m, 0)
		if _, err := ParseHeader(frame, 0); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCheckMsgpack is the cost of the allocation guard that runs before
// every msgpack decode.
func BenchmarkCheckMsgpack(b *testing.B) {
	for _, c := range []Codec{Msgpack, MsgpackCompact} {
		b.Run(c.Name(), func(b *testing.B) {
			payload, err := c.Append(nil, testmsg.NewBenchmarkMessage())
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(payload)))
			b.ReportAllocs()
			for b.Loop() {
				if err := checkMsgpack(payload); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
