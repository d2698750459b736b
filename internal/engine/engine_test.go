package engine

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/shoalrpc/shoal/internal/stream"
	"github.com/shoalrpc/shoal/protocol"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// pair returns the two ends of a loopback TCP connection.
func pair(t *testing.T) (a, b net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		nc, _ := ln.Accept()
		accepted <- nc
	}()
	a, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	b = <-accepted
	if b == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

// serve starts c's reader and returns what Serve returned, once it has.
func serve(t *testing.T, c *Conn) <-chan error {
	t.Helper()
	done := make(chan error, 1)
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		done <- c.Serve(c.NetConn())
	}()
	t.Cleanup(func() {
		c.Close(nil)
		<-finished
		c.Wait()
	})
	return done
}

// raw is the other end of a Conn, speaking frames by hand.
type raw struct {
	t  *testing.T
	nc net.Conn
	r  *protocol.Reader
}

func newRaw(t *testing.T, nc net.Conn) *raw {
	return &raw{t: t, nc: nc, r: protocol.NewReader(nc, 1<<20)}
}

func (r *raw) send(m *protocol.Message) {
	r.t.Helper()
	frame, err := protocol.AppendFrame(nil, m, 1<<20)
	if err != nil {
		r.t.Fatal(err)
	}
	if _, err := r.nc.Write(frame); err != nil {
		r.t.Fatal(err)
	}
}

// next reads the next frame, within a generous bound.
func (r *raw) next() protocol.Message {
	r.t.Helper()
	r.nc.SetReadDeadline(time.Now().Add(30 * time.Second))
	var m protocol.Message
	if err := r.r.Read(&m); err != nil {
		r.t.Fatal(err)
	}
	m.Payload = append([]byte(nil), m.Payload...)
	return m
}

func heartbeat(seq uint64) *protocol.Message {
	return &protocol.Message{Header: protocol.Header{Kind: protocol.KindHeartbeat, Seq: seq}}
}

// Each kind goes to its handler, heartbeats are answered by the engine, and
// a go-away is sent once however often it is asked for.
func TestFramesGoToTheirHandlers(t *testing.T) {
	a, b := pair(t)
	requests := make(chan string, 1)
	cancels := make(chan uint64, 1)
	c := New(a, Config{Peer: "client"}, Handlers{
		Request: func(m *protocol.Message) { requests <- m.Method },
		Cancel:  func(seq uint64) { cancels <- seq },
	})
	serve(t, c)
	peer := newRaw(t, b)

	peer.send(&protocol.Message{Header: protocol.Header{Kind: protocol.KindRequest, Seq: 1}, Method: "Arith.Add"})
	if got := <-requests; got != "Arith.Add" {
		t.Fatalf("request handler got %q", got)
	}
	peer.send(&protocol.Message{Header: protocol.Header{Kind: protocol.KindCancel, Seq: 9}})
	if got := <-cancels; got != 9 {
		t.Fatalf("cancel handler got seq %d", got)
	}
	peer.send(heartbeat(42))
	if m := peer.next(); m.Kind != protocol.KindHeartbeat || m.Flags&protocol.FlagReply == 0 || m.Seq != 42 {
		t.Fatalf("a heartbeat was answered with %+v", m.Header)
	}
	c.GoAway()
	c.GoAway()
	peer.send(heartbeat(43)) // its answer follows whatever go-aways were sent
	if m := peer.next(); m.Kind != protocol.KindGoAway {
		t.Fatalf("want a go-away, got %s", m.Kind)
	}
	if m := peer.next(); m.Kind != protocol.KindHeartbeat || m.Seq != 43 {
		t.Fatalf("want the heartbeat's answer after one go-away, got %s seq %d", m.Kind, m.Seq)
	}
	if !c.WentAway() {
		t.Fatal("WentAway is false after GoAway")
	}
}

// A frame of a kind the side does not receive (a response to a server) is a
// protocol violation: the connection closes, and the side is told why,
// once.
func TestAnUnexpectedKindClosesTheConnection(t *testing.T) {
	a, b := pair(t)
	var told atomic.Int32
	var cause error
	closed := make(chan struct{})
	c := New(a, Config{Peer: "client"}, Handlers{
		Request: func(*protocol.Message) {},
		Closed: func(err error) {
			if told.Add(1) == 1 {
				cause = err
				close(closed)
			}
		},
	})
	done := serve(t, c)
	newRaw(t, b).send(&protocol.Message{Header: protocol.Header{Kind: protocol.KindResponse, Seq: 1}})
	err := <-done
	if !errors.Is(err, protocol.ErrMalformed) || !strings.Contains(err.Error(), "unexpected response frame from the client") {
		t.Fatalf("Serve returned %v", err)
	}
	<-closed
	if cause != err {
		t.Fatalf("Closed was told %v, Serve returned %v", cause, err)
	}
	c.Close(errors.New("again"))
	if n := told.Load(); n != 1 {
		t.Fatalf("Closed was told %d times", n)
	}
	if err := c.AddStream(1, &testStream{}, 0); !errors.Is(err, ErrClosed) {
		t.Fatalf("AddStream after close: %v", err)
	}
}

// testStream records what the engine routes to it.
type testStream struct {
	s        *stream.Stream
	mu       sync.Mutex
	ended    int
	resets   []protocol.Status
	closed   []error
	tooLarge []uint32
	events   chan string
}

func newTestStream(c *Conn, seq uint64) *testStream {
	return &testStream{s: stream.New(seq, func(f []byte) error { return c.Write(f, false) }), events: make(chan string, 16)}
}

func (s *testStream) Flow() *stream.Stream { return s.s }

// event records what happened, for a test that waits for it; past the
// buffer (a fuzz input's hundredth reset), it is dropped.
func (s *testStream) event(what string) {
	select {
	case s.events <- what:
	default:
	}
}

func (s *testStream) PeerEnded(*protocol.Message) {
	s.mu.Lock()
	s.ended++
	s.mu.Unlock()
	s.event("end")
}
func (s *testStream) PeerReset(m *protocol.Message) {
	s.mu.Lock()
	s.resets = append(s.resets, m.Status)
	s.mu.Unlock()
	s.event("reset")
}
func (s *testStream) ConnClosed(err error) {
	s.mu.Lock()
	s.closed = append(s.closed, err)
	s.mu.Unlock()
	s.event("closed")
}
func (s *testStream) TooLarge(e *protocol.TooLargeError) {
	s.mu.Lock()
	s.tooLarge = append(s.tooLarge, e.Header.BodyLen)
	s.mu.Unlock()
	s.event("too large")
}

// Stream frames reach their stream: data in order through its flow
// control, ends and resets to the side. A message over the body limit
// resets that stream both ways, and the connection goes on.
func TestStreamFramesAreRouted(t *testing.T) {
	a, b := pair(t)
	c := New(a, Config{Peer: "client", MaxBody: 1024}, Handlers{Request: func(*protocol.Message) {}})
	serve(t, c)
	peer := newRaw(t, b)
	s7, s8 := newTestStream(c, 7), newTestStream(c, 8)
	for seq, s := range map[uint64]*testStream{7: s7, 8: s8} {
		if err := c.AddStream(seq, s, 2); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.AddStream(9, newTestStream(c, 9), 2); !errors.Is(err, ErrTooManyStreams) {
		t.Fatalf("a third stream past a limit of 2: %v", err)
	}
	for i := range 3 {
		peer.send(&protocol.Message{Header: protocol.Header{Kind: protocol.KindStreamData, Seq: 7}, Payload: []byte{byte(i)}})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := range 3 {
		msg, err := s7.s.Recv(ctx)
		if err != nil || len(msg.Payload) != 1 || msg.Payload[0] != byte(i) {
			t.Fatalf("message %d: %v %v", i, msg.Payload, err)
		}
	}
	peer.send(&protocol.Message{Header: protocol.Header{Kind: protocol.KindStreamEnd, Seq: 7}})
	if ev := <-s7.events; ev != "end" {
		t.Fatalf("stream 7: %s, want end", ev)
	}
	peer.send(&protocol.Message{Header: protocol.Header{Kind: protocol.KindReset, Flags: protocol.FlagError, Status: protocol.StatusAborted, Seq: 7}, Payload: []byte("x")})
	if ev := <-s7.events; ev != "reset" {
		t.Fatalf("stream 7: %s, want reset", ev)
	}

	// Over the limit: stream 8 is reset both ways, and forgotten.
	peer.send(&protocol.Message{Header: protocol.Header{Kind: protocol.KindStreamData, Seq: 8}, Payload: make([]byte, 2000)})
	if ev := <-s8.events; ev != "too large" {
		t.Fatalf("stream 8: %s, want too large", ev)
	}
	m := peer.next()
	if m.Kind != protocol.KindReset || m.Seq != 8 || m.Status != protocol.StatusTooLarge || !strings.Contains(string(m.Payload), "over the server's limit of 1024 bytes") {
		t.Fatalf("the peer got %s seq %d status %s %q, want a reset of stream 8, too large", m.Kind, m.Seq, m.Status, m.Payload)
	}
	if n := c.Streams(); n != 1 {
		t.Fatalf("%d streams routed, want 1 (stream 7)", n)
	}
	peer.send(heartbeat(5))
	if m := peer.next(); m.Kind != protocol.KindHeartbeat || m.Seq != 5 {
		t.Fatalf("after the reset the connection answered %s", m.Kind)
	}

	// Close fails what is still routed, once.
	cause := errors.New("test: closing")
	taken := c.Close(cause)
	if again := c.Close(errors.New("again")); again != taken {
		t.Fatalf("Close returned %d, then %d", taken, again)
	}
	if ev := <-s7.events; ev != "closed" {
		t.Fatalf("stream 7: %s, want closed", ev)
	}
	s7.mu.Lock()
	defer s7.mu.Unlock()
	if len(s7.closed) != 1 || s7.closed[0] != cause {
		t.Fatalf("stream 7 was told %v", s7.closed)
	}
	s8.mu.Lock()
	defer s8.mu.Unlock()
	if len(s8.closed) != 0 {
		t.Fatalf("stream 8, reset before, was told of the close: %v", s8.closed)
	}
}

// While the side waits on the peer, a peer that answers nothing is found
// by a probe: the connection closes, saying so.
func TestAProbeFindsASilentPeer(t *testing.T) {
	a, b := pair(t)
	go io.Copy(io.Discard, b) // reads everything, answers nothing
	closed := make(chan error, 1)
	c := New(a, Config{Peer: "server", Async: true, Keepalive: Keepalive{
		ProbeAfter: 20 * time.Millisecond, ProbeTimeout: 100 * time.Millisecond,
		Busy: func() bool { return true },
	}}, Handlers{Response: func(*protocol.Message) {}, Closed: func(err error) { closed <- err }})
	serve(t, c)
	c.Nudge()
	select {
	case err := <-closed:
		if !strings.Contains(err.Error(), "a probe went unanswered") {
			t.Fatalf("closed with %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("a silent peer was not found")
	}
}

// A peer that answers probes keeps the connection, however long the side
// waits.
func TestAnsweredProbesKeepTheConnection(t *testing.T) {
	a, b := pair(t)
	closed := make(chan error, 1)
	c := New(a, Config{Peer: "server", Async: true, Keepalive: Keepalive{
		ProbeAfter: 10 * time.Millisecond, ProbeTimeout: 50 * time.Millisecond,
		Busy: func() bool { return true },
	}}, Handlers{Response: func(*protocol.Message) {}, Closed: func(err error) { closed <- err }})
	serve(t, c)
	peer := New(b, Config{Peer: "client"}, Handlers{Request: func(*protocol.Message) {}})
	serve(t, peer) // the engine answers heartbeats
	c.Nudge()
	// Ten probes answered, counted by the peer's reader: no timer decides.
	for range 10 {
		before := peer.heard.Load()
		for peer.heard.Load() == before {
			select {
			case err := <-closed:
				t.Fatalf("closed while the peer answered: %v", err)
			case <-time.After(time.Millisecond):
			}
		}
	}
}

// FuzzServe feeds arbitrary bytes to a Conn's reader, as a server's (with
// requests) or a client's (with responses) and with two streams routed: no
// input may panic it or leave it running, whatever frames, lengths, kinds,
// windows or resets the bytes hold.
func FuzzServe(f *testing.F) {
	frame := func(m *protocol.Message) []byte {
		b, err := protocol.AppendFrame(nil, m, 1<<20)
		if err != nil {
			f.Fatal(err)
		}
		return b
	}
	var seeds [][]byte
	for _, m := range []*protocol.Message{
		{Header: protocol.Header{Kind: protocol.KindRequest, Seq: 1}, Method: "A.B", Payload: []byte{0x90}},
		{Header: protocol.Header{Kind: protocol.KindResponse, Seq: 1}, Payload: []byte{1}},
		{Header: protocol.Header{Kind: protocol.KindHeartbeat, Seq: 3}},
		{Header: protocol.Header{Kind: protocol.KindGoAway}},
		{Header: protocol.Header{Kind: protocol.KindCancel, Seq: 1}},
		{Header: protocol.Header{Kind: protocol.KindStreamData, Seq: 1}, Payload: []byte("hello")},
		{Header: protocol.Header{Kind: protocol.KindStreamData, Seq: 2}, Payload: make([]byte, 300)}, // over the fuzz limit
		{Header: protocol.Header{Kind: protocol.KindStreamEnd, Seq: 1}},
		{Header: protocol.Header{Kind: protocol.KindReset, Flags: protocol.FlagError, Status: protocol.StatusAborted, Seq: 2}, Payload: []byte("x")},
	} {
		seeds = append(seeds, frame(m))
	}
	seeds = append(seeds, protocol.AppendWindow(nil, 1, 100), protocol.AppendWindow(nil, 2, protocol.MaxWindowCredit))
	for i, s := range seeds {
		f.Add(byte(i), s)
		f.Add(byte(i), append(append([]byte(nil), s...), seeds[(i+1)%len(seeds)]...))
	}
	f.Fuzz(func(t *testing.T, side byte, data []byte) {
		a, b := net.Pipe()
		go io.Copy(io.Discard, b)
		defer b.Close()
		h := Handlers{TooLarge: func(*protocol.Message, *protocol.TooLargeError) {}}
		cfg := Config{MaxBody: 256}
		if side&1 == 0 {
			cfg.Peer, h.Request, h.Cancel = "client", func(*protocol.Message) {}, func(uint64) {}
		} else {
			cfg.Peer, cfg.Async, h.Response, h.GoAway = "server", true, func(*protocol.Message) {}, func() {}
		}
		c := New(a, cfg, h)
		for seq := uint64(1); seq <= 2; seq++ {
			if err := c.AddStream(seq, newTestStream(c, seq), 0); err != nil {
				t.Fatal(err)
			}
		}
		c.Serve(bytes.NewReader(data)) // ends at the input's end, if not before
		c.Close(nil)
		c.Wait()
	})
}
