package protocol

import (
	"bufio"
	"fmt"
	"io"
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
)

// Reader reads frames from a stream. It is not safe for concurrent use: one
// goroutine per connection reads.
type Reader struct {
	r       *bufio.Reader
	maxBody int
	head    [HeaderSize]byte
	body    []byte

	// OnWait, if set, is called before the Reader waits on the stream for
	// bytes: started is false when no byte of the next frame has arrived (the
	// stream is idle) and true in the middle of a frame. A server sets its
	// read deadlines here: an idle timeout between frames, a shorter read
	// timeout within one, so a peer that sends part of a frame and stalls is
	// cut off.
	OnWait func(started bool)
}

// NewReader returns a Reader of frames from r whose bodies may be at most
// maxBody bytes (DefaultMaxBodySize when maxBody <= 0).
func NewReader(r io.Reader, maxBody int) *Reader {
	return &Reader{r: bufio.NewReaderSize(r, readBufferSize), maxBody: limit(maxBody)}
}

// Buffered reports how many bytes have been read from the stream but not yet
// decoded; 0 means the next Read will wait on the stream.
func (r *Reader) Buffered() int { return r.r.Buffered() }

// Read decodes the next frame into m, which it resets first. m.Payload aliases
// the Reader's buffer and is valid only until the next Read. A clean end of
// stream between frames is io.EOF; anything else is a wrapped error.
func (r *Reader) Read(m *Message) error {
	m.Reset()
	if r.OnWait != nil && r.r.Buffered() < HeaderSize {
		if r.r.Buffered() == 0 {
			r.OnWait(false)
			if _, err := r.r.Peek(1); err != nil {
				return err
			}
		}
		if r.r.Buffered() < HeaderSize {
			r.OnWait(true)
		}
	}
	if _, err := io.ReadFull(r.r, r.head[:]); err != nil {
		if err == io.ErrUnexpectedEOF {
			return fmt.Errorf("%w: truncated header: %w", ErrMalformed, err)
		}
		return err
	}
	h, err := ParseHeader(r.head[:], r.maxBody)
	if err != nil {
		return err
	}
	if cap(r.body) > keepBufferSize {
		r.body = nil
	}
	if r.OnWait != nil && r.r.Buffered() < int(h.BodyLen) {
		r.OnWait(true)
	}
	r.body, err = readBody(r.r, r.body[:0], int(h.BodyLen))
	if err != nil {
		return fmt.Errorf("%w: reading %s body of %d bytes: %w", ErrMalformed, h.Kind, h.BodyLen, err)
	}
	m.Header = h
	return ParseBody(r.body, m)
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
