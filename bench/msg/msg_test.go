package msg

import (
	"bytes"
	"encoding/gob"
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
