package protocol

import (
	"bytes"
	"encoding/json"
	"fmt"
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
)

// Codec encodes and decodes payloads. Implementations are safe for concurrent use.
type Codec interface {
	ID() CodecID
	Name() string
	// Append appends the encoding of v to dst.
	Append(dst []byte, v any) ([]byte, error)
	// Decode decodes data into v, which must be a pointer.
	Decode(data []byte, v any) error
}

// Codecs provided by this package.
var (
	Msgpack Codec = msgpackCodec{}
	JSON    Codec = jsonCodec{}
)

// CodecByID returns the codec with the given id, or an error for an unknown one.
func CodecByID(id CodecID) (Codec, error) {
	switch id {
	case CodecMsgpack:
		return Msgpack, nil
	case CodecJSON:
		return JSON, nil
	}
	return nil, fmt.Errorf("protocol: unknown codec id %d", id)
}

// ParseCodec returns the codec named "msgpack" or "json".
func ParseCodec(name string) (Codec, error) {
	switch name {
	case "msgpack":
		return Msgpack, nil
	case "json":
		return JSON, nil
	}
	return nil, fmt.Errorf("protocol: unknown codec %q (want msgpack or json)", name)
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

type msgpackCodec struct{}

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

func (msgpackCodec) ID() CodecID  { return CodecMsgpack }
func (msgpackCodec) Name() string { return "msgpack" }

func (msgpackCodec) Append(dst []byte, v any) ([]byte, error) {
	s := msgpackPool.Get().(*msgpackState)
	s.w.b = dst
	s.enc.Reset(&s.w) // clears state a failed Encode may have left
	err := s.enc.Encode(v)
	dst = s.w.b
	s.w.b = nil
	msgpackPool.Put(s)
	return dst, err
}

func (msgpackCodec) Decode(data []byte, v any) error {
	s := msgpackPool.Get().(*msgpackState)
	s.r.Reset(data)
	s.dec.Reset(&s.r) // clears state a failed Decode may have left
	err := s.dec.Decode(v)
	s.r.Reset(nil)
	msgpackPool.Put(s)
	return err
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
