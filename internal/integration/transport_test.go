package integration

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/shoalrpc/shoal/consumer"
	"github.com/shoalrpc/shoal/protocol"
	"github.com/shoalrpc/shoal/provider"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestThousandConcurrentCallsOverOneConnection(t *testing.T) {
	s := serve(t)
	c := dial(t, s.addr)
	var wg sync.WaitGroup
	errs := make(chan error, 1000)
	for i := range 1000 {
		wg.Go(func() {
			var sum int
			if err := c.Call(context.Background(), "Arith.Add", Args{A: i, B: 1000000}, &sum); err != nil {
				errs <- err
				return
			}
			if sum != i+1000000 {
				errs <- errors.New("call " + itoa(i) + " got " + itoa(sum))
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestRemoteErrorReachesTheCallerIntact(t *testing.T) {
	s := serve(t)
	c := dial(t, s.addr)
	var q int
	err := c.Call(context.Background(), "Arith.Div", &Args{A: 7, B: 0}, &q)
	var se *consumer.ServiceError
	if !errors.As(err, &se) || se.Message != "arith: division by zero (A=7)" || err.Error() != se.Message {
		t.Fatalf("got %v (%T)", err, err)
	}
	if err := c.Call(context.Background(), "Arith.Div", &Args{A: 7, B: 2}, &q); err != nil || q != 3 {
		t.Fatalf("7/2 = %d, %v", q, err)
	}
}

func TestStatusErrorsAreTestable(t *testing.T) {
	s := serve(t)
	c := dial(t, s.addr)
	ctx := context.Background()
	var out int
	tests := []struct {
		method string
		args   any
		want   error
	}{
		{"Nope.Add", Args{}, consumer.ErrUnknownService},
		{"Arith.Nope", Args{}, consumer.ErrUnknownMethod},
		{"Arith", Args{}, consumer.ErrBadRequest},
		{"Arith.Add", "not a struct", consumer.ErrBadRequest},
		{"Arith.Add", func() {}, consumer.ErrBadRequest}, // cannot be encoded
		{"Arith.Panic", 1, consumer.ErrInternal},
	}
	for _, tt := range tests {
		if err := c.Call(ctx, tt.method, tt.args, &out); !errors.Is(err, tt.want) {
			t.Errorf("%s(%T): %v, want %v", tt.method, tt.args, err, tt.want)
		}
	}
	// The connection survived all of them.
	if err := c.Call(ctx, "Arith.Add", Args{A: 1, B: 2}, &out); err != nil || out != 3 {
		t.Fatalf("after errors: %d, %v", out, err)
	}
}

func TestDeadlineReturnsPromptlyAndCancelsTheHandler(t *testing.T) {
	s := serve(t)
	c := dial(t, s.addr)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	var out int
	err := c.Call(ctx, "Arith.Block", 0, &out)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Call: %v, want DeadlineExceeded", err)
	}
	if took := time.Since(start); took > time.Second {
		t.Fatalf("returned after %v", took)
	}
	select {
	case herr := <-s.arith.canceled:
		if !errors.Is(herr, context.DeadlineExceeded) {
			t.Fatalf("handler saw %v", herr)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the handler's context was never cancelled")
	}
}

func TestCancelledCallCancelsTheHandlerAndLeavesTheConnectionWorking(t *testing.T) {
	s := serve(t)
	c := dial(t, s.addr)
	ctx, cancel := context.WithCancel(context.Background())
	// Cancel once the handler runs: a call cancelled while its request still
	// waits in the client's write queue is withdrawn, never sent.
	s.arith.track.Store(true)
	s.arith.entered.Add(1)
	call := c.Go(ctx, "Arith.Block", 0, new(int), nil)
	s.arith.entered.Wait()
	s.arith.track.Store(false)
	cancel()
	<-call.Done
	if !errors.Is(call.Error, context.Canceled) {
		t.Fatalf("Go: %v", call.Error)
	}
	// The cancel frame reaches the server: the handler's context ends too.
	select {
	case herr := <-s.arith.canceled:
		if !errors.Is(herr, context.Canceled) {
			t.Fatalf("handler saw %v", herr)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the handler was not cancelled")
	}
	if c.Pending() != 0 {
		t.Fatalf("%d calls still pending", c.Pending())
	}
	var out int
	if err := c.Call(context.Background(), "Arith.Add", Args{A: 2, B: 2}, &out); err != nil || out != 4 {
		t.Fatal(out, err)
	}
}

func TestMetadataJSONAndOneWay(t *testing.T) {
	s := serve(t)
	c := dial(t, s.addr, consumer.WithCodec(protocol.JSON))
	ctx := consumer.WithMetadata(context.Background(), map[string]string{"who": " from test"})
	var out string
	if err := c.Call(ctx, "Arith.Echo", "hi", &out); err != nil || out != "hi from test" {
		t.Fatalf("Echo: %q, %v", out, err)
	}
	s.arith.track.Store(true)
	s.arith.entered.Add(1)
	if err := c.Notify(ctx, "Arith.Sleep", 1); err != nil {
		t.Fatal(err)
	}
	s.arith.entered.Wait() // the one-way call ran on the server
	if c.Pending() != 0 {
		t.Fatalf("a one-way call is pending: %d", c.Pending())
	}
}

func TestGracefulShutdownLosesNoCall(t *testing.T) {
	s := serve(t, provider.WithDrainGrace(100*time.Millisecond)) // the raw connection never closes
	c := dial(t, s.addr)
	// A raw connection that ignores go-away, to see what the server does with
	// a request that arrives after it.
	raw, err := net.Dial("tcp", strings.TrimPrefix(s.addr, "tcp@"))
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	r := protocol.NewReader(raw, 0)
	var m protocol.Message
	// A heartbeat round trip: the server has accepted the raw connection
	// before Shutdown closes the listener (a connection still in the accept
	// queue would be reset instead).
	hb, _ := protocol.AppendFrame(nil, &protocol.Message{Header: protocol.Header{Kind: protocol.KindHeartbeat}}, 0)
	if _, err := raw.Write(hb); err != nil {
		t.Fatal(err)
	}
	if err := r.Read(&m); err != nil || m.Kind != protocol.KindHeartbeat {
		t.Fatalf("raw connection's heartbeat answered %v, %v", m.Kind, err)
	}

	const n = 100
	s.arith.track.Store(true)
	s.arith.entered.Add(n)
	results := make(chan error, n)
	for range n {
		go func() {
			var out int
			results <- c.Call(context.Background(), "Arith.Sleep", 200, &out)
		}()
	}
	s.arith.entered.Wait() // all 100 are running on the server
	s.arith.track.Store(false)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	shutdownErr := make(chan error, 1)
	start := time.Now()
	go func() { shutdownErr <- s.srv.Shutdown(ctx) }()

	// The raw connection receives go-away; a request sent after it is
	// answered "shutting down" and not run.
	if err := r.Read(&m); err != nil || m.Kind != protocol.KindGoAway {
		t.Fatalf("raw connection read %v, %v; want go-away", m.Kind, err)
	}
	req, _ := protocol.AppendFrameEncode(nil, &protocol.Message{Header: protocol.Header{Kind: protocol.KindRequest, Seq: 77}, Method: "Arith.Sleep"}, protocol.Msgpack, 1, 0)
	if _, err := raw.Write(req); err != nil {
		t.Fatal(err)
	}
	if err := r.Read(&m); err != nil || m.Seq != 77 || m.Status != protocol.StatusShuttingDown {
		t.Fatalf("late request answered %+v, %v; want status shutting down", m.Header, err)
	}

	// A new call from the client is refused without running: by the client
	// itself once it has read its go-away, or by the server before that.
	var out int
	if err := c.Call(context.Background(), "Arith.Sleep", 1, &out); !errors.Is(err, consumer.ErrClientClosed) && !errors.Is(err, consumer.ErrShuttingDown) {
		t.Fatalf("call after go-away: %v, want ErrClientClosed or ErrShuttingDown", err)
	}

	for range n {
		if err := <-results; err != nil {
			t.Errorf("in-flight call failed: %v", err)
		}
	}
	if err := <-shutdownErr; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if took := time.Since(start); took > 4*time.Second {
		t.Fatalf("Shutdown took %v", took)
	}
	if got := s.arith.executed.Load(); got != n {
		t.Fatalf("Sleep ran %d times, want %d: a rejected call ran", got, n)
	}
	if err := <-s.serveErr; !errors.Is(err, provider.ErrServerClosed) {
		t.Fatalf("Serve: %v", err)
	}
	s.serveErr <- provider.ErrServerClosed // for the cleanup's check
	select {
	case <-s.srv.Done():
	default:
		t.Fatal("Done not closed after Shutdown")
	}
}

func TestShutdownDeadlineCutsTheDrain(t *testing.T) {
	s := serve(t)
	c := dial(t, s.addr)
	call := sleeping(s, c)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := s.srv.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown: %v, want DeadlineExceeded", err)
	}
	<-call.Done
	if !errors.Is(call.Error, consumer.ErrConnClosed) {
		t.Fatalf("cut call: %v, want ErrConnClosed", call.Error)
	}
}

func TestDeadPeerFailsPendingCallsAtOnce(t *testing.T) {
	// A "server" that accepts and never answers.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		nc, err := ln.Accept()
		if err == nil {
			go io.Copy(io.Discard, nc)
			accepted <- nc
		}
	}()
	c := dial(t, ln.Addr().String(), consumer.WithHeartbeat(20*time.Millisecond, 200*time.Millisecond))
	nc := <-accepted
	defer nc.Close()
	calls := make([]*consumer.Call, 5)
	for i := range calls {
		calls[i] = c.Go(context.Background(), "Arith.Add", Args{}, new(int), nil)
	}
	for _, call := range calls {
		select {
		case <-call.Done:
			if !errors.Is(call.Error, consumer.ErrConnClosed) {
				t.Fatalf("pending call: %v, want ErrConnClosed", call.Error)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("pending call never failed")
		}
	}
}

func TestServerCloseFailsPendingCalls(t *testing.T) {
	s := serve(t)
	c := dial(t, s.addr)
	call := sleeping(s, c)
	s.srv.Close()
	<-call.Done
	if !errors.Is(call.Error, consumer.ErrConnClosed) {
		t.Fatalf("%v, want ErrConnClosed", call.Error)
	}
	if _, err := consumer.Dial(s.addr); !errors.Is(err, consumer.ErrDial) {
		t.Fatalf("dial after Close: %v, want ErrDial", err)
	}
}

// TestHeartbeatsKeepAnIdleConnectionOpen: the server closes a connection
// silent for its idle timeout, and keeps one whose client heartbeats. The
// heartbeat interval is a small fraction of the idle timeout, so a loaded
// machine that delays a heartbeat by most of a second does not fail the test;
// the idle timeouts that pass are counted by quiet connections the server
// closes, not by sleeping.
func TestHeartbeatsKeepAnIdleConnectionOpen(t *testing.T) {
	const idle = time.Second
	s := serve(t, provider.WithIdleTimeout(idle))
	chatty := dial(t, s.addr, consumer.WithHeartbeat(20*time.Millisecond, time.Minute))
	var out int
	if err := chatty.Call(context.Background(), "Arith.Add", Args{}, &out); err != nil {
		t.Fatal(err)
	}
	// Three idle timeouts, one after the other: each quiet connection, opened
	// after the previous one was closed, is closed only once a whole idle
	// timeout has passed on the server.
	for i := range 3 {
		quiet := dial(t, s.addr, consumer.WithHeartbeat(0, 0))
		if err := quiet.Call(context.Background(), "Arith.Add", Args{}, &out); err != nil {
			t.Fatal(err)
		}
		opened := time.Now()
		deadline := opened.Add(30 * time.Second)
		for quiet.Usable() {
			if time.Now().After(deadline) {
				t.Fatalf("quiet connection %d: the server did not close it within 30s (idle timeout %v)", i, idle)
			}
			time.Sleep(10 * time.Millisecond) // polling an outside event: the server's idle timer
		}
		if !chatty.Usable() {
			t.Fatalf("the heartbeating connection was closed during idle timeout %d", i+1)
		}
		t.Logf("quiet connection %d closed by the server after %v", i, time.Since(opened).Round(time.Millisecond))
	}
	if err := chatty.Call(context.Background(), "Arith.Add", Args{A: 1}, &out); err != nil || out != 1 {
		t.Fatal(out, err)
	}
}

// rawConn dials the server directly, to send it bytes no client would.
func rawConn(t *testing.T, addr string) net.Conn {
	t.Helper()
	nc, err := net.Dial("tcp", strings.TrimPrefix(addr, "tcp@"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return nc
}

// closedByPeer reports whether the server closed nc (reads hit EOF or a reset).
func closedByPeer(t *testing.T, nc net.Conn) bool {
	t.Helper()
	nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := io.Copy(io.Discard, nc)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return false
	}
	return true
}

func TestBadInputClosesOnlyThatConnection(t *testing.T) {
	const limit = 64 << 10
	s := serve(t, provider.WithMaxBodySize(limit))
	good := dial(t, s.addr)

	header := func(bodyLen uint32) []byte {
		b := []byte{protocol.Magic, protocol.Version, byte(protocol.KindRequest), 0, byte(protocol.CodecMsgpack), 0, 0, 0}
		b = binary.BigEndian.AppendUint64(b, 1)
		return binary.BigEndian.AppendUint32(b, bodyLen)
	}
	junk := make([]byte, 4096)
	rand.Read(junk)
	junk[0] = 0 // never the magic byte
	frame, _ := protocol.AppendFrameEncode(nil, &protocol.Message{Header: protocol.Header{Kind: protocol.KindRequest, Seq: 1}, Method: "Arith.Add"}, protocol.Msgpack, Args{}, 0)
	response := bytes.Clone(frame)
	response[2] = byte(protocol.KindResponse)
	cases := []struct {
		name string
		send []byte
		half bool // close our write side after sending, as a truncated stream ends
	}{
		{"random bytes", junk, false},
		{"4 GiB body announced", header(1<<32 - 1), false},
		{"body far past the limit", header(limit*protocol.SkipFactor + 1), false},
		{"truncated frame", frame[:len(frame)-3], true},
		{"response frame from a client", response, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			nc := rawConn(t, s.addr)
			if _, err := nc.Write(tc.send); err != nil {
				t.Fatal(err)
			}
			if tc.half {
				nc.(*net.TCPConn).CloseWrite()
			}
			if !closedByPeer(t, nc) {
				t.Fatal("the server kept the connection open")
			}
			runtime.ReadMemStats(&after)
			if grew := after.TotalAlloc - before.TotalAlloc; grew > 4*limit {
				t.Fatalf("allocated %d bytes for a bad frame (limit %d)", grew, limit)
			}
			var out int
			if err := good.Call(context.Background(), "Arith.Add", Args{A: 20, B: 22}, &out); err != nil || out != 42 {
				t.Fatalf("the good client broke: %d, %v", out, err)
			}
		})
	}
}

func TestShutdownCutByCloseSaysSo(t *testing.T) {
	s := serve(t)
	c := dial(t, s.addr)
	call := sleeping(s, c)
	shutdownErr := make(chan error, 1)
	go func() { shutdownErr <- s.srv.Shutdown(context.Background()) }()
	s.srv.Close() // before or during the drain: the call in flight loses its reply either way
	if err := <-shutdownErr; !errors.Is(err, provider.ErrServerClosed) {
		t.Fatalf("Shutdown cut by Close returned %v, want ErrServerClosed", err)
	}
	<-call.Done
	if !errors.Is(call.Error, consumer.ErrConnClosed) {
		t.Fatalf("the cut call: %v", call.Error)
	}
}
