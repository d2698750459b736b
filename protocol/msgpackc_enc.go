package protocol

import (
	"encoding/binary"
	"math"
	"reflect"
	"time"
	"unsafe"
)

// The compiled codec's encoding side: msgpack written by appending to a
// byte slice, in the encodings vmihailenco/msgpack/v5 chooses (its
// encode*.go): int and uint in the smallest encoding, the sized ints and
// uints at their own width, float32 and float64 as such, strings as fixstr
// or str8/16/32, []byte and [N]byte as bin, nil slices, maps and pointers as
// nil, structs as maps of their field names (or arrays), time.Time as
// extension -1.

func appendMsgpackString(b []byte, s string) []byte {
	switch n := len(s); {
	case n < 32:
		b = append(b, 0xa0|byte(n))
	case n < 256:
		b = append(b, 0xd9, byte(n))
	case n <= math.MaxUint16:
		b = append(b, 0xda, byte(n>>8), byte(n))
	default:
		b = binary.BigEndian.AppendUint32(append(b, 0xdb), uint32(n))
	}
	return append(b, s...)
}

func appendBinLen(b []byte, n int) []byte {
	switch {
	case n < 256:
		return append(b, 0xc4, byte(n))
	case n <= math.MaxUint16:
		return append(b, 0xc5, byte(n>>8), byte(n))
	}
	return binary.BigEndian.AppendUint32(append(b, 0xc6), uint32(n))
}

func appendArrayLen(b []byte, n int) []byte {
	switch {
	case n < 16:
		return append(b, 0x90|byte(n))
	case n <= math.MaxUint16:
		return append(b, 0xdc, byte(n>>8), byte(n))
	}
	return binary.BigEndian.AppendUint32(append(b, 0xdd), uint32(n))
}

func appendMapLen(b []byte, n int) []byte {
	switch {
	case n < 16:
		return append(b, 0x80|byte(n))
	case n <= math.MaxUint16:
		return append(b, 0xde, byte(n>>8), byte(n))
	}
	return binary.BigEndian.AppendUint32(append(b, 0xdf), uint32(n))
}

// appendUintCompact is vmihailenco's EncodeUint.
func appendUintCompact(b []byte, n uint64) []byte {
	switch {
	case n <= math.MaxInt8:
		return append(b, byte(n))
	case n <= math.MaxUint8:
		return append(b, 0xcc, byte(n))
	case n <= math.MaxUint16:
		return append(b, 0xcd, byte(n>>8), byte(n))
	case n <= math.MaxUint32:
		return binary.BigEndian.AppendUint32(append(b, 0xce), uint32(n))
	}
	return binary.BigEndian.AppendUint64(append(b, 0xcf), n)
}

// appendIntCompact is vmihailenco's EncodeInt.
func appendIntCompact(b []byte, n int64) []byte {
	switch {
	case n >= 0:
		return appendUintCompact(b, uint64(n))
	case n >= -32:
		return append(b, byte(n))
	case n >= math.MinInt8:
		return append(b, 0xd0, byte(n))
	case n >= math.MinInt16:
		return append(b, 0xd1, byte(n>>8), byte(n))
	case n >= math.MinInt32:
		return binary.BigEndian.AppendUint32(append(b, 0xd2), uint32(n))
	}
	return binary.BigEndian.AppendUint64(append(b, 0xd3), uint64(n))
}

// appendScalar appends the scalar of kind k at p.
func appendScalar(b []byte, k mpKind, p unsafe.Pointer) []byte {
	switch k {
	case mpBool:
		if *(*bool)(p) {
			return append(b, 0xc3)
		}
		return append(b, 0xc2)
	case mpInt:
		return appendIntCompact(b, int64(*(*int)(p)))
	case mpInt8:
		return append(b, 0xd0, *(*byte)(p))
	case mpInt16:
		return binary.BigEndian.AppendUint16(append(b, 0xd1), *(*uint16)(p))
	case mpInt32:
		return binary.BigEndian.AppendUint32(append(b, 0xd2), *(*uint32)(p))
	case mpInt64:
		return binary.BigEndian.AppendUint64(append(b, 0xd3), *(*uint64)(p))
	case mpUint:
		return appendUintCompact(b, uint64(*(*uint)(p)))
	case mpUint8:
		return append(b, 0xcc, *(*byte)(p))
	case mpUint16:
		return binary.BigEndian.AppendUint16(append(b, 0xcd), *(*uint16)(p))
	case mpUint32:
		return binary.BigEndian.AppendUint32(append(b, 0xce), *(*uint32)(p))
	case mpUint64:
		return binary.BigEndian.AppendUint64(append(b, 0xcf), *(*uint64)(p))
	case mpFloat32:
		return binary.BigEndian.AppendUint32(append(b, 0xca), math.Float32bits(*(*float32)(p)))
	case mpFloat64:
		return binary.BigEndian.AppendUint64(append(b, 0xcb), math.Float64bits(*(*float64)(p)))
	case mpString:
		return appendMsgpackString(b, *(*string)(p))
	}
	panic("protocol: appendScalar of a non-scalar kind") // unreachable: kinds come from compile
}

// scalarEmpty is vmihailenco's isEmptyValue for a scalar.
func scalarEmpty(k mpKind, p unsafe.Pointer) bool {
	switch k {
	case mpBool:
		return !*(*bool)(p)
	case mpInt, mpUint:
		return *(*uint)(p) == 0
	case mpInt8, mpUint8:
		return *(*uint8)(p) == 0
	case mpInt16, mpUint16:
		return *(*uint16)(p) == 0
	case mpInt32, mpUint32:
		return *(*uint32)(p) == 0
	case mpInt64, mpUint64:
		return *(*uint64)(p) == 0
	case mpFloat32:
		return *(*float32)(p) == 0
	case mpFloat64:
		return *(*float64)(p) == 0
	case mpString:
		return len(*(*string)(p)) == 0
	}
	return false
}

// fieldAddr returns the address of f in the struct at p, or nil when an
// embedded struct pointer on the way is nil.
func (f *mpField) addr(p unsafe.Pointer) unsafe.Pointer {
	for _, h := range f.hops {
		p = *(*unsafe.Pointer)(unsafe.Add(p, h.off))
		if p == nil {
			return nil
		}
	}
	return unsafe.Add(p, f.off)
}

// omitted reports whether vmihailenco leaves f out of the struct at p: only
// when the struct has omitempty fields, f is behind a nil embedded pointer or
// is an empty omitempty field (its field.Omit).
func (f *mpField) omitted(p unsafe.Pointer) bool {
	fp := f.addr(p)
	if fp == nil {
		return true
	}
	if !f.omitEmpty {
		return false
	}
	if f.node.empty != nil {
		return f.node.empty(fp)
	}
	return false
}

func (s *mpStruct) appendStruct(b []byte, p unsafe.Pointer, arr bool) []byte {
	if arr || s.asArray {
		b = append(b, s.arrayHeader...)
		for i := range s.list {
			b = s.list[i].appendValue(b, p, arr)
		}
		return b
	}
	if !s.hasOmitEmpty {
		b = append(b, s.mapHeader...)
		for i := range s.list {
			f := &s.list[i]
			b = append(b, f.key...)
			b = f.appendValue(b, p, arr)
		}
		return b
	}
	n := 0
	for i := range s.list {
		if !s.list[i].omitted(p) {
			n++
		}
	}
	b = appendMapLen(b, n)
	for i := range s.list {
		f := &s.list[i]
		if f.omitted(p) {
			continue
		}
		b = append(b, f.key...)
		b = f.appendValue(b, p, arr)
	}
	return b
}

// appendValue appends f's value in the struct at p (nil behind a nil
// embedded pointer, as vmihailenco writes).
func (f *mpField) appendValue(b []byte, p unsafe.Pointer, arr bool) []byte {
	fp := unsafe.Add(p, f.off)
	if len(f.hops) > 0 {
		fp = f.addr(p)
	}
	switch {
	case fp == nil:
		return append(b, 0xc0)
	case f.kind != mpOther:
		return appendScalar(b, f.kind, fp)
	}
	return f.node.enc(b, fp, arr)
}

// structEmpty is vmihailenco's isEmptyValue for a struct: every field would
// be omitted, which needs omitempty fields unless there are no fields.
func (s *mpStruct) structEmpty(p unsafe.Pointer) bool {
	if !s.hasOmitEmpty {
		return len(s.list) == 0
	}
	for i := range s.list {
		if !s.list[i].omitted(p) {
			return false
		}
	}
	return true
}

// appendTime is vmihailenco's EncodeTime: extension -1 with 4, 8 or 12
// bytes of seconds and nanoseconds.
func appendTime(b []byte, tm time.Time) []byte {
	secs := uint64(tm.Unix())
	if secs>>34 == 0 {
		data := uint64(tm.Nanosecond())<<34 | secs
		if data&0xffffffff00000000 == 0 {
			return binary.BigEndian.AppendUint32(append(b, 0xd6, 0xff), uint32(data))
		}
		return binary.BigEndian.AppendUint64(append(b, 0xd7, 0xff), data)
	}
	b = binary.BigEndian.AppendUint32(append(b, 0xc7, 12, 0xff), uint32(tm.Nanosecond()))
	return binary.BigEndian.AppendUint64(b, secs)
}

// appendSliceElems appends n elements of elem starting at data.
func appendElems(b []byte, elem *mpNode, data unsafe.Pointer, n int, arr bool) []byte {
	size := elem.typ.Size()
	for i := range n {
		ep := unsafe.Add(data, uintptr(i)*size)
		if elem.kind != mpOther {
			b = appendScalar(b, elem.kind, ep)
		} else {
			b = elem.enc(b, ep, arr)
		}
	}
	return b
}

// appendMap appends the map at p (of type t) entry by entry, in Go's map
// order as vmihailenco does; the key and the value are copied into two
// reusable temporaries, so there is no allocation per entry.
func appendMap(b []byte, t reflect.Type, key, elem *mpNode, p unsafe.Pointer, arr bool) []byte {
	m := reflect.NewAt(t, p).Elem()
	if m.IsNil() {
		return append(b, 0xc0)
	}
	b = appendMapLen(b, m.Len())
	k := reflect.New(t.Key()).Elem()
	v := reflect.New(t.Elem()).Elem()
	kp, vp := k.Addr().UnsafePointer(), v.Addr().UnsafePointer()
	for it := m.MapRange(); it.Next(); {
		k.SetIterKey(it)
		v.SetIterValue(it)
		b = appendScalar(b, key.kind, kp)
		if elem.kind != mpOther {
			b = appendScalar(b, elem.kind, vp)
		} else {
			b = elem.enc(b, vp, arr)
		}
	}
	return b
}
