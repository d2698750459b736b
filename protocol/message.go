package protocol

import (
	"encoding/binary"
	"fmt"
	"math"
	"time"
)

// Message is one decoded frame: its header and the fields of its body.
type Message struct {
	Header
	Method   string            // "Service.Method" in requests, empty otherwise
	Metadata map[string]string // request metadata; nil when none
	Timeout  time.Duration     // time left of the caller's deadline when sent; 0 = none
	Payload  []byte            // codec-encoded args or reply, or an error message
}

// Reset clears m for reuse, keeping nothing that aliases a read buffer.
func (m *Message) Reset() { *m = Message{} }

// AppendFrame appends the frame of m to dst: header, body fields and m.Payload.
// m.BodyLen is ignored and computed. With FlagCompress, a payload of at
// least CompressThreshold bytes is compressed when that makes it smaller
// (and the frame then carries FlagCompressed). The body must fit in maxBody
// (DefaultMaxBodySize when maxBody <= 0).
func AppendFrame(dst []byte, m *Message, maxBody int) ([]byte, error) {
	start := len(dst)
	dst = appendHead(dst, m)
	payloadStart := len(dst)
	dst = append(dst, m.Payload...)
	if m.Flags&FlagCompress != 0 {
		dst = compressPayload(dst, start, payloadStart, maxBody)
	}
	return finishFrame(dst, start, maxBody)
}

// AppendFrameEncode is AppendFrame with the payload produced by encoding v
// with codec c straight into the frame, so the payload is never copied.
func AppendFrameEncode(dst []byte, m *Message, c Codec, v any, maxBody int) ([]byte, error) {
	start := len(dst)
	m.Codec = c.ID()
	dst = appendHead(dst, m)
	payloadStart := len(dst)
	dst, err := c.Append(dst, v)
	if err != nil {
		return dst[:start], fmt.Errorf("encode %s payload: %w", c.Name(), err)
	}
	if m.Flags&FlagCompress != 0 {
		dst = compressPayload(dst, start, payloadStart, maxBody)
	}
	return finishFrame(dst, start, maxBody)
}

// appendHead appends the header (with a body length to be patched) and the body
// fields that precede the payload.
func appendHead(dst []byte, m *Message) []byte {
	dst = appendHeader(dst, &m.Header)
	dst = binary.AppendUvarint(dst, uint64(len(m.Method)))
	dst = append(dst, m.Method...)
	dst = binary.AppendUvarint(dst, uint64(len(m.Metadata)))
	for k, v := range m.Metadata {
		dst = binary.AppendUvarint(dst, uint64(len(k)))
		dst = append(dst, k...)
		dst = binary.AppendUvarint(dst, uint64(len(v)))
		dst = append(dst, v...)
	}
	timeout := uint64(0)
	if m.Timeout > 0 {
		timeout = uint64(m.Timeout)
	}
	return binary.AppendUvarint(dst, timeout)
}

// finishFrame checks the size of the frame that starts at dst[start] and
// patches its body length.
func finishFrame(dst []byte, start, maxBody int) ([]byte, error) {
	body := len(dst) - start - HeaderSize
	if body > limit(maxBody) || body > math.MaxUint32 {
		return dst[:start], fmt.Errorf("%w: body of %d bytes, limit %d", ErrTooLarge, body, limit(maxBody))
	}
	binary.BigEndian.PutUint32(dst[start+16:start+20], uint32(body))
	return dst, nil
}

// ParseBody decodes a frame body into m's Method, Metadata, Timeout and Payload.
// m.Payload aliases body. Every length is checked against what remains before
// anything is allocated.
func ParseBody(body []byte, m *Message) error {
	p := parser{b: body}
	method := p.bytes("method")
	count := p.uvarint("metadata count", "")
	if p.err == nil && count > uint64(len(p.b))/2 { // each pair takes at least two bytes
		p.fail("metadata count %d with %d bytes left", count, len(p.b))
	}
	if p.err == nil && count > 0 {
		m.Metadata = make(map[string]string, count)
		for i := uint64(0); i < count && p.err == nil; i++ {
			k := p.bytes("metadata key")
			v := p.bytes("metadata value")
			if p.err == nil {
				m.Metadata[string(k)] = string(v)
			}
		}
	}
	timeout := p.uvarint("timeout", "")
	if p.err == nil && timeout > math.MaxInt64 {
		p.fail("timeout %d overflows", timeout)
	}
	if p.err != nil {
		return p.err
	}
	if len(method) > 0 {
		m.Method = string(method)
	}
	m.Timeout = time.Duration(timeout)
	m.Payload = p.b
	if m.Kind >= KindStreamData {
		return checkStreamFrame(m)
	}
	return nil
}

// parser reads the length-prefixed fields of a body, remembering the first error.
type parser struct {
	b   []byte
	err error
}

func (p *parser) fail(format string, args ...any) {
	if p.err == nil {
		p.err = fmt.Errorf("%w: "+format, append([]any{ErrMalformed}, args...)...)
	}
}

// uvarint reads a varint; what names it in the error (the suffix keeps the
// hot path free of string building).
func (p *parser) uvarint(what, suffix string) uint64 {
	if p.err != nil {
		return 0
	}
	v, n := binary.Uvarint(p.b)
	if n <= 0 {
		p.fail("bad %s%s varint", what, suffix)
		return 0
	}
	p.b = p.b[n:]
	return v
}

func (p *parser) bytes(what string) []byte {
	n := p.uvarint(what, " length")
	if p.err != nil {
		return nil
	}
	if n > uint64(len(p.b)) {
		p.fail("%s of %d bytes with %d left", what, n, len(p.b))
		return nil
	}
	v := p.b[:n]
	p.b = p.b[n:]
	return v
}

// DecodeFrame decodes one whole frame from the start of data into m and returns
// the number of bytes it used. m.Payload aliases data, unless the payload was
// compressed (FlagCompressed): it is then decompressed into a new buffer,
// checked against maxBody first, as a Reader does.
func DecodeFrame(data []byte, maxBody int, m *Message) (int, error) {
	h, err := ParseHeader(data, maxBody)
	if err != nil {
		return 0, err
	}
	end := HeaderSize + int(h.BodyLen)
	if len(data) < end {
		return 0, fmt.Errorf("%w: body of %d bytes, %d present", ErrMalformed, h.BodyLen, len(data)-HeaderSize)
	}
	m.Header = h
	if err := ParseBody(data[HeaderSize:end], m); err != nil {
		return 0, err
	}
	if h.Flags&FlagCompressed != 0 {
		var plain []byte
		if err := decompressPayload(m, &plain, limit(maxBody)); err != nil {
			return 0, err
		}
	}
	return end, nil
}

// SetSeq rewrites the sequence number of the frame that starts at frame[0],
// so a frame can be encoded before its sequence number is chosen.
func SetSeq(frame []byte, seq uint64) {
	binary.BigEndian.PutUint64(frame[8:16], seq)
}
