package integration

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shoalrpc/shoal/consumer"
	"github.com/shoalrpc/shoal/internal/testcert"
	"github.com/shoalrpc/shoal/protocol"
	"github.com/shoalrpc/shoal/provider"
)

func TestSlowlorisIsCutAfterTheReadTimeout(t *testing.T) {
	s := serve(t, provider.WithTimeouts(200*time.Millisecond, time.Second))
	frame, _ := protocol.AppendFrameEncode(nil, &protocol.Message{Header: protocol.Header{Kind: protocol.KindRequest, Seq: 1}, Method: "Arith.Add"}, protocol.Msgpack, Args{}, 0)
	for _, partial := range [][]byte{frame[:5], frame[:protocol.HeaderSize+2]} {
		nc := rawConn(t, s.addr)
		start := time.Now()
		if _, err := nc.Write(partial); err != nil {
			t.Fatal(err)
		}
		if !closedByPeer(t, nc) {
			t.Fatalf("a peer that sent %d bytes and stalled was never cut off", len(partial))
		}
		if took := time.Since(start); took > 3*time.Second {
			t.Fatalf("cut off after %v, read timeout 200ms", took)
		}
	}
	// An idle connection is not a slowloris: it lives until the idle timeout.
	idle := rawConn(t, s.addr)
	idle.SetReadDeadline(time.Now().Add(600 * time.Millisecond))
	if _, err := idle.Read(make([]byte, 1)); !isTimeout(err) {
		t.Fatalf("an idle connection was closed within 600ms: %v", err)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func TestAPeerThatNeverReadsIsDisconnected(t *testing.T) {
	const limit = 64 << 10
	s := serve(t, provider.WithTimeouts(time.Second, 200*time.Millisecond), provider.WithMaxBodySize(limit))
	nc := rawConn(t, s.addr)
	nc.(*net.TCPConn).SetReadBuffer(4096)
	big := strings.Repeat("x", limit/2)
	// Requests whose replies are big, and never a read: the socket buffers
	// fill, writes block, and the server must give up rather than queue.
	var frames []byte
	for seq := range 200 {
		frames, _ = protocol.AppendFrameEncode(frames, &protocol.Message{Header: protocol.Header{Kind: protocol.KindRequest, Seq: uint64(seq)}, Method: "Arith.Echo"}, protocol.Msgpack, big, 0)
	}
	writeErr := make(chan error, 1)
	go func() {
		nc.SetWriteDeadline(time.Now().Add(10 * time.Second))
		_, err := nc.Write(frames)
		writeErr <- err
	}()
	deadline := time.Now().Add(10 * time.Second)
	for s.srv.InFlight() > 0 || !serverClosedIt(nc) {
		if time.Now().After(deadline) {
			t.Fatalf("still connected with %d requests in flight", s.srv.InFlight())
		}
		time.Sleep(20 * time.Millisecond) // polling the server's state
	}
	<-writeErr
	good := dial(t, s.addr)
	var out string
	if err := good.Call(context.Background(), "Arith.Echo", "still ", &out); err != nil || out != "still " {
		t.Fatalf("a reading client failed: %q, %v", out, err)
	}
}

// serverClosedIt reports whether the server has closed nc, without reading
// what it sent (the test's peer never reads): a write then fails.
func serverClosedIt(nc net.Conn) bool {
	nc.SetWriteDeadline(time.Now().Add(50 * time.Millisecond))
	_, err := nc.Write([]byte{})
	if err != nil && !isTimeout(err) {
		return true
	}
	// A zero-byte write may succeed on a closed socket; probe with a heartbeat.
	hb, _ := protocol.AppendFrame(nil, &protocol.Message{Header: protocol.Header{Kind: protocol.KindHeartbeat}}, 0)
	_, err = nc.Write(hb)
	return err != nil && !isTimeout(err)
}

func TestConcurrencyLimitsRefuseWithoutRunning(t *testing.T) {
	s := serve(t, provider.WithMaxConcurrent(2, 3))
	c1 := dial(t, s.addr)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s.arith.track.Store(true)
	s.arith.entered.Add(2)
	for range 2 {
		c1.Go(ctx, "Arith.Sleep", 10_000, new(int), nil)
	}
	s.arith.entered.Wait()
	var out int
	if err := c1.Call(context.Background(), "Arith.Sleep", 1, &out); !errors.Is(err, consumer.ErrOverloaded) {
		t.Fatalf("third call on one connection: %v, want ErrOverloaded", err)
	}
	c2 := dial(t, s.addr)
	s.arith.entered.Add(1)
	c2.Go(ctx, "Arith.Sleep", 10_000, new(int), nil)
	s.arith.entered.Wait()
	if err := c2.Call(context.Background(), "Arith.Sleep", 1, &out); !errors.Is(err, consumer.ErrOverloaded) {
		t.Fatalf("fourth call on the server: %v, want ErrOverloaded", err)
	}
	if got := s.arith.executed.Load(); got != 3 {
		t.Fatalf("Sleep ran %d times, want 3: a refused call ran", got)
	}
	s.arith.track.Store(false)
}

func TestConnectionLimitSendsClientsAway(t *testing.T) {
	s := serve(t, provider.WithMaxConns(1))
	c1 := dial(t, s.addr)
	var out int
	if err := c1.Call(context.Background(), "Arith.Add", Args{A: 1}, &out); err != nil {
		t.Fatal(err)
	}
	c2 := dial(t, s.addr)
	err := c2.Call(context.Background(), "Arith.Sleep", 1, &out)
	if !errors.Is(err, consumer.ErrOverloaded) && !errors.Is(err, consumer.ErrClientClosed) {
		t.Fatalf("call past the connection limit: %v, want a not-executed refusal", err)
	}
	if s.arith.executed.Load() != 0 {
		t.Fatal("a call past the connection limit ran")
	}
}

func TestPendingTableIsBounded(t *testing.T) {
	s := serve(t)
	c := dial(t, s.addr, consumer.WithMaxPending(2))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for range 2 {
		c.Go(ctx, "Arith.Block", 0, new(int), nil)
	}
	var out int
	err := c.Call(context.Background(), "Arith.Add", Args{}, &out)
	if !errors.Is(err, consumer.ErrTooManyPending) {
		t.Fatalf("third pending call: %v, want ErrTooManyPending", err)
	}
}

func TestAuthHookRefusesBeforeTheMethodRuns(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	auth := func(ctx context.Context, method string, md map[string]string) error {
		mu.Lock()
		seen = append(seen, method)
		mu.Unlock()
		if md["token"] != "s3cret" {
			return errors.New("bad token")
		}
		return nil
	}
	s := serve(t, provider.WithAuth(auth))
	var out int
	anon := dial(t, s.addr)
	err := anon.Call(context.Background(), "Arith.Sleep", 1, &out)
	if !errors.Is(err, consumer.ErrUnauthenticated) || !strings.Contains(err.Error(), "bad token") {
		t.Fatalf("call without credentials: %v", err)
	}
	if s.arith.executed.Load() != 0 {
		t.Fatal("an unauthenticated call ran")
	}
	authed := dial(t, s.addr, consumer.WithCredentials(map[string]string{"token": "s3cret"}))
	ctx := consumer.WithMetadata(context.Background(), map[string]string{"who": "!"})
	var echo string
	if err := authed.Call(ctx, "Arith.Echo", "hi", &echo); err != nil || echo != "hi!" {
		t.Fatalf("authenticated call with metadata: %q, %v", echo, err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 2 || seen[0] != "Arith.Sleep" || seen[1] != "Arith.Echo" {
		t.Fatalf("auth saw %v", seen)
	}
}

func TestTLSAndMutualTLS(t *testing.T) {
	certs := testcert.New(t)
	for _, mutual := range []bool{false, true} {
		s := serve(t, provider.WithTLS(certs.ServerConfig(mutual)))
		c := dial(t, s.addr, consumer.WithTLS(certs.ClientConfig(true)))
		var out int
		if err := c.Call(context.Background(), "Arith.Add", Args{A: 20, B: 22}, &out); err != nil || out != 42 {
			t.Fatalf("mutual=%v: %d, %v", mutual, out, err)
		}
		// Plain TCP to a TLS server does not get through.
		plain := dial(t, s.addr, consumer.WithHeartbeat(0, 0))
		if err := plain.Call(context.Background(), "Arith.Add", Args{}, &out); err == nil {
			t.Fatalf("mutual=%v: a plaintext call to a TLS server succeeded", mutual)
		}
		// A server the client does not trust is refused at dial.
		untrusted := &tls.Config{RootCAs: testcert.New(t).Pool}
		if _, err := consumer.Dial(s.addr, consumer.WithTLS(untrusted)); !errors.Is(err, consumer.ErrDial) {
			t.Fatalf("mutual=%v: dial with the wrong CA: %v", mutual, err)
		}
		if mutual { // no client certificate: refused at dial, never a maybe-executed call
			if _, err := consumer.Dial(s.addr, consumer.WithTLS(certs.ClientConfig(false))); !errors.Is(err, consumer.ErrDial) {
				t.Fatalf("dial without a client certificate: %v, want ErrDial", err)
			}
		}
	}
}

func TestPayloadLengthsCannotAmplifyAllocation(t *testing.T) {
	s := serve(t)
	nc := rawConn(t, s.addr)
	r := protocol.NewReader(nc, 0)
	// Ten payload bytes that announce 808 million elements, or 808 MB of
	// bytes: the msgpack library would size its allocation from them.
	for i, payload := range [][]byte{
		append([]byte{0xdd}, "000000000"...),
		append([]byte{0xc6}, "000000000"...),
	} {
		frame, _ := protocol.AppendFrame(nil, &protocol.Message{
			Header:  protocol.Header{Kind: protocol.KindRequest, Codec: protocol.CodecMsgpack, Seq: uint64(i)},
			Method:  "Arith.Echo",
			Payload: payload,
		}, 0)
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		if _, err := nc.Write(frame); err != nil {
			t.Fatal(err)
		}
		var m protocol.Message
		if err := r.Read(&m); err != nil || m.Status != protocol.StatusBadRequest {
			t.Fatalf("payload %d answered %+v, %v; want bad request", i, m.Header, err)
		}
		runtime.ReadMemStats(&after)
		if grew := after.TotalAlloc - before.TotalAlloc; grew > 4<<20 {
			t.Fatalf("payload %d made the server allocate %d bytes", i, grew)
		}
	}
	if n := s.arith.echoes.Load(); n != 0 {
		t.Fatalf("Arith.Echo ran %d times for requests answered \"bad request\"", n)
	}
}
