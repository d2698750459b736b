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

// checkMsgpack walks the first msgpack value in data without allocating and
// rejects one the decoder must not be given: a string, binary or extension
// longer than the bytes that remain, an array or map with more elements than
// bytes remain (every element takes at least one), nesting deeper than
// maxMsgpackDepth, or a truncated value. The msgpack library sizes its
// allocations from these declared lengths, so without this check a 10-byte
// payload can make it allocate gigabytes, and deep nesting can overflow the
// decoder's stack.
func checkMsgpack(data []byte) error {
	var stack [maxMsgpackDepth]uint64 // values still to read in each open container
	depth := 0
	p := 0
	for {
		if p >= len(data) {
			return fmt.Errorf("%w: truncated at offset %d", errMsgpackCheck, p)
		}
		c := data[p]
		p++
		left := uint64(len(data) - p)
		var skip, elems uint64 // payload bytes after the header; values a container holds
		container := false
		switch {
		case c <= 0x7f, c >= 0xe0, c == 0xc0, c == 0xc2, c == 0xc3:
			// fixint, nil, bool: the code is the value
		case c >= 0xa0 && c <= 0xbf:
			skip = uint64(c & 0x1f)
		case c >= 0x90 && c <= 0x9f:
			elems, container = uint64(c&0x0f), true
		case c >= 0x80 && c <= 0x8f:
			elems, container = 2*uint64(c&0x0f), true
		case c >= 0xcc && c <= 0xcf:
			skip = 1 << (c - 0xcc)
		case c >= 0xd0 && c <= 0xd3:
			skip = 1 << (c - 0xd0)
		case c == 0xca:
			skip = 4
		case c == 0xcb:
			skip = 8
		case c >= 0xd4 && c <= 0xd8: // fixext: type and 1, 2, 4, 8 or 16 bytes
			skip = 1 + 1<<(c-0xd4)
		default:
			// Codes followed by a length of 1, 2 or 4 bytes.
			var size int
			switch c {
			case 0xc4, 0xd9, 0xc7: // bin8, str8, ext8
				size = 1
			case 0xc5, 0xda, 0xc8, 0xdc, 0xde: // bin16, str16, ext16, array16, map16
				size = 2
			case 0xc6, 0xdb, 0xc9, 0xdd, 0xdf: // bin32, str32, ext32, array32, map32
				size = 4
			default: // 0xc1 is never used
				return fmt.Errorf("%w: invalid code 0x%02x at offset %d", errMsgpackCheck, c, p-1)
			}
			if uint64(size) > left {
				return fmt.Errorf("%w: truncated length at offset %d", errMsgpackCheck, p)
			}
			var n uint64
			switch size {
			case 1:
				n = uint64(data[p])
			case 2:
				n = uint64(binary.BigEndian.Uint16(data[p:]))
			case 4:
				n = uint64(binary.BigEndian.Uint32(data[p:]))
			}
			p += size
			left -= uint64(size)
			switch c {
			case 0xdc, 0xdd:
				elems, container = n, true
			case 0xde, 0xdf:
				elems, container = 2*n, true
			case 0xc7, 0xc8, 0xc9:
				skip = n + 1 // the extension's type byte, then its data
			default:
				skip = n
			}
		}
		if skip > left || (container && elems > left) {
			return fmt.Errorf("%w: %d announced at offset %d, %d bytes left", errMsgpackCheck, max(skip, elems), p, left)
		}
		p += int(skip)
		if container && elems > 0 {
			if depth == maxMsgpackDepth {
				return fmt.Errorf("%w: nested deeper than %d", errMsgpackCheck, maxMsgpackDepth)
			}
			stack[depth] = elems
			depth++
			continue
		}
		// A value is complete: close every container it completes.
		for {
			if depth == 0 {
				return nil
			}
			stack[depth-1]--
			if stack[depth-1] > 0 {
				break
			}
			depth--
		}
	}
}
