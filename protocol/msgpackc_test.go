package protocol

import (
	"bytes"
	"errors"
	"reflect"
	"runtime"
	"testing"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/shoalrpc/shoal/internal/testmsg"
)

// TestCompiledBenchmarkMessage: the benchmark message compiles, and the
// compiled codec writes exactly vmihailenco's bytes for it, as a map and as
// an array, and reads them back.
func TestCompiledBenchmarkMessage(t *testing.T) {
	in := testmsg.NewBenchmarkMessage()
	in.Field5 = []uint64{1, 1 << 40}
	if mpPlanFor(reflect.TypeOf(in)) == nil {
		t.Fatal("the benchmark message is not compiled")
	}
	for _, c := range []Codec{Msgpack, MsgpackCompact} {
		got, err := c.Append(nil, in)
		if err != nil {
			t.Fatal(err)
		}
		var want bytes.Buffer
		enc := msgpack.NewEncoder(&want)
		enc.UseArrayEncodedStructs(c == MsgpackCompact)
		if err := enc.Encode(in); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want.Bytes()) {
			t.Fatalf("%s: compiled\n%x\nvmihailenco\n%x", c.Name(), got, want.Bytes())
		}
		var out testmsg.BenchmarkMessage
		if err := c.Decode(got, &out); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(*in, out) {
			t.Fatalf("%s: decoded %+v", c.Name(), out)
		}
	}
}

type withInterface struct{ V any }

type selfEncoded struct{ N int }

func (s *selfEncoded) EncodeMsgpack(e *msgpack.Encoder) error { return e.EncodeString("custom") }
func (s *selfEncoded) DecodeMsgpack(d *msgpack.Decoder) error {
	_, err := d.DecodeString()
	return err
}

type withCustomField struct {
	A int
	C selfEncoded
}

type textual struct{ s string }

func (t textual) MarshalText() ([]byte, error) { return []byte("text:" + t.s), nil }
func (t *textual) UnmarshalText(b []byte) error {
	t.s = string(b)
	return nil
}

type withTextField struct{ T textual }

type withAlias struct {
	A int `msgpack:"a,alias:alpha"`
}

type withInline struct {
	FzEmbedded `msgpack:",inline"`
}

type hidden struct{ X int }

type withUnexportedEmbedded struct {
	hidden
	Y int
}

type withDuplicate struct {
	A int
	B int `msgpack:"A"`
}

// registeredColor is registered with vmihailenco, which the compiled codec
// cannot see; its zero value's encoding gives it away.
type registeredColor uint8

type withRegistered struct{ C registeredColor }

func init() {
	msgpack.Register(registeredColor(0),
		func(e *msgpack.Encoder, v reflect.Value) error { return e.EncodeString("color") },
		func(d *msgpack.Decoder, v reflect.Value) error { _, err := d.DecodeString(); return err })
}

// TestCompiledFallsBack: types with what the compiler does not copy are
// left to vmihailenco whole, and the codec still writes vmihailenco's bytes
// for them.
func TestCompiledFallsBack(t *testing.T) {
	for _, v := range []any{
		&withInterface{V: 1}, &withCustomField{A: 1}, &withTextField{T: textual{"x"}}, &withAlias{A: 2},
		&withInline{FzEmbedded{E1: 3}}, &withUnexportedEmbedded{hidden{1}, 2}, &withDuplicate{1, 2},
		&withRegistered{C: 3}, &selfEncoded{N: 1}, &point{X: 1},
	} {
		if mpPlanFor(reflect.TypeOf(v)) != nil {
			t.Errorf("%T is compiled", v)
		}
		if _, ok := v.(*point); ok {
			continue // its generated MarshalMsg (TestCodecsUseGeneratedMethods)
		}
		got, err := Msgpack.Append(nil, v)
		if err != nil {
			t.Fatal(err)
		}
		want, err := msgpack.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%T: %x, vmihailenco %x", v, got, want)
		}
	}
}

// TestCompiledTopLevelByValue: a struct passed by value encodes as through
// a pointer; a nil pointer as nil.
func TestCompiledTopLevelByValue(t *testing.T) {
	in := testmsg.NewBenchmarkMessage()
	byPtr, _ := Msgpack.Append(nil, in)
	byVal, err := Msgpack.Append(nil, *in)
	if err != nil || !bytes.Equal(byPtr, byVal) {
		t.Fatalf("by value %x (%v), by pointer %x", byVal, err, byPtr)
	}
	nilPtr, _ := Msgpack.Append(nil, (*testmsg.BenchmarkMessage)(nil))
	if !bytes.Equal(nilPtr, []byte{0xc0}) {
		t.Fatalf("nil pointer: %x", nilPtr)
	}
}

// TestCompiledDecoderKeepsThePayloadCheck: the check folded into the
// compiled decoder refuses what checkMsgpack refuses, with its error, and
// allocates nothing from a declared length.
func TestCompiledDecoderKeepsThePayloadCheck(t *testing.T) {
	tail := []byte("000000000")
	cases := map[string][]byte{
		"str32 of 808 MB as a field value": append([]byte("\x81\xa6Field1\xdb"), tail...),
		"array32 of 808 M as Field5":       append([]byte("\x81\xa6Field5\xdd"), tail...),
		"map32 of 808 M as the struct":     append([]byte{0xdf}, tail...),
		"array32 of 808 M as the struct":   append([]byte{0xdd}, tail...),
		"unknown field, bin32 of 808 MB":   append([]byte("\x81\xa1X\xc6"), tail...),
		"unknown field nested 300 deep":    append(append([]byte("\x81\xa1X"), bytes.Repeat([]byte{0x91}, 300)...), 0xc0),
		"truncated int32":                  []byte("\x81\xa6Field2\xd2\x00"),
		"never-used code 0xc1 in a field":  []byte("\x81\xa1X\xc1"),
		"empty":                            {},
	}
	for name, payload := range cases {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		var out testmsg.BenchmarkMessage
		err := Msgpack.Decode(payload, &out)
		runtime.ReadMemStats(&after)
		if !errors.Is(err, errMsgpackCheck) {
			t.Errorf("%s: %v, want the check's error", name, err)
		}
		if grew := after.TotalAlloc - before.TotalAlloc; grew > 64<<10 {
			t.Errorf("%s: %d bytes allocated", name, grew)
		}
	}
}
