package protocol

import (
	"bytes"
	"reflect"
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
