package protocol

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"maps"
	"math"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shoalrpc/shoal/internal/testmsg"
)

type pair struct {
	A, B int
	Name string
}

func TestRoundTripEveryKindAndCodec(t *testing.T) {
	kinds := []Message{
		{Header: Header{Kind: KindRequest, Seq: 1}, Method: "Arith.Add", Metadata: map[string]string{"trace": "abc", "": "empty key"}, Timeout: 1500 * time.Millisecond},
		{Header: Header{Kind: KindRequest, Flags: FlagOneWay, Seq: math.MaxUint64}, Method: "Log.Write"},
		{Header: Header{Kind: KindResponse, Seq: 7}},
		{Header: Header{Kind: KindHeartbeat, Seq: 9}},
		{Header: Header{Kind: KindHeartbeat, Flags: FlagReply, Seq: 9}},
		{Header: Header{Kind: KindGoAway}},
		{Header: Header{Kind: KindCancel, Seq: 12}},
	}
	for _, c := range []Codec{Msgpack, MsgpackCompact, JSON} {
		for _, want := range kinds {
			t.Run(c.Name()+"/"+want.Kind.String(), func(t *testing.T) {
				in := pair{A: 3, B: 4, Name: "héllo"}
				frame, err := AppendFrameEncode(nil, &want, c, &in, 0)
				if err != nil {
					t.Fatal(err)
				}
				var got Message
				if err := NewReader(bytes.NewReader(frame), 0).Read(&got); err != nil {
					t.Fatal(err)
				}
				if got.Kind != want.Kind || got.Flags != want.Flags || got.Seq != want.Seq ||
					got.Method != want.Method || got.Timeout != want.Timeout || got.Codec != c.ID() ||
					!maps.Equal(got.Metadata, want.Metadata) {
					t.Fatalf("got %+v, want %+v", got, want)
				}
				if int(got.BodyLen) != len(frame)-HeaderSize {
					t.Fatalf("body length %d, frame %d", got.BodyLen, len(frame))
				}
				codec, err := CodecByID(got.Codec)
				if err != nil {
					t.Fatal(err)
				}
				var out pair
				if err := codec.Decode(got.Payload, &out); err != nil {
					t.Fatal(err)
				}
				if out != in {
					t.Fatalf("payload %+v, want %+v", out, in)
				}
			})
		}
	}
}

func TestRoundTripErrorResponse(t *testing.T) {
	m := Message{Header: Header{Kind: KindResponse, Flags: FlagError, Status: StatusServiceError, Seq: 3}, Payload: []byte("division by zero")}
	frame, err := AppendFrame(nil, &m, 0)
	if err != nil {
		t.Fatal(err)
	}
	var got Message
	if _, err := DecodeFrame(frame, 0, &got); err != nil {
		t.Fatal(err)
	}
	if got.Status != StatusServiceError || got.Flags != FlagError || string(got.Payload) != "division by zero" {
		t.Fatalf("got %+v", got)
	}
}

func TestBenchmarkMessageRoundTrip(t *testing.T) {
	for _, c := range []Codec{Msgpack, MsgpackCompact, JSON} {
		in := testmsg.NewBenchmarkMessage()
		b, err := c.Append(nil, in)
		if err != nil {
			t.Fatal(err)
		}
		var out testmsg.BenchmarkMessage
		if err := c.Decode(b, &out); err != nil {
			t.Fatal(err)
		}
		out.Field5 = in.Field5 // nil and empty are the same message
		if !reflect.DeepEqual(*in, out) {
			t.Fatalf("%s: got %+v", c.Name(), out)
		}
	}
}

func TestReaderReadsConsecutiveFrames(t *testing.T) {
	var stream []byte
	for i := range 100 {
		var err error
		stream, err = AppendFrame(stream, &Message{Header: Header{Kind: KindRequest, Seq: uint64(i)}, Method: "S.M", Payload: bytes.Repeat([]byte{byte(i)}, i*1000)}, 0)
		if err != nil {
			t.Fatal(err)
		}
	}
	r := NewReader(bytes.NewReader(stream), 0)
	var m Message
	for i := range 100 {
		if err := r.Read(&m); err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if m.Seq != uint64(i) || len(m.Payload) != i*1000 || (i > 0 && m.Payload[i] != byte(i)) {
			t.Fatalf("frame %d: seq %d, payload %d bytes", i, m.Seq, len(m.Payload))
		}
	}
	if err := r.Read(&m); err != io.EOF {
		t.Fatalf("after the last frame: %v, want io.EOF", err)
	}
}

// header builds a raw header for malformed-input tests.
func header(magic, version, kind, flags byte, bodyLen uint32) []byte {
	b := []byte{magic, version, kind, flags, 1, 0, 0, 0}
	b = binary.BigEndian.AppendUint64(b, 1)
	return binary.BigEndian.AppendUint32(b, bodyLen)
}

func TestMalformedInput(t *testing.T) {
	good, err := AppendFrame(nil, &Message{Header: Header{Kind: KindRequest, Seq: 1}, Method: "A.B", Metadata: map[string]string{"k": "v"}}, 0)
	if err != nil {
		t.Fatal(err)
	}
	body := func(fields ...[]byte) []byte {
		b := header(Magic, Version, byte(KindRequest), 0, uint32(len(bytes.Join(fields, nil))))
		return append(b, bytes.Join(fields, nil)...)
	}
	uv := func(v uint64) []byte { return binary.AppendUvarint(nil, v) }
	tests := []struct {
		name  string
		frame []byte
		want  error
	}{
		{"empty", nil, io.EOF},
		{"bad magic", header('G', Version, 1, 0, 0), ErrBadMagic},
		{"wrong version", header(Magic, 2, 1, 0, 0), ErrVersion},
		{"unknown kind", header(Magic, Version, 9, 0, 0), ErrMalformed},
		{"unknown flag", header(Magic, Version, 1, 0x80, 0), ErrMalformed},
		{"reserved set", append(append([]byte{}, good[:6]...), append([]byte{1, 0}, good[8:]...)...), ErrMalformed},
		{"truncated header", good[:HeaderSize-1], ErrMalformed},
		{"truncated body", good[:len(good)-1], ErrMalformed},
		{"4 GiB body", header(Magic, Version, 1, 0, math.MaxUint32), ErrTooLarge},
		{"body past the limit", header(Magic, Version, 1, 0, 1<<20+1), ErrTooLarge},
		{"method past the body", body(uv(100), []byte("A.B")), ErrMalformed},
		{"method length overflows", body(uv(math.MaxUint64), []byte("x")), ErrMalformed},
		{"bad varint", body(bytes.Repeat([]byte{0xff}, 11)), ErrMalformed},
		{"metadata count too large", body(uv(0), uv(1<<40), uv(1), []byte("k")), ErrMalformed},
		{"metadata value past the body", body(uv(0), uv(1), uv(1), []byte("k"), uv(50)), ErrMalformed},
		{"timeout overflows int64", body(uv(0), uv(0), uv(math.MaxUint64)), ErrMalformed},
		{"missing timeout", body(uv(0), uv(0)), ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var m Message
			err := NewReader(bytes.NewReader(tt.frame), 1<<20).Read(&m)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Read: %v, want %v", err, tt.want)
			}
			if tt.want != io.EOF {
				if _, err := DecodeFrame(tt.frame, 1<<20, &m); err == nil {
					t.Fatal("DecodeFrame accepted it")
				}
			}
		})
	}
}

// stallingReader returns its data and then blocks reads with an error, as a
// peer that announced a large body and stopped sending.
type stallingReader struct{ data []byte }

func (r *stallingReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, io.ErrUnexpectedEOF
	}
	n := copy(p, r.data)
	r.data = r.data[n:]
	return n, nil
}

func TestLargeAnnouncedBodyAllocatesOnlyWhatArrives(t *testing.T) {
	frame := append(header(Magic, Version, 1, 0, 8<<20), make([]byte, 1000)...)
	r := NewReader(&stallingReader{data: frame}, 0)
	var m Message
	err := r.Read(&m)
	if !errors.Is(err, ErrMalformed) {
		t.Fatalf("Read: %v", err)
	}
	if cap(r.body) > chunkSize {
		t.Fatalf("holds a %d-byte buffer for 1000 bytes sent", cap(r.body))
	}
}

func TestEncodeRejectsBodyPastTheLimit(t *testing.T) {
	m := Message{Header: Header{Kind: KindRequest}, Method: "A.B", Payload: make([]byte, 2000)}
	if _, err := AppendFrame(nil, &m, 1000); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("AppendFrame: %v", err)
	}
	dst := []byte("keep")
	out, err := AppendFrameEncode(dst, &m, Msgpack, strings.Repeat("x", 2000), 1000)
	if !errors.Is(err, ErrTooLarge) || string(out) != "keep" {
		t.Fatalf("AppendFrameEncode: %v, dst %q", err, out)
	}
}

func TestCodecLookup(t *testing.T) {
	if _, err := CodecByID(99); err == nil {
		t.Fatal("CodecByID(99) succeeded")
	}
	if _, err := ParseCodec("xml"); err == nil {
		t.Fatal(`ParseCodec("xml") succeeded`)
	}
	for _, c := range []Codec{Msgpack, MsgpackCompact, JSON} {
		byID, _ := CodecByID(c.ID())
		byName, _ := ParseCodec(c.Name())
		if byID != c || byName != c {
			t.Fatalf("lookup of %s failed", c.Name())
		}
	}
}

func TestHeaderHandlingAllocatesNothing(t *testing.T) {
	m := Message{Header: Header{Kind: KindResponse, Seq: 5}, Payload: []byte("payload")}
	buf := make([]byte, 0, 256)
	var got Message
	allocs := testing.AllocsPerRun(100, func() {
		frame, _ := AppendFrame(buf[:0], &m, 0)
		if _, err := DecodeFrame(frame, 0, &got); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per encode+decode of a response frame", allocs)
	}
}

func FuzzDecode(f *testing.F) {
	seeds := []Message{
		{Header: Header{Kind: KindRequest, Seq: 1}, Method: "Arith.Add", Metadata: map[string]string{"a": "b"}, Timeout: time.Second, Payload: []byte{0x82, 0xa1, 0x41, 1}},
		{Header: Header{Kind: KindResponse, Flags: FlagError, Status: StatusServiceError, Seq: 2}, Payload: []byte("boom")},
		{Header: Header{Kind: KindHeartbeat, Flags: FlagReply}},
		{Header: Header{Kind: KindGoAway}},
		{Header: Header{Kind: KindRequest, Flags: FlagStream, Codec: CodecMsgpack, Status: Status(ServerStream), Seq: 3}, Method: "Arith.Count", Payload: []byte{0x81, 0xa1, 0x4e, 3}},
		{Header: Header{Kind: KindStreamData, Codec: CodecMsgpack, Seq: 3}, Payload: []byte{1}},
		{Header: Header{Kind: KindStreamEnd, Seq: 3}},
		{Header: Header{Kind: KindStreamEnd, Flags: FlagError, Status: StatusServiceError, Seq: 3}, Payload: []byte("boom")},
		{Header: Header{Kind: KindReset, Flags: FlagError, Status: StatusAborted, Seq: 3}, Payload: []byte("shut down")},
	}
	f.Add(AppendWindow(nil, 3, StreamWindow))
	for _, m := range seeds {
		frame, err := AppendFrame(nil, &m, 0)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(frame)
	}
	f.Add(header(Magic, Version, 1, 0, math.MaxUint32))
	f.Add([]byte("GET / HTTP/1.1\r\n\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		const limit = 1 << 16
		var m Message
		n, err := DecodeFrame(data, limit, &m)
		if err != nil {
			return
		}
		if n < HeaderSize || n > len(data) || int(m.BodyLen) > limit {
			t.Fatalf("decoded %d of %d bytes, body %d", n, len(data), m.BodyLen)
		}
		// What decodes must encode back to a frame that decodes the same.
		again, err := AppendFrame(nil, &m, limit)
		if err != nil {
			t.Fatal(err)
		}
		var m2 Message
		if _, err := DecodeFrame(again, limit, &m2); err != nil {
			t.Fatal(err)
		}
		if m2.Method != m.Method || m2.Seq != m.Seq || !bytes.Equal(m2.Payload, m.Payload) || !maps.Equal(m2.Metadata, m.Metadata) || m2.Timeout != m.Timeout {
			t.Fatalf("re-encoded frame differs: %+v vs %+v", m2, m)
		}
		// And the stream reader must agree with DecodeFrame.
		var m3 Message
		if err := NewReader(bytes.NewReader(data), limit).Read(&m3); err != nil || m3.Seq != m.Seq {
			t.Fatalf("Reader disagrees: %v", err)
		}
	})
}

func TestCompactCodecIsSmallerAndReadsMaps(t *testing.T) {
	in := testmsg.NewBenchmarkMessage()
	full, err := Msgpack.Append(nil, in)
	if err != nil {
		t.Fatal(err)
	}
	compact, err := MsgpackCompact.Append(nil, in)
	if err != nil {
		t.Fatal(err)
	}
	if len(compact) >= len(full)*3/4 {
		t.Fatalf("compact %d bytes, full %d: no field names saved?", len(compact), len(full))
	}
	t.Logf("benchmark message: msgpack %d bytes, msgpack-compact %d bytes", len(full), len(compact))
	var out testmsg.BenchmarkMessage
	if err := MsgpackCompact.Decode(full, &out); err != nil || out.Field1 != in.Field1 || out.Field131 != in.Field131 {
		t.Fatalf("compact codec reading a map-encoded struct: %v", err)
	}
	// The flag does not leak into the default codec through the shared pool.
	again, _ := Msgpack.Append(nil, in)
	if !bytes.Equal(again, full) {
		t.Fatal("Msgpack encoded differently after MsgpackCompact used the pool")
	}
}

// trickle delivers its data n bytes per Read.
type trickle struct {
	data []byte
	n    int
}

func (t *trickle) Read(p []byte) (int, error) {
	if len(t.data) == 0 {
		return 0, io.EOF
	}
	k := copy(p[:min(len(p), t.n)], t.data)
	t.data = t.data[k:]
	return k, nil
}

func TestOnWaitTellsIdleFromMidFrame(t *testing.T) {
	frame, _ := AppendFrame(nil, &Message{Header: Header{Kind: KindRequest, Seq: 1}, Method: "A.B", Payload: make([]byte, 100)}, 0)
	r := NewReader(&trickle{data: append(bytes.Clone(frame), frame...), n: 7}, 0)
	var waits []bool
	r.OnWait = func(started bool) { waits = append(waits, started) }
	var m Message
	for range 2 {
		if err := r.Read(&m); err != nil {
			t.Fatal(err)
		}
	}
	// Each frame: one idle wait for its first byte, then mid-frame waits.
	idle := 0
	for _, started := range waits {
		if !started {
			idle++
		}
	}
	if idle != 2 || len(waits) < 4 {
		t.Fatalf("waits %v: want one idle wait per frame and mid-frame waits", waits)
	}
}

func TestOnWaitMidFrameOncePerFrame(t *testing.T) {
	// A frame trickling in 7 bytes at a time needs many reads; its read
	// deadline must be set once, when it begins, not again after the header
	// (which let a frame take twice the read timeout).
	frame, _ := AppendFrame(nil, &Message{Header: Header{Kind: KindRequest, Seq: 1}, Method: "A.B", Payload: make([]byte, 100)}, 0)
	r := NewReader(&trickle{data: append(bytes.Clone(frame), frame...), n: 7}, 0)
	var waits []bool
	r.OnWait = func(started bool) { waits = append(waits, started) }
	var m Message
	for range 2 {
		if err := r.Read(&m); err != nil {
			t.Fatal(err)
		}
	}
	if want := []bool{false, true, false, true}; !slices.Equal(waits, want) {
		t.Fatalf("waits %v, want %v: one idle wait and one mid-frame wait per frame", waits, want)
	}
}

func TestReaderSkipsOversizedFrame(t *testing.T) {
	big, _ := AppendFrame(nil, &Message{Header: Header{Kind: KindRequest, Seq: 7}, Method: "A.B", Payload: make([]byte, 5000)}, 1<<20)
	small, _ := AppendFrame(nil, &Message{Header: Header{Kind: KindRequest, Seq: 8}, Method: "A.B", Payload: []byte{1}}, 0)
	r := NewReader(bytes.NewReader(append(bytes.Clone(big), small...)), 1000)
	var m Message
	err := r.Read(&m)
	var tl *TooLargeError
	if !errors.As(err, &tl) || !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Read = %v, want a *TooLargeError wrapping ErrTooLarge", err)
	}
	if tl.Header.Seq != 7 || tl.Header.Kind != KindRequest || tl.Limit != 1000 || m.Seq != 7 {
		t.Fatalf("skipped frame %+v (m.Seq %d), want request seq 7 with limit 1000", tl, m.Seq)
	}
	if err := r.Read(&m); err != nil || m.Seq != 8 || len(m.Payload) != 1 {
		t.Fatalf("frame after the skipped one: seq %d payload %d err %v, want seq 8", m.Seq, len(m.Payload), err)
	}
}

func TestReaderEndsOnAbsurdLength(t *testing.T) {
	var h [HeaderSize]byte
	head := appendHeader(h[:0], &Header{Kind: KindRequest, Seq: 1, BodyLen: 1000*SkipFactor + 1})
	r := NewReader(bytes.NewReader(append(head, make([]byte, 100)...)), 1000)
	var m Message
	err := r.Read(&m)
	var tl *TooLargeError
	if !errors.Is(err, ErrTooLarge) || errors.As(err, &tl) {
		t.Fatalf("Read = %v, want ErrTooLarge that is not a skipped frame", err)
	}
}

// TestReaderReleasesBuffersWhileIdle: a Reader with OnWait holds neither its
// read buffer nor a large body buffer while it waits for the next frame, and
// still reads every frame whole, whether its bytes come a few at a time (the
// header split over reads) or many frames in one read.
func TestReaderReleasesBuffersWhileIdle(t *testing.T) {
	var stream []byte
	sizes := []int{10, 300 << 10, 5, 64 << 10, 0, 9000}
	for i, n := range sizes {
		var err error
		stream, err = AppendFrame(stream, &Message{Header: Header{Kind: KindRequest, Seq: uint64(i)}, Method: "S.M", Payload: bytes.Repeat([]byte{byte(i + 1)}, n)}, 0)
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, step := range []int{3, 16, 1 << 20} {
		r := NewReader(&trickle{data: bytes.Clone(stream), n: step}, 0)
		idleWaits := 0
		r.OnWait = func(started bool) {
			if started {
				return
			}
			idleWaits++
			if r.r != nil || cap(r.body) > idleBodySize {
				t.Errorf("step %d: waiting idle with a read buffer (%v) or a body buffer of %d bytes", step, r.r != nil, cap(r.body))
			}
		}
		var m Message
		for i, n := range sizes {
			if err := r.Read(&m); err != nil {
				t.Fatalf("step %d, frame %d: %v", step, i, err)
			}
			if m.Seq != uint64(i) || len(m.Payload) != n || (n > 0 && m.Payload[n-1] != byte(i+1)) {
				t.Fatalf("step %d, frame %d: seq %d, payload %d bytes", step, i, m.Seq, len(m.Payload))
			}
		}
		if err := r.Read(&m); err != io.EOF {
			t.Fatalf("step %d: after the last frame: %v, want io.EOF", step, err)
		}
		if idleWaits == 0 {
			t.Errorf("step %d: the reader never waited idle", step)
		}
	}
}
