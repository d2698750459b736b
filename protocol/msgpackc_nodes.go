package protocol

import (
	"reflect"
	"time"
	"unsafe"
)

// The compiled codec's nodes: for each kind of Go type, the encoding, the
// decoding and the omitempty test, wired from msgpackc_enc.go and
// msgpackc_dec.go.

func scalarNode(n *mpNode) {
	k := n.kind
	n.enc = func(b []byte, p unsafe.Pointer, _ bool) []byte { return appendScalar(b, k, p) }
	n.dec = func(d *mpDecoder, p unsafe.Pointer) error { return d.decodeScalar(k, p) }
	n.empty = func(p unsafe.Pointer) bool { return scalarEmpty(k, p) }
}

func ptrNode(n, elem *mpNode) {
	n.enc = func(b []byte, p unsafe.Pointer, arr bool) []byte {
		ep := *(*unsafe.Pointer)(p)
		switch {
		case ep == nil:
			return append(b, 0xc0)
		case elem.kind != mpOther:
			return appendScalar(b, elem.kind, ep)
		}
		return elem.enc(b, ep, arr)
	}
	n.dec = func(d *mpDecoder, p unsafe.Pointer) error { return d.decodePtr(elem, p) }
	n.empty = func(p unsafe.Pointer) bool { return *(*unsafe.Pointer)(p) == nil }
}

// bytesNode is a slice of a uint8 kind: bin.
func bytesNode(n *mpNode) {
	n.enc = func(b []byte, p unsafe.Pointer, _ bool) []byte {
		s := *(*[]byte)(p)
		if s == nil {
			return append(b, 0xc0)
		}
		return append(appendBinLen(b, len(s)), s...)
	}
	n.dec = func(d *mpDecoder, p unsafe.Pointer) error { return d.decodeBytes(p) }
	n.empty = func(p unsafe.Pointer) bool { return len(*(*[]byte)(p)) == 0 }
}

// byteArrayNode is an array of a uint8 kind: bin.
func byteArrayNode(n *mpNode) {
	t := n.typ
	size := t.Len()
	n.enc = func(b []byte, p unsafe.Pointer, _ bool) []byte {
		return append(appendBinLen(b, size), unsafe.Slice((*byte)(p), size)...)
	}
	n.dec = func(d *mpDecoder, p unsafe.Pointer) error { return d.decodeByteArray(t, p) }
	n.empty = func(unsafe.Pointer) bool { return size == 0 }
}

// sliceNode is any other slice; keepOnNil for []string (see decodeSlice).
func sliceNode(n, elem *mpNode, keepOnNil bool) {
	t := n.typ
	n.enc = func(b []byte, p unsafe.Pointer, arr bool) []byte {
		// A slice header's first word is its data pointer, its second
		// its length (reflect.SliceHeader's layout).
		data := *(*unsafe.Pointer)(p)
		if data == nil {
			return append(b, 0xc0)
		}
		l := *(*int)(unsafe.Add(p, unsafe.Sizeof(uintptr(0))))
		return appendElems(appendArrayLen(b, l), elem, data, l, arr)
	}
	n.dec = func(d *mpDecoder, p unsafe.Pointer) error { return d.decodeSlice(t, elem, keepOnNil, p) }
	n.empty = func(p unsafe.Pointer) bool { return *(*int)(unsafe.Add(p, unsafe.Sizeof(uintptr(0)))) == 0 }
}

func arrayNode(n, elem *mpNode) {
	t := n.typ
	l := t.Len()
	n.enc = func(b []byte, p unsafe.Pointer, arr bool) []byte {
		return appendElems(appendArrayLen(b, l), elem, p, l, arr)
	}
	n.dec = func(d *mpDecoder, p unsafe.Pointer) error { return d.decodeArray(t, elem, p) }
	n.empty = func(unsafe.Pointer) bool { return l == 0 }
}

func mapNode(n, key, elem *mpNode) {
	t := n.typ
	n.enc = func(b []byte, p unsafe.Pointer, arr bool) []byte { return appendMap(b, t, key, elem, p, arr) }
	n.dec = func(d *mpDecoder, p unsafe.Pointer) error { return d.decodeMap(t, key, elem, p) }
	n.empty = func(p unsafe.Pointer) bool { return reflect.NewAt(t, p).Elem().Len() == 0 }
}

func structNode(n *mpNode, s *mpStruct) {
	n.enc = s.appendStruct
	n.dec = func(d *mpDecoder, p unsafe.Pointer) error { return d.decodeStruct(s, p) }
	n.empty = s.structEmpty
}

func timeNode() *mpNode {
	return &mpNode{
		typ:   typeOfTime,
		enc:   func(b []byte, p unsafe.Pointer, _ bool) []byte { return appendTime(b, *(*time.Time)(p)) },
		dec:   func(d *mpDecoder, p unsafe.Pointer) error { return d.decodeTime(p) },
		empty: func(p unsafe.Pointer) bool { return (*time.Time)(p).IsZero() },
	}
}

// isZeroerEmpty is omitempty for a type with an IsZero method, which
// vmihailenco calls (a nil pointer, map or slice is empty without it).
func isZeroerEmpty(t reflect.Type) func(unsafe.Pointer) bool {
	return func(p unsafe.Pointer) bool {
		v := reflect.NewAt(t, p).Elem()
		switch t.Kind() {
		case reflect.Pointer, reflect.Map, reflect.Slice:
			if v.IsNil() {
				return true
			}
		}
		return v.Interface().(interface{ IsZero() bool }).IsZero()
	}
}
