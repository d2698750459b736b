package reflection_test

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/shoalrpc/shoal/reflection"
)

type Inner struct {
	When  time.Time
	Blob  []byte
	Score *float64
}

type Node struct {
	Name     string `json:"name" msgpack:"n"`
	Children []*Node
	Next     *Node `json:"next,omitempty"`
}

type Base struct {
	ID   int64
	Kind string
}

type Outer struct {
	Base
	Title   string            `json:"title"`
	Skipped string            `json:"-"`
	hidden  int               // unexported: left out
	Count   uint32            `json:"count,string"`
	Tags    []string          `json:"tags"`
	Attrs   map[string]int    `json:"attrs"`
	In      Inner             `json:"in"`
	InPtr   *Inner            `json:"in_ptr"`
	Tree    *Node             `json:"tree"`
	Grid    [2]bool           `json:"grid"`
	Any     any               `json:"any"`
	Raw     json.RawMessage   `json:"raw"`
	Labels  map[string]string `json:"labels,omitempty"`
	Wait    time.Duration     `json:"wait"`
}

func decode(t *testing.T, s string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		t.Fatalf("schema is not JSON: %v\n%s", err, s)
	}
	return m
}

func dig(t *testing.T, v any, path ...string) any {
	t.Helper()
	for _, p := range path {
		m, ok := v.(map[string]any)
		if !ok {
			t.Fatalf("at %q: %T is not an object", p, v)
		}
		if v, ok = m[p]; !ok {
			t.Fatalf("no %q in %v", p, m)
		}
	}
	return v
}

func TestSchemaOfStruct(t *testing.T) {
	_ = Outer{hidden: 1} // the unexported field is there to be left out
	s, err := reflection.Schema(reflect.TypeFor[Outer]())
	if err != nil {
		t.Fatal(err)
	}
	doc := decode(t, s)
	if got := dig(t, doc, "$schema"); got != reflection.SchemaDialect {
		t.Errorf("$schema = %v", got)
	}
	if got := dig(t, doc, "$ref"); got != "#/$defs/reflection_test.Outer" {
		t.Fatalf("root $ref = %v", got)
	}
	outer := dig(t, doc, "$defs", "reflection_test.Outer", "properties").(map[string]any)
	var names []string
	for k := range outer {
		names = append(names, k)
	}
	for _, want := range []string{"ID", "Kind", "title", "count", "tags", "attrs", "in", "in_ptr", "tree", "grid", "any", "raw", "labels", "wait"} {
		if _, ok := outer[want]; !ok {
			t.Errorf("no property %q; have %v", want, names)
		}
	}
	for _, gone := range []string{"Skipped", "hidden", "Base", "Title"} {
		if _, ok := outer[gone]; ok {
			t.Errorf("property %q should not be there", gone)
		}
	}
	checks := []struct {
		path []string
		want string
	}{
		{[]string{"count", "type"}, `"string"`},
		{[]string{"tags", "type"}, `"array"`},
		{[]string{"tags", "items", "type"}, `"string"`},
		{[]string{"attrs", "additionalProperties", "type"}, `"integer"`},
		{[]string{"in", "$ref"}, `"#/$defs/reflection_test.Inner"`},
		{[]string{"in_ptr", "anyOf"}, `[{"$ref":"#/$defs/reflection_test.Inner"},{"type":"null"}]`},
		{[]string{"grid", "maxItems"}, `2`},
		{[]string{"any"}, `{"x-msgpack-name":"Any"}`}, // any JSON value; msgpack names it by the Go field
		{[]string{"wait", "type"}, `"integer"`},
	}
	for _, c := range checks {
		got, _ := json.Marshal(dig(t, outer, c.path...))
		if string(got) != c.want {
			t.Errorf("%s = %s, want %s", strings.Join(c.path, "."), got, c.want)
		}
	}
	inner := dig(t, doc, "$defs", "reflection_test.Inner", "properties")
	if got := dig(t, inner, "When", "format"); got != "date-time" {
		t.Errorf("time.Time format = %v", got)
	}
	if got := dig(t, inner, "Blob", "contentEncoding"); got != "base64" {
		t.Errorf("[]byte contentEncoding = %v", got)
	}
	if got, _ := json.Marshal(dig(t, inner, "Score", "type")); string(got) != `["number","null"]` {
		t.Errorf("*float64 type = %s", got)
	}
}

func TestSchemaOfRecursiveType(t *testing.T) {
	s, err := reflection.Schema(reflect.TypeFor[*Node]())
	if err != nil {
		t.Fatal(err)
	}
	doc := decode(t, s)
	props := dig(t, doc, "$defs", "reflection_test.Node", "properties")
	if got := dig(t, props, "Children", "items", "anyOf").([]any)[0]; dig(t, got, "$ref") != "#/$defs/reflection_test.Node" {
		t.Errorf("Children items = %v", got)
	}
	if got := dig(t, props, "name", "x-msgpack-name"); got != "n" {
		t.Errorf("msgpack name of name = %v, want n", got)
	}
	if got := dig(t, doc, "anyOf").([]any); len(got) != 2 {
		t.Errorf("a pointer root is its element or null: %v", got)
	}
}

func TestSchemaOfUnsupportedType(t *testing.T) {
	type WithChan struct{ C chan int }
	_, err := reflection.Schema(reflect.TypeFor[WithChan]())
	if !errors.Is(err, reflection.ErrUnsupportedType) || !strings.Contains(err.Error(), ".C") {
		t.Fatalf("err = %v, want ErrUnsupportedType naming the field", err)
	}
}

func TestExample(t *testing.T) {
	got := reflection.Example(reflect.TypeFor[*Node]())
	if want := `{"name":"","Children":[],"next":null}`; got != want {
		t.Errorf("Example(*Node) = %s, want %s", got, want)
	}
	got = reflection.Example(reflect.TypeFor[Outer]())
	var back Outer
	if err := json.Unmarshal([]byte(got), &back); err != nil {
		t.Fatalf("the example of Outer does not decode into Outer: %v\n%s", err, got)
	}
	if !strings.HasPrefix(got, `{"ID":0,"Kind":"","title":"","count":"0","tags":[]`) {
		t.Errorf("Example(Outer) = %s", got)
	}
	if got := reflection.Example(reflect.TypeFor[int]()); got != "0" {
		t.Errorf("Example(int) = %s", got)
	}
}
