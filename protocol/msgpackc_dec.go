package protocol

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"reflect"
	"time"
	"unsafe"
)

// The compiled codec's decoding side. It reads what vmihailenco/msgpack/v5
// reads into the same Go type, with the same conversions (its decode*.go):
// nil into any scalar is its zero value; any int or uint encoding into any
// int, uint or float field (truncated to the field's width, as reflect's
// SetInt and SetUint do); float32 into float64 but not float64 into float32;
// str and bin alike into strings and []byte; a struct from a map of field
// names (unknown names skipped) or from an array of all its fields; nil into
// a struct zeroes it, into a slice, map or pointer sets it nil (a []string
// is left as it was). It decodes into the value as it finds it, as
// vmihailenco does: slices reuse their capacity, maps are added to, present
// pointers are decoded through.
//
// The payload check is folded in (checkMsgpack does not run first): every
// declared length is checked against the bytes that remain before it sizes
// anything (a string, a slice, a map), unknown fields are skipped by the
// check's own walk, and containers nest at most maxMsgpackDepth deep, so
// what the decoder accepts the check accepts too. It never panics on any
// input.

// mpDecoder reads one msgpack value from b, from offset i.
type mpDecoder struct {
	b     []byte
	i     int
	depth int // containers open (non-empty ones, as checkMsgpack counts)
	// recheck asks for checkMsgpack over the whole payload after a
	// successful decode: the decoder read a value as vmihailenco does
	// but not as the check walks it (decodeMap).
	recheck bool
}

var (
	errMPTruncated   = errors.New("msgpack: unexpected end of payload")
	errMPArrayStruct = errors.New("msgpack: number of fields in array-encoded struct has changed")
)

func (d *mpDecoder) code() (byte, error) {
	if d.i >= len(d.b) {
		return 0, errMPTruncated
	}
	c := d.b[d.i]
	d.i++
	return c, nil
}

func (d *mpDecoder) take(n int) ([]byte, error) {
	if n < 0 || n > len(d.b)-d.i {
		return nil, errMPTruncated
	}
	s := d.b[d.i : d.i+n : d.i+n]
	d.i += n
	return s, nil
}

func (d *mpDecoder) peekNil() bool { return d.i < len(d.b) && d.b[d.i] == 0xc0 }

func (d *mpDecoder) u8() (uint64, error) {
	s, err := d.take(1)
	if err != nil {
		return 0, err
	}
	return uint64(s[0]), nil
}

func (d *mpDecoder) u16() (uint64, error) {
	s, err := d.take(2)
	if err != nil {
		return 0, err
	}
	return uint64(binary.BigEndian.Uint16(s)), nil
}

func (d *mpDecoder) u32() (uint64, error) {
	s, err := d.take(4)
	if err != nil {
		return 0, err
	}
	return uint64(binary.BigEndian.Uint32(s)), nil
}

func (d *mpDecoder) u64() (uint64, error) {
	s, err := d.take(8)
	if err != nil {
		return 0, err
	}
	return binary.BigEndian.Uint64(s), nil
}

// int is vmihailenco's Decoder.int: nil, a fixnum or any sized int or uint,
// as an int64.
func (d *mpDecoder) int(c byte) (int64, error) {
	if c <= 0x7f || c >= 0xe0 {
		return int64(int8(c)), nil
	}
	var n uint64
	var err error
	switch c {
	case 0xc0:
		return 0, nil
	case 0xcc:
		n, err = d.u8()
	case 0xd0:
		n, err = d.u8()
		n = uint64(int8(n))
	case 0xcd:
		n, err = d.u16()
	case 0xd1:
		n, err = d.u16()
		n = uint64(int16(n))
	case 0xce:
		n, err = d.u32()
	case 0xd2:
		n, err = d.u32()
		n = uint64(int32(n))
	case 0xcf, 0xd3:
		n, err = d.u64()
	default:
		return 0, fmt.Errorf("msgpack: invalid code=%x decoding int64", c)
	}
	return int64(n), err
}

// uint is vmihailenco's Decoder.uint; its conversions are int's.
func (d *mpDecoder) uint(c byte) (uint64, error) {
	n, err := d.int(c)
	if err != nil && c != 0xc0 {
		return 0, fmt.Errorf("msgpack: invalid code=%x decoding uint64", c)
	}
	return uint64(n), err
}

func (d *mpDecoder) float32(c byte) (float32, error) {
	if c == 0xca {
		n, err := d.u32()
		return math.Float32frombits(uint32(n)), err
	}
	n, err := d.int(c)
	if err != nil {
		return 0, fmt.Errorf("msgpack: invalid code=%x decoding float32", c)
	}
	return float32(n), nil
}

func (d *mpDecoder) float64(c byte) (float64, error) {
	switch c {
	case 0xca:
		f, err := d.float32(c)
		return float64(f), err
	case 0xcb:
		n, err := d.u64()
		return math.Float64frombits(n), err
	}
	n, err := d.int(c)
	if err != nil {
		return 0, fmt.Errorf("msgpack: invalid code=%x decoding float64", c)
	}
	return float64(n), nil
}

// bytesLen is vmihailenco's bytesLen: the length of a str or bin, -1 for nil.
func (d *mpDecoder) bytesLen(c byte) (int, error) {
	if c >= 0xa0 && c <= 0xbf {
		return int(c & 0x1f), nil
	}
	var n uint64
	var err error
	switch c {
	case 0xc0:
		return -1, nil
	case 0xd9, 0xc4:
		n, err = d.u8()
	case 0xda, 0xc5:
		n, err = d.u16()
	case 0xdb, 0xc6:
		n, err = d.u32()
	default:
		return 0, fmt.Errorf("msgpack: invalid code=%x decoding string/bytes length", c)
	}
	if err == nil && n > uint64(len(d.b)-d.i) {
		err = errMPTruncated
	}
	return int(n), err
}

// str returns the bytes of a str or bin (nil for nil), aliasing the payload.
func (d *mpDecoder) str() ([]byte, error) {
	c, err := d.code()
	if err != nil {
		return nil, err
	}
	n, err := d.bytesLen(c)
	if err != nil || n < 0 {
		return nil, err
	}
	return d.take(n)
}

// collLen reads an array's or a map's element count (pairs for a map), -1
// for nil; the count is checked against the bytes that remain, at least one
// per element, so it can size an allocation.
func (d *mpDecoder) collLen(c byte, isMap bool) (int, error) {
	var n uint64
	var err error
	switch {
	case c == 0xc0:
		return -1, nil
	case isMap && c >= 0x80 && c <= 0x8f:
		return int(c & 0x0f), nil
	case !isMap && c >= 0x90 && c <= 0x9f:
		return int(c & 0x0f), nil
	case isMap && c == 0xde, !isMap && c == 0xdc:
		n, err = d.u16()
	case isMap && c == 0xdf, !isMap && c == 0xdd:
		n, err = d.u32()
	default:
		if isMap {
			return 0, fmt.Errorf("msgpack: invalid code=%x decoding map length", c)
		}
		return 0, fmt.Errorf("msgpack: invalid code=%x decoding array length", c)
	}
	if err == nil && n > uint64(len(d.b)-d.i) {
		err = errMPTruncated
	}
	return int(n), err
}

// skip skips one value, as checkMsgpack walks it (with the containers
// already open counted against its nesting limit).
func (d *mpDecoder) skip() error {
	end, err := msgpackValueEnd(d.b, d.i, maxMsgpackDepth-d.depth)
	if err != nil {
		return err
	}
	d.i = end
	return nil
}

// open enters a container of n elements: a non-empty one counts against
// the nesting limit, as in checkMsgpack. close leaves it.
func (d *mpDecoder) open(n int) error {
	if n > 0 {
		if d.depth >= maxMsgpackDepth {
			return fmt.Errorf("%w: nested deeper than %d", errMsgpackCheck, maxMsgpackDepth)
		}
		d.depth++
	}
	return nil
}

func (d *mpDecoder) close(n int) {
	if n > 0 {
		d.depth--
	}
}

// decodeScalar decodes into the scalar of kind k at p.
func (d *mpDecoder) decodeScalar(k mpKind, p unsafe.Pointer) error {
	c, err := d.code()
	if err != nil {
		return err
	}
	switch k {
	case mpBool:
		switch c {
		case 0xc0, 0xc2:
			*(*bool)(p) = false
		case 0xc3:
			*(*bool)(p) = true
		default:
			return fmt.Errorf("msgpack: invalid code=%x decoding bool", c)
		}
		return nil
	case mpString:
		n, err := d.bytesLen(c)
		if err != nil {
			return err
		}
		if n <= 0 {
			*(*string)(p) = ""
			return nil
		}
		s, err := d.take(n)
		if err != nil {
			return err
		}
		*(*string)(p) = string(s)
		return nil
	case mpFloat32:
		f, err := d.float32(c)
		if err != nil {
			return err
		}
		*(*float32)(p) = f
		return nil
	case mpFloat64:
		f, err := d.float64(c)
		if err != nil {
			return err
		}
		*(*float64)(p) = f
		return nil
	case mpUint, mpUint8, mpUint16, mpUint32, mpUint64:
		n, err := d.uint(c)
		if err != nil {
			return err
		}
		storeInt(k, p, n)
		return nil
	}
	n, err := d.int(c)
	if err != nil {
		return err
	}
	storeInt(k, p, uint64(n))
	return nil
}

// storeInt stores n, truncated to the width of kind k, at p.
func storeInt(k mpKind, p unsafe.Pointer, n uint64) {
	switch k {
	case mpInt, mpUint:
		*(*uint)(p) = uint(n)
	case mpInt8, mpUint8:
		*(*uint8)(p) = uint8(n)
	case mpInt16, mpUint16:
		*(*uint16)(p) = uint16(n)
	case mpInt32, mpUint32:
		*(*uint32)(p) = uint32(n)
	default:
		*(*uint64)(p) = n
	}
}

// fieldAddrAlloc returns the address of f in the struct at p, allocating
// the embedded struct pointers on the way that are nil (vmihailenco's
// fieldByIndexAlloc).
func (f *mpField) addrAlloc(p unsafe.Pointer) unsafe.Pointer {
	for _, h := range f.hops {
		pp := (*unsafe.Pointer)(unsafe.Add(p, h.off))
		if *pp == nil {
			*pp = reflect.New(h.elem).UnsafePointer()
		}
		p = *pp
	}
	return unsafe.Add(p, f.off)
}

func (d *mpDecoder) decodeField(f *mpField, p unsafe.Pointer) error {
	fp := unsafe.Add(p, f.off)
	if len(f.hops) > 0 {
		fp = f.addrAlloc(p)
	}
	if f.kind != mpOther {
		return d.decodeScalar(f.kind, fp)
	}
	return f.node.dec(d, fp)
}

// decodeStruct is vmihailenco's decodeStructValue.
func (d *mpDecoder) decodeStruct(s *mpStruct, p unsafe.Pointer) error {
	c, err := d.code()
	if err != nil {
		return err
	}
	if c == 0xc0 {
		reflect.NewAt(s.typ, p).Elem().SetZero()
		return nil
	}
	if isArray := (c >= 0x90 && c <= 0x9f) || c == 0xdc || c == 0xdd; isArray {
		n, err := d.collLen(c, false)
		if err != nil {
			return err
		}
		if n == 0 {
			reflect.NewAt(s.typ, p).Elem().SetZero()
			return nil
		}
		if n != len(s.list) {
			return errMPArrayStruct
		}
		if err := d.open(n); err != nil {
			return err
		}
		for i := range s.list {
			if err := d.decodeField(&s.list[i], p); err != nil {
				return err
			}
		}
		d.close(n)
		return nil
	}
	n, err := d.collLen(c, true)
	if err != nil {
		return err
	}
	if err := d.open(n); err != nil {
		return err
	}
	next := 0 // the field expected next: encoders write them in order
	for range n {
		// The common case: the next field's name, encoded as str as
		// both encoders write it, compared whole (its header holds its
		// length, so a prefix match is the name).
		if next < len(s.list) {
			if f := &s.list[next]; bytes.HasPrefix(d.b[d.i:], f.key) {
				d.i += len(f.key)
				next++
				if err := d.decodeField(f, p); err != nil {
					return err
				}
				continue
			}
		}
		name, err := d.str()
		if err != nil {
			return err
		}
		var f *mpField
		if next < len(s.list) && string(name) == s.list[next].name {
			f = &s.list[next] // a name sent as bin
			next++
		} else if f = s.byName[string(name)]; f == nil {
			if err := d.skip(); err != nil {
				return err
			}
			continue
		} else if f.idx >= 0 {
			next = f.idx + 1
		}
		if err := d.decodeField(f, p); err != nil {
			return err
		}
	}
	d.close(n)
	return nil
}

// decodeElem decodes into one element of type elem at p.
func (d *mpDecoder) decodeElem(elem *mpNode, p unsafe.Pointer) error {
	if elem.kind != mpOther {
		return d.decodeScalar(elem.kind, p)
	}
	return elem.dec(d, p)
}

// decodeSlice is vmihailenco's decodeSliceValue (and, keep, its
// decodeStringSlicePtr, which leaves a []string as it is on nil).
func (d *mpDecoder) decodeSlice(t reflect.Type, elem *mpNode, keepOnNil bool, p unsafe.Pointer) error {
	c, err := d.code()
	if err != nil {
		return err
	}
	n, err := d.collLen(c, false)
	if err != nil {
		return err
	}
	sv := reflect.NewAt(t, p).Elem()
	switch {
	case n == -1:
		if !keepOnNil {
			sv.SetZero()
		}
		return nil
	case n == 0 && sv.IsNil():
		sv.Set(reflect.MakeSlice(t, 0, 0))
		return nil
	}
	if sv.Cap() >= n {
		sv.SetLen(n)
	} else if sv.Len() < sv.Cap() {
		sv.SetLen(sv.Cap())
	}
	if n > sv.Len() {
		sv.Set(reflect.AppendSlice(sv, reflect.MakeSlice(t, n-sv.Len(), n-sv.Len())))
	}
	if err := d.open(n); err != nil {
		return err
	}
	data := sv.UnsafePointer()
	size := elem.typ.Size()
	for i := range n {
		if err := d.decodeElem(elem, unsafe.Add(data, uintptr(i)*size)); err != nil {
			return err
		}
	}
	d.close(n)
	return nil
}

// decodeArray is vmihailenco's decodeArrayValue: nil leaves the array as it
// is, fewer elements leave the rest, more are an error.
func (d *mpDecoder) decodeArray(t reflect.Type, elem *mpNode, p unsafe.Pointer) error {
	c, err := d.code()
	if err != nil {
		return err
	}
	n, err := d.collLen(c, false)
	if err != nil || n == -1 {
		return err
	}
	if n > t.Len() {
		return fmt.Errorf("%s len is %d, but msgpack has %d elements", t, t.Len(), n)
	}
	if err := d.open(n); err != nil {
		return err
	}
	size := elem.typ.Size()
	for i := range n {
		if err := d.decodeElem(elem, unsafe.Add(p, uintptr(i)*size)); err != nil {
			return err
		}
	}
	d.close(n)
	return nil
}

// decodeBytes is vmihailenco's decodeBytesValue: into the slice's own
// capacity when it has enough.
func (d *mpDecoder) decodeBytes(p unsafe.Pointer) error {
	c, err := d.code()
	if err != nil {
		return err
	}
	n, err := d.bytesLen(c)
	if err != nil {
		return err
	}
	dst := (*[]byte)(p)
	if n == -1 {
		*dst = nil
		return nil
	}
	s, err := d.take(n)
	if err != nil {
		return err
	}
	switch {
	case *dst != nil && cap(*dst) >= len(s):
		*dst = append((*dst)[:0], s...)
	default:
		*dst = append(make([]byte, 0, len(s)), s...)
	}
	return nil
}

// decodeByteArray is vmihailenco's decodeByteArrayValue.
func (d *mpDecoder) decodeByteArray(t reflect.Type, p unsafe.Pointer) error {
	c, err := d.code()
	if err != nil {
		return err
	}
	n, err := d.bytesLen(c)
	if err != nil || n == -1 {
		return err
	}
	if n > t.Len() {
		return fmt.Errorf("%s len is %d, but msgpack has %d elements", t, t.Len(), n)
	}
	s, err := d.take(n)
	if err != nil {
		return err
	}
	copy(unsafe.Slice((*byte)(p), t.Len()), s)
	return nil
}

// decodeMap is vmihailenco's decodeMapValue, including its DecodeMapLen's
// skipping of an extension header before the map.
func (d *mpDecoder) decodeMap(t reflect.Type, key, elem *mpNode, p unsafe.Pointer) error {
	c, err := d.code()
	if err != nil {
		return err
	}
	if skip, isExt := extHeaderSkip[c]; isExt {
		// vmihailenco reads the map from inside the extension's data,
		// where the payload check's walk does not look: the whole
		// payload is checked as well once the decoding is done.
		d.recheck = true
		if _, err := d.take(skip); err != nil {
			return err
		}
		if c, err = d.code(); err != nil {
			return err
		}
	}
	n, err := d.collLen(c, true)
	if err != nil {
		return err
	}
	m := reflect.NewAt(t, p).Elem()
	if n == -1 {
		m.SetZero()
		return nil
	}
	if m.IsNil() {
		m.Set(reflect.MakeMapWithSize(t, n))
	}
	if n == 0 {
		return nil
	}
	if err := d.open(n); err != nil {
		return err
	}
	k := reflect.New(t.Key()).Elem()
	v := reflect.New(t.Elem()).Elem()
	kp, vp := k.Addr().UnsafePointer(), v.Addr().UnsafePointer()
	for range n {
		k.SetZero()
		v.SetZero()
		if err := d.decodeElem(key, kp); err != nil {
			return err
		}
		if err := d.decodeElem(elem, vp); err != nil {
			return err
		}
		m.SetMapIndex(k, v)
	}
	d.close(n)
	return nil
}

// extHeaderSkip is, for each extension code, the bytes vmihailenco's
// skipExtHeader reads after it: the type, and the length of ext8/16/32.
var extHeaderSkip = map[byte]int{0xd4: 1, 0xd5: 1, 0xd6: 1, 0xd7: 1, 0xd8: 1, 0xc7: 2, 0xc8: 3, 0xc9: 5}

// decodePtr is vmihailenco's ptrValueDecoder: nil sets the pointer nil,
// anything else is decoded into the pointee, allocated if need be.
func (d *mpDecoder) decodePtr(elem *mpNode, p unsafe.Pointer) error {
	pp := (*unsafe.Pointer)(p)
	if d.peekNil() {
		d.i++
		*pp = nil
		return nil
	}
	if *pp == nil {
		*pp = reflect.New(elem.typ).UnsafePointer()
	}
	return d.decodeElem(elem, *pp)
}

// decodeTime is vmihailenco's time extension decoder (extension -1 of 4, 8
// or 12 bytes); nil is an error (vmihailenco panics on it).
func (d *mpDecoder) decodeTime(p unsafe.Pointer) error {
	c, err := d.code()
	if err != nil {
		return err
	}
	var n uint64
	switch c {
	case 0xc0:
		return fmt.Errorf("%w: nil for a time.Time", ErrMalformed)
	case 0xd4, 0xd5, 0xd6, 0xd7, 0xd8:
		n = 1 << (c - 0xd4)
	case 0xc7:
		n, err = d.u8()
	case 0xc8:
		n, err = d.u16()
	case 0xc9:
		n, err = d.u32()
	default:
		return fmt.Errorf("msgpack: invalid code=%x decoding ext len", c)
	}
	if err != nil {
		return err
	}
	id, err := d.code()
	if err != nil {
		return err
	}
	if int8(id) != -1 {
		return fmt.Errorf("msgpack: got ext type=%d, wanted -1", int8(id))
	}
	b, err := d.take(int(min(n, uint64(len(d.b)+1))))
	if err != nil {
		return err
	}
	var tm time.Time
	switch len(b) {
	case 4:
		tm = time.Unix(int64(binary.BigEndian.Uint32(b)), 0)
	case 8:
		sec := binary.BigEndian.Uint64(b)
		tm = time.Unix(int64(sec&0x00000003ffffffff), int64(sec>>34))
	case 12:
		tm = time.Unix(int64(binary.BigEndian.Uint64(b[4:])), int64(binary.BigEndian.Uint32(b)))
	default:
		return fmt.Errorf("msgpack: invalid ext len=%d decoding time", len(b))
	}
	if tm.IsZero() {
		tm = tm.UTC()
	}
	*(*time.Time)(p) = tm
	return nil
}
