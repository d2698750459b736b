package protocol

import (
	"fmt"
	"math"
	"sync"

	"github.com/klauspost/compress/s2"
)

// CompressThreshold is the smallest payload a frame with FlagCompress has
// compressed: below it, compressing costs more CPU than the bytes it saves.
const CompressThreshold = 4 << 10

// compressBuffers holds the scratch buffers payloads are compressed into.
var compressBuffers = sync.Pool{New: func() any { return new([]byte) }}

// compressPayload compresses the payload at dst[payloadStart:] of the frame
// that starts at dst[start] with s2 (github.com/klauspost/compress/s2, block
// format), when the frame asks for it (FlagCompress), the payload is at
// least CompressThreshold bytes, the frame's uncompressed body fits in
// maxBody (otherwise the frame is left for finishFrame to refuse, as it
// would be refused uncompressed by the peer) and compressing makes it
// smaller; it then sets FlagCompressed in the frame's header.
func compressPayload(dst []byte, start, payloadStart, maxBody int) []byte {
	payload := dst[payloadStart:]
	if Flags(dst[start+3])&FlagCompress == 0 || len(payload) < CompressThreshold ||
		len(dst)-start-HeaderSize > limit(maxBody) {
		return dst
	}
	buf := compressBuffers.Get().(*[]byte)
	defer compressBuffers.Put(buf)
	if n := s2.MaxEncodedLen(len(payload)); cap(*buf) < n {
		*buf = make([]byte, n)
	}
	enc := s2.Encode((*buf)[:cap(*buf)], payload)
	if len(enc) >= len(payload) {
		return dst
	}
	if cap(*buf) > keepBufferSize {
		defer func() { *buf = nil }()
	}
	dst[start+3] |= byte(FlagCompressed)
	return append(dst[:payloadStart], enc...)
}

// decompressPayload replaces m's compressed payload by its decompressed
// bytes, in *buf (grown as needed), and clears FlagCompressed. The
// decompressed length, which the compressed data declares, is checked
// against maxBody before anything is allocated or decompressed: a frame
// that would decompress past the limit (a compression bomb) is refused as a
// *TooLargeError, like a body over the limit; the stream stays in step.
func decompressPayload(m *Message, buf *[]byte, maxBody int) error {
	n, err := s2.DecodedLen(m.Payload)
	if err != nil {
		return fmt.Errorf("%w: compressed %s payload: %w", ErrMalformed, m.Kind, err)
	}
	if n > maxBody {
		h := m.Header
		h.BodyLen = uint32(min(n, math.MaxUint32))
		return &TooLargeError{Header: h, Limit: maxBody}
	}
	if cap(*buf) < n {
		*buf = make([]byte, n)
	}
	out, err := s2.Decode((*buf)[:n], m.Payload)
	if err != nil {
		return fmt.Errorf("%w: compressed %s payload: %w", ErrMalformed, m.Kind, err)
	}
	m.Payload = out
	m.Flags &^= FlagCompressed
	return nil
}
