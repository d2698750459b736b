package protocol

import (
	"errors"
	"strings"
	"testing"
	"time"
)

type person struct {
	Name  string
	Age   int
	Tags  []string
	Score map[string]float64
	Nick  string `msgpack:"nick"`
	When  time.Time
}

// A payload that does not fit the target type names the field, the Go type
// and what the payload holds, in both msgpack codecs, and keeps the codec's
// own error underneath.
func TestDecodeErrorNamesFieldAndTypes(t *testing.T) {
	type wrongAge struct{ Name, Age string }
	tests := []struct {
		name string
		send any
		into any
		want string
	}{
		{"field", wrongAge{Name: "ann", Age: "x"}, new(person), `field person.Age: want int, got string "x"`},
		{"element", map[string]any{"Tags": []any{"a", 7}}, new(person), "field person.Tags[1]: want string, got int 7"},
		{"map value", map[string]any{"Score": map[string]string{"b": "high"}}, new(person), `field person.Score["b"]: want float64, got string "high"`},
		{"tagged", map[string]any{"nick": 42}, new(person), "field person.Nick: want string, got int 42"},
		{"whole value", 42, new(person), "want protocol.person, got int 42"},
		{"builtin", "forty-two", new(int), `want int, got string "forty-two"`},
	}
	for _, codec := range []Codec{Msgpack, MsgpackCompact} {
		for _, tt := range tests {
			data, err := codec.Append(nil, tt.send)
			if err != nil {
				t.Fatal(err)
			}
			err = codec.Decode(data, tt.into)
			var de *DecodeError
			if !errors.As(err, &de) || err.Error() != tt.want {
				t.Errorf("%s, %s: %v, want a *DecodeError %q", codec.Name(), tt.name, err, tt.want)
				continue
			}
			if de.Err == nil || !strings.HasPrefix(de.Err.Error(), "msgpack:") {
				t.Errorf("%s, %s: the codec's own error is lost: %v", codec.Name(), tt.name, de.Err)
			}
		}
	}
}

// A payload that fits decodes as before; numbers convert as msgpack converts
// them.
func TestDecodeErrorOnlyOnMismatch(t *testing.T) {
	in := person{Name: "ann", Age: 3, Tags: []string{"x"}, Score: map[string]float64{"a": 1}, When: time.Unix(1, 0)}
	data, _ := Msgpack.Append(nil, in)
	var out person
	if err := Msgpack.Decode(data, &out); err != nil || out.Name != "ann" || out.Age != 3 {
		t.Fatalf("%v %+v", err, out)
	}
	// A float where an int is wanted is a mismatch; an int where a float is
	// wanted is not (msgpack converts it).
	data, _ = Msgpack.Append(nil, map[string]any{"Score": map[string]any{"a": 2}, "Age": 1.5})
	err := Msgpack.Decode(data, &out)
	if err == nil || err.Error() != "field person.Age: want int, got float 1.5" {
		t.Fatalf("float into int: %v", err)
	}
}
