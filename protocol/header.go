package protocol

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Header layout constants; see the package documentation.
const (
	Magic      byte = 0xC5 // first byte of every frame
	Version    byte = 1    // the only version this package speaks
	HeaderSize      = 20   // bytes in a frame header

	// DefaultMaxBodySize is the body limit used when none is configured.
	DefaultMaxBodySize = 8 << 20
)

// Errors describing malformed frames. They are wrapped with detail; test with errors.Is.
var (
	ErrBadMagic  = errors.New("protocol: bad magic byte")
	ErrVersion   = errors.New("protocol: unsupported version")
	ErrTooLarge  = errors.New("protocol: frame larger than the limit")
	ErrMalformed = errors.New("protocol: malformed frame")
)

// Kind says what a frame is.
type Kind uint8

// Frame kinds.
const (
	KindRequest   Kind = 1 // a call, client to server
	KindResponse  Kind = 2 // a call's reply, server to client
	KindHeartbeat Kind = 3 // a liveness probe, or its answer when FlagReply is set
	KindGoAway    Kind = 4 // the server is shutting down: send no new calls here
	KindCancel    Kind = 5 // the caller gave up on the request with this sequence number

	// Stream frames name their stream by the sequence number of the request
	// that opened it (a request with FlagStream); see the package
	// documentation.
	KindStreamData Kind = 6 // one message of a stream, either way; counts against the receiver's window
	KindStreamEnd  Kind = 7 // the sender sends no more on the stream: a client's half-close, or the server's end with its status
	KindWindow     Kind = 8 // the receiver grants the sender more bytes of the stream's window
	KindReset      Kind = 9 // the stream is abandoned, either way, with a status

	lastKind = KindReset
)

// String returns the kind's name, e.g. "request".
func (k Kind) String() string {
	switch k {
	case KindRequest:
		return "request"
	case KindResponse:
		return "response"
	case KindHeartbeat:
		return "heartbeat"
	case KindGoAway:
		return "go-away"
	case KindCancel:
		return "cancel"
	case KindStreamData:
		return "stream data"
	case KindStreamEnd:
		return "stream end"
	case KindWindow:
		return "window"
	case KindReset:
		return "reset"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Flags modify a frame.
type Flags uint8

// Frame flags.
const (
	FlagOneWay Flags = 1 << 0 // request expects no response
	FlagError  Flags = 1 << 1 // payload is an error message, status says which kind
	FlagReply  Flags = 1 << 2 // heartbeat answer
	// FlagCompress: the sender compresses large payloads and reads
	// compressed ones; a server answers a request that carries it alike.
	FlagCompress Flags = 1 << 3
	// FlagCompressed: the payload is compressed (s2 block format); set by the
	// frame writer, cleared by Reader once it has decompressed the payload.
	FlagCompressed Flags = 1 << 4
	FlagStream     Flags = 1 << 5 // on a request: open a stream rather than make a call

	knownFlags = FlagOneWay | FlagError | FlagReply | FlagCompress | FlagCompressed | FlagStream
)

// Status is the outcome of a request, carried by its response.
type Status uint8

// Response statuses.
const (
	StatusOK              Status = 0  // the method ran and returned nil
	StatusServiceError    Status = 1  // the method ran and returned an error
	StatusUnknownService  Status = 2  // no service of that name; not executed
	StatusUnknownMethod   Status = 3  // no method of that name; not executed
	StatusBadRequest      Status = 4  // malformed call or undecodable args; not executed
	StatusShuttingDown    Status = 5  // the server is draining; not executed
	StatusInternal        Status = 6  // the server failed (handler panic, reply too large)
	StatusOverloaded      Status = 7  // past a connection or concurrency limit; not executed
	StatusUnauthenticated Status = 8  // the credentials were refused; not executed
	StatusTooLarge        Status = 9  // the request's body was over the server's limit; not executed
	StatusRefused         Status = 10 // a server interceptor refused the request; not executed
	StatusAborted         Status = 11 // a stream was reset while its method ran (the server shut down, or a limit); maybe executed
)

// String returns the status's name, e.g. "unknown method".
func (s Status) String() string {
	switch s {
	case StatusOK:
		return "ok"
	case StatusServiceError:
		return "service error"
	case StatusUnknownService:
		return "unknown service"
	case StatusUnknownMethod:
		return "unknown method"
	case StatusBadRequest:
		return "bad request"
	case StatusShuttingDown:
		return "shutting down"
	case StatusInternal:
		return "internal error"
	case StatusOverloaded:
		return "overloaded"
	case StatusUnauthenticated:
		return "unauthenticated"
	case StatusTooLarge:
		return "too large"
	case StatusRefused:
		return "refused"
	case StatusAborted:
		return "aborted"
	}
	return fmt.Sprintf("status(%d)", uint8(s))
}

// Header is the fixed part of a frame.
type Header struct {
	Kind    Kind    // what the frame is: request, response, heartbeat, go-away, cancel, or a stream frame
	Flags   Flags   // one-way, error, reply (of a heartbeat), stream (of a request)
	Codec   CodecID // the payload's codec; CodecNone for a frame without one
	Status  Status  // a response's, end's or reset's outcome; a stream open's shape (StreamShape); StatusOK otherwise
	Seq     uint64  // matches a response (or cancel) to its request
	BodyLen uint32  // the length of the body that follows the header
}

// appendHeader appends the 20 header bytes of h to dst.
func appendHeader(dst []byte, h *Header) []byte {
	dst = append(dst, Magic, Version, byte(h.Kind), byte(h.Flags), byte(h.Codec), byte(h.Status), 0, 0)
	dst = binary.BigEndian.AppendUint64(dst, h.Seq)
	return binary.BigEndian.AppendUint32(dst, h.BodyLen)
}

// ParseHeader decodes and validates the header in b[:HeaderSize]. The body length
// must not exceed maxBody (DefaultMaxBodySize when maxBody <= 0). A header
// that is valid but for a body over the limit is returned with an error
// wrapping ErrTooLarge, so a reader can answer or skip that frame alone; any
// other error comes with a zero Header.
func ParseHeader(b []byte, maxBody int) (Header, error) {
	if len(b) < HeaderSize {
		return Header{}, fmt.Errorf("%w: header is %d bytes, want %d", ErrMalformed, len(b), HeaderSize)
	}
	if b[0] != Magic {
		return Header{}, fmt.Errorf("%w: 0x%02x", ErrBadMagic, b[0])
	}
	if b[1] != Version {
		return Header{}, fmt.Errorf("%w: %d", ErrVersion, b[1])
	}
	h := Header{
		Kind:    Kind(b[2]),
		Flags:   Flags(b[3]),
		Codec:   CodecID(b[4]),
		Status:  Status(b[5]),
		Seq:     binary.BigEndian.Uint64(b[8:16]),
		BodyLen: binary.BigEndian.Uint32(b[16:20]),
	}
	if h.Kind < KindRequest || h.Kind > lastKind {
		return Header{}, fmt.Errorf("%w: unknown kind %d", ErrMalformed, b[2])
	}
	if h.Flags&^knownFlags != 0 {
		return Header{}, fmt.Errorf("%w: unknown flags 0x%02x", ErrMalformed, b[3])
	}
	if h.Flags&FlagStream != 0 && (h.Kind != KindRequest || h.Flags&FlagOneWay != 0) {
		return Header{}, fmt.Errorf("%w: stream flag on a %s frame", ErrMalformed, h.Kind)
	}
	if h.Flags&FlagStream != 0 && (h.Status < Status(ServerStream) || h.Status > Status(BidiStream)) {
		return Header{}, fmt.Errorf("%w: stream open of unknown shape %d", ErrMalformed, b[5])
	}
	if b[6] != 0 || b[7] != 0 {
		return Header{}, fmt.Errorf("%w: reserved bytes set", ErrMalformed)
	}
	if uint64(h.BodyLen) > uint64(limit(maxBody)) {
		return h, fmt.Errorf("%w: body of %d bytes, limit %d", ErrTooLarge, h.BodyLen, limit(maxBody))
	}
	return h, nil
}

// limit reads a configured body limit, 0 or less meaning the default.
func limit(maxBody int) int {
	if maxBody <= 0 {
		return DefaultMaxBodySize
	}
	return maxBody
}
