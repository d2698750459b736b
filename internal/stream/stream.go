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
// the application owns, which it may hand back to Recycle once decoded).
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
	queue      []queued // received, oldest first; taken up to head
	head       int      // queue[head:] is not yet taken
	spare      []byte   // a taken payload's buffer, handed back by Recycle, for the next message
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

const (
	// keepQueue is the largest queue array kept once the queue is empty:
	// a stream taking messages as they come reuses one small array.
	keepQueue = 16
	// keepSpare is the largest payload buffer Recycle keeps for the next
	// message; larger messages are allocated each.
	keepSpare = protocol.StreamSlack
)

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
	cost := protocol.ReceivedCost(m)
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
	var payload []byte
	if len(m.Payload) > 0 && cap(s.spare) >= len(m.Payload) {
		payload, s.spare = append(s.spare[:0], m.Payload...), nil
	} else {
		payload = append([]byte(nil), m.Payload...)
	}
	if len(s.queue) == cap(s.queue) && s.head >= len(s.queue)/2 && s.head > 0 {
		// Move what is left to the front rather than grow the array: a
		// queue that never empties does not creep through memory. At least
		// half of it was taken, so the copies cost O(1) per message.
		n := copy(s.queue, s.queue[s.head:])
		clear(s.queue[n:])
		s.queue, s.head = s.queue[:n], 0
	}
	s.queue = append(s.queue, queued{msg: Message{Codec: m.Codec, Payload: payload}, cost: cost})
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
	s.queue, s.head, s.spare = nil, 0, nil
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
		if s.head < len(s.queue) {
			q := s.queue[s.head]
			s.queue[s.head] = queued{}
			s.head++
			empty := s.head == len(s.queue)
			if empty {
				s.head = 0
				if cap(s.queue) <= keepQueue {
					s.queue = s.queue[:0]
				} else {
					s.queue = nil // let a large array go
				}
			}
			s.unreturned += q.cost
			var grant int64
			if !s.recvEnded && (empty && s.unreturned >= s.window/4 || s.unreturned >= s.window/2) {
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

// Recycle hands back the payload of a message Recv returned, once the
// application is done with it (decoded it): the stream copies a later
// message into its buffer rather than allocate one. The payload must not be
// used after. Recycling is optional; a stream keeps one buffer of at most
// StreamSlack bytes this way.
func (s *Stream) Recycle(payload []byte) {
	if cap(payload) == 0 || cap(payload) > keepSpare {
		return
	}
	s.mu.Lock()
	if s.err == nil && cap(payload) > cap(s.spare) {
		s.spare = payload[:0]
	}
	s.mu.Unlock()
}

// Send writes a data frame (whole, as protocol.AppendFrame made it) once
// the stream's credit covers it, waiting for credit until the stream fails,
// its send side closes, or ctx ends. A frame larger than the credit goes
// when the credit is within protocol.StreamSlack of the whole window: the
// peer has taken everything sent before it but that slack.
func (s *Stream) Send(ctx context.Context, frame []byte) error {
	cost := protocol.DataCost(frame)
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
	for _, q := range s.queue[s.head:] {
		n += q.cost
	}
	return n
}
