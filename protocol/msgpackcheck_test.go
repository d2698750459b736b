package protocol

import (
	"bytes"
	"errors"
	"math"
	"runtime"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/shoalrpc/shoal/internal/testmsg"
)

func TestCheckAcceptsWhatMsgpackWrites(t *testing.T) {
	values := []any{
		nil, true, false, 0, -1, -33, 127, 128, 65536, math.MaxInt64, uint64(math.MaxUint64), math.MinInt64,
		float32(1.5), 2.5, "", "short", string(make([]byte, 70_000)), []byte{}, make([]byte, 300), make([]byte, 70_000),
		[]int{}, []int{1, 2, 3}, make([]int, 20), make([]int, 70_000), map[string]int{}, map[string]int{"a": 1},
		map[string]any{"nested": map[string]any{"deeper": []any{1, "x", nil, []any{}}}},
		time.Unix(1700000000, 123), // an extension
		testmsg.NewBenchmarkMessage(),
	}
	for _, c := range []Codec{Msgpack, MsgpackCompact} {
		for _, v := range values {
			b, err := c.Append(nil, v)
			if err != nil {
				t.Fatal(err)
			}
			if err := checkMsgpack(b); err != nil {
				t.Errorf("%s %T: %v", c.Name(), v, err)
			}
		}
	}
}

func TestCheckStopsAmplification(t *testing.T) {
	tail := []byte("000000000")
	cases := map[string][]byte{
		"bin32 of 808 MB":       append([]byte{0xc6}, tail...),
		"str32 of 808 MB":       append([]byte{0xdb}, tail...),
		"array32 of 808 M":      append([]byte{0xdd}, tail...),
		"map32 of 808 M":        append([]byte{0xdf}, tail...),
		"ext32 of 808 MB":       append([]byte{0xc9}, tail...),
		"array16 past the end":  {0xdc, 0x01, 0x00, 0xc0},
		"truncated int64":       {0xd3, 0x00},
		"never-used code 0xc1":  {0xc1},
		"empty":                 {},
		"300 nested arrays":     append(bytes.Repeat([]byte{0x91}, 300), 0xc0),
		"map missing its value": {0x81, 0xa1, 'k'},
	}
	for name, payload := range cases {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		var out any
		err := Msgpack.Decode(payload, &out)
		runtime.ReadMemStats(&after)
		if !errors.Is(err, errMsgpackCheck) {
			t.Errorf("%s: %v, want the check to refuse it", name, err)
		}
		if grew := after.TotalAlloc - before.TotalAlloc; grew > 64<<10 {
			t.Errorf("%s: %d bytes allocated", name, grew)
		}
	}
	// Nesting up to the limit is fine.
	ok := append(bytes.Repeat([]byte{0x91}, maxMsgpackDepth), 0xc0)
	if err := checkMsgpack(ok); err != nil {
		t.Fatalf("%d nested arrays: %v", maxMsgpackDepth, err)
	}
}

// FuzzMsgpackCheck holds the check to two properties: what it accepts
// decodes without allocating more than the payload could describe, and what
// the decoder makes of it encodes back into a payload the check accepts too
// (no false refusals of what msgpack itself writes). The raw decoder is
// never given a payload the check refused: that is the attack.
func FuzzMsgpackCheck(f *testing.F) {
	for _, v := range []any{nil, 1, "s", []any{1, []any{2}}, map[string]any{"a": []byte("b")}, testmsg.NewBenchmarkMessage(), time.Unix(1, 2)} {
		b, _ := msgpack.Marshal(v)
		f.Add(b)
	}
	f.Add([]byte{0xdd, 0x30, 0x30, 0x30, 0x30})
	f.Fuzz(func(t *testing.T, data []byte) {
		if checkMsgpack(data) != nil {
			return
		}
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		var out any
		err := Msgpack.Decode(data, &out)
		runtime.ReadMemStats(&after)
		if grew := after.TotalAlloc - before.TotalAlloc; grew > 1<<20+uint64(256*len(data)) {
			t.Fatalf("%d bytes allocated for a %d-byte payload", grew, len(data))
		}
		if err != nil {
			return
		}
		again, err := msgpack.Marshal(out)
		if err != nil {
			return // a decoded value msgpack cannot write back (an unknown extension)
		}
		if err := checkMsgpack(again); err != nil {
			t.Fatalf("the check refuses msgpack's own encoding of %#v: %v", out, err)
		}
	})
}
