package protocol

import (
	"bytes"
	"fmt"
	"math"
	"reflect"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/shoalrpc/shoal/internal/testmsg"
)

// The differential fuzzers hold the compiled codec to vmihailenco/msgpack,
// the reference, over a family of struct types that between them use every
// feature the compiler handles. Values are generated from the fuzzer's
// bytes, so the fuzzer steers them.

type fzInner struct {
	A int
	B string `msgpack:"b,omitempty"`
	C []byte
	D *int64
}

// FzEmbedded is inlined into fzAll by value, FzEmbedPtr by pointer.
type FzEmbedded struct {
	E1 int16
	E2 string
}

type FzEmbedPtr struct {
	P1 uint32
	P2 []string
}

// fzOmitAll omits every empty field (the `_msgpack` field's omitempty).
type fzOmitAll struct {
	//lint:ignore U1000 vmihailenco reads its tag
	_msgpack struct{} `msgpack:",omitempty"`
	A        int
	B        string
	C        map[string]bool
}

type fzAll struct {
	I          int
	I8         int8
	I16        int16
	I32        int32
	I64        int64
	U          uint
	U8         uint8
	U16        uint16
	U32        uint32
	U64        uint64
	F32        float32
	F64        float64
	Bo         bool
	S          string
	Bs         []byte
	Ba         [3]byte
	Arr        [2]int32
	Sl         []fzInner
	Ss         []string
	Sp         []*fzInner
	M          map[string]int
	MI         map[int32]*fzInner
	MU         map[uint8][]string
	P          *fzInner
	PS         *string
	T          time.Time
	TP         *time.Time
	Skip       int    `msgpack:"-"`
	Renamed    string `msgpack:"renamed"`
	Omit       int    `msgpack:",omitempty"`
	OmitS      []int  `msgpack:"os,omitempty"`
	OmitT      time.Time
	OmitStruct fzOmitAll `msgpack:",omitempty"`
	OmitP      *fzInner  `msgpack:",omitempty"`
	//lint:ignore U1000 never encoded, by either codec
	unexported int
	FzEmbedded
	*FzEmbedPtr
	NoInline FzEmbedded `msgpack:",noinline"`
}

// fzArray is encoded as an array (as_array).
type fzArray struct {
	//lint:ignore U1000 vmihailenco reads its tag
	_msgpack struct{} `msgpack:",as_array"`
	X        int
	Y        string
	Z        []fzInner
	W        *fzArray
}

// fzNode is recursive.
type fzNode struct {
	V    int8
	Next *fzNode
	Kids []fzNode
	Tags map[string]string
}

// fzOmitEmbed has omitempty fields and an embedded pointer, whose fields
// vmihailenco omits while the pointer is nil.
type fzOmitEmbed struct {
	Name string `msgpack:",omitempty"`
	*FzEmbedPtr
	Count uint16 `msgpack:"count,omitempty"`
}

// fzTypes is the family: fuzz input's first byte picks one.
var fzTypes = []reflect.Type{
	reflect.TypeFor[fzAll](),
	reflect.TypeFor[fzArray](),
	reflect.TypeFor[fzNode](),
	reflect.TypeFor[fzOmitEmbed](),
	reflect.TypeFor[fzInner](),
	reflect.TypeFor[testmsg.BenchmarkMessage](),
}

func TestFuzzFamilyCompiles(t *testing.T) {
	for _, ft := range fzTypes {
		if mpPlanFor(reflect.PointerTo(ft)) == nil {
			t.Errorf("%s is not compiled: the differential fuzzers would compare vmihailenco with itself", ft)
		}
	}
}

// fzGen turns fuzz bytes into values; it reads zeros once they run out.
type fzGen struct{ b []byte }

func (g *fzGen) byte() byte {
	if len(g.b) == 0 {
		return 0
	}
	c := g.b[0]
	g.b = g.b[1:]
	return c
}

// u64 is a number of 1, 2, 4 or 8 bytes, so small and large values alike
// are likely.
func (g *fzGen) u64() uint64 {
	n := 1 << (g.byte() % 4)
	var v uint64
	for range n {
		v = v<<8 | uint64(g.byte())
	}
	if g.byte()%5 == 0 {
		v = -v // negative numbers
	}
	return v
}

func (g *fzGen) fill(v reflect.Value, depth int) {
	if v.Type() == typeOfTime {
		if g.byte()%4 == 0 {
			v.Set(reflect.ValueOf(time.Time{}))
			return
		}
		sec := int64(g.u64()) % (1 << 40)
		v.Set(reflect.ValueOf(time.Unix(sec, int64(g.u64()%1e9))))
		return
	}
	switch v.Kind() {
	case reflect.Bool:
		v.SetBool(g.byte()&1 == 1)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		v.SetInt(int64(g.u64()))
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		v.SetUint(g.u64())
	case reflect.Float32:
		f := math.Float32frombits(uint32(g.u64()))
		if f != f {
			f = 0
		}
		v.SetFloat(float64(f))
	case reflect.Float64:
		f := math.Float64frombits(g.u64())
		if math.IsNaN(f) {
			f = 0.5
		}
		v.SetFloat(f)
	case reflect.String:
		n := int(g.byte() % 40)
		if n == 39 {
			n = 300 // str16
		}
		b := make([]byte, n)
		for i := range b {
			b[i] = g.byte()
		}
		v.SetString(string(b))
	case reflect.Slice:
		switch sel := g.byte() % 4; {
		case sel == 0 || depth > 4:
			v.SetZero()
		case sel == 1:
			v.Set(reflect.MakeSlice(v.Type(), 0, int(g.byte()%3)))
		default:
			n := int(g.byte() % 5)
			if v.Type().Elem().Kind() == reflect.Uint8 && g.byte()%8 == 0 {
				n = 300 // bin16
			}
			v.Set(reflect.MakeSlice(v.Type(), n, n))
			for i := range n {
				g.fill(v.Index(i), depth+1)
			}
		}
	case reflect.Array:
		for i := range v.Len() {
			g.fill(v.Index(i), depth+1)
		}
	case reflect.Map:
		switch sel := g.byte() % 4; {
		case sel == 0 || depth > 4:
			v.SetZero()
		case sel == 1:
			v.Set(reflect.MakeMap(v.Type()))
		default:
			v.Set(reflect.MakeMap(v.Type()))
			for range int(g.byte() % 4) {
				k := reflect.New(v.Type().Key()).Elem()
				e := reflect.New(v.Type().Elem()).Elem()
				g.fill(k, depth+1)
				g.fill(e, depth+1)
				v.SetMapIndex(k, e)
			}
		}
	case reflect.Pointer:
		if depth > 4 || g.byte()%3 == 0 {
			v.SetZero()
			return
		}
		p := reflect.New(v.Type().Elem())
		g.fill(p.Elem(), depth+1)
		v.Set(p)
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				g.fill(v.Field(i), depth+1)
			}
		}
	}
}

// fzValue returns a pointer to a new value of the type data's first byte
// picks, filled from the rest.
func fzValue(data []byte) (reflect.Type, any) {
	g := &fzGen{b: data}
	t := fzTypes[int(g.byte())%len(fzTypes)]
	v := reflect.New(t)
	g.fill(v.Elem(), 0)
	return t, v.Interface()
}

// refAppend and refDecode are vmihailenco alone, as the codec used it before.
func refAppend(v any, compact bool) ([]byte, error) {
	var buf bytes.Buffer
	enc := msgpack.NewEncoder(&buf)
	enc.UseArrayEncodedStructs(compact)
	err := enc.Encode(v)
	return buf.Bytes(), err
}

func refDecode(data []byte, v any) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("vmihailenco panicked: %v", r)
		}
	}()
	if err := checkMsgpack(data); err != nil {
		return err
	}
	return msgpack.NewDecoder(bytes.NewReader(data)).Decode(v)
}

// compiledDecode is the compiled decoder alone, without the codec's
// recover: a panic fails the fuzzer.
func compiledDecode(t *testing.T, data []byte, v any) error {
	plan := mpPlanFor(reflect.TypeOf(v))
	if plan == nil {
		t.Fatalf("%T is not compiled", v)
	}
	return plan.decode(data, v)
}

// sameValue is reflect.DeepEqual, but NaN equals NaN (decoded from bytes
// the fuzzer chose, floats can be NaN).
func sameValue(a, b reflect.Value) bool {
	if a.Kind() != b.Kind() {
		return false
	}
	switch a.Kind() {
	case reflect.Float32, reflect.Float64:
		x, y := a.Float(), b.Float()
		return x == y || (x != x && y != y)
	case reflect.Pointer:
		if a.IsNil() || b.IsNil() {
			return a.IsNil() == b.IsNil()
		}
		return sameValue(a.Elem(), b.Elem())
	case reflect.Slice:
		if a.IsNil() != b.IsNil() {
			return false
		}
		fallthrough
	case reflect.Array:
		if a.Len() != b.Len() {
			return false
		}
		for i := range a.Len() {
			if !sameValue(a.Index(i), b.Index(i)) {
				return false
			}
		}
		return true
	case reflect.Map:
		if a.IsNil() != b.IsNil() || a.Len() != b.Len() {
			return false
		}
		for it := a.MapRange(); it.Next(); {
			bv := b.MapIndex(it.Key())
			if !bv.IsValid() || !sameValue(it.Value(), bv) {
				return false
			}
		}
		return true
	case reflect.Struct:
		if a.Type() == typeOfTime {
			return reflect.DeepEqual(a.Interface(), b.Interface())
		}
		for i := range a.NumField() {
			if !sameValue(a.Field(i), b.Field(i)) {
				return false
			}
		}
		return true
	}
	if a.CanInterface() {
		return reflect.DeepEqual(a.Interface(), b.Interface())
	}
	return true // unexported scalars: never written by either codec
}

// multiEntryMap reports whether v holds a map of two entries or more, whose
// encoding's order is Go's random map order.
func multiEntryMap(v reflect.Value) bool {
	switch v.Kind() {
	case reflect.Pointer:
		return !v.IsNil() && multiEntryMap(v.Elem())
	case reflect.Slice, reflect.Array:
		for i := range v.Len() {
			if multiEntryMap(v.Index(i)) {
				return true
			}
		}
	case reflect.Map:
		if v.Len() > 1 {
			return true
		}
		for it := v.MapRange(); it.Next(); {
			if multiEntryMap(it.Value()) {
				return true
			}
		}
	case reflect.Struct:
		for i := range v.NumField() {
			if multiEntryMap(v.Field(i)) {
				return true
			}
		}
	}
	return false
}

func fzSeeds(f *testing.F) {
	f.Add([]byte{})
	for i := range len(fzTypes) {
		f.Add([]byte{byte(i), 0})
		f.Add([]byte{byte(i), 1, 3, 0xff, 0x80, 7, 2, 2, 4, 1, 9, 9, 9, 9, 9, 9, 9, 9, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3})
		f.Add(append([]byte{byte(i), 2}, bytes.Repeat([]byte{2, 1, 0x41}, 80)...))
	}
}

// FuzzCompiledFromReference: what vmihailenco writes, the compiled decoder
// reads to the value vmihailenco reads, into a zero value and into a value
// already filled (reused slices, maps added to, pointers decoded through).
func FuzzCompiledFromReference(f *testing.F) {
	fzSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		typ, v := fzValue(data)
		compact := len(data) > 1 && data[1]&1 == 1
		payload, err := refAppend(v, compact)
		if err != nil {
			t.Fatalf("vmihailenco cannot encode %#v: %v", v, err)
		}
		// Into zero values.
		want, got := reflect.New(typ), reflect.New(typ)
		if err := refDecode(payload, want.Interface()); err != nil {
			t.Fatalf("vmihailenco cannot decode its own %x: %v", payload, err)
		}
		if err := compiledDecode(t, payload, got.Interface()); err != nil {
			t.Fatalf("compiled decoder refuses vmihailenco's %x: %v", payload, err)
		}
		if !sameValue(want, got) {
			t.Fatalf("from %x\ncompiled    %+v\nvmihailenco %+v", payload, got.Elem(), want.Elem())
		}
		// Into values filled alike from the same bytes, reversed.
		rev := bytes.Clone(data)
		for i, j := 0, len(rev)-1; i < j; i, j = i+1, j-1 {
			rev[i], rev[j] = rev[j], rev[i]
		}
		want, got = reflect.New(typ), reflect.New(typ)
		(&fzGen{b: rev}).fill(want.Elem(), 0)
		(&fzGen{b: rev}).fill(got.Elem(), 0)
		errWant := refDecode(payload, want.Interface())
		errGot := compiledDecode(t, payload, got.Interface())
		if (errWant == nil) != (errGot == nil) {
			t.Fatalf("into a filled value: compiled %v, vmihailenco %v", errGot, errWant)
		}
		if errWant == nil && !sameValue(want, got) {
			t.Fatalf("into a filled value, from %x\ncompiled    %+v\nvmihailenco %+v", payload, got.Elem(), want.Elem())
		}
	})
}

// FuzzCompiledToReference: what the compiled encoder writes, vmihailenco
// reads to the value it reads from its own encoding; and the bytes are
// vmihailenco's own, unless a map's random order makes them differ.
func FuzzCompiledToReference(f *testing.F) {
	fzSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		typ, v := fzValue(data)
		compact := len(data) > 1 && data[1]&1 == 1
		c := Msgpack
		if compact {
			c = MsgpackCompact
		}
		ours, err := c.Append(nil, v)
		if err != nil {
			t.Fatal(err)
		}
		ref, err := refAppend(v, compact)
		if err != nil {
			t.Fatal(err)
		}
		if !multiEntryMap(reflect.ValueOf(v)) && !bytes.Equal(ours, ref) {
			t.Fatalf("%s encoding of %+v\ncompiled    %x\nvmihailenco %x", c.Name(), v, ours, ref)
		}
		want, got := reflect.New(typ), reflect.New(typ)
		if err := refDecode(ref, want.Interface()); err != nil {
			t.Fatal(err)
		}
		if err := refDecode(ours, got.Interface()); err != nil {
			t.Fatalf("vmihailenco refuses the compiled %x: %v", ours, err)
		}
		if !sameValue(want, got) {
			t.Fatalf("vmihailenco reads the compiled encoding as\n%+v\nits own as\n%+v", got.Elem(), want.Elem())
		}
	})
}

// FuzzCompiledDecodeBytes: arbitrary bytes into every type of the family.
// The compiled decoder never panics, succeeds exactly when vmihailenco
// (after the payload check, as the codec ran it before) succeeds, then to
// the same value; and accepts nothing the payload check refuses.
func FuzzCompiledDecodeBytes(f *testing.F) {
	for _, typ := range fzTypes {
		for _, compact := range []bool{false, true} {
			_, v := fzValue([]byte{byte(slicesIndex(typ)), 1, 2, 3, 4, 5, 6, 7, 8, 9})
			b, _ := refAppend(v, compact)
			f.Add(b)
		}
	}
	f.Add([]byte("\x81\xaaFzEmbedded\x82\xa2E1\x05\xa2E2\xa1x"))
	f.Add([]byte("\x81\xaaFzEmbedPtr\xc0"))
	f.Add([]byte("\x81\xa1M\xd4\x05\x80"))
	f.Add([]byte("\x81\xa1T\xc0"))
	f.Add([]byte("\x81\xa3F32\xcb\x00\x00\x00\x00\x00\x00\x00\x01"))
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, typ := range fzTypes {
			want, got := reflect.New(typ), reflect.New(typ)
			errWant := refDecode(data, want.Interface())
			errGot := compiledDecode(t, data, got.Interface())
			if (errWant == nil) != (errGot == nil) {
				t.Fatalf("%s from %x: compiled %v, vmihailenco %v", typ, data, errGot, errWant)
			}
			if errGot == nil {
				if err := checkMsgpack(data); err != nil {
					t.Fatalf("%s: the compiled decoder accepts %x, which the payload check refuses: %v", typ, data, err)
				}
				if !sameValue(want, got) {
					t.Fatalf("%s from %x\ncompiled    %+v\nvmihailenco %+v", typ, data, got.Elem(), want.Elem())
				}
			}
		}
	})
}

func slicesIndex(t reflect.Type) int {
	for i, ft := range fzTypes {
		if ft == t {
			return i
		}
	}
	return 0
}
