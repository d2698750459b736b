package protocol

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"sync"
)

const (
	// readBufferSize is the size of the buffered reader under a Reader: large
	// enough that many small frames arrive in one read syscall.
	readBufferSize = 32 << 10
	// chunkSize is the largest body allocated before its bytes have arrived;
	// bigger bodies grow as they are read.
	chunkSize = 64 << 10
	// keepBufferSize is the largest body buffer kept for the next frame.
	keepBufferSize = 256 << 10
	// idleBodySize is the largest body buffer a Reader with OnWait keeps
	// while the stream is idle.
	idleBodySize = 4 << 10

	// SkipFactor bounds the frames a Reader skips rather than failing on: a
	// body over the limit but at most SkipFactor times it is discarded as it
	// arrives and reported as a *TooLargeError; a larger one (an absurd
	// length, or a stream out of step) ends the stream.
	SkipFactor = 16
)

// TooLargeError is Reader.Read's error for a frame whose body was over the
// limit and was skipped: the stream is still in step, and the next Read
// returns the next frame. It wraps ErrTooLarge.
type TooLargeError struct {
	Header Header // the skipped frame's header: Kind, Seq and BodyLen say what it was
	Limit  int    // the reader's body limit
}

// Error says which frame was skipped, and the limit.
func (e *TooLargeError) Error() string {
	return fmt.Sprintf("%v: %s body of %d bytes, limit %d (skipped)", ErrTooLarge, e.Header.Kind, e.Header.BodyLen, e.Limit)
}

// Unwrap makes errors.Is(err, ErrTooLarge) true.
func (e *TooLargeError) Unwrap() error { return ErrTooLarge }

// readBuffers holds the read buffers of idle Readers, for the next Reader
// that has bytes to read.
var readBuffers = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, readBufferSize) }}

// Reader reads frames from a stream. It is not safe for concurrent use: one
// goroutine per connection reads.
//
// A Reader with OnWait (a server's) holds no read buffer while the stream is
// idle: when a frame is to be read and nothing is buffered, it returns its
// buffer to a pool shared by all Readers, and any body buffer over 4 KiB to
// the garbage collector, and waits for the next frame's first bytes in a
// small array of its own; then it takes a buffer again. An idle connection
// then costs a few hundred bytes here instead of 32 KiB, for one more read
// call each time the stream wakes up.
type Reader struct {
	r       *bufio.Reader // nil while released (idle)
	src     io.Reader
	maxBody int
	head    [HeaderSize]byte
	body    []byte
	plain   []byte // a compressed payload, decompressed
	waited  bool   // OnWait(true) was called for the frame being read

	// OnWait, if set, is called before the Reader waits on the stream for
	// bytes: started is false when no byte of the next frame has arrived (the
	// stream is idle) and true the first time it must wait in the middle of a
	// frame, once per frame, however many reads the rest of the frame takes.
	// A server sets its read deadlines here: an idle timeout between frames,
	// and one read deadline for the rest of a frame once it has begun, so a
	// peer that sends part of a frame and stalls is cut off within that time.
	OnWait func(started bool)
}

// NewReader returns a Reader of frames from r whose bodies may be at most
// maxBody bytes (DefaultMaxBodySize when maxBody <= 0).
func NewReader(r io.Reader, maxBody int) *Reader {
	return &Reader{r: bufio.NewReaderSize(r, readBufferSize), src: r, maxBody: limit(maxBody)}
}

// Buffered reports how many bytes have been read from the stream but not yet
// decoded; 0 means the next Read will wait on the stream.
func (r *Reader) Buffered() int {
	if r.r == nil {
		return 0
	}
	return r.r.Buffered()
}

// waitIdle is Read's start when nothing is buffered, for a Reader with
// OnWait: it releases the buffers, waits for the first bytes of the next
// frame (at most a header's) in r.head, takes a buffer again and reads the
// rest of the header through it.
func (r *Reader) waitIdle() error {
	if r.r != nil {
		r.r.Reset(nil)
		readBuffers.Put(r.r)
		r.r = nil
	}
	if cap(r.body) > idleBodySize {
		r.body = nil
	}
	if cap(r.plain) > idleBodySize {
		r.plain = nil
	}
	r.OnWait(false)
	var n int
	for n == 0 {
		var err error
		n, err = r.src.Read(r.head[:])
		if n == 0 && err != nil {
			return err
		}
	}
	r.r = readBuffers.Get().(*bufio.Reader)
	r.r.Reset(r.src)
	if n < HeaderSize {
		r.waitMidFrame()
		if _, err := io.ReadFull(r.r, r.head[n:]); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return fmt.Errorf("%w: truncated header: %w", ErrMalformed, err)
		}
	}
	return nil
}

// Read decodes the next frame into m, which it resets first. m.Payload aliases
// the Reader's buffer and is valid only until the next Read. A compressed
// payload (FlagCompressed) is decompressed, and the flag cleared; one that
// would decompress past the body limit is refused like a body over it, as
// a *TooLargeError. A clean end of
// stream between frames is io.EOF. A frame over the body limit but within
// SkipFactor times it is skipped and reported as a *TooLargeError (m.Header
// is its header), after which Read may be called again; anything else is a
// wrapped error after which the stream is unusable.
func (r *Reader) Read(m *Message) error {
	m.Reset()
	r.waited = false
	switch {
	case r.OnWait != nil && r.Buffered() == 0:
		if err := r.waitIdle(); err != nil {
			return err
		}
	case r.OnWait != nil && r.r.Buffered() < HeaderSize:
		r.waitMidFrame()
		fallthrough
	default:
		if _, err := io.ReadFull(r.r, r.head[:]); err != nil {
			if err == io.ErrUnexpectedEOF {
				return fmt.Errorf("%w: truncated header: %w", ErrMalformed, err)
			}
			return err
		}
	}
	h, err := ParseHeader(r.head[:], r.maxBody)
	if err != nil {
		if errors.Is(err, ErrTooLarge) && uint64(h.BodyLen) <= uint64(r.maxBody)*SkipFactor {
			return r.skip(h, m)
		}
		return err
	}
	if cap(r.body) > keepBufferSize {
		r.body = nil
	}
	if r.OnWait != nil && r.r.Buffered() < int(h.BodyLen) {
		r.waitMidFrame()
	}
	r.body, err = readBody(r.r, r.body[:0], int(h.BodyLen))
	if err != nil {
		return fmt.Errorf("%w: reading %s body of %d bytes: %w", ErrMalformed, h.Kind, h.BodyLen, err)
	}
	m.Header = h
	if err := ParseBody(r.body, m); err != nil || h.Flags&FlagCompressed == 0 {
		return err
	}
	if cap(r.plain) > keepBufferSize {
		r.plain = nil
	}
	return decompressPayload(m, &r.plain, r.maxBody)
}

// waitMidFrame tells OnWait, once per frame, that the reader waits inside a frame.
func (r *Reader) waitMidFrame() {
	if !r.waited {
		r.waited = true
		r.OnWait(true)
	}
}

// skip discards the body of an oversized frame as it arrives, holding none
// of it, and reports the frame.
func (r *Reader) skip(h Header, m *Message) error {
	if r.OnWait != nil && r.r.Buffered() < int(h.BodyLen) {
		r.waitMidFrame()
	}
	if _, err := r.r.Discard(int(h.BodyLen)); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return fmt.Errorf("%w: %s body of %d bytes, limit %d, cut short while skipped: %w", ErrTooLarge, h.Kind, h.BodyLen, r.maxBody, err)
	}
	m.Header = h
	return &TooLargeError{Header: h, Limit: r.maxBody}
}

// readBody reads n bytes into buf, growing it in chunks so that a peer which
// announces a large body and stalls makes us hold only what it sent.
func readBody(r io.Reader, buf []byte, n int) ([]byte, error) {
	for len(buf) < n {
		step := min(n-len(buf), max(len(buf), chunkSize))
		if cap(buf) < len(buf)+step {
			grown := make([]byte, len(buf), len(buf)+step)
			copy(grown, buf)
			buf = grown
		}
		if _, err := io.ReadFull(r, buf[len(buf):len(buf)+step]); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return buf, err
		}
		buf = buf[:len(buf)+step]
	}
	return buf, nil
}
