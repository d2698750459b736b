package protocol

import (
	"errors"
	"testing"
)

func TestWindowFrameRoundTrip(t *testing.T) {
	frame := AppendWindow(nil, 7, 12345)
	var m Message
	n, err := DecodeFrame(frame, 0, &m)
	if err != nil {
		t.Fatal(err)
	}
	if n != len(frame) || m.Kind != KindWindow || m.Seq != 7 || WindowIncrement(&m) != 12345 {
		t.Fatalf("decoded %d of %d bytes: %+v, increment %d", n, len(frame), m.Header, WindowIncrement(&m))
	}
}

func TestMalformedStreamFramesAreRefused(t *testing.T) {
	encode := func(m Message) []byte {
		b, err := AppendFrame(nil, &m, 0)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	zero := AppendWindow(nil, 1, 0)
	short := encode(Message{Header: Header{Kind: KindWindow, Seq: 1}, Payload: []byte{0, 1}})
	cases := map[string][]byte{
		"window of 0 bytes":               zero,
		"window with a 2-byte increment":  short,
		"data frame with a method":        encode(Message{Header: Header{Kind: KindStreamData, Seq: 1}, Method: "A.B"}),
		"reset with metadata":             encode(Message{Header: Header{Kind: KindReset, Seq: 1}, Metadata: map[string]string{"a": "b"}}),
		"end with text and no error flag": encode(Message{Header: Header{Kind: KindStreamEnd, Seq: 1}, Payload: []byte("x")}),
		"stream flag on a response":       encode(Message{Header: Header{Kind: KindResponse, Flags: FlagStream, Seq: 1}}),
		"stream flag on a one-way call":   encode(Message{Header: Header{Kind: KindRequest, Flags: FlagStream | FlagOneWay, Status: Status(BidiStream), Seq: 1}, Method: "A.B"}),
		"stream open of no shape":         encode(Message{Header: Header{Kind: KindRequest, Flags: FlagStream, Seq: 1}, Method: "A.B"}),
		"stream open of shape 4":          encode(Message{Header: Header{Kind: KindRequest, Flags: FlagStream, Status: 4, Seq: 1}, Method: "A.B"}),
	}
	for name, frame := range cases {
		var m Message
		if _, err := DecodeFrame(frame, 0, &m); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: got %v, want ErrMalformed", name, err)
		}
	}
}

// A data frame's sender and its receiver reckon the same cost, compressed or
// not: the frame's size as it would be uncompressed.
func TestDataCostIsTheSameOnBothEnds(t *testing.T) {
	for _, tc := range []struct {
		name       string
		payload    []byte
		compressed bool
	}{
		{"small", []byte("hello"), false},
		{"large, compressible", make([]byte, 64<<10), true},
		{"large, compression off", make([]byte, 64<<10), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := Message{Header: Header{Kind: KindStreamData, Seq: 7}}
			if tc.compressed {
				m.Flags = FlagCompress
			}
			frame, err := AppendFrameEncode(nil, &m, Msgpack, tc.payload, 0)
			if err != nil {
				t.Fatal(err)
			}
			if got := Flags(frame[3])&FlagCompressed != 0; got != tc.compressed {
				t.Fatalf("compressed: %v, want %v", got, tc.compressed)
			}
			var d Message
			if _, err := DecodeFrame(frame, 0, &d); err != nil {
				t.Fatal(err)
			}
			sent, received := DataCost(frame), ReceivedCost(&d)
			plain := FrameCost(uint32(dataFieldsSize + len(d.Payload)))
			if sent != received || sent != plain {
				t.Fatalf("sender's cost %d, receiver's %d, want both %d (%d bytes on the wire)", sent, received, plain, len(frame))
			}
		})
	}
}
