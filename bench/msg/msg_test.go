package msg

import (
	"bytes"
	"encoding/gob"
	"reflect"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
	"google.golang.org/protobuf/proto"
)

// TestSizes checks that the protobuf request is rpcx-benchmark's 581 bytes
// and logs what the same request weighs in the other encodings.
func TestSizes(t *testing.T) {
	b, err := proto.Marshal(NewProto())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("protobuf: %d bytes", len(b))
	if len(b) != 581 {
		t.Errorf("protobuf request is %d bytes, want 581", len(b))
	}

	mp, err := msgpack.Marshal(New())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("msgpack (as_array): %d bytes", len(mp))
	if mp[0] != 0xdc { // array 16: the as_array option is in effect
		t.Errorf("msgpack encoding starts with %#x, want an array (0xdc)", mp[0])
	}
	var back BenchmarkMessage
	if err := msgpack.Unmarshal(mp, &back); err != nil {
		t.Fatal(err)
	}
	if back.Field129 != Text || back.Field131 != Int || !back.Field78 {
		t.Errorf("msgpack round trip lost fields: %+v", back)
	}

	var gb bytes.Buffer
	if err := gob.NewEncoder(&gb).Encode(New()); err != nil {
		t.Fatal(err)
	}
	t.Logf("gob: %d bytes with the type description of the first message on a stream", gb.Len())
}

func TestAnswer(t *testing.T) {
	var reply BenchmarkMessage
	Answer(New(), &reply)
	if reply.Field1 != "OK" || reply.Field2 != 100 || reply.Field9 != Text {
		t.Errorf("Answer: %+v", reply)
	}
}

// TestGeneratedCodeMatchesReflection checks that msg_gen.go and the
// msgpack library's reflection (as_array) read each other's encoding, so
// a peer using either sees the same message.
func TestGeneratedCodeMatchesReflection(t *testing.T) {
	want := New()
	want.Field5 = []uint64{1, 1 << 40}
	gen, err := want.MarshalMsg(nil)
	if err != nil {
		t.Fatal(err)
	}
	var viaReflection BenchmarkMessage
	if err := msgpack.Unmarshal(gen, &viaReflection); err != nil {
		t.Fatalf("reflection reading generated code's output: %v", err)
	}
	if !reflect.DeepEqual(&viaReflection, want) {
		t.Errorf("reflection read %+v, want %+v", viaReflection, *want)
	}
	refl, err := msgpack.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	var viaGenerated BenchmarkMessage
	if rest, err := viaGenerated.UnmarshalMsg(refl); err != nil || len(rest) != 0 {
		t.Fatalf("generated code reading reflection's output: %v (%d bytes left)", err, len(rest))
	}
	if !reflect.DeepEqual(&viaGenerated, want) {
		t.Errorf("generated code read %+v, want %+v", viaGenerated, *want)
	}
	t.Logf("generated: %d bytes, reflection: %d bytes", len(gen), len(refl))
}

// TestPlainIsPlain checks that Plain is what the default path promises: no
// methods, no struct tags, and BenchmarkMessage's 40 fields with their
// names and types in the same order; and that shoal's default msgpack
// encoding of it is a map keyed by field name.
func TestPlainIsPlain(t *testing.T) {
	pt := reflect.TypeFor[Plain]()
	if n := pt.NumMethod() + reflect.PointerTo(pt).NumMethod(); n != 0 {
		t.Errorf("Plain has %d methods, want none", n)
	}
	var fields []reflect.StructField
	bt := reflect.TypeFor[BenchmarkMessage]()
	for i := range bt.NumField() {
		if f := bt.Field(i); f.IsExported() {
			fields = append(fields, f)
		}
	}
	if pt.NumField() != 40 || len(fields) != 40 {
		t.Fatalf("Plain has %d fields, BenchmarkMessage %d exported ones; want 40", pt.NumField(), len(fields))
	}
	for i := range pt.NumField() {
		f := pt.Field(i)
		if f.Tag != "" {
			t.Errorf("Plain.%s has the tag %q", f.Name, f.Tag)
		}
		if f.Name != fields[i].Name || f.Type != fields[i].Type {
			t.Errorf("Plain field %d is %s %v, BenchmarkMessage's is %s %v", i, f.Name, f.Type, fields[i].Name, fields[i].Type)
		}
	}
	b, err := msgpack.Marshal(NewPlain())
	if err != nil {
		t.Fatal(err)
	}
	if b[0] != 0xde { // map 16: 40 keys
		t.Errorf("msgpack encoding of Plain starts with %#x, want a map (0xde)", b[0])
	}
	t.Logf("msgpack (map with field names): %d bytes", len(b))
	var back Plain
	if err := msgpack.Unmarshal(b, &back); err != nil || !reflect.DeepEqual(&back, NewPlain()) {
		t.Errorf("round trip: %v, %+v", err, back)
	}
}
