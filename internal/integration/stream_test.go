package integration

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shoalrpc/shoal/consumer"
	"github.com/shoalrpc/shoal/internal/servetest"
	"github.com/shoalrpc/shoal/loadbalance"
	"github.com/shoalrpc/shoal/naming"
	"github.com/shoalrpc/shoal/protocol"
	"github.com/shoalrpc/shoal/provider"
	"github.com/shoalrpc/shoal/reflection"
	"github.com/shoalrpc/shoal/stats"
)

// Streams is the stream service of these tests. Its counters are the
// server's side of every outcome; the tests count the client's side
// themselves.
type Streams struct {
	started  atomic.Int64 // stream methods that began
	sent     atomic.Int64 // messages sent by Flood and Count
	finished atomic.Int64 // Count calls that sent every message
	ctxEnded chan error   // Wait and Flood: their context's error, when it ended them
}

func newStreams() *Streams { return &Streams{ctxEnded: make(chan error, 2048)} }

// Blob is a message of some bytes.
type Blob struct{ B []byte }

// FloodArgs sizes Flood's messages.
type FloodArgs struct{ Size int }

// CountArgs asks Count for 1..N, one every EveryMs milliseconds.
type CountArgs struct{ N, EveryMs int }

// Flood sends Blobs of args.Size bytes until its context ends.
func (s *Streams) Flood(ctx context.Context, args FloodArgs, st *provider.ServerStream[Blob]) error {
	s.started.Add(1)
	b := Blob{B: make([]byte, args.Size)}
	for {
		if err := st.Send(&b); err != nil {
			s.ctxEnded <- ctx.Err()
			return err
		}
		s.sent.Add(1)
	}
}

// Count sends 1..N, one every EveryMs milliseconds.
func (s *Streams) Count(ctx context.Context, args CountArgs, st *provider.ServerStream[int]) error {
	s.started.Add(1)
	for i := 1; i <= args.N; i++ {
		if i > 1 && args.EveryMs > 0 {
			select {
			case <-time.After(time.Duration(args.EveryMs) * time.Millisecond):
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		if err := st.Send(&i); err != nil {
			return err
		}
		s.sent.Add(1)
	}
	s.finished.Add(1)
	return nil
}

// Wait sends nothing and returns when its context ends, with its error.
func (s *Streams) Wait(ctx context.Context, _ int, st *provider.ServerStream[int]) error {
	s.started.Add(1)
	<-ctx.Done()
	s.ctxEnded <- ctx.Err()
	return ctx.Err()
}

// Stall is a client stream that never reads: its caller's sends fill the
// window; it returns fail's text as its error once its context ends, or
// after ms milliseconds if ms > 0.
func (s *Streams) Stall(ctx context.Context, st *provider.ClientStream[Blob], reply *int) error {
	s.started.Add(1)
	<-ctx.Done()
	s.ctxEnded <- ctx.Err()
	return ctx.Err()
}

// Refuse ends the stream with an error without reading, while its caller sends.
func (s *Streams) Refuse(ctx context.Context, st *provider.ClientStream[Blob], reply *int) error {
	s.started.Add(1)
	return errors.New("not today")
}

// Echo returns each message as it arrives.
func (s *Streams) Echo(ctx context.Context, st *provider.BidiStream[int, int]) error {
	s.started.Add(1)
	for {
		m, err := st.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			s.ctxEnded <- err
			return err
		}
		if err := st.Send(m); err != nil {
			return err
		}
	}
}

// Sink reads Blobs until its caller's end and replies how many it read; a
// Recv that fails ends it, its error sent on ctxEnded.
func (s *Streams) Sink(ctx context.Context, st *provider.ClientStream[Blob], reply *int) error {
	s.started.Add(1)
	for {
		_, err := st.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			s.ctxEnded <- err
			return err
		}
		*reply++
	}
}

// Ping is a unary method beside the streams.
func (s *Streams) Ping(n int, out *int) error { *out = n; return nil }

func serveStreams(t *testing.T, opts ...provider.Option) (*provider.Server, *Streams, string) {
	t.Helper()
	srv := provider.NewServer(append([]provider.Option{provider.WithLogger(slog.New(slog.DiscardHandler))}, opts...)...)
	svc := newStreams()
	if err := srv.Register(svc); err != nil {
		t.Fatal(err)
	}
	addr := servetest.Start(t, srv)
	return srv, svc, addr
}

func dialStreams(t *testing.T, addr string, opts ...consumer.DialOption) *consumer.Client {
	t.Helper()
	c, err := consumer.Dial(addr, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// waitFor waits, at most 60 s (two loaded cores), until cond holds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Many streams at once on one connection each receive their messages
// complete and in order, while bidirectional streams echo.
func TestStreamsKeepOrderConcurrently(t *testing.T) {
	_, _, addr := serveStreams(t)
	c := dialStreams(t, addr)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for range 50 {
		wg.Go(func() {
			s, err := consumer.OpenServerStream[int](ctx, c, "Streams.Count", CountArgs{N: 500})
			if err != nil {
				errs <- err
				return
			}
			for want := 1; ; want++ {
				n, err := s.Recv()
				if err == io.EOF && want == 501 {
					return
				}
				if err != nil || *n != want {
					errs <- fmt.Errorf("message %d: %v, %v", want, n, err)
					return
				}
			}
		})
		wg.Go(func() {
			s, err := consumer.OpenBidiStream[int, int](ctx, c, "Streams.Echo")
			if err != nil {
				errs <- err
				return
			}
			for i := range 200 {
				if err := s.Send(&i); err != nil {
					errs <- err
					return
				}
				if n, err := s.Recv(); err != nil || *n != i {
					errs <- fmt.Errorf("echo %d: %v, %v", i, n, err)
					return
				}
			}
			s.CloseSend()
			if _, err := s.Recv(); err != io.EOF {
				errs <- fmt.Errorf("echo end: %v", err)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// 1,000 streams on one connection whose receivers stop reading: each
// sender stops at one window, the memory held stays within streams × window
// plus a stated overhead per stream, and a unary call on the same
// connection still goes through.
func TestStreamBackPressureBoundsMemory(t *testing.T) {
	const (
		streams = 1000
		size    = 1000
		// What a stalled stream costs besides its window: the method's
		// goroutine (its stack grown by reflection and encoding), the stream
		// state on both ends, the caller's context watch.
		perStream = 24 << 10
		fixed     = 16 << 20 // the runtime, buffers, the test's own
	)
	_, svc, addr := serveStreams(t)
	c := dialStreams(t, addr)
	frame, err := protocol.AppendFrameEncode(nil, &protocol.Message{Header: protocol.Header{Kind: protocol.KindStreamData}}, protocol.Msgpack, Blob{B: make([]byte, size)}, 0)
	if err != nil {
		t.Fatal(err)
	}
	perWindow := int64(protocol.StreamWindow / len(frame))

	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	ctx, cancel := context.WithCancel(context.Background())
	opened := make([]*consumer.RecvStream[Blob], 0, streams)
	for range streams {
		s, err := consumer.OpenServerStream[Blob](ctx, c, "Streams.Flood", FloodArgs{Size: size})
		if err != nil {
			t.Fatal(err)
		}
		opened = append(opened, s)
	}
	want := streams * perWindow
	waitFor(t, "every stream to fill its window", func() bool { return svc.sent.Load() >= want })
	// A unary call on the same connection, behind 1,000 stalled streams.
	callCtx, callCancel := context.WithTimeout(context.Background(), 30*time.Second)
	var pong int
	err = c.Call(callCtx, "Streams.Ping", 7, &pong)
	callCancel()
	if err != nil || pong != 7 {
		t.Fatalf("unary call beside stalled streams: %d, %v", pong, err)
	}
	if got := svc.sent.Load(); got != want {
		t.Fatalf("servers sent %d messages, want exactly one window's worth per stream: %d (%d each)", got, want, perWindow)
	}
	var after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&after)
	grew := int64(after.HeapAlloc+after.StackInuse) - int64(before.HeapAlloc+before.StackInuse)
	bound := int64(streams)*(protocol.StreamWindow+perStream) + fixed
	t.Logf("heap and stacks grew %d KiB for %d stalled streams (bound %d KiB: window %d KiB + %d KiB each, + %d KiB)",
		grew>>10, streams, bound>>10, protocol.StreamWindow>>10, perStream>>10, fixed>>10)
	if grew > bound {
		t.Fatalf("heap grew %d bytes, over the bound of %d", grew, bound)
	}
	// Reading resumes the senders; cancelling ends every method.
	if _, err := opened[0].Recv(); err != nil {
		t.Fatal(err)
	}
	cancel()
	for range streams {
		select {
		case <-svc.ctxEnded:
		case <-time.After(60 * time.Second):
			t.Fatal("a stream method did not end when its caller cancelled")
		}
	}
}

// The caller's cancel ends the method's context; the method's end (its
// error) ends the caller's stream, even one blocked sending; a deadline
// ends both.
func TestStreamCancellationBothWaysAndDeadline(t *testing.T) {
	_, svc, addr := serveStreams(t)
	c := dialStreams(t, addr)

	ctx, cancel := context.WithCancel(context.Background())
	s, err := consumer.OpenServerStream[int](ctx, c, "Streams.Wait", 0)
	if err != nil {
		t.Fatal(err)
	}
	recvErr := make(chan error, 1)
	go func() { _, err := s.Recv(); recvErr <- err }()
	cancel()
	if err := <-recvErr; !errors.Is(err, context.Canceled) {
		t.Fatalf("caller's Recv after cancel: %v", err)
	}
	select {
	case err := <-svc.ctxEnded:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("method's context ended with %v, want Canceled", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the method's context did not end after the caller cancelled")
	}

	// The method returns while the caller is blocked on a full window.
	refused, err := consumer.OpenClientStream[Blob, int](context.Background(), c, "Streams.Refuse")
	if err != nil {
		t.Fatal(err)
	}
	var sendErr error
	for range 1000 {
		if sendErr = refused.Send(&Blob{B: make([]byte, 1000)}); sendErr != nil {
			break
		}
	}
	if !errors.Is(sendErr, consumer.ErrStreamClosed) {
		t.Fatalf("Send after the method ended: %v, want ErrStreamClosed", sendErr)
	}
	_, err = refused.CloseAndRecv()
	var se *consumer.ServiceError
	if !errors.As(err, &se) || se.Message != "not today" {
		t.Fatalf("CloseAndRecv: %v, want the method's error as a *ServiceError", err)
	}

	dctx, dcancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer dcancel()
	d, err := consumer.OpenServerStream[int](dctx, c, "Streams.Wait", 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Recv(); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Recv past the deadline: %v", err)
	}
	select {
	case err := <-svc.ctxEnded:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("method's context ended with %v, want DeadlineExceeded", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the method's context did not end at the deadline")
	}
}

// killableDialer dials TCP and keeps the connections, to cut them.
type killableDialer struct {
	mu    sync.Mutex
	conns []net.Conn
}

func (k *killableDialer) dial(ctx context.Context, network, address string) (net.Conn, error) {
	nc, err := (&net.Dialer{}).DialContext(ctx, network, address)
	if err == nil {
		k.mu.Lock()
		k.conns = append(k.conns, nc)
		k.mu.Unlock()
	}
	return nc, err
}

func (k *killableDialer) kill() {
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, nc := range k.conns {
		nc.Close()
	}
}

// A connection that dies fails every open stream at once, on both sides.
func TestConnDeathFailsEveryStream(t *testing.T) {
	const n = 20
	_, svc, addr := serveStreams(t)
	var k killableDialer
	c := dialStreams(t, addr, consumer.WithDialer(k.dial))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	streams := make([]*consumer.BidiStream[int, int], n)
	for i := range streams {
		s, err := consumer.OpenBidiStream[int, int](ctx, c, "Streams.Echo")
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Send(&i); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Recv(); err != nil {
			t.Fatal(err)
		}
		streams[i] = s
	}
	k.kill()
	for i, s := range streams {
		if _, err := s.Recv(); !errors.Is(err, consumer.ErrConnClosed) {
			t.Fatalf("stream %d after the connection died: %v, want ErrConnClosed", i, err)
		}
	}
	for i := range n {
		select {
		case err := <-svc.ctxEnded:
			if !errors.Is(err, provider.ErrStreamAborted) {
				t.Fatalf("method %d: %v, want ErrStreamAborted", i, err)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("only %d of %d methods saw the connection die", i, n)
		}
	}
}

// Shutdown with 50 server streams open: with time enough, every stream
// completes with every message in order; with too little, every stream is
// reset "aborted" (maybe executed), none hangs, and no goroutine is left
// (TestMain's goleak).
func TestShutdownMidStream(t *testing.T) {
	for _, long := range []bool{true, false} {
		t.Run(map[bool]string{true: "long", false: "short"}[long], func(t *testing.T) {
			const streams, n = 50, 20
			srv, svc, addr := serveStreams(t)
			c := dialStreams(t, addr)
			every := 100 // ms: a stream lasts about 2 s, past the drain grace (1 s)
			if !long {
				every = 1000 // 20 s: far past Shutdown's context
			}
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			opened := make([]*consumer.RecvStream[int], streams)
			for i := range opened {
				s, err := consumer.OpenServerStream[int](ctx, c, "Streams.Count", CountArgs{N: n, EveryMs: every})
				if err != nil {
					t.Fatal(err)
				}
				opened[i] = s
			}
			waitFor(t, "every stream to start", func() bool { return svc.started.Load() == streams })
			shutdownCtx, shutdownCancel := context.WithTimeout(context.Background(), 30*time.Second)
			if !long {
				shutdownCtx, shutdownCancel = context.WithTimeout(context.Background(), 200*time.Millisecond)
			}
			defer shutdownCancel()
			shutdownErr := make(chan error, 1)
			go func() { shutdownErr <- srv.Shutdown(shutdownCtx) }()
			// Once Shutdown has begun (the flag is its first step), a new
			// stream is refused, not executed.
			waitFor(t, "Shutdown to begin", func() bool { return srv.Snapshot().ShuttingDown })
			if _, err := consumer.OpenServerStream[int](ctx, c, "Streams.Count", CountArgs{N: 1}); !errors.Is(err, consumer.ErrShuttingDown) && !errors.Is(err, consumer.ErrClientClosed) {
				t.Fatalf("a stream opened during Shutdown: %v, want refused (shutting down, or the client told to go away)", err)
			}

			var completed, aborted atomic.Int64
			var wg sync.WaitGroup
			for i, s := range opened {
				wg.Go(func() {
					for want := 1; ; want++ {
						v, err := s.Recv()
						switch {
						case err == io.EOF && want == n+1:
							completed.Add(1)
							return
						case errors.Is(err, consumer.ErrStreamAborted):
							aborted.Add(1)
							return
						case err != nil:
							t.Errorf("stream %d, message %d: %v", i, want, err)
							return
						case *v != want:
							t.Errorf("stream %d: message %d is %d", i, want, *v)
							return
						}
					}
				})
			}
			wg.Wait()
			err := <-shutdownErr
			if long {
				if err != nil || completed.Load() != streams || svc.finished.Load() != streams {
					t.Fatalf("long Shutdown: %v; %d streams completed on the client, %d methods finished, want %d", err, completed.Load(), svc.finished.Load(), streams)
				}
			} else if !errors.Is(err, context.DeadlineExceeded) || aborted.Load() != streams {
				t.Fatalf("short Shutdown: %v; %d streams aborted, %d completed, want all %d aborted", err, aborted.Load(), completed.Load(), streams)
			}
		})
	}
}

// A stream open refused "not executed" by one instance is opened on another
// through a ClientProxy; the refusing instance runs nothing.
func TestProxyRetriesRefusedStreamOpen(t *testing.T) {
	reg := naming.NewMemory()
	defer reg.Close()
	var refusals atomic.Int64
	refuse := func(ctx context.Context, info *provider.StreamInfo, s provider.Stream, next provider.StreamHandler) error {
		refusals.Add(1)
		return provider.Refuse(protocol.StatusOverloaded, errors.New("busy"))
	}
	in := naming.Instance{Service: "streams"}
	_, busy, _ := serveStreams(t, provider.WithRegistry(reg, in), provider.WithStreamInterceptors(refuse))
	_, ok, _ := serveStreams(t, provider.WithRegistry(reg, in))
	p, err := consumer.NewClientProxy("streams", reg, consumer.WithLoadBalance(loadbalance.RoundRobin), consumer.WithFailMode(consumer.Failfast))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	waitFor(t, "both instances listed", func() bool { return len(p.Instances()) == 2 })
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const streams = 20
	completed := 0
	for range streams {
		s, err := consumer.OpenServerStream[int](ctx, p, "Streams.Count", CountArgs{N: 3})
		if err != nil {
			t.Fatal(err)
		}
		got := 0
		for {
			_, err := s.Recv()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			got++
		}
		if got == 3 {
			completed++
		}
	}
	if completed != streams || ok.started.Load() != streams || busy.started.Load() != 0 || refusals.Load() == 0 {
		t.Fatalf("%d streams completed; the open instance ran %d, the refusing one ran %d after %d refusals; want %d, %d, 0, some",
			completed, ok.started.Load(), busy.started.Load(), refusals.Load(), streams, streams)
	}
}

// A stream past the connection's limit is refused "overloaded", not
// executed; once a stream ends, a new one opens.
func TestMaxStreamsRefusesNotExecuted(t *testing.T) {
	_, svc, addr := serveStreams(t, provider.WithMaxStreams(2))
	c := dialStreams(t, addr)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	first, err := consumer.OpenServerStream[int](ctx, c, "Streams.Wait", 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := consumer.OpenServerStream[int](ctx, c, "Streams.Wait", 0); err != nil {
		t.Fatal(err)
	}
	if _, err := consumer.OpenServerStream[int](ctx, c, "Streams.Wait", 0); !errors.Is(err, consumer.ErrOverloaded) {
		t.Fatalf("third stream: %v, want ErrOverloaded", err)
	}
	// An open returns once accepted, just before the method starts.
	waitFor(t, "the two accepted methods to start", func() bool { return svc.started.Load() >= 2 })
	if got := svc.started.Load(); got != 2 {
		t.Fatalf("%d methods ran, want 2: the refused one ran", got)
	}
	first.Close()
	<-svc.ctxEnded
	waitFor(t, "a stream slot to free", func() bool {
		s, err := consumer.OpenServerStream[int](ctx, c, "Streams.Count", CountArgs{N: 1})
		if err != nil {
			return false
		}
		s.Close()
		return true
	})
}

// Open streams keep a connection from being idle: a stream quieter than the
// server's idle timeout lives on.
func TestOpenStreamIsNotIdle(t *testing.T) {
	_, _, addr := serveStreams(t, provider.WithIdleTimeout(150*time.Millisecond))
	c := dialStreams(t, addr, consumer.WithHeartbeat(0, 0), consumer.WithProbe(0, 0))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s, err := consumer.OpenServerStream[int](ctx, c, "Streams.Count", CountArgs{N: 3, EveryMs: 400})
	if err != nil {
		t.Fatal(err)
	}
	for want := 1; want <= 3; want++ {
		if v, err := s.Recv(); err != nil || *v != want {
			t.Fatalf("message %d: %v, %v", want, v, err)
		}
	}
	if _, err := s.Recv(); err != io.EOF {
		t.Fatalf("end: %v", err)
	}
}

// streamStats counts what stats handlers see of streams.
type streamStats struct {
	stats.Base
	mu     sync.Mutex
	begins map[stats.Kind]int
	ends   map[stats.Kind][]string // statuses
}

func newStreamStats() *streamStats {
	return &streamStats{begins: map[stats.Kind]int{}, ends: map[stats.Kind][]string{}}
}

func (h *streamStats) RPCBegin(ctx context.Context, info *stats.RPCInfo) context.Context {
	if info.Stream {
		h.mu.Lock()
		h.begins[info.Kind]++
		h.mu.Unlock()
	}
	return ctx
}

func (h *streamStats) RPCEnd(ctx context.Context, info *stats.RPCInfo, end *stats.RPCEnd) {
	if info.Stream {
		h.mu.Lock()
		h.ends[info.Kind] = append(h.ends[info.Kind], end.Status)
		h.mu.Unlock()
	}
}

// countingServerStream counts the messages a provider stream sends.
type countingServerStream struct {
	provider.Stream
	sends *atomic.Int64
}

func (s countingServerStream) SendMsg(m any) error {
	s.sends.Add(1)
	return s.Stream.SendMsg(m)
}

// countingClientStream counts the messages a consumer stream receives.
type countingClientStream struct {
	consumer.ClientStream
	recvs *atomic.Int64
}

func (s countingClientStream) RecvMsg(m any) error {
	err := s.ClientStream.RecvMsg(m)
	if err == nil {
		s.recvs.Add(1)
	}
	return err
}

// Stream interceptors on both ends see each stream and may wrap it; stats
// handlers see each stream as one RPC, however many messages it carries.
func TestStreamInterceptorsAndStats(t *testing.T) {
	var serverSends, clientRecvs, opens atomic.Int64
	var seen sync.Map // method → kind, as the provider's interceptor saw it
	serverIc := func(ctx context.Context, info *provider.StreamInfo, s provider.Stream, next provider.StreamHandler) error {
		seen.Store(info.Method, info.Kind)
		return next(ctx, countingServerStream{s, &serverSends})
	}
	clientIc := func(ctx context.Context, desc *consumer.StreamDesc, open consumer.Streamer) (consumer.ClientStream, error) {
		opens.Add(1)
		s, err := open(ctx, desc)
		if err != nil {
			return nil, err
		}
		return countingClientStream{s, &clientRecvs}, nil
	}
	serverStats, clientStats := newStreamStats(), newStreamStats()
	_, _, addr := serveStreams(t, provider.WithStreamInterceptors(serverIc), provider.WithStatsHandler(serverStats))
	c := dialStreams(t, addr, consumer.WithStreamInterceptors(clientIc), consumer.WithStatsHandler(clientStats))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for range 3 {
		s, err := consumer.OpenServerStream[int](ctx, c, "Streams.Count", CountArgs{N: 10})
		if err != nil {
			t.Fatal(err)
		}
		for {
			if _, err := s.Recv(); err == io.EOF {
				break
			} else if err != nil {
				t.Fatal(err)
			}
		}
	}
	if opens.Load() != 3 || clientRecvs.Load() != 30 || serverSends.Load() != 30 {
		t.Fatalf("client interceptor saw %d opens and %d messages, server interceptor %d messages; want 3, 30, 30", opens.Load(), clientRecvs.Load(), serverSends.Load())
	}
	if k, _ := seen.Load("Streams.Count"); k != reflection.ServerStream {
		t.Fatalf("the provider's interceptor saw kind %v", k)
	}
	waitFor(t, "the server's stats to end", func() bool {
		serverStats.mu.Lock()
		defer serverStats.mu.Unlock()
		return len(serverStats.ends[stats.Request]) == 3
	})
	clientStats.mu.Lock()
	defer clientStats.mu.Unlock()
	serverStats.mu.Lock()
	defer serverStats.mu.Unlock()
	if clientStats.begins[stats.Call] != 3 || len(clientStats.ends[stats.Call]) != 3 || serverStats.begins[stats.Request] != 3 {
		t.Fatalf("client stats: %v begins, %v ends; server: %v begins, %v ends; want 3 streams each", clientStats.begins, clientStats.ends, serverStats.begins, serverStats.ends)
	}
	for _, st := range append(clientStats.ends[stats.Call], serverStats.ends[stats.Request]...) {
		if st != "ok" {
			t.Fatalf("a stream ended with status %q, want ok", st)
		}
	}
}

// Calling a stream method, or opening a stream on a unary method, is a bad
// request, not executed.
func TestStreamAndCallMismatchIsABadRequest(t *testing.T) {
	_, svc, addr := serveStreams(t)
	c := dialStreams(t, addr)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var n int
	if err := c.Call(ctx, "Streams.Echo", 1, &n); !errors.Is(err, consumer.ErrBadRequest) {
		t.Fatalf("Call of a bidi stream method: %v, want ErrBadRequest", err)
	}
	if err := c.Call(ctx, "Streams.Count", CountArgs{N: 1}, &n); !errors.Is(err, consumer.ErrBadRequest) {
		t.Fatalf("Call of a server stream method: %v, want ErrBadRequest", err)
	}
	if _, err := consumer.OpenServerStream[int](ctx, c, "Streams.Ping", 1); !errors.Is(err, consumer.ErrBadRequest) {
		t.Fatalf("a stream opened on a unary method: %v, want ErrBadRequest", err)
	}
	if _, err := consumer.OpenBidiStream[int, int](ctx, c, "Streams.Count"); !errors.Is(err, consumer.ErrBadRequest) {
		t.Fatalf("a bidi stream opened on a server stream method: %v, want ErrBadRequest", err)
	}
	if _, err := consumer.OpenClientStream[int, int](ctx, c, "Streams.Echo"); !errors.Is(err, consumer.ErrBadRequest) {
		t.Fatalf("a client stream opened on a bidi method: %v, want ErrBadRequest", err)
	}
	if _, err := consumer.OpenBidiStream[int, int](ctx, c, "Streams.Nope"); !errors.Is(err, consumer.ErrUnknownMethod) {
		t.Fatalf("a stream opened on an unknown method: %v, want ErrUnknownMethod", err)
	}
	if got := svc.started.Load(); got != 0 {
		t.Fatalf("%d stream methods ran", got)
	}
}

// recordingBalancer counts the outcomes reported to it.
type recordingBalancer struct {
	loadbalance.Balancer
	outcomes atomic.Int64
}

func (b *recordingBalancer) Pick(ctx context.Context) (*naming.Instance, func(error), error) {
	in, done, err := b.Balancer.Pick(ctx)
	if err != nil {
		return in, done, err
	}
	return in, func(err error) { b.outcomes.Add(1); done(err) }, nil
}

// A ClientProxy stream reports its outcome to the balancer once, when it
// ends, not when it opens.
func TestProxyStreamReportsItsOutcomeWhenItEnds(t *testing.T) {
	reg := naming.NewMemory()
	defer reg.Close()
	serveStreams(t, provider.WithRegistry(reg, naming.Instance{Service: "streams"}))
	b := &recordingBalancer{Balancer: loadbalance.New(loadbalance.RoundRobin)}
	p, err := consumer.NewClientProxy("streams", reg, consumer.WithBalancer(func() loadbalance.Balancer { return b }))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s, err := consumer.OpenBidiStream[int, int](ctx, p, "Streams.Echo")
	if err != nil {
		t.Fatal(err)
	}
	one := 1
	if err := s.Send(&one); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Recv(); err != nil {
		t.Fatal(err)
	}
	if got := b.outcomes.Load(); got != 0 {
		t.Fatalf("%d outcomes reported while the stream is open, want 0", got)
	}
	s.CloseSend()
	if _, err := s.Recv(); err != io.EOF {
		t.Fatal(err)
	}
	waitFor(t, "the outcome", func() bool { return b.outcomes.Load() == 1 })
	s.Close() // ended already: reports nothing more
	if got := b.outcomes.Load(); got != 1 {
		t.Fatalf("%d outcomes reported for one stream", got)
	}
}

// The reflection service names each stream method's kind and describes its
// message types; HTTP/JSON refuses a stream method, not executed.
func TestReflectionAndHTTPKnowStreams(t *testing.T) {
	_, svc, addr := serveStreams(t)
	c := dialStreams(t, addr)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var list reflection.ListResponse
	if err := c.Call(ctx, reflection.ListMethod, &reflection.ListRequest{}, &list); err != nil {
		t.Fatal(err)
	}
	kinds := map[string]reflection.Kind{}
	for _, s := range list.Services {
		for _, m := range s.Methods {
			kinds[s.Name+"."+m.Name] = m.Kind
		}
	}
	want := map[string]reflection.Kind{"Streams.Count": reflection.ServerStream, "Streams.Stall": reflection.ClientStream, "Streams.Echo": reflection.BidiStream, "Streams.Ping": reflection.Unary}
	for m, k := range want {
		if kinds[m] != k {
			t.Errorf("List says %s is %q, want %q", m, kinds[m], k)
		}
	}
	var d reflection.DescribeResponse
	if err := c.Call(ctx, reflection.DescribeMethod, &reflection.DescribeRequest{Method: "Streams.Echo"}, &d); err != nil {
		t.Fatal(err)
	}
	if d.Kind != reflection.BidiStream || d.ArgsType != "int" || d.ReplyType != "int" {
		t.Fatalf("Describe(Streams.Echo): kind %q, args %q, reply %q", d.Kind, d.ArgsType, d.ReplyType)
	}
	resp, err := http.Post("http://"+addr+"/Streams.Count", "application/json", strings.NewReader(`{"N":3}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || svc.started.Load() != 0 {
		t.Fatalf("HTTP POST of a stream method: %s, %d methods ran; want 400 Bad Request, none", resp.Status, svc.started.Load())
	}
}

// attemptStats records the stream attempts and calls a ClientProxy's stats
// handler sees.
type attemptStats struct {
	stats.Base
	mu       sync.Mutex
	begun    map[stats.Kind]int
	attempts []stats.RPCInfo // ended attempts, in order
	statuses []string        // their end statuses
	calls    []string        // ended calls' statuses
}

func (h *attemptStats) RPCBegin(ctx context.Context, info *stats.RPCInfo) context.Context {
	h.mu.Lock()
	h.begun[info.Kind]++
	h.mu.Unlock()
	return ctx
}

func (h *attemptStats) RPCEnd(ctx context.Context, info *stats.RPCInfo, end *stats.RPCEnd) {
	h.mu.Lock()
	defer h.mu.Unlock()
	switch info.Kind {
	case stats.Attempt:
		h.attempts = append(h.attempts, *info)
		h.statuses = append(h.statuses, end.Status)
	case stats.Call:
		h.calls = append(h.calls, end.Status)
	}
}

// A ClientProxy's stream is one call of one or more attempts for its stats
// handlers, as a unary call is: an open refused "not executed" is an
// attempt that ended refused on that instance, the open on the next
// instance is the retry, and it ends when the stream ends.
func TestProxyStreamAttemptsInStats(t *testing.T) {
	reg := naming.NewMemory()
	defer reg.Close()
	refuse := func(ctx context.Context, info *provider.StreamInfo, s provider.Stream, next provider.StreamHandler) error {
		return provider.Refuse(protocol.StatusOverloaded, errors.New("busy"))
	}
	in := naming.Instance{Service: "streams"}
	_, busy, busyAddr := serveStreams(t, provider.WithRegistry(reg, in), provider.WithStreamInterceptors(refuse))
	_, ok, okAddr := serveStreams(t, provider.WithRegistry(reg, in))
	h := &attemptStats{begun: map[stats.Kind]int{}}
	p, err := consumer.NewClientProxy("streams", reg, consumer.WithLoadBalance(loadbalance.RoundRobin), consumer.WithStatsHandler(h))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	waitFor(t, "both instances listed", func() bool { return len(p.Instances()) == 2 })
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const streams = 6
	for range streams {
		s, err := consumer.OpenServerStream[int](ctx, p, "Streams.Count", CountArgs{N: 2})
		if err != nil {
			t.Fatal(err)
		}
		for {
			if _, err := s.Recv(); err == io.EOF {
				break
			} else if err != nil {
				t.Fatal(err)
			}
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.calls) != streams || h.begun[stats.Call] != streams || ok.started.Load() != streams || busy.started.Load() != 0 {
		t.Fatalf("%d calls ended (%d begun), the open instance ran %d streams, the busy one %d; want %d, %d, %d, 0",
			len(h.calls), h.begun[stats.Call], ok.started.Load(), busy.started.Load(), streams, streams, streams)
	}
	refused := 0
	for i, a := range h.attempts {
		a.Addr = strings.TrimPrefix(a.Addr, "tcp@")
		h.attempts[i].Addr = a.Addr
		switch {
		case !a.Stream:
			t.Errorf("attempt %d is not marked a stream: %+v", i, a)
		case a.Addr == busyAddr:
			refused++
			if h.statuses[i] != "overloaded" || a.Attempt != 1 {
				t.Errorf("attempt %d on the busy instance: #%d ended %q, want #1 overloaded", i, a.Attempt, h.statuses[i])
			}
		case a.Addr == okAddr:
			if h.statuses[i] != "ok" {
				t.Errorf("attempt %d on the open instance ended %q, want ok", i, h.statuses[i])
			}
		default:
			t.Errorf("attempt %d on %q, an instance that does not exist", i, a.Addr)
		}
	}
	if refused == 0 || len(h.attempts) != streams+refused || h.begun[stats.Attempt] != len(h.attempts) {
		t.Fatalf("%d attempts ended (%d begun), %d of them refused, for %d streams", len(h.attempts), h.begun[stats.Attempt], refused, streams)
	}
	for i, a := range h.attempts {
		if a.Addr == okAddr && i > 0 && h.attempts[i-1].Addr == busyAddr && (a.Attempt != 2 || !a.Retry) {
			t.Errorf("the open after a refusal is attempt #%d (retry %v), want #2, a retry", a.Attempt, a.Retry)
		}
	}
}
