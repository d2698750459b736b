package stream

import (
	"bytes"
	"context"
	"errors"
	"io"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/shoalrpc/shoal/protocol"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// pipe connects a sender stream to a receiver stream the way two
// connection readers would: data frames to Deliver, window frames to Grant.
type pipe struct {
	mu       sync.Mutex
	send     *Stream
	recv     *Stream
	violated error
}

func newPipe() *pipe {
	p := &pipe{}
	p.send = New(1, func(frame []byte) error { // sender → receiver
		var m protocol.Message
		if _, err := protocol.DecodeFrame(frame, 0, &m); err != nil {
			return err
		}
		if err := p.recv.Deliver(&m); err != nil {
			p.mu.Lock()
			p.violated = err
			p.mu.Unlock()
		}
		return nil
	})
	p.recv = New(1, func(frame []byte) error { // receiver → sender: window frames
		var m protocol.Message
		if _, err := protocol.DecodeFrame(frame, 0, &m); err != nil {
			return err
		}
		return p.send.Grant(protocol.WindowIncrement(&m))
	})
	return p
}

func dataFrame(t testing.TB, n int) []byte {
	m := protocol.Message{Header: protocol.Header{Kind: protocol.KindStreamData, Codec: protocol.CodecMsgpack, Seq: 1}, Payload: make([]byte, n)}
	b, err := protocol.AppendFrame(nil, &m, 0)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// A sender whose receiver takes nothing stops at one window; what the
// receiver holds stays within it; taking messages lets the sender go on.
func TestSendWaitsForCreditAndReceiverHoldsOneWindow(t *testing.T) {
	p := newPipe()
	frame := dataFrame(t, 1000)
	sent := 0
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		err := p.send.Send(ctx, frame)
		cancel()
		if errors.Is(err, context.DeadlineExceeded) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		sent++
		if sent > 1000 {
			t.Fatal("the sender never ran out of credit")
		}
	}
	if want := protocol.StreamWindow / len(frame); sent != want {
		t.Fatalf("sent %d frames of %d bytes before blocking, want %d (one window)", sent, len(frame), want)
	}
	if got := p.recv.Buffered(); got > protocol.StreamWindow {
		t.Fatalf("receiver holds %d bytes, window %d", got, protocol.StreamWindow)
	}
	blocked := make(chan error, 1)
	go func() { blocked <- p.send.Send(context.Background(), frame) }()
	for range sent {
		if _, err := p.recv.Recv(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if err := <-blocked; err != nil {
		t.Fatal(err)
	}
	if p.violated != nil {
		t.Fatal(p.violated)
	}
}

// A message larger than the credit goes once the receiver took (and
// returned) everything but the slack: not while more of the window is in
// use.
func TestOversizedMessageWaitsForTheWindow(t *testing.T) {
	p := newPipe()
	small := dataFrame(t, 1000)
	n := protocol.StreamSlack/len(small) + 2 // more than the slack in use
	for range n {
		if err := p.send.Send(context.Background(), small); err != nil {
			t.Fatal(err)
		}
	}
	big := dataFrame(t, 2*protocol.StreamWindow)
	done := make(chan error, 1)
	go func() { done <- p.send.Send(context.Background(), big) }()
	select {
	case err := <-done:
		t.Fatalf("an oversized message went while %d bytes of the window were in use: %v", n*len(small), err)
	case <-time.After(50 * time.Millisecond):
	}
	for range n {
		if _, err := p.recv.Recv(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if m, err := p.recv.Recv(context.Background()); err != nil || len(m.Payload) != 2*protocol.StreamWindow {
		t.Fatalf("got %d bytes, %v", len(m.Payload), err)
	}
	if p.violated != nil {
		t.Fatal(p.violated)
	}
}

// Taking small messages one at a time returns credit in few window frames,
// not one per message.
func TestCreditReturnsInFewWindowFrames(t *testing.T) {
	var windows int
	var mu sync.Mutex
	s := New(1, func(frame []byte) error {
		mu.Lock()
		windows++
		mu.Unlock()
		return nil
	})
	var m protocol.Message
	frame := dataFrame(t, 1000)
	protocol.DecodeFrame(frame, 0, &m)
	const msgs = 200
	for range msgs {
		if err := s.Deliver(&m); err != nil { // one at a time, as in ping-pong
			t.Fatal(err)
		}
		if _, err := s.Recv(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if max := msgs*len(frame)/protocol.StreamSlack + 1; windows > max {
		t.Fatalf("%d window frames for %d messages of %d bytes, want at most %d", windows, msgs, len(frame), max)
	}
}

// A peer that sends beyond its credit is reported, so the connection is cut.
func TestDataBeyondTheWindowIsAViolation(t *testing.T) {
	s := New(1, func([]byte) error { return nil })
	var m protocol.Message
	frame := dataFrame(t, 1000)
	protocol.DecodeFrame(frame, 0, &m)
	var err error
	for i := 0; i < 2*protocol.StreamWindow/len(frame) && err == nil; i++ {
		err = s.Deliver(&m)
	}
	if !errors.Is(err, ErrFlowControl) {
		t.Fatalf("got %v, want ErrFlowControl", err)
	}
	if got := s.Buffered(); got > protocol.StreamWindow {
		t.Fatalf("holds %d bytes past the window %d", got, protocol.StreamWindow)
	}
	if err := s.Grant(protocol.MaxWindowCredit); !errors.Is(err, ErrFlowControl) {
		t.Fatalf("credit past the maximum: got %v", err)
	}
}

// The peer's end delivers what is queued, then io.EOF; Fail wakes a
// waiting Recv and Send at once.
func TestEndAndFail(t *testing.T) {
	p := newPipe()
	p.send.Send(context.Background(), dataFrame(t, 1))
	p.recv.PeerEnded(nil, false)
	if _, err := p.recv.Recv(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := p.recv.Recv(context.Background()); err != io.EOF {
		t.Fatalf("after the end: %v, want io.EOF", err)
	}
	q := newPipe()
	cut := errors.New("cut")
	recvErr := make(chan error, 1)
	go func() { _, err := q.recv.Recv(context.Background()); recvErr <- err }()
	for q.send.Send(context.Background(), dataFrame(t, 1000)) == nil && q.recv.Buffered() < protocol.StreamWindow-1100 {
	}
	sendErr := make(chan error, 1)
	go func() {
		var err error
		for err == nil {
			err = q.send.Send(context.Background(), dataFrame(t, 1000))
		}
		sendErr <- err
	}()
	q.send.Fail(cut)
	q.recv.Fail(cut)
	if err := <-sendErr; err != cut {
		t.Fatalf("Send: %v", err)
	}
	if err := <-recvErr; err != nil && err != cut {
		t.Fatalf("Recv: %v", err)
	}
}

// dataMessage returns a decoded data frame whose n payload bytes are fill.
func dataMessage(t testing.TB, n int, fill byte) *protocol.Message {
	m := protocol.Message{Header: protocol.Header{Kind: protocol.KindStreamData, Codec: protocol.CodecMsgpack, Seq: 1}, Payload: bytes.Repeat([]byte{fill}, n)}
	frame, err := protocol.AppendFrame(nil, &m, 0)
	if err != nil {
		t.Fatal(err)
	}
	var d protocol.Message
	if _, err := protocol.DecodeFrame(frame, 0, &d); err != nil {
		t.Fatal(err)
	}
	return &d
}

// Messages taken one at a time and recycled, as ping-pong streams take
// them, cost no allocation: the queue's array and the payload's buffer are
// reused. Each message still arrives whole, and a payload is a copy: the
// read buffer it came from may change under it.
func TestRecycledMessagesAllocateNothing(t *testing.T) {
	s := New(1, func([]byte) error { return nil })
	msgs := []*protocol.Message{dataMessage(t, 1000, 'a'), dataMessage(t, 900, 'b'), dataMessage(t, 1000, 'c')}
	i := 0
	exchange := func() {
		m := msgs[i%len(msgs)]
		i++
		if err := s.Deliver(m); err != nil {
			t.Fatal(err)
		}
		got, err := s.Recv(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got.Payload, m.Payload) {
			t.Fatalf("message %d: got %d bytes %.10q…, want %d bytes %.10q…", i, len(got.Payload), got.Payload, len(m.Payload), m.Payload)
		}
		s.Recycle(got.Payload)
	}
	exchange() // the first message allocates
	if allocs := testing.AllocsPerRun(100, exchange); allocs != 0 {
		t.Fatalf("%.1f allocations per message recycled, want 0", allocs)
	}

	// A payload is the stream's copy, not the read buffer's bytes, whether
	// the stream has a recycled buffer or not.
	for _, fresh := range []bool{false, true} {
		if fresh {
			s = New(1, func([]byte) error { return nil })
		}
		m := dataMessage(t, 10, 'x')
		if err := s.Deliver(m); err != nil {
			t.Fatal(err)
		}
		m.Payload[0] = 'y'
		if got, err := s.Recv(context.Background()); err != nil || got.Payload[0] != 'x' {
			t.Fatalf("fresh stream %v: got %q, %v: the payload changed with the read buffer", fresh, got.Payload, err)
		}
	}

	// A buffer larger than StreamSlack is not kept; a failed stream lets
	// its buffer go and keeps none.
	s.Recycle(make([]byte, keepSpare+1))
	if cap(s.spare) > keepSpare {
		t.Fatalf("kept a recycled buffer of %d bytes, limit %d", cap(s.spare), keepSpare)
	}
	s.Recycle(make([]byte, 100))
	if s.spare == nil {
		t.Fatal("a recycled buffer of 100 bytes was not kept")
	}
	s.Fail(errors.New("over"))
	if s.spare != nil {
		t.Fatal("a failed stream kept its recycled buffer")
	}
	s.Recycle(make([]byte, 100))
	if s.spare != nil {
		t.Fatal("a failed stream took a recycled buffer")
	}
}

// A queue that never empties (the receiver always one message behind)
// keeps its array small rather than creeping through memory.
func TestQueueThatNeverEmptiesStaysSmall(t *testing.T) {
	s := New(1, func([]byte) error { return nil })
	m := dataMessage(t, 10, 'a')
	const behind = 5
	for range behind {
		if err := s.Deliver(m); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 10000 {
		if err := s.Deliver(m); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Recv(context.Background()); err != nil {
			t.Fatal(err)
		}
		if got := len(s.queue) - s.head; got != behind {
			t.Fatalf("message %d: %d queued, want %d", i, got, behind)
		}
	}
	if cap(s.queue) > 4*behind {
		t.Fatalf("the queue's array holds %d entries for %d queued", cap(s.queue), behind)
	}
}
