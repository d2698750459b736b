// Package stream is the state of one stream, shared by both ends of a
// connection: the receive queue bounded by the stream's window, credit
// returned to the peer as the application takes messages, a sender that
// waits for credit (respecting its context), and teardown on a reset or the
// connection's end. The provider's and the consumer's connection readers
// route stream frames (see package protocol) to it; what it writes goes to
// the connection through the function it was made with.
package stream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/shoalrpc/shoal/protocol"
)

// ErrFlowControl is a peer's violation of a stream's window: it sent a data
// frame beyond the credit granted to it, or was granted more than
// protocol.MaxWindowCredit. The connection that carried it must be cut.
var ErrFlowControl = errors.New("stream: flow control violated")

// ErrSendClosed is Send after CloseSend, or after the peer ended the stream.
var ErrSendClosed = errors.New("stream: send side closed")

// Message is one message taken from a stream: its codec and payload (a copy
// the application owns).
type Message struct {
	Codec   protocol.CodecID
	Payload []byte
}

// Stream is one stream of a connection. Its zero value is not usable; make
// one with New.
type Stream struct {
	id    uint64
	write func(frame []byte) error // queues a frame on the connection

	sendMu sync.Mutex // orders Send and CloseSend: nothing is written after the end

	mu         sync.Mutex
	queue      []queued // received and not yet taken, oldest first
	window     int64    // our receive window: protocol.StreamWindow, or more after Widen
	recvAvail  int64    // credit the peer holds, as granted by us (may go negative by one oversized message)
	unreturned int64    // taken by the application, not yet granted back
	recvEnded  bool     // the peer will send no more
	endErr     error    // why, nil for a clean end (io.EOF to the application)
	credit     int64    // what we may still send
	sendClosed bool
	err        error         // the stream is over: reset, cut, closed
	readable   chan struct{} // wakes Recv
	writable   chan struct{} // wakes Send
	done       chan struct{} // closed by Fail
}

type queued struct {
	msg  Message
	cost int64
}

// New returns stream id, writing its frames with write (which must copy
// the frame, as batchwriter.Writer.Write does, and must not block on the
// peer).
func New(id uint64, write func(frame []byte) error) *Stream {
	return &Stream{
		id:        id,
		write:     write,
		window:    protocol.StreamWindow,
		recvAvail: protocol.StreamWindow,
		credit:    protocol.StreamWindow,
		readable:  make(chan struct{}, 1),
		writable:  make(chan struct{}, 1),
		done:      make(chan struct{}),
	}
}

// ID returns the stream's id: the sequence number of the request that
// opened it.
func (s *Stream) ID() uint64 { return s.id }

// SetID names the stream, before its first frame is written or received.
func (s *Stream) SetID(id uint64) { s.id = id }

// Done is closed when the stream has failed (Fail).
func (s *Stream) Done() <-chan struct{} { return s.done }

// Err returns why the stream failed, or nil.
func (s *Stream) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

func wake(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// Deliver queues a received data frame's message (copied: m's payload may
// alias a read buffer). A frame beyond the credit the peer was granted is an
// error wrapping ErrFlowControl: the caller cuts the connection. A frame
// for a stream that has failed is dropped.
func (s *Stream) Deliver(m *protocol.Message) error {
	cost := protocol.FrameCost(m.BodyLen)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return nil
	}
	if s.recvEnded {
		return fmt.Errorf("%w: data on stream %d after its end", ErrFlowControl, s.id)
	}
	// A message larger than the peer's credit may come when that credit is
	// within StreamSlack of the whole window: everything it sent but that
	// slack was taken and returned.
	if cost > s.recvAvail && s.recvAvail < protocol.StreamWindow-protocol.StreamSlack {
		return fmt.Errorf("%w: stream %d: data frame of %d bytes with %d bytes of credit", ErrFlowControl, s.id, cost, s.recvAvail)
	}
	s.recvAvail -= cost
	s.queue = append(s.queue, queued{msg: Message{Codec: m.Codec, Payload: append([]byte(nil), m.Payload...)}, cost: cost})
	wake(s.readable)
	return nil
}

// PeerEnded records that the peer sends no more: Recv returns what is
// queued, then err, or io.EOF when err is nil. With sendToo, the stream's
// send side is over as well (the server ended the stream): Send returns
// ErrSendClosed.
func (s *Stream) PeerEnded(err error, sendToo bool) {
	s.mu.Lock()
	if s.err == nil && !s.recvEnded {
		s.recvEnded, s.endErr = true, err
	}
	if sendToo {
		s.sendClosed = true
	}
	s.mu.Unlock()
	wake(s.readable)
	wake(s.writable)
}

// Grant adds a window frame's increment to the send credit. Credit past
// protocol.MaxWindowCredit is an error wrapping ErrFlowControl.
func (s *Stream) Grant(increment uint32) error {
	s.mu.Lock()
	s.credit += int64(increment)
	over := s.credit > protocol.MaxWindowCredit
	s.mu.Unlock()
	if over {
		return fmt.Errorf("%w: stream %d granted %d bytes of credit", ErrFlowControl, s.id, s.credit)
	}
	wake(s.writable)
	return nil
}

// Fail ends the stream at once with err: Send and Recv return it from now
// on, what is queued is dropped. Only the first call counts; it reports
// whether it was that one.
func (s *Stream) Fail(err error) bool {
	s.mu.Lock()
	if s.err != nil {
		s.mu.Unlock()
		return false
	}
	s.err = err
	s.queue = nil
	s.mu.Unlock()
	close(s.done)
	return true
}

// Recv takes the next message, waiting until one arrives, the peer ends the
// stream (io.EOF, or the error the peer ended it with), the stream fails,
// or ctx ends. Taking a message returns its credit to the peer, once what
// was taken reaches a quarter of the window (protocol.StreamSlack, unless
// widened) and nothing else is queued, or half the window in any case, so
// that window frames stay few. A sender waiting for credit cannot wait
// forever on the slack: its credit is then within StreamSlack of
// protocol.StreamWindow (or far more, when widened), which lets any message
// go.
func (s *Stream) Recv(ctx context.Context) (Message, error) {
	for {
		s.mu.Lock()
		if s.err != nil {
			err := s.err
			s.mu.Unlock()
			return Message{}, err
		}
		if len(s.queue) > 0 {
			q := s.queue[0]
			s.queue[0] = queued{}
			s.queue = s.queue[1:]
			if len(s.queue) == 0 {
				s.queue = nil // let the backing array go
			}
			s.unreturned += q.cost
			var grant int64
			if !s.recvEnded && (s.queue == nil && s.unreturned >= s.window/4 || s.unreturned >= s.window/2) {
				grant, s.unreturned = s.unreturned, 0
				s.recvAvail += grant
			}
			s.mu.Unlock()
			if grant > 0 {
				var b [protocol.HeaderSize + 7]byte
				s.write(protocol.AppendWindow(b[:0], s.id, uint32(grant))) // a failed write fails the connection
			}
			return q.msg, nil
		}
		if s.recvEnded {
			err := s.endErr
			s.mu.Unlock()
			if err == nil {
				err = io.EOF
			}
			return Message{}, err
		}
		s.mu.Unlock()
		select {
		case <-s.readable:
		case <-s.done:
		case <-ctx.Done():
			return Message{}, ctx.Err()
		}
	}
}

// Send writes a data frame (whole, as protocol.AppendFrame made it) once
// the stream's credit covers it, waiting for credit until the stream fails,
// its send side closes, or ctx ends. A frame larger than the credit goes
// when the credit is within protocol.StreamSlack of the whole window: the
// peer has taken everything sent before it but that slack.
func (s *Stream) Send(ctx context.Context, frame []byte) error {
	cost := int64(len(frame))
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	for {
		s.mu.Lock()
		switch {
		case s.err != nil:
			err := s.err
			s.mu.Unlock()
			return err
		case s.sendClosed:
			s.mu.Unlock()
			return ErrSendClosed
		case cost <= s.credit || s.credit >= protocol.StreamWindow-protocol.StreamSlack:
			s.credit -= cost
			s.mu.Unlock()
			return s.write(frame)
		}
		s.mu.Unlock()
		select {
		case <-s.writable:
		case <-s.done:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// CloseSend closes the send side and writes end, the frame that says so,
// with write (nil: the stream's own), unless the send side was closed
// already or the stream has failed; it reports whether it wrote end. No
// Send writes after it.
func (s *Stream) CloseSend(end []byte, write func([]byte) error) (bool, error) {
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	s.mu.Lock()
	if s.err != nil || s.sendClosed {
		s.mu.Unlock()
		return false, nil
	}
	s.sendClosed = true
	s.mu.Unlock()
	wake(s.writable)
	if write == nil {
		write = s.write
	}
	return true, write(end)
}

// Widen makes the stream's receive window window bytes, granting the peer
// the credit beyond protocol.StreamWindow at once (one window frame): a
// stream whose peer sends faster than one window per round trip allows
// needs more in flight. Credit cannot be taken back, so a window below
// protocol.StreamWindow changes nothing; window must be at most
// protocol.MaxWindowCredit. Call it once the peer routes the stream (the
// open was accepted). Credit is then returned every quarter window (see
// Recv), and a receiver that stops reading holds at most window bytes.
// The sender's rule for a message larger than its credit does not change:
// it is within protocol.StreamSlack of protocol.StreamWindow.
func (s *Stream) Widen(window int64) error {
	s.mu.Lock()
	extra := min(window, protocol.MaxWindowCredit) - s.window
	if extra <= 0 || s.err != nil {
		s.mu.Unlock()
		return nil
	}
	s.window += extra
	s.recvAvail += extra
	s.mu.Unlock()
	var b [protocol.HeaderSize + 7]byte
	return s.write(protocol.AppendWindow(b[:0], s.id, uint32(extra)))
}

// Buffered returns the bytes (as frame costs) received and not yet taken.
func (s *Stream) Buffered() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var n int64
	for _, q := range s.queue {
		n += q.cost
	}
	return n
}
