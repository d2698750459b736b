package protocol

import (
	"bytes"
	"encoding"
	"reflect"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/vmihailenco/msgpack/v5"
)

// The compiled msgpack codec: per Go type, once, a plan that encodes and
// decodes values of that type by field offsets, with pre-encoded field names,
// instead of walking reflect.Values field by field as vmihailenco/msgpack
// does. It writes what vmihailenco writes for the same type (same struct
// field names and order, same int widths, same string, binary, array, map and
// time encodings) and reads everything vmihailenco reads into that type, with
// the same conversions; vmihailenco stays the reference, and the
// differential fuzzers in msgpackc_fuzz_test.go hold the two to that.
//
// A type compiles when every type it reaches is a bool, an int or uint of any
// width (not uintptr), a float, a string, a slice, an array, a map with a
// scalar key, a pointer, time.Time or a struct of those; and none of them has
// a method vmihailenco would call (msgpack.CustomEncoder/CustomDecoder,
// msgpack.Marshaler/Unmarshaler, encoding.BinaryMarshaler/Unmarshaler,
// encoding.TextMarshaler/Unmarshaler, on the type or its pointer); and its
// struct tags use only names, "-", omitempty, as_array and noinline. Anything
// else (interfaces, such methods, the intern, alias and inline tag options,
// unexported embedded fields, duplicate field names, a type whose zero value
// vmihailenco encodes differently because it was registered with
// msgpack.Register or RegisterExt) is left to vmihailenco, whole.
//
// Only the codec's top-level value is looked up: a pointer to a struct, or a
// struct (copied once to get an address).
//
// unsafe: a plan reads and writes a value through unsafe.Pointers computed
// from the address of the value the caller gave and the offsets reflect
// reports for its fields (reflect.StructField.Offset, Type.Size for slice and
// array elements). Every such pointer stays inside the value it was computed
// from, and its Go type is the one the plan was compiled for; memory the plan
// allocates comes from reflect.New / reflect.MakeSlice / reflect.MakeMapWithSize,
// so the garbage collector sees it typed. Pointers are stored only through
// *unsafe.Pointer (write barriers apply). FuzzCompiledFromReference,
// FuzzCompiledToReference and FuzzCompiledDecodeBytes exercise every path.

// mpKind names the scalar kinds a struct field's plan encodes and decodes
// inline; mpOther goes through the node's functions.
type mpKind uint8

const (
	mpOther mpKind = iota
	mpBool
	mpInt // int and uint are written in the smallest encoding, like vmihailenco
	mpInt8
	mpInt16
	mpInt32
	mpInt64
	mpUint
	mpUint8
	mpUint16
	mpUint32
	mpUint64
	mpFloat32
	mpFloat64
	mpString
)

// mpNode is the compiled codec of one Go type.
type mpNode struct {
	typ  reflect.Type
	kind mpKind
	// enc appends the encoding of the value at p; arr asks for structs as
	// arrays (the compact codec).
	enc func(b []byte, p unsafe.Pointer, arr bool) []byte
	// dec decodes one value into the value at p.
	dec func(d *mpDecoder, p unsafe.Pointer) error
	// empty reports whether omitempty omits the value at p, as
	// vmihailenco's isEmptyValue decides.
	empty func(p unsafe.Pointer) bool
}

// mpHop is a step through an embedded struct pointer: the pointer at off in
// the current struct, to a value of type elem.
type mpHop struct {
	off  uintptr
	elem reflect.Type
}

// mpField is one struct field as msgpack sees it.
type mpField struct {
	name      string
	key       []byte  // name, msgpack-encoded
	hops      []mpHop // embedded struct pointers to follow first
	off       uintptr // offset from the last hop (or the struct)
	node      *mpNode
	kind      mpKind
	omitEmpty bool
	idx       int // position in its struct's list; -1 for a name only decoded
}

// mpStruct is a struct type's fields: list in encoding order, and the
// names the decoder accepts (list, plus each inlined embedded struct by its
// own name, as vmihailenco accepts it).
type mpStruct struct {
	typ          reflect.Type
	list         []mpField
	byName       map[string]*mpField
	asArray      bool
	hasOmitEmpty bool
	mapHeader    []byte // the map header when no field can be omitted
	arrayHeader  []byte
}

// mpPlan is a top-level type's compiled codec; nil in the cache means the
// type is left to vmihailenco.
type mpPlan struct {
	node  *mpNode // the struct's node
	isPtr bool    // the top-level type is a pointer to the struct
}

// mpPlans caches plans by reflect.Type, as encoding/json caches its
// encoders: compiled once per type, on first use, never changed after.
var mpPlans sync.Map

// mpPlanFor returns the plan of values of type t, compiling it on first use,
// or nil when t is left to vmihailenco.
func mpPlanFor(t reflect.Type) *mpPlan {
	if t == nil {
		return nil
	}
	if p, ok := mpPlans.Load(t); ok {
		return p.(*mpPlan)
	}
	p := compilePlan(t)
	mpPlans.Store(t, p)
	return p
}

func compilePlan(t reflect.Type) *mpPlan {
	isPtr := false
	st := t
	if st.Kind() == reflect.Pointer {
		isPtr = true
		st = st.Elem()
	}
	if st.Kind() != reflect.Struct || st == typeOfTime {
		return nil
	}
	if isPtr && hasOwnCodec(t) {
		return nil
	}
	if t.Implements(typeOfMsgMarshaler) || t.Implements(typeOfMsgUnmarshaler) {
		return nil // generated code, called by the codec itself
	}
	c := &mpCompiler{nodes: map[reflect.Type]*mpNode{}}
	n := c.compile(st)
	if c.failed || n == nil {
		return nil
	}
	for _, nt := range c.named {
		if !c.sameZeroEncoding(nt) {
			c.fail(nt, "vmihailenco encodes its zero value otherwise (registered?)")
			return nil
		}
	}
	return &mpPlan{node: n, isPtr: isPtr}
}

var (
	typeOfTime          = reflect.TypeFor[time.Time]()
	typeOfString        = reflect.TypeFor[string]()
	typeOfIsZeroer      = reflect.TypeFor[interface{ IsZero() bool }]()
	typeOfMsgpackMarsh  = reflect.TypeFor[msgpack.Marshaler]()
	typeOfCustomEncoder = reflect.TypeFor[msgpack.CustomEncoder]()
	typeOfBinaryMarsh   = reflect.TypeFor[encoding.BinaryMarshaler]()
	typeOfTextMarsh     = reflect.TypeFor[encoding.TextMarshaler]()
	typeOfMsgMarshaler  = reflect.TypeFor[MsgMarshaler]()
)

// hasOwnCodec reports whether vmihailenco would let values of t (or *t)
// encode or decode themselves.
func hasOwnCodec(t reflect.Type) bool {
	p := reflect.PointerTo(t)
	for _, i := range []reflect.Type{
		typeOfCustomEncoder, typeOfCustomDecoder, typeOfMsgpackMarsh, typeOfMsgpackUnmarshaler,
		typeOfBinaryMarsh, typeOfBinaryUnmarshaler, typeOfTextMarsh, typeOfTextUnmarshaler,
	} {
		if t.Implements(i) || p.Implements(i) {
			return true
		}
	}
	return false
}

// mpCompiler builds the nodes of one top-level type.
type mpCompiler struct {
	nodes  map[reflect.Type]*mpNode
	named  []reflect.Type // named types reached, for the registration probe
	failed bool
	reason string // why not, for tests
}

func (c *mpCompiler) fail(t reflect.Type, why string) {
	if !c.failed {
		c.failed, c.reason = true, t.String()+": "+why
	}
}

// compile returns t's node, or nil (and sets failed) when t is not compiled.
func (c *mpCompiler) compile(t reflect.Type) *mpNode {
	if n, ok := c.nodes[t]; ok {
		return n
	}
	if t == typeOfTime {
		n := timeNode()
		c.nodes[t] = n
		return n
	}
	// *time.Time has time.Time's methods, but vmihailenco looks up the
	// pointee's registered extension first.
	if hasOwnCodec(t) && !(t.Kind() == reflect.Pointer && t.Elem() == typeOfTime) {
		c.fail(t, "has its own msgpack, binary or text codec")
		return nil
	}
	n := &mpNode{typ: t}
	c.nodes[t] = n // before the elements: a recursive type finds itself
	if t.Name() != "" && t.Kind() != reflect.Pointer {
		c.named = append(c.named, t)
	}
	switch t.Kind() {
	case reflect.Bool:
		n.kind = mpBool
	case reflect.Int:
		n.kind = mpInt
	case reflect.Int8:
		n.kind = mpInt8
	case reflect.Int16:
		n.kind = mpInt16
	case reflect.Int32:
		n.kind = mpInt32
	case reflect.Int64:
		n.kind = mpInt64
	case reflect.Uint:
		n.kind = mpUint
	case reflect.Uint8:
		n.kind = mpUint8
	case reflect.Uint16:
		n.kind = mpUint16
	case reflect.Uint32:
		n.kind = mpUint32
	case reflect.Uint64:
		n.kind = mpUint64
	case reflect.Float32:
		n.kind = mpFloat32
	case reflect.Float64:
		n.kind = mpFloat64
	case reflect.String:
		n.kind = mpString
	case reflect.Pointer:
		if t.Elem().Kind() == reflect.Pointer {
			c.fail(t, "pointer to pointer") // vmihailenco's handling is not worth copying
			return nil
		}
		elem := c.compile(t.Elem())
		if elem == nil {
			return nil
		}
		ptrNode(n, elem)
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 {
			bytesNode(n)
			break
		}
		elem := c.compile(t.Elem())
		if elem == nil {
			return nil
		}
		sliceNode(n, elem, t.Elem() == typeOfString)
	case reflect.Array:
		if t.Elem().Kind() == reflect.Uint8 {
			byteArrayNode(n)
			break
		}
		elem := c.compile(t.Elem())
		if elem == nil {
			return nil
		}
		arrayNode(n, elem)
	case reflect.Map:
		switch t.Key().Kind() {
		case reflect.Bool, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
			reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
			reflect.Float32, reflect.Float64, reflect.String:
		default:
			c.fail(t, "map key")
			return nil
		}
		key := c.compile(t.Key())
		elem := c.compile(t.Elem())
		if key == nil || elem == nil {
			return nil
		}
		mapNode(n, key, elem)
	case reflect.Struct:
		s := c.structFields(t)
		if s == nil {
			return nil
		}
		structNode(n, s)
	default: // interfaces, uintptr, complex numbers, channels, functions, unsafe pointers
		c.fail(t, "kind "+t.Kind().String())
		return nil
	}
	if n.kind != mpOther {
		scalarNode(n)
	}
	if t.Implements(typeOfIsZeroer) {
		n.empty = isZeroerEmpty(t)
	}
	return n
}

// mpFieldSet is a struct's fields while they are collected.
type mpFieldSet struct {
	list         []mpField
	byName       map[string]*mpField
	asArray      bool
	hasOmitEmpty bool
}

// structFields collects t's fields by vmihailenco's rules (getFields in its
// types.go): the msgpack tag's name or the field's; "-" and unexported fields
// skipped; a `_msgpack` field's as_array and omitempty options for the
// struct; an embedded plain struct (or pointer to one) inlined unless one of
// its field names is already taken, and then also decodable under its own
// name. It returns nil (and sets failed) for what it does not copy.
func (c *mpCompiler) collect(t reflect.Type) *mpFieldSet {
	fs := &mpFieldSet{byName: map[string]*mpField{}}
	add := func(f mpField) bool {
		if _, dup := fs.byName[f.name]; dup {
			return false // vmihailenco logs and keeps both in its list
		}
		fs.list = append(fs.list, f)
		fs.byName[f.name] = &fs.list[len(fs.list)-1]
		if f.omitEmpty {
			fs.hasOmitEmpty = true
		}
		return true
	}
	omitEmpty := false
	for i := range t.NumField() {
		sf := t.Field(i)
		name, opts, ok := parseMsgpackTag(sf.Tag.Get("msgpack"))
		if !ok {
			c.fail(t, "tag syntax of field "+sf.Name)
			return nil
		}
		if name == "-" {
			continue
		}
		if sf.Name == "_msgpack" {
			fs.asArray = opts["as_array"] || opts["asArray"]
			if opts["omitempty"] {
				omitEmpty = true
			}
		}
		if !sf.IsExported() && !sf.Anonymous {
			continue
		}
		if !sf.IsExported() || opts["intern"] || opts["alias"] || opts["inline"] {
			c.fail(t, "unexported embedded field or intern, alias or inline option: "+sf.Name)
			return nil
		}
		if name == "" {
			name = sf.Name
		}
		node := c.compile(sf.Type)
		if node == nil {
			return nil
		}
		f := mpField{name: name, off: sf.Offset, node: node, kind: node.kind, omitEmpty: omitEmpty || opts["omitempty"]}
		if sf.Anonymous && !opts["noinline"] {
			et, isPtr := sf.Type, false
			if et.Kind() == reflect.Pointer {
				et, isPtr = et.Elem(), true
			}
			if et.Kind() == reflect.Struct && et != typeOfTime && !hasOwnCodec(et) {
				sub := c.collect(et)
				if sub == nil {
					return nil
				}
				shadowed := false
				for _, g := range sub.list {
					if _, taken := fs.byName[g.name]; taken {
						shadowed = true
					}
				}
				if !shadowed {
					for _, g := range sub.list {
						g.hops = append([]mpHop(nil), g.hops...)
						switch {
						case isPtr:
							g.hops = append([]mpHop{{off: sf.Offset, elem: et}}, g.hops...)
						case len(g.hops) > 0:
							g.hops[0].off += sf.Offset
						default:
							g.off += sf.Offset
						}
						if !add(g) {
							c.fail(t, "duplicate field name "+g.name)
							return nil
						}
					}
					if _, dup := fs.byName[name]; dup {
						c.fail(t, "duplicate field name "+name)
						return nil
					}
					fs.byName[name] = &f // decodable, never encoded
					continue
				}
			}
		}
		if !add(f) {
			c.fail(t, "duplicate field name "+f.name)
			return nil
		}
	}
	return fs
}

func (c *mpCompiler) structFields(t reflect.Type) *mpStruct {
	fs := c.collect(t)
	if fs == nil {
		return nil
	}
	s := &mpStruct{typ: t, list: fs.list, asArray: fs.asArray, hasOmitEmpty: fs.hasOmitEmpty, byName: map[string]*mpField{}}
	// Re-point byName into s.list (collect's pointers may predate a
	// reallocation of its list) and pre-encode the names.
	for i := range s.list {
		s.list[i].key = appendMsgpackString(nil, s.list[i].name)
		s.list[i].idx = i
	}
	for name, f := range fs.byName {
		found := false
		for i := range s.list {
			if s.list[i].name == name {
				s.byName[name] = &s.list[i]
				found = true
				break
			}
		}
		if !found {
			g := *f
			g.idx = -1
			s.byName[name] = &g
		}
	}
	s.mapHeader = appendMapLen(nil, len(s.list))
	s.arrayHeader = appendArrayLen(nil, len(s.list))
	return s
}

// parseMsgpackTag splits a msgpack struct tag as vmihailenco's tagparser
// does, for the tags it handles alike: a name, then comma-separated options.
// ok is false for a tag with the parser's other syntax (key:value options,
// quotes), which is left to vmihailenco.
func parseMsgpackTag(tag string) (name string, opts map[string]bool, ok bool) {
	if strings.ContainsAny(tag, ":'\\(") {
		return "", nil, false
	}
	parts := strings.Split(tag, ",")
	name = strings.TrimSpace(parts[0])
	opts = map[string]bool{}
	for _, o := range parts[1:] {
		opts[strings.TrimSpace(o)] = true
	}
	return name, opts, true
}

// sameZeroEncoding reports whether vmihailenco encodes t's zero value as the
// plan does: a type registered with msgpack.Register or RegisterExt, which
// the plan cannot see, encodes differently and is left to vmihailenco.
func (c *mpCompiler) sameZeroEncoding(t reflect.Type) bool {
	n := c.nodes[t]
	if n == nil {
		return false
	}
	zero := reflect.New(t)
	want, err := msgpack.Marshal(zero.Interface())
	if err != nil {
		return false
	}
	return bytes.Equal(n.enc(nil, zero.UnsafePointer(), false), want)
}

// appendTop appends the encoding of v, a value of the plan's top-level type.
func (p *mpPlan) appendTop(b []byte, v any, arr bool) []byte {
	rv := reflect.ValueOf(v)
	if p.isPtr {
		if rv.IsNil() {
			return append(b, 0xc0)
		}
		return p.node.enc(b, rv.UnsafePointer(), arr)
	}
	c := reflect.New(rv.Type()) // a struct passed by value: an addressable copy
	c.Elem().Set(rv)
	return p.node.enc(b, c.UnsafePointer(), arr)
}

// mpDecodePlan returns the plan that decodes into v, a non-nil pointer to a
// compiled struct, or nil.
func mpDecodePlan(v any) *mpPlan {
	t := reflect.TypeOf(v)
	if t == nil || t.Kind() != reflect.Pointer {
		return nil
	}
	p := mpPlanFor(t)
	if p == nil || !p.isPtr || reflect.ValueOf(v).IsNil() {
		return nil
	}
	return p
}

// mpDecoders recycles decoders: the nodes' functions take one by pointer,
// which would otherwise cost an allocation per decode.
var mpDecoders = sync.Pool{New: func() any { return new(mpDecoder) }}

// decode decodes data into v, a non-nil pointer of the plan's type. On
// failure it answers the payload check's error when the check refuses data
// (an oversized length, deep nesting, a truncated value), as the codec did
// when the check ran first, and otherwise says where data and v's type part
// ways. v may then be partly written, as with vmihailenco.
func (p *mpPlan) decode(data []byte, v any) error {
	d := mpDecoders.Get().(*mpDecoder)
	*d = mpDecoder{b: data}
	err := p.node.dec(d, reflect.ValueOf(v).UnsafePointer())
	recheck := d.recheck
	*d = mpDecoder{}
	mpDecoders.Put(d)
	if err == nil && recheck {
		err = checkMsgpack(data)
	}
	if err == nil {
		return nil
	}
	if cerr := checkMsgpack(data); cerr != nil {
		return cerr
	}
	return describeSafely(data, v, err)
}

// describeSafely is describeMsgpackError, which decodes data generically
// and so can meet vmihailenco's panic on a map keyed by a map or by bytes:
// then err is answered as it is.
func describeSafely(data []byte, v any, err error) (out error) {
	defer func() {
		if recover() != nil {
			out = err
		}
	}()
	return describeMsgpackError(data, v, err)
}
