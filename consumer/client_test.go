package consumer

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/shoalrpc/shoal/protocol"
)

// stuckServer accepts connections and never reads from them: a peer whose
// receive window fills and stays full. Its receive buffer is made small, so
// a large request cannot all fit into the kernel's buffers.
func stuckServer(t *testing.T) (addr string, accepted <-chan net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	conns := make(chan net.Conn, 4)
	var held []net.Conn
	var mu sync.Mutex
	go func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			nc.(*net.TCPConn).SetReadBuffer(4 << 10)
			mu.Lock()
			held = append(held, nc)
			mu.Unlock()
			conns <- nc
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, nc := range held {
			nc.Close()
		}
	})
	return ln.Addr().String(), conns
}

// within runs f and fails the test if it has not returned after d.
func within(t *testing.T, d time.Duration, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { defer close(done); f() }()
	select {
	case <-done:
	case <-time.After(d):
		t.Fatalf("%s did not return within %s", what, d)
	}
}

func TestACallReturnsAtItsDeadlineWhenTheServerStopsReading(t *testing.T) {
	addr, _ := stuckServer(t)
	const writeTimeout = 2 * time.Second
	c, err := Dial(addr, WithWriteTimeout(writeTimeout), WithHeartbeat(0, 0), WithProbe(0, 0))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	big := make([]byte, 7<<20)

	// A 7 MiB call with a 200 ms deadline: its request cannot all be
	// written, and the caller must not wait for it.
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	var bigErr error
	within(t, 5*time.Second, "Call", func() { bigErr = c.Call(ctx, "Blob.Put", big, nil) })
	if took := time.Since(start); took > 1500*time.Millisecond {
		t.Errorf("the large call returned after %v, want about its 200 ms deadline", took)
	}
	if !errors.Is(bigErr, context.DeadlineExceeded) || errors.Is(bigErr, ErrNotSent) {
		t.Errorf("large call: %v, want DeadlineExceeded, not ErrNotSent (part of it was written)", bigErr)
	}

	// Go returns at once, and a small call queued behind the stuck request
	// ends at its own deadline, withdrawn: never sent.
	ctx2, cancel2 := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel2()
	var small *Call
	start = time.Now()
	within(t, time.Second, "Go", func() { small = c.Go(ctx2, "Blob.Get", 1, new(int), nil) })
	select {
	case <-small.Done:
	case <-time.After(5 * time.Second):
		t.Fatal("the small call never completed")
	}
	if took := time.Since(start); took > 1500*time.Millisecond {
		t.Errorf("the small call returned after %v, want about its 200 ms deadline", took)
	}
	if !errors.Is(small.Error, ErrNotSent) || !errors.Is(small.Error, context.DeadlineExceeded) {
		t.Errorf("small call: %v, want ErrNotSent and DeadlineExceeded", small.Error)
	}

	// A call with no deadline waits in the queue until the write timeout
	// declares the connection dead; it then fails at once, not sent.
	waiting := c.Go(context.Background(), "Blob.Get", 2, new(int), nil)
	select {
	case <-waiting.Done:
	case <-time.After(writeTimeout + 3*time.Second):
		t.Fatalf("the connection was not declared dead within the %s write timeout", writeTimeout)
	}
	if !errors.Is(waiting.Error, ErrNotSent) || !errors.Is(waiting.Error, ErrClientClosed) {
		t.Errorf("queued call on the dead connection: %v, want ErrNotSent (of the ErrClientClosed kind)", waiting.Error)
	}
	if c.Usable() {
		t.Error("the connection is still usable after its write timeout")
	}
}

// heldConn holds every Write until released or until its write deadline,
// as a connection whose peer takes no bytes for a while.
type heldConn struct {
	net.Conn
	release  chan struct{}
	once     sync.Once
	mu       sync.Mutex
	deadline time.Time
}

func (h *heldConn) SetWriteDeadline(t time.Time) error {
	h.mu.Lock()
	h.deadline = t
	h.mu.Unlock()
	return h.Conn.SetWriteDeadline(t)
}

func (h *heldConn) Write(p []byte) (int, error) {
	h.mu.Lock()
	deadline := h.deadline
	h.mu.Unlock()
	var expired <-chan time.Time
	if !deadline.IsZero() {
		t := time.NewTimer(time.Until(deadline))
		defer t.Stop()
		expired = t.C
	}
	select {
	case <-h.release:
		return h.Conn.Write(p)
	case <-expired:
		return 0, os.ErrDeadlineExceeded
	}
}

func (h *heldConn) Close() error {
	h.once.Do(func() { close(h.release) })
	return h.Conn.Close()
}

func TestACallWrittenAfterTheServerClosedWasNotSent(t *testing.T) {
	// A server that reads one request header and closes the connection.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	closeNow := make(chan struct{})
	go func() {
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		<-closeNow
		nc.Close()
	}()
	held := make(chan *heldConn, 1)
	dial := func(ctx context.Context, network, address string) (net.Conn, error) {
		nc, err := (&net.Dialer{}).DialContext(ctx, network, address)
		if err != nil {
			return nil, err
		}
		h := &heldConn{Conn: nc, release: make(chan struct{})}
		held <- h
		return h, nil
	}
	// Between the reader's finding the connection closed and the client's
	// stopping, a call is queued and its request written: it went to a
	// connection known to be dead.
	var c *Client
	var late *Call
	lateWritten := make(chan struct{})
	onDead := func() {
		late = c.Go(context.Background(), "Blob.Get", 2, new(int), nil)
		h := <-held
		h.once.Do(func() { close(h.release) }) // let the writer write it
		for c.e.Taken() < late.mark.End() {
			time.Sleep(time.Millisecond) // polling the writer goroutine's progress
		}
		close(lateWritten)
	}
	c, err = Dial(ln.Addr().String(), WithDialer(dial), WithHeartbeat(0, 0), WithProbe(0, 0),
		dialOption(func(o *options) { o.onDead = onDead }))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	h := <-held
	held <- h
	// This request is handed to the connection (its write is held) before
	// the server closes: it may have run.
	early := c.Go(context.Background(), "Blob.Get", 1, new(int), nil)
	for c.e.Taken() < early.mark.End() {
		time.Sleep(time.Millisecond) // polling the writer goroutine's progress
	}
	close(closeNow)
	<-lateWritten
	for _, call := range []*Call{early, late} {
		select {
		case <-call.Done:
		case <-time.After(5 * time.Second):
			t.Fatal("a call never completed")
		}
	}
	if !errors.Is(early.Error, ErrConnClosed) {
		t.Errorf("call written before the server closed: %v, want ErrConnClosed (maybe executed)", early.Error)
	}
	if !errors.Is(late.Error, ErrNotSent) || errors.Is(late.Error, ErrConnClosed) {
		t.Errorf("call written after the reader saw the close: %v, want ErrNotSent (not executed)", late.Error)
	}
	if kind := classify(context.Background(), late.Error); kind != kindNotExecuted {
		t.Errorf("classify(%v) = %v, want not executed", late.Error, kind)
	}
}

// silentServer reads requests and answers nothing but, if answerProbes,
// heartbeats.
func silentServer(t *testing.T, answerProbes bool) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, nc := range conns {
			nc.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, nc)
			mu.Unlock()
			wg.Go(func() {
				var head [protocol.HeaderSize]byte
				for {
					if _, err := io.ReadFull(nc, head[:]); err != nil {
						return
					}
					n := int64(binary.BigEndian.Uint32(head[16:20]))
					if _, err := io.CopyN(io.Discard, nc, n); err != nil {
						return
					}
					if protocol.Kind(head[2]) == protocol.KindHeartbeat && answerProbes {
						hb, _ := protocol.AppendFrame(nil, &protocol.Message{Header: protocol.Header{Kind: protocol.KindHeartbeat, Flags: protocol.FlagReply}}, 0)
						nc.Write(hb)
					}
				}
			})
		}
	})
	return ln.Addr().String()
}

func TestASilentServerIsDeclaredDeadWithinSeconds(t *testing.T) {
	addr := silentServer(t, false)
	c, err := Dial(addr) // default probe: 1 s of silence, 1 s for the answer
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	calls := make([]*Call, 3)
	for i := range calls {
		calls[i] = c.Go(context.Background(), "Arith.Sleep", 5, new(int), nil)
	}
	for _, call := range calls {
		select {
		case <-call.Done:
		case <-time.After(10 * time.Second):
			t.Fatal("a call on a silent connection was still pending after 10 s")
		}
		if !errors.Is(call.Error, ErrConnClosed) {
			t.Errorf("call on the silent connection: %v, want ErrConnClosed", call.Error)
		}
	}
	// Two loaded cores: the bound is the defaults' 2.5 s plus slack, well
	// under the 30 s heartbeat timeout that was the only bound before.
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("the silent connection was declared dead after %v, want about 2.5 s", took)
	}
}

func TestATimeoutOnASilentConnectionIsAnInstanceFault(t *testing.T) {
	for _, tc := range []struct {
		name         string
		answerProbes bool
		fault        bool
	}{
		{"probe unanswered", false, true},
		{"probe answered", true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := silentServer(t, tc.answerProbes)
			c, err := Dial(addr, WithProbe(50*time.Millisecond, 30*time.Second), WithHeartbeat(0, 0))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 800*time.Millisecond)
			defer cancel()
			err = c.Call(ctx, "Arith.Sleep", 5, new(int))
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("call: %v, want DeadlineExceeded", err)
			}
			// The caller's own deadline ended the call: only a silent
			// connection makes that the instance's fault.
			if fault := instanceFault(ctx, err); (fault != nil) != tc.fault {
				t.Errorf("instanceFault(%v) = %v, want a fault: %v", err, fault, tc.fault)
			}
		})
	}
}
