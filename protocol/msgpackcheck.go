package protocol

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// maxMsgpackDepth bounds how deeply arrays and maps may nest in a payload.
const maxMsgpackDepth = 256

// errMsgpackCheck is wrapped by the errors of checkMsgpack.
var errMsgpackCheck = errors.New("msgpack payload")

// checkMsgpack walks the first msgpack value in data without allocating
// (unless it nests deeper than 16) and rejects one the decoder must not be
// given: a string, binary or extension
// longer than the bytes that remain, an array or map with more elements than
// bytes remain (every element takes at least one), nesting deeper than
// maxMsgpackDepth, or a truncated value. The msgpack library sizes its
// allocations from these declared lengths, so without this check a 10-byte
// payload can make it allocate gigabytes, and deep nesting can overflow the
// decoder's stack.
func checkMsgpack(data []byte) error {
	_, err := msgpackValueEnd(data, 0, maxMsgpackDepth)
	return err
}

// msgpackValueEnd is checkMsgpack for the value at offset p of data, with
// at most maxDepth containers open at once: it returns the offset where the
// value ends. The compiled decoder skips unknown struct fields with it.
func msgpackValueEnd(data []byte, p, maxDepth int) (int, error) {
	// Values left in each enclosing container: the first 16 levels in a small
	// array, deeper ones (up to maxMsgpackDepth) in a slice grown on demand.
	// A 256-entry array here took 2 KiB of the reading goroutine's stack,
	// which then grew to 8 KiB and stayed so while the connection was idle.
	var inline [16]uint64
	stack := inline[:]
	depth := 0
	rem := uint64(1) // values left in the innermost open container (the top level holds one)
	maxDepth = min(maxDepth, maxMsgpackDepth)
	for {
		if p >= len(data) {
			return 0, fmt.Errorf("%w: truncated at offset %d", errMsgpackCheck, p)
		}
		c := data[p]
		p++
		if k := msgpackClass[c]; k <= classMaxSkip {
			// The common case, one predictable branch: a scalar or a
			// fixstr, with k bytes after its code.
			if int(k) > len(data)-p {
				return 0, fmt.Errorf("%w: %d announced at offset %d, %d bytes left", errMsgpackCheck, k, p, len(data)-p)
			}
			p += int(k)
		} else if k == classLen+1 {
			// str8 or bin8, the next most common: inline too.
			if p >= len(data) {
				return 0, fmt.Errorf("%w: truncated length at offset %d", errMsgpackCheck, p)
			}
			n := int(data[p])
			p++
			if n > len(data)-p {
				return 0, fmt.Errorf("%w: %d announced at offset %d, %d bytes left", errMsgpackCheck, n, p, len(data)-p)
			}
			p += n
		} else {
			elems, err := checkLong(data, &p, c, k)
			if err != nil {
				return 0, err
			}
			if elems > 0 {
				if depth >= maxDepth {
					return 0, fmt.Errorf("%w: nested deeper than %d", errMsgpackCheck, maxMsgpackDepth)
				}
				if depth < len(stack) {
					stack[depth] = rem
				} else {
					stack = append(stack, rem)
				}
				depth++
				rem = elems
				continue
			}
		}
		// A value is complete: close every container it completes.
		for rem--; rem == 0; rem-- {
			if depth == 0 {
				return p, nil
			}
			depth--
			rem = stack[depth]
		}
	}
}

// Classes of msgpack codes in msgpackClass. Up to classMaxSkip, the class
// is the number of bytes that follow the code; the rest name the codes
// that carry a length or a count.
const (
	classMaxSkip   = 31 // the longest fixstr; fixext16 (17) is shorter
	classLen       = 32 // str or bin with a 1, 2 or 4 byte length: 32 + size
	classExt       = 40 // ext with a 1, 2 or 4 byte length: 40 + size
	classArray     = 48 // array with a 2 or 4 byte count: 48 + size
	classMap       = 56 // map with a 2 or 4 byte count: 56 + size
	classFixArray  = 64
	classFixMap    = 65
	classInvalid   = 66 // 0xc1, never used
	classSizeField = 7  // the low bits of classLen … classMap: the size of the length field
)

// msgpackClass maps each msgpack code to its class.
var msgpackClass = func() (t [256]uint8) {
	for c := range 256 {
		var k uint8
		switch {
		case c <= 0x7f, c >= 0xe0, c == 0xc0, c == 0xc2, c == 0xc3:
			k = 0 // fixint, nil, bool: the code is the value
		case c >= 0xa0 && c <= 0xbf:
			k = uint8(c & 0x1f)
		case c >= 0x90 && c <= 0x9f:
			k = classFixArray
		case c >= 0x80 && c <= 0x8f:
			k = classFixMap
		case c >= 0xcc && c <= 0xcf:
			k = 1 << (c - 0xcc)
		case c >= 0xd0 && c <= 0xd3:
			k = 1 << (c - 0xd0)
		case c == 0xca:
			k = 4
		case c == 0xcb:
			k = 8
		case c >= 0xd4 && c <= 0xd8: // fixext: type and 1, 2, 4, 8 or 16 bytes
			k = 1 + 1<<(c-0xd4)
		case c == 0xc4, c == 0xd9: // bin8, str8
			k = classLen + 1
		case c == 0xc5, c == 0xda:
			k = classLen + 2
		case c == 0xc6, c == 0xdb:
			k = classLen + 4
		case c == 0xc7:
			k = classExt + 1
		case c == 0xc8:
			k = classExt + 2
		case c == 0xc9:
			k = classExt + 4
		case c == 0xdc:
			k = classArray + 2
		case c == 0xdd:
			k = classArray + 4
		case c == 0xde:
			k = classMap + 2
		case c == 0xdf:
			k = classMap + 4
		default:
			k = classInvalid
		}
		t[c] = k
	}
	return t
}()

// checkLong checks a value of code c (class k, not a short scalar) whose
// code ends at *p: a container's header, or a string, binary or extension
// with a length. It advances *p past what it checked (the header of a
// container, the whole of anything else) and returns the number of values
// a container holds, 0 for anything else.
func checkLong(data []byte, p *int, c, k uint8) (elems uint64, err error) {
	switch k {
	case classFixArray:
		elems = uint64(c & 0x0f)
	case classFixMap:
		elems = 2 * uint64(c&0x0f)
	case classInvalid:
		return 0, fmt.Errorf("%w: invalid code 0x%02x at offset %d", errMsgpackCheck, c, *p-1)
	default:
		size := int(k & classSizeField)
		if size > len(data)-*p {
			return 0, fmt.Errorf("%w: truncated length at offset %d", errMsgpackCheck, *p)
		}
		var n uint64
		switch size {
		case 1:
			n = uint64(data[*p])
		case 2:
			n = uint64(binary.BigEndian.Uint16(data[*p:]))
		default:
			n = uint64(binary.BigEndian.Uint32(data[*p:]))
		}
		*p += size
		switch k &^ classSizeField {
		case classArray:
			elems = n
		case classMap:
			elems = 2 * n
		case classExt:
			n++ // the extension's type byte, then its data
			fallthrough
		default:
			if left := uint64(len(data) - *p); n > left {
				return 0, fmt.Errorf("%w: %d announced at offset %d, %d bytes left", errMsgpackCheck, n, *p, left)
			}
			*p += int(n)
			return 0, nil
		}
	}
	if left := uint64(len(data) - *p); elems > left {
		return 0, fmt.Errorf("%w: %d announced at offset %d, %d bytes left", errMsgpackCheck, elems, *p, left)
	}
	return elems, nil
}
