package protocol

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"sync"

	"github.com/vmihailenco/msgpack/v5"
)

// CodecID names a payload codec on the wire.
type CodecID uint8

// Codec ids.
const (
	CodecNone    CodecID = 0 // no payload
	CodecMsgpack CodecID = 1 // github.com/vmihailenco/msgpack/v5, the default
	CodecJSON    CodecID = 2 // encoding/json
	// CodecMsgpackCompact is msgpack with structs encoded as arrays of their
	// fields, without field names: smaller and faster, but both sides must
	// declare the fields in the same order.
	CodecMsgpackCompact CodecID = 3
)

// Codec encodes and decodes payloads. Implementations are safe for concurrent use.
type Codec interface {
	// ID is the codec's number in a frame header.
	ID() CodecID
	// Name is the codec's name for flags and logs: "msgpack",
	// "msgpack-compact" or "json" for this package's codecs.
	Name() string
	// Append appends the encoding of v to dst.
	Append(dst []byte, v any) ([]byte, error)
	// Decode decodes data into v, which must be a pointer. A payload that
	// does not fit v's type is an error that says where: the msgpack codecs
	// return a *DecodeError, encoding/json a *json.UnmarshalTypeError.
	Decode(data []byte, v any) error
}

// Codecs provided by this package. Msgpack is the default. MsgpackCompact
// encodes structs as arrays (what `msgpack:",as_array"` does for one type):
// smaller, and safe when provider and consumer share the Go types; it reads
// maps too, so it can decode anything Msgpack writes.
//
// Both msgpack codecs compile a plain struct type on first use (see
// msgpackc.go: field offsets, pre-encoded field names, no reflection per
// field) and write and read what github.com/vmihailenco/msgpack/v5 does for
// it; types they do not compile (interfaces, types with their own msgpack,
// binary or text codec, some tag options) go to vmihailenco/msgpack.
var (
	Msgpack        Codec = msgpackCodec{}
	MsgpackCompact Codec = msgpackCodec{compact: true}
	JSON           Codec = jsonCodec{}
)

// CodecByID returns the codec with the given id, or an error for an unknown one.
func CodecByID(id CodecID) (Codec, error) {
	switch id {
	case CodecMsgpack:
		return Msgpack, nil
	case CodecMsgpackCompact:
		return MsgpackCompact, nil
	case CodecJSON:
		return JSON, nil
	}
	return nil, fmt.Errorf("protocol: unknown codec id %d", id)
}

// ParseCodec returns the codec named "msgpack", "msgpack-compact" or "json".
func ParseCodec(name string) (Codec, error) {
	switch name {
	case "msgpack":
		return Msgpack, nil
	case "msgpack-compact":
		return MsgpackCompact, nil
	case "json":
		return JSON, nil
	}
	return nil, fmt.Errorf("protocol: unknown codec %q (want msgpack, msgpack-compact or json)", name)
}

// MsgMarshaler is implemented by a type with generated msgpack code: the
// MarshalMsg method that github.com/tinylib/msgp generates has this shape
// (rpcx's msgpack codec honours the same pair). MarshalMsg appends the
// type's msgpack encoding to b and returns the extended slice. Both msgpack
// codecs call it instead of encoding by reflection; the generated code
// decides between map and array encoding (msgp's "tuple" directive), so the
// compact option does not apply to such a type.
type MsgMarshaler interface {
	// MarshalMsg appends the receiver's msgpack encoding to b.
	MarshalMsg(b []byte) ([]byte, error)
}

// MsgUnmarshaler is the decoding half of MsgMarshaler: UnmarshalMsg decodes
// one value from the front of b into the receiver and returns the bytes
// after it. The payload is checked (declared lengths against the bytes
// present, nesting depth) before UnmarshalMsg sees it, as before reflection.
type MsgUnmarshaler interface {
	// UnmarshalMsg decodes one value from the front of b into the receiver
	// and returns the rest of b.
	UnmarshalMsg(b []byte) ([]byte, error)
}

// appendWriter is an io.Writer and io.ByteWriter that appends to a slice.
type appendWriter struct{ b []byte }

func (w *appendWriter) Write(p []byte) (int, error) {
	w.b = append(w.b, p...)
	return len(p), nil
}

func (w *appendWriter) WriteByte(c byte) error {
	w.b = append(w.b, c)
	return nil
}

// msgpackCodec is msgpack, with structs as maps or, compact, as arrays.
type msgpackCodec struct{ compact bool }

// msgpackState pairs a pooled encoder and decoder with the buffers they use,
// so encoding and decoding allocate nothing of their own.
type msgpackState struct {
	enc *msgpack.Encoder
	dec *msgpack.Decoder
	w   appendWriter
	r   bytes.Reader
}

var msgpackPool = sync.Pool{New: func() any {
	s := &msgpackState{}
	s.enc = msgpack.NewEncoder(&s.w)
	s.dec = msgpack.NewDecoder(&s.r)
	return s
}}

func (c msgpackCodec) ID() CodecID {
	if c.compact {
		return CodecMsgpackCompact
	}
	return CodecMsgpack
}

func (c msgpackCodec) Name() string {
	if c.compact {
		return "msgpack-compact"
	}
	return "msgpack"
}

func (c msgpackCodec) Append(dst []byte, v any) ([]byte, error) {
	if m, ok := v.(MsgMarshaler); ok {
		out, err := m.MarshalMsg(dst)
		if err != nil {
			return dst, err
		}
		return out, nil
	}
	if plan := mpPlanFor(reflect.TypeOf(v)); plan != nil {
		return plan.appendTop(dst, v, c.compact), nil // msgpackc.go
	}
	s := msgpackPool.Get().(*msgpackState)
	s.w.b = dst
	s.enc.Reset(&s.w) // clears state a failed Encode may have left, and the flags
	s.enc.UseArrayEncodedStructs(c.compact)
	err := s.enc.Encode(v)
	dst = s.w.b
	s.w.b = nil
	msgpackPool.Put(s)
	return dst, err
}

// Decode reads maps and arrays alike. The msgpack library panics on some
// inputs a peer controls (a map whose key is itself a map, decoded into an
// interface: "hash of unhashable type"); Decode turns that into an error
// wrapping ErrMalformed, so a payload can fail its call but never crash the
// process that decodes it.
func (c msgpackCodec) Decode(data []byte, v any) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: msgpack payload the decoder cannot hold: %v", ErrMalformed, r)
		}
	}()
	return c.decode(data, v)
}

func (msgpackCodec) decode(data []byte, v any) error {
	if plan := mpDecodePlan(v); plan != nil {
		return plan.decode(data, v) // msgpackc.go; the payload check is folded in
	}
	if err := checkMsgpack(data); err != nil {
		return err
	}
	if u, ok := v.(MsgUnmarshaler); ok {
		if _, err := u.UnmarshalMsg(data); err != nil {
			return describeMsgpackError(data, v, err)
		}
		return nil
	}
	s := msgpackPool.Get().(*msgpackState)
	s.r.Reset(data)
	s.dec.Reset(&s.r)      // clears state a failed Decode may have left
	err := s.dec.Decode(v) // a panic here leaves s out of the pool
	s.r.Reset(nil)
	msgpackPool.Put(s)
	if err != nil {
		// Say where the payload and v's type part ways, in Go terms.
		return describeMsgpackError(data, v, err)
	}
	return nil
}

type jsonCodec struct{}

func (jsonCodec) ID() CodecID  { return CodecJSON }
func (jsonCodec) Name() string { return "json" }

func (jsonCodec) Append(dst []byte, v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return dst, err
	}
	return append(dst, b...), nil
}

func (jsonCodec) Decode(data []byte, v any) error { return json.Unmarshal(data, v) }
