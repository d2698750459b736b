package reflection

import (
	"bytes"
	"encoding"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"time"
)

// ErrUnsupportedType is wrapped by Schema's error for a type JSON cannot
// carry (a channel, a function, a complex number).
var ErrUnsupportedType = errors.New("reflection: type has no JSON form")

// SchemaDialect is the JSON Schema version Schema writes.
const SchemaDialect = "https://json-schema.org/draft/2020-12/schema"

var (
	typeOfTime        = reflect.TypeFor[time.Time]()
	typeOfDuration    = reflect.TypeFor[time.Duration]()
	typeOfRawMessage  = reflect.TypeFor[json.RawMessage]()
	typeOfJSONMarshal = reflect.TypeFor[json.Marshaler]()
	typeOfTextMarshal = reflect.TypeFor[encoding.TextMarshaler]()
)

// TypeName returns the name a DescribeResponse gives a Go type:
// "arith.Args", "*arith.Args", "[]string", "int".
func TypeName(t reflect.Type) string { return t.String() }

// Schema returns the JSON Schema (draft 2020-12) of the JSON form of t, as
// encoding/json and so shoal's JSON codec and HTTP side read and write it:
//
//   - struct fields by their JSON names (the json tag; "-" and unexported
//     fields left out; embedded structs' fields promoted). When the msgpack
//     codec names a field differently (a msgpack tag), the field's schema
//     says so in "x-msgpack-name";
//   - every named struct type once, under "$defs", referred to by "$ref",
//     so recursive types are described finitely; the document's root is the
//     type itself (a "$ref" when it is a named struct);
//   - a pointer is its element or null; slices and arrays are arrays;
//     []byte is a base64 string; maps are objects; time.Time is a
//     date-time string; time.Duration is an integer of nanoseconds; a type
//     with its own MarshalText is a string, one with its own MarshalJSON
//     (or an interface) is any JSON value.
//
// A type JSON cannot carry is an error wrapping ErrUnsupportedType.
func Schema(t reflect.Type) (string, error) {
	b := &schemaBuilder{defs: map[string]any{}, seen: map[reflect.Type]string{}}
	root, err := b.schema(t, "")
	if err != nil {
		return "", err
	}
	doc := orderedMap{{"$schema", SchemaDialect}}
	doc = append(doc, root...)
	if len(b.defs) > 0 {
		defs := make(orderedMap, 0, len(b.order))
		for _, name := range b.order {
			defs = append(defs, kv{name, b.defs[name]})
		}
		doc = append(doc, kv{"$defs", defs})
	}
	out, err := json.Marshal(doc)
	if err != nil {
		return "", fmt.Errorf("reflection: schema of %s: %w", t, err)
	}
	return string(out), nil
}

// schemaBuilder collects the $defs of one document.
type schemaBuilder struct {
	defs  map[string]any
	order []string                // def names in the order first met, for a stable document
	seen  map[reflect.Type]string // named struct types → def name
}

// kv and orderedMap write a JSON object with its keys in a chosen order
// (encoding/json sorts map keys, which puts "$ref" after "type" and fields
// in alphabetical rather than declaration order).
type kv struct {
	k string
	v any
}

type orderedMap []kv

func (m orderedMap) MarshalJSON() ([]byte, error) {
	var buf bytes.Buffer
	buf.WriteByte('{')
	for i, e := range m {
		if i > 0 {
			buf.WriteByte(',')
		}
		k, _ := json.Marshal(e.k)
		buf.Write(k)
		buf.WriteByte(':')
		v, err := json.Marshal(e.v)
		if err != nil {
			return nil, err
		}
		buf.Write(v)
	}
	buf.WriteByte('}')
	return buf.Bytes(), nil
}

// schema returns t's schema; path names where t is, for errors.
func (b *schemaBuilder) schema(t reflect.Type, path string) (orderedMap, error) {
	switch {
	case t == typeOfTime:
		return orderedMap{{"type", "string"}, {"format", "date-time"}}, nil
	case t == typeOfDuration:
		return orderedMap{{"type", "integer"}, {"description", "time.Duration: nanoseconds"}}, nil
	case t == typeOfRawMessage:
		return orderedMap{}, nil
	case t.Kind() != reflect.Pointer && t.Kind() != reflect.Interface &&
		(t.Implements(typeOfJSONMarshal) || reflect.PointerTo(t).Implements(typeOfJSONMarshal)):
		return orderedMap{{"description", t.String() + ": its own JSON form (MarshalJSON)"}}, nil
	case t.Kind() != reflect.Pointer && t.Kind() != reflect.Interface &&
		(t.Implements(typeOfTextMarshal) || reflect.PointerTo(t).Implements(typeOfTextMarshal)):
		return orderedMap{{"type", "string"}, {"description", t.String() + ": its text form (MarshalText)"}}, nil
	}
	switch t.Kind() {
	case reflect.Bool:
		return orderedMap{{"type", "boolean"}}, nil
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return orderedMap{{"type", "integer"}}, nil
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return orderedMap{{"type", "integer"}, {"minimum", 0}}, nil
	case reflect.Float32, reflect.Float64:
		return orderedMap{{"type", "number"}}, nil
	case reflect.String:
		return orderedMap{{"type", "string"}}, nil
	case reflect.Interface:
		return orderedMap{}, nil // any JSON value
	case reflect.Pointer:
		elem, err := b.schema(t.Elem(), path)
		if err != nil {
			return nil, err
		}
		return nullable(elem), nil
	case reflect.Slice, reflect.Array:
		if t.Elem().Kind() == reflect.Uint8 && t.Kind() == reflect.Slice {
			return orderedMap{{"type", "string"}, {"contentEncoding", "base64"}}, nil
		}
		items, err := b.schema(t.Elem(), path+"[]")
		if err != nil {
			return nil, err
		}
		s := orderedMap{{"type", "array"}, {"items", items}}
		if t.Kind() == reflect.Array {
			s = append(s, kv{"minItems", t.Len()}, kv{"maxItems", t.Len()})
		}
		return s, nil
	case reflect.Map:
		switch k := t.Key(); {
		case k.Kind() == reflect.String, k.Implements(typeOfTextMarshal),
			k.Kind() >= reflect.Int && k.Kind() <= reflect.Uintptr:
		default:
			return nil, fmt.Errorf("%w: %s%s: map key %s", ErrUnsupportedType, t, at(path), k)
		}
		vals, err := b.schema(t.Elem(), path+"{}")
		if err != nil {
			return nil, err
		}
		return orderedMap{{"type", "object"}, {"additionalProperties", vals}}, nil
	case reflect.Struct:
		if t.Name() == "" {
			return b.object(t, path)
		}
		name, ok := b.seen[t]
		if !ok {
			name = b.defName(t)
			b.seen[t] = name
			b.order = append(b.order, name)
			b.defs[name] = nil // taken, before the fields: a recursive field refers to it
			obj, err := b.object(t, path)
			if err != nil {
				return nil, err
			}
			b.defs[name] = obj
		}
		return orderedMap{{"$ref", "#/$defs/" + name}}, nil
	}
	return nil, fmt.Errorf("%w: %s%s", ErrUnsupportedType, t, at(path))
}

func at(path string) string {
	if path == "" {
		return ""
	}
	return " (at " + path + ")"
}

// defName names a struct type in $defs: "pkg.Type", made unique.
func (b *schemaBuilder) defName(t reflect.Type) string {
	base := strings.NewReplacer("[", "_", "]", "_", "*", "", "/", "_", " ", "").Replace(t.String())
	name := base
	for i := 2; ; i++ {
		if _, taken := b.defs[name]; !taken {
			return name
		}
		name = fmt.Sprintf("%s_%d", base, i)
	}
}

// nullable makes s accept null as well.
func nullable(s orderedMap) orderedMap {
	if len(s) == 0 {
		return s // any value, null included
	}
	for i, e := range s {
		if e.k == "type" {
			if name, ok := e.v.(string); ok {
				out := append(orderedMap{}, s...)
				out[i] = kv{"type", []string{name, "null"}}
				return out
			}
		}
	}
	return orderedMap{{"anyOf", []orderedMap{s, {{"type", "null"}}}}}
}

// object is the schema of a struct's fields.
func (b *schemaBuilder) object(t reflect.Type, path string) (orderedMap, error) {
	props := orderedMap{}
	for _, f := range jsonFields(t) {
		fs, err := b.schema(f.typ, path+"."+f.name)
		if err != nil {
			return nil, err
		}
		if f.asString {
			fs = orderedMap{{"type", "string"}, {"description", "a " + f.typ.String() + " quoted as a string (json:\",string\")"}}
		}
		if f.msgpack != "" && f.msgpack != f.name {
			fs = append(fs, kv{"x-msgpack-name", f.msgpack})
		}
		props = append(props, kv{f.name, fs})
	}
	return orderedMap{{"type", "object"}, {"properties", props}}, nil
}

// field is a struct field as encoding/json sees it.
type field struct {
	name     string // the JSON name
	msgpack  string // the msgpack codec's name for it
	typ      reflect.Type
	index    []int
	asString bool // `json:",string"`
}

// jsonFields lists t's fields as encoding/json encodes them: exported, not
// tagged "-", fields of embedded structs promoted (a field at a shallower
// depth, or tagged, hiding a clash, as encoding/json does; clashes it drops
// are dropped here too).
func jsonFields(t reflect.Type) []field {
	type candidate struct {
		field
		depth  int
		tagged bool
	}
	var all []candidate
	var walk func(t reflect.Type, index []int, depth int, visited map[reflect.Type]bool)
	walk = func(t reflect.Type, index []int, depth int, visited map[reflect.Type]bool) {
		if visited[t] {
			return
		}
		visited[t] = true
		for i := range t.NumField() {
			sf := t.Field(i)
			tag := sf.Tag.Get("json")
			if tag == "-" {
				continue
			}
			name, opts, _ := strings.Cut(tag, ",")
			ft := sf.Type
			if sf.Anonymous {
				et := ft
				if et.Kind() == reflect.Pointer {
					et = et.Elem()
				}
				if !sf.IsExported() && et.Kind() != reflect.Struct {
					continue
				}
				if name == "" && et.Kind() == reflect.Struct {
					walk(et, append(append([]int{}, index...), i), depth+1, visited)
					continue
				}
			} else if !sf.IsExported() {
				continue
			}
			tagged := name != ""
			if name == "" {
				name = sf.Name
			}
			mp, _, _ := strings.Cut(sf.Tag.Get("msgpack"), ",")
			if mp == "" {
				mp = sf.Name
			}
			asString := false
			for o := range strings.SplitSeq(opts, ",") {
				if o == "string" {
					switch ft.Kind() {
					case reflect.Bool, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
						reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr,
						reflect.Float32, reflect.Float64:
						asString = true
					}
				}
			}
			all = append(all, candidate{field{name, mp, ft, append(append([]int{}, index...), i), asString}, depth, tagged})
		}
		delete(visited, t)
	}
	walk(t, nil, 0, map[reflect.Type]bool{})

	// encoding/json's dominance rule: of the fields sharing a name, the
	// shallowest wins; at equal depth a tagged one wins; otherwise none.
	byName := map[string][]candidate{}
	var names []string
	for _, c := range all {
		if _, ok := byName[c.name]; !ok {
			names = append(names, c.name)
		}
		byName[c.name] = append(byName[c.name], c)
	}
	var out []field
	for _, n := range names {
		cs := byName[n]
		best, ok := cs[0], true
		for _, c := range cs[1:] {
			switch {
			case c.depth < best.depth || (c.depth == best.depth && c.tagged && !best.tagged):
				best, ok = c, true
			case c.depth == best.depth && c.tagged == best.tagged:
				ok = false
			}
		}
		if ok {
			out = append(out, best.field)
		}
	}
	return out
}

// Example returns a JSON body of t with zero values, ready to edit and send:
// every field present (pointers to structs filled in, once per type on a
// path, so recursive types end in null), slices and maps empty.
func Example(t reflect.Type) string {
	out, err := json.Marshal(example(t, map[reflect.Type]bool{}))
	if err != nil {
		return "{}"
	}
	return string(out)
}

func example(t reflect.Type, onPath map[reflect.Type]bool) any {
	switch {
	case t == typeOfTime:
		return time.Time{}.Format(time.RFC3339)
	case t == typeOfDuration:
		return 0
	case t == typeOfRawMessage:
		return nil
	case t.Kind() != reflect.Pointer && t.Kind() != reflect.Interface &&
		(t.Implements(typeOfJSONMarshal) || t.Implements(typeOfTextMarshal)):
		return reflect.Zero(t).Interface() // its own zero form
	}
	switch t.Kind() {
	case reflect.Pointer:
		if onPath[t.Elem()] {
			return nil
		}
		return example(t.Elem(), onPath)
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 {
			return ""
		}
		return []any{}
	case reflect.Array:
		items := make([]any, t.Len())
		for i := range items {
			items[i] = example(t.Elem(), onPath)
		}
		return items
	case reflect.Map:
		return struct{}{}
	case reflect.Interface:
		return nil
	case reflect.Struct:
		if onPath[t] {
			return nil
		}
		onPath[t] = true
		defer delete(onPath, t)
		obj := orderedMap{}
		for _, f := range jsonFields(t) {
			v := example(f.typ, onPath)
			if f.asString {
				b, _ := json.Marshal(v)
				v = string(b)
			}
			obj = append(obj, kv{f.name, v})
		}
		return obj
	case reflect.Chan, reflect.Func, reflect.Complex64, reflect.Complex128, reflect.UnsafePointer:
		return nil
	}
	return reflect.Zero(t).Interface()
}
