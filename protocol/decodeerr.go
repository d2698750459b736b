package protocol

import (
	"bytes"
	"encoding"
	"fmt"
	"reflect"
	"strconv"
	"strings"

	"github.com/vmihailenco/msgpack/v5"
)

// DecodeError is a payload that does not fit the Go value it was decoded
// into, said in Go terms: which field, the type it has, and what the
// payload holds there. The msgpack codecs return it for a type mismatch in
// place of the library's bare "invalid code" message, which stays available
// through errors.Unwrap.
type DecodeError struct {
	// Field is the path to the value that did not fit, from the decoded
	// type: "Args.Name", "Order.Items[2].Qty", "map[string]int[\"b\"]"; empty
	// when the whole payload does not fit.
	Field string
	// Want is the Go type of that value, e.g. "string".
	Want string
	// Got is what the payload holds there, e.g. "int 42" or "map".
	Got string
	// Err is the codec's own error.
	Err error
}

// Error says where the payload did not fit: "field Args.A: want int, got
// string \"x\"", or "want int, got string \"x\"" for the whole value.
func (e *DecodeError) Error() string {
	if e.Field == "" {
		return "want " + e.Want + ", got " + e.Got
	}
	return "field " + e.Field + ": want " + e.Want + ", got " + e.Got
}

// Unwrap returns the codec's own error.
func (e *DecodeError) Unwrap() error { return e.Err }

// describeMsgpackError turns err, from decoding data into v, into a
// *DecodeError when it can find where the payload and v's type part ways;
// otherwise it returns err as it is. It runs only after a decode failed: it
// decodes data again without a target type (data has passed checkMsgpack,
// so this is bounded) and walks it beside v's type.
func describeMsgpackError(data []byte, v any, err error) error {
	t := reflect.TypeOf(v)
	if t == nil || t.Kind() != reflect.Pointer {
		return err
	}
	t = t.Elem()
	dec := msgpack.NewDecoder(bytes.NewReader(data))
	dec.SetMapDecoder(func(d *msgpack.Decoder) (any, error) { return d.DecodeUntypedMap() })
	generic, gerr := dec.DecodeInterface()
	if gerr != nil {
		return err
	}
	root := t.String()
	if t.Name() != "" {
		root = t.Name()
	}
	if field, want, got, ok := mismatch(t, generic, root, 0); ok {
		if field == root {
			field = ""
		}
		return &DecodeError{Field: field, Want: want, Got: got, Err: err}
	}
	return err
}

var (
	typeOfMsgpackUnmarshaler = reflect.TypeFor[msgpack.Unmarshaler]()
	typeOfCustomDecoder      = reflect.TypeFor[msgpack.CustomDecoder]()
	typeOfMsgUnmarshaler     = reflect.TypeFor[MsgUnmarshaler]()
	typeOfTextUnmarshaler    = reflect.TypeFor[encoding.TextUnmarshaler]()
	typeOfBinaryUnmarshaler  = reflect.TypeFor[encoding.BinaryUnmarshaler]()
)

// decodesItself reports whether values of t decode by their own code (or by
// an extension, such as time.Time): then their encoding is not theirs to
// explain here.
func decodesItself(t reflect.Type) bool {
	p := reflect.PointerTo(t)
	for _, i := range []reflect.Type{typeOfMsgpackUnmarshaler, typeOfCustomDecoder, typeOfMsgUnmarshaler, typeOfTextUnmarshaler, typeOfBinaryUnmarshaler} {
		if t.Implements(i) || p.Implements(i) {
			return true
		}
	}
	return false
}

// mismatch walks the generic value v beside the Go type t and returns the
// first place where v cannot decode into t.
func mismatch(t reflect.Type, v any, path string, depth int) (field, want, got string, ok bool) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if v == nil || depth > maxMsgpackDepth || decodesItself(t) {
		return "", "", "", false // nil decodes into anything
	}
	bad := func() (string, string, string, bool) { return path, t.String(), describeGeneric(v), true }
	switch t.Kind() {
	case reflect.Bool:
		if _, is := v.(bool); !is {
			return bad()
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		if !isInteger(v) {
			return bad()
		}
	case reflect.Float32, reflect.Float64:
		switch v.(type) {
		case float32, float64:
		default:
			if !isInteger(v) {
				return bad()
			}
		}
	case reflect.String:
		switch v.(type) {
		case string, []byte:
		default:
			return bad()
		}
	case reflect.Slice, reflect.Array:
		if t.Elem().Kind() == reflect.Uint8 {
			switch v.(type) {
			case string, []byte:
				return "", "", "", false
			}
		}
		list, is := v.([]any)
		if !is {
			return bad()
		}
		for i, e := range list {
			if f, w, g, ok := mismatch(t.Elem(), e, path+"["+strconv.Itoa(i)+"]", depth+1); ok {
				return f, w, g, ok
			}
		}
	case reflect.Map:
		m, is := v.(map[any]any)
		if !is {
			return bad()
		}
		for k, e := range m {
			if f, w, g, ok := mismatch(t.Key(), k, path+"[key "+fmt.Sprint(k)+"]", depth+1); ok {
				return f, w, g, ok
			}
			if f, w, g, ok := mismatch(t.Elem(), e, path+"["+quoteKey(k)+"]", depth+1); ok {
				return f, w, g, ok
			}
		}
	case reflect.Struct:
		fields := structFields(t)
		switch s := v.(type) {
		case map[any]any:
			for k, e := range s {
				name, _ := k.(string)
				if b, isBytes := k.([]byte); isBytes {
					name = string(b)
				}
				sf, known := fields.byName[name]
				if !known {
					continue // unknown fields are skipped when decoding
				}
				if f, w, g, ok := mismatch(sf.Type, e, path+"."+sf.Name, depth+1); ok {
					return f, w, g, ok
				}
			}
		case []any: // a struct encoded as an array of its fields
			for i, e := range s {
				if i >= len(fields.inOrder) {
					break
				}
				sf := fields.inOrder[i]
				if f, w, g, ok := mismatch(sf.Type, e, path+"."+sf.Name, depth+1); ok {
					return f, w, g, ok
				}
			}
		default:
			return bad()
		}
	}
	return "", "", "", false
}

// fieldTable is a struct type's fields as msgpack sees them.
type fieldTable struct {
	byName  map[string]reflect.StructField
	inOrder []reflect.StructField
}

// structFields lists the fields msgpack encodes, by the name it uses: the
// msgpack tag's name, or the field's; embedded structs without a tag are
// inlined.
func structFields(t reflect.Type) fieldTable {
	ft := fieldTable{byName: map[string]reflect.StructField{}}
	var add func(t reflect.Type, depth int)
	add = func(t reflect.Type, depth int) {
		for i := range t.NumField() {
			sf := t.Field(i)
			tag := sf.Tag.Get("msgpack")
			name, _, _ := strings.Cut(tag, ",")
			if name == "-" || (!sf.IsExported() && !sf.Anonymous) {
				continue
			}
			if sf.Anonymous && name == "" && depth < 8 {
				et := sf.Type
				if et.Kind() == reflect.Pointer {
					et = et.Elem()
				}
				if et.Kind() == reflect.Struct {
					add(et, depth+1)
					continue
				}
			}
			if !sf.IsExported() {
				continue
			}
			if name == "" {
				name = sf.Name
			}
			ft.byName[name] = sf
			ft.inOrder = append(ft.inOrder, sf)
		}
	}
	add(t, 0)
	return ft
}

func isInteger(v any) bool {
	switch v.(type) {
	case int8, int16, int32, int64, uint8, uint16, uint32, uint64:
		return true
	}
	return false
}

func quoteKey(k any) string {
	if s, ok := k.(string); ok {
		return strconv.Quote(s)
	}
	return fmt.Sprint(k)
}

// describeGeneric says what a generic msgpack value is, in Go words, with
// the value itself when it is short.
func describeGeneric(v any) string {
	switch x := v.(type) {
	case bool:
		return "bool " + strconv.FormatBool(x)
	case int8, int16, int32, int64, uint8, uint16, uint32, uint64:
		return fmt.Sprintf("int %d", x)
	case float32, float64:
		return fmt.Sprintf("float %v", x)
	case string:
		if len(x) > 32 {
			return fmt.Sprintf("string %q…", x[:32])
		}
		return "string " + strconv.Quote(x)
	case []byte:
		return fmt.Sprintf("bytes (%d)", len(x))
	case []any:
		return fmt.Sprintf("array (%d elements)", len(x))
	case map[any]any:
		return fmt.Sprintf("map (%d keys)", len(x))
	}
	return fmt.Sprintf("%T", v)
}
