package protocol

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"runtime"
	"testing"

	"github.com/klauspost/compress/s2"
)

// TestCompressRoundTrip: with FlagCompress, a large compressible payload is
// written compressed (FlagCompressed in the frame) and read back whole, the
// flag cleared; a small one, or one that does not compress, goes as it is.
func TestCompressRoundTrip(t *testing.T) {
	random := make([]byte, 64<<10)
	rand.Read(random)
	for _, c := range []struct {
		name       string
		payload    []byte
		compressed bool
	}{
		{"large", bytes.Repeat([]byte("shoal "), 20000), true},
		{"small", bytes.Repeat([]byte("s"), CompressThreshold-1), false},
		{"incompressible", random, false},
	} {
		m := &Message{Header: Header{Kind: KindRequest, Flags: FlagCompress, Seq: 7}, Method: "S.M", Payload: c.payload}
		frame, err := AppendFrame(nil, m, 0)
		if err != nil {
			t.Fatal(err)
		}
		if got := Flags(frame[3])&FlagCompressed != 0; got != c.compressed {
			t.Errorf("%s: compressed %v, want %v", c.name, got, c.compressed)
		}
		if c.compressed && len(frame) > len(c.payload)/10 {
			t.Errorf("%s: a frame of %d bytes for %d", c.name, len(frame), len(c.payload))
		}
		r := NewReader(bytes.NewReader(frame), 0)
		var back Message
		if err := r.Read(&back); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if !bytes.Equal(back.Payload, c.payload) || back.Flags != FlagCompress || back.Seq != 7 || back.Method != "S.M" {
			t.Errorf("%s: read back flags %v, seq %d, %d bytes of payload", c.name, back.Flags, back.Seq, len(back.Payload))
		}
	}
}

// TestCompressionBombIsTooLarge: a frame within the limit whose payload
// would decompress past it is refused as a *TooLargeError before anything
// the size of its decompressed payload is allocated, and the stream stays
// in step; compressed bytes that do not decode are malformed.
func TestCompressionBombIsTooLarge(t *testing.T) {
	const limit = 1 << 20
	bomb := s2.Encode(nil, make([]byte, 64<<20)) // 64 MiB of zeros
	m := &Message{Header: Header{Kind: KindRequest, Flags: FlagCompress | FlagCompressed, Seq: 1}, Method: "S.M", Payload: bomb}
	stream, err := AppendFrame(nil, m, limit)
	if err != nil {
		t.Fatalf("the bomb's frame (%d bytes) is within the limit: %v", len(bomb), err)
	}
	stream, _ = AppendFrame(stream, &Message{Header: Header{Kind: KindRequest, Seq: 2}, Method: "S.M", Payload: []byte("next")}, limit)
	r := NewReader(bytes.NewReader(stream), limit)
	var got Message
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	err = r.Read(&got)
	runtime.ReadMemStats(&after)
	var tooLarge *TooLargeError
	if !errors.As(err, &tooLarge) || !errors.Is(err, ErrTooLarge) || got.Seq != 1 || tooLarge.Header.Seq != 1 {
		t.Fatalf("the bomb: %v (seq %d), want a *TooLargeError for seq 1", err, got.Seq)
	}
	if n := after.TotalAlloc - before.TotalAlloc; n > 2*limit {
		t.Errorf("reading the bomb allocated %d bytes", n)
	}
	if err := r.Read(&got); err != nil || got.Seq != 2 || string(got.Payload) != "next" {
		t.Errorf("the frame after the bomb: seq %d, %q, %v", got.Seq, got.Payload, err)
	}
	if err := r.Read(&got); err != io.EOF {
		t.Errorf("after the last frame: %v", err)
	}

	m = &Message{Header: Header{Kind: KindResponse, Flags: FlagCompressed, Seq: 3}, Payload: []byte{0x05, 0xff, 0xff}}
	frame, _ := AppendFrame(nil, m, 0)
	if err := NewReader(bytes.NewReader(frame), 0).Read(&got); !errors.Is(err, ErrMalformed) {
		t.Errorf("undecodable compressed payload: %v, want ErrMalformed", err)
	}
}
