package protocol

import (
	"bytes"
	"errors"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

// point has hand-written MarshalMsg and UnmarshalMsg, as generated code
// would: a msgpack array of two ints. It counts the calls so the test can
// tell the codec used them rather than reflection.
type point struct {
	X, Y              int64
	marshals, decodes int
	failMarshal       bool
}

var errMarshal = errors.New("marshal refused")

func (p *point) MarshalMsg(b []byte) ([]byte, error) {
	p.marshals++
	if p.failMarshal {
		return append(b, 0xff), errMarshal // a partial write the codec must drop
	}
	b = append(b, 0x92)
	b = msgpackAppendInt(b, p.X)
	return msgpackAppendInt(b, p.Y), nil
}

func (p *point) UnmarshalMsg(b []byte) ([]byte, error) {
	p.decodes++
	var v [2]int64
	if err := msgpack.Unmarshal(b, &v); err != nil {
		return b, err
	}
	p.X, p.Y = v[0], v[1]
	return nil, nil
}

func msgpackAppendInt(b []byte, v int64) []byte {
	out, _ := msgpack.Marshal(v)
	return append(b, out...)
}

func TestCodecsUseGeneratedMethods(t *testing.T) {
	for _, c := range []Codec{Msgpack, MsgpackCompact} {
		in := &point{X: 3, Y: -70000}
		prefix := []byte("head")
		out, err := c.Append(prefix, in)
		if err != nil {
			t.Fatalf("%s: append: %v", c.Name(), err)
		}
		if in.marshals != 1 || !bytes.HasPrefix(out, prefix) {
			t.Fatalf("%s: MarshalMsg called %d times, output %x", c.Name(), in.marshals, out)
		}
		var back point
		if err := c.Decode(out[len(prefix):], &back); err != nil {
			t.Fatalf("%s: decode: %v", c.Name(), err)
		}
		if back.decodes != 1 || back.X != 3 || back.Y != -70000 {
			t.Fatalf("%s: decoded %+v", c.Name(), back)
		}

		// A failed MarshalMsg leaves dst as it was.
		bad := &point{failMarshal: true}
		out, err = c.Append(prefix, bad)
		if !errors.Is(err, errMarshal) || !bytes.Equal(out, prefix) {
			t.Fatalf("%s: failed MarshalMsg: %q, %v", c.Name(), out, err)
		}

		// The payload check still runs first: an array announcing more
		// elements than bytes never reaches UnmarshalMsg.
		var victim point
		err = c.Decode([]byte{0xdd, 0x30, 0x00, 0x00, 0x00, 0x01}, &victim)
		if !errors.Is(err, errMsgpackCheck) || victim.decodes != 0 {
			t.Fatalf("%s: oversized array: err %v, UnmarshalMsg called %d times", c.Name(), err, victim.decodes)
		}
	}
}

// TestMsgpackDecodeNeverPanics: the msgpack library panics on a map whose
// key is a map when it decodes into an interface ("hash of unhashable
// type"); Decode answers ErrMalformed instead, for an interface target and
// when describing a mismatch (found by FuzzMsgpackCheck).
func TestMsgpackDecodeNeverPanics(t *testing.T) {
	mapKeyedByMap := []byte("\x81\x81\x01\x02\x03")
	for _, c := range []Codec{Msgpack, MsgpackCompact} {
		var v any
		if err := c.Decode(mapKeyedByMap, &v); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: decode into any: %v, want ErrMalformed", c.Name(), err)
		}
		var n int // a mismatch, whose description decodes the payload generically
		if err := c.Decode([]byte("\x8d\x8200000000000000000000000000000"), &n); err == nil {
			t.Errorf("%s: decode a map into an int succeeded", c.Name())
		}
	}
}
