package protocol

import (
	"bytes"
	"testing"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/shoalrpc/shoal/internal/testmsg"
)

// BenchmarkMsgpackPlain is the payload codec alone on the 40-field benchmark
// message as a plain Go struct (no tags, no methods): what a call pays for
// its arguments and its reply on each side, without the frame. The
// "vmihailenco" variants are the codec before it was compiled (a pooled
// vmihailenco Encoder; the payload check, then a pooled Decoder), measured
// in the same run for a ratio.
func BenchmarkMsgpackPlain(b *testing.B) {
	for _, c := range []Codec{Msgpack, MsgpackCompact} {
		in := testmsg.NewBenchmarkMessage()
		payload, err := c.Append(nil, in)
		if err != nil {
			b.Fatal(err)
		}
		b.Run("Append/"+c.Name(), func(b *testing.B) {
			buf := make([]byte, 0, 4096)
			b.SetBytes(int64(len(payload)))
			b.ReportAllocs()
			for b.Loop() {
				if buf, err = c.Append(buf[:0], in); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("Append/"+c.Name()+"/vmihailenco", func(b *testing.B) {
			w := &appendWriter{b: make([]byte, 0, 4096)}
			enc := msgpack.NewEncoder(w)
			b.SetBytes(int64(len(payload)))
			b.ReportAllocs()
			for b.Loop() {
				w.b = w.b[:0]
				enc.Reset(w)
				enc.UseArrayEncodedStructs(c == MsgpackCompact)
				if err := enc.Encode(in); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("Decode/"+c.Name(), func(b *testing.B) {
			b.SetBytes(int64(len(payload)))
			b.ReportAllocs()
			for b.Loop() {
				var out testmsg.BenchmarkMessage
				if err := c.Decode(payload, &out); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("Decode/"+c.Name()+"/vmihailenco", func(b *testing.B) {
			var r bytes.Reader
			dec := msgpack.NewDecoder(&r)
			b.SetBytes(int64(len(payload)))
			b.ReportAllocs()
			for b.Loop() {
				var out testmsg.BenchmarkMessage
				if err := checkMsgpack(payload); err != nil {
					b.Fatal(err)
				}
				r.Reset(payload)
				dec.Reset(&r)
				if err := dec.Decode(&out); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
