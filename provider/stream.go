package provider

import (
	"context"
	"errors"
	"fmt"
	"io"
	"reflect"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shoalrpc/shoal/internal/engine"
	"github.com/shoalrpc/shoal/internal/stream"
	"github.com/shoalrpc/shoal/protocol"
	"github.com/shoalrpc/shoal/reflection"
)

// DefaultMaxStreams is how many streams one connection may have open at
// once unless WithMaxStreams says otherwise. With protocol.StreamWindow
// bytes of window each way, a connection's streams hold at most
// DefaultMaxStreams × 64 KiB (64 MiB) of received messages their methods
// have not taken.
const DefaultMaxStreams = 1024

// WithMaxStreams limits the streams open at once on one connection (default
// DefaultMaxStreams). A stream opened past it is refused "overloaded", not
// executed. Streams also count against WithMaxConcurrent, as requests.
func WithMaxStreams(n int) Option {
	return func(o *options) {
		if n <= 0 {
			o.invalid("WithMaxStreams", n, "must be at least 1")
			return
		}
		o.maxStreams = n
	}
}

// WithStreamWindow sets the receive window of each stream's messages from
// the caller (client and bidirectional streams), in bytes: at least
// protocol.StreamWindow (64 KiB, the default), at most
// protocol.MaxWindowCredit. A caller sends at most this much ahead of what
// the method has taken, so one stream moves at most a window per round
// trip: widen it for fast streams over long links. A stalled method holds
// up to a window per stream: WithMaxStreams × the window per connection.
func WithStreamWindow(n int) Option {
	return func(o *options) {
		if n < protocol.StreamWindow || n > protocol.MaxWindowCredit {
			o.invalid("WithStreamWindow", n, fmt.Sprintf("must be from %d (protocol.StreamWindow) to %d bytes", protocol.StreamWindow, protocol.MaxWindowCredit))
			return
		}
		o.streamWindow = int64(n)
	}
}

// ErrStreamAborted is what a stream method's Send and Recv return once its
// stream was reset: the caller gave up (its context ended, or it closed the
// stream) or the server shut down before the method returned. The method's
// context has ended too.
var ErrStreamAborted = errors.New("provider: stream aborted")

// Stream is a stream as interceptors see it: messages of any type. The
// method's typed stream (ServerStream, ClientStream, BidiStream) sends and
// receives through the Stream its interceptors passed on.
type Stream interface {
	// Context is the stream's context: the caller's deadline and metadata,
	// ended when the caller gives up or the connection ends.
	Context() context.Context
	// SendMsg sends m, a pointer to the method's reply type, waiting for
	// the caller's window.
	SendMsg(m any) error
	// RecvMsg decodes the caller's next message into m, a pointer to the
	// method's argument type; io.EOF once the caller has closed its side.
	RecvMsg(m any) error
}

// StreamInfo describes the stream a stream interceptor wraps.
type StreamInfo struct {
	Method  string          // "Service.Method"
	Service string          // "Service"
	Name    string          // "Method"
	Kind    reflection.Kind // server_stream, client_stream or bidi_stream
	Args    any             // a server stream's decoded arguments; nil for the others
	Peer    Peer            // the caller
}

// StreamHandler is what a stream interceptor wraps: the rest of the chain
// and, at its end, the method.
type StreamHandler func(ctx context.Context, s Stream) error

// StreamInterceptor runs around a stream method, as an Interceptor runs
// around a unary one: it may wrap the stream (count or log messages), enrich
// the context, or refuse the stream by returning an error without calling
// next — the caller then learns that the stream was refused, not executed
// (with the status of a Refusal, or protocol.StatusRefused). An error
// returned after next ran ends the stream as the method's own error.
type StreamInterceptor func(ctx context.Context, info *StreamInfo, s Stream, next StreamHandler) error

// WithStreamInterceptors adds interceptors around every stream method, in
// order: the first given is the outermost. Several calls add to the chain.
func WithStreamInterceptors(ics ...StreamInterceptor) Option {
	return func(o *options) {
		for _, ic := range ics {
			if ic != nil {
				o.streamIcs = append(o.streamIcs, ic)
			}
		}
	}
}

// chainStream makes one stream interceptor of many, the first outermost.
func chainStream(ics []StreamInterceptor) StreamInterceptor {
	switch len(ics) {
	case 0:
		return nil
	case 1:
		return ics[0]
	}
	return func(ctx context.Context, info *StreamInfo, s Stream, final StreamHandler) error {
		return ics[0](ctx, info, s, nextStream(ics[1:], info, final))
	}
}

func nextStream(ics []StreamInterceptor, info *StreamInfo, final StreamHandler) StreamHandler {
	if len(ics) == 0 {
		return final
	}
	return func(ctx context.Context, s Stream) error {
		return ics[0](ctx, info, s, nextStream(ics[1:], info, final))
	}
}

// authStreamInterceptor is WithAuth for streams.
func authStreamInterceptor(auth AuthFunc) StreamInterceptor {
	return func(ctx context.Context, info *StreamInfo, s Stream, next StreamHandler) error {
		if err := auth(ctx, info.Method, Metadata(ctx)); err != nil {
			return Refuse(protocol.StatusUnauthenticated, err)
		}
		return next(ctx, s)
	}
}

// ServerStream is the sending end of a server stream, as its method gets
// it:
//
//	func (t *T) Count(ctx context.Context, args *A, s *provider.ServerStream[R]) error
//
// The stream ends when the method returns: cleanly with nil, with the
// method's error otherwise (the caller receives it as a
// *consumer.ServiceError).
type ServerStream[R any] struct{ c *streamCore }

// Send sends one message, waiting while the caller's window is full (the
// caller has not taken what was sent). It returns ErrStreamAborted (and
// the context's error) once the caller gave up.
func (s *ServerStream[R]) Send(m *R) error { return s.c.msgs().SendMsg(m) }

// Context returns the stream's context.
func (s *ServerStream[R]) Context() context.Context { return s.c.ctx }

func (*ServerStream[R]) msgTypes() (in, out reflect.Type) { return nil, reflect.TypeFor[R]() }

// ClientStream is the receiving end of a client stream:
//
//	func (t *T) Sum(ctx context.Context, s *provider.ClientStream[A], reply *R) error
//
// The reply is sent when the method returns nil.
type ClientStream[A any] struct{ c *streamCore }

// Recv returns the caller's next message, waiting for it; io.EOF once the
// caller has sent everything (CloseSend).
func (s *ClientStream[A]) Recv() (*A, error) {
	m := new(A)
	if err := s.c.msgs().RecvMsg(m); err != nil {
		return nil, err
	}
	return m, nil
}

// Context returns the stream's context.
func (s *ClientStream[A]) Context() context.Context { return s.c.ctx }

func (*ClientStream[A]) msgTypes() (in, out reflect.Type) { return reflect.TypeFor[A](), nil }

// BidiStream is both ends of a bidirectional stream:
//
//	func (t *T) Echo(ctx context.Context, s *provider.BidiStream[A, R]) error
//
// Send and Recv may be used from different goroutines.
type BidiStream[A, R any] struct{ c *streamCore }

// Send sends one message; see ServerStream.Send.
func (s *BidiStream[A, R]) Send(m *R) error { return s.c.msgs().SendMsg(m) }

// Recv returns the caller's next message; see ClientStream.Recv.
func (s *BidiStream[A, R]) Recv() (*A, error) {
	m := new(A)
	if err := s.c.msgs().RecvMsg(m); err != nil {
		return nil, err
	}
	return m, nil
}

// Context returns the stream's context.
func (s *BidiStream[A, R]) Context() context.Context { return s.c.ctx }

func (*BidiStream[A, R]) msgTypes() (in, out reflect.Type) {
	return reflect.TypeFor[A](), reflect.TypeFor[R]()
}

// streamCore is one open stream on the server: what the typed streams and
// interceptors send and receive through.
type streamCore struct {
	c     *conn
	s     *stream.Stream
	rc    *requestContext // the stream's own context, which a reset or close cancels
	ctx   context.Context // what the method runs under: rc, as stats and interceptors made it
	codec protocol.Codec
	name  string
	via   Stream // what an interceptor passed on, if not this

	tooLarge atomic.Pointer[error] // set when a message over the body limit reset the stream
	compress protocol.Flags        // FlagCompress when the caller's open carried it: messages are compressed alike
}

func (sc *streamCore) msgs() Stream {
	if sc.via != nil {
		return sc.via
	}
	return sc
}

// Context implements Stream.
func (sc *streamCore) Context() context.Context { return sc.ctx }

// SendMsg implements Stream.
func (sc *streamCore) SendMsg(v any) error {
	if err := sc.ctx.Err(); err != nil {
		return sc.wrap(err)
	}
	buf := getBuffer()
	defer putBuffer(buf)
	// Messages are compressed alike when the caller's open asked for it
	// (consumer.WithCompression).
	m := protocol.Message{Header: protocol.Header{Kind: protocol.KindStreamData, Flags: sc.compress, Seq: sc.s.ID()}}
	frame, err := protocol.AppendFrameEncode((*buf)[:0], &m, sc.codec, v, sc.c.srv.opts.maxBody)
	*buf = frame
	if err != nil {
		return fmt.Errorf("provider: %s: send: %w", sc.name, err)
	}
	return sc.wrap(sc.s.Send(sc.ctx, frame))
}

// RecvMsg implements Stream.
func (sc *streamCore) RecvMsg(v any) error {
	msg, err := sc.s.Recv(sc.ctx)
	if err != nil {
		return sc.wrap(err)
	}
	codec, err := protocol.CodecByID(msg.Codec)
	if err == nil {
		err = codec.Decode(msg.Payload, v)
	}
	sc.s.Recycle(msg.Payload) // decoded: the codecs copy what they keep
	if err != nil {
		return fmt.Errorf("provider: %s: decode a message: %w", sc.name, err)
	}
	return nil
}

// wrap says why a stream operation failed: io.EOF and nil as they are.
func (sc *streamCore) wrap(err error) error {
	if err == nil || errors.Is(err, io.EOF) {
		return err
	}
	if tl := sc.tooLarge.Load(); tl != nil { // says more than the context it cancelled
		return fmt.Errorf("%w: %s: %w", ErrStreamAborted, sc.name, *tl)
	}
	if cerr := sc.ctx.Err(); cerr != nil {
		return fmt.Errorf("%w: %s: %w", ErrStreamAborted, sc.name, cerr)
	}
	return fmt.Errorf("%w: %s: %w", ErrStreamAborted, sc.name, err)
}

// handleStream admits a request that opens a stream and starts its method.
// The stream is accepted (a response with status OK) once the interceptors
// let the method start; before that it may still be refused, not executed.
func (c *conn) handleStream(m *protocol.Message) {
	s := c.srv
	st := c.beginRequest(m)
	if st != nil {
		st.info.Stream = true
	}
	if status := c.admit(); status != protocol.StatusOK {
		c.refuse(st, m.Seq, false, status, m.Method+" not executed")
		return
	}
	mt := c.resolve(m, st, false)
	switch {
	case mt == nil:
		return
	case mt.callKind == reflection.Unary:
		c.refuse(st, m.Seq, false, protocol.StatusBadRequest, m.Method+" is a unary method: call it, do not open a stream")
		return
	case wireShape(mt.callKind) != protocol.StreamShape(m.Status):
		c.refuse(st, m.Seq, false, protocol.StatusBadRequest, fmt.Sprintf("%s is a %s method, opened as a %s", m.Method, mt.callKind, kindOf(protocol.StreamShape(m.Status))))
		return
	}
	codec, err := protocol.CodecByID(m.Codec)
	if err != nil {
		c.refuse(st, m.Seq, false, protocol.StatusBadRequest, err.Error())
		return
	}
	var argPtr any
	var arg reflect.Value
	if mt.callKind == reflection.ServerStream {
		argPtr, arg = mt.newArg()
		if err := codec.Decode(m.Payload, argPtr); err != nil {
			c.refuse(st, m.Seq, false, protocol.StatusBadRequest, "decode "+m.Method+" args: "+err.Error())
			return
		}
	}
	ctx := c.requestContextOf(m)
	sc := &streamCore{c: c, rc: ctx, ctx: ctx, codec: codec, name: mt.name, compress: m.Flags & protocol.FlagCompress}
	sc.s = stream.New(m.Seq, c.writeStreamFrame)
	c.mu.Lock()
	if c.running == nil { // closed while this request was decoded
		c.mu.Unlock()
		c.release(1)
		return
	}
	c.running[m.Seq] = ctx
	c.mu.Unlock()
	if err := c.e.AddStream(m.Seq, sc, s.opts.maxStreams); err != nil {
		c.mu.Lock()
		if c.running != nil {
			delete(c.running, m.Seq)
		}
		c.mu.Unlock()
		ctx.cancel()
		if !errors.Is(err, engine.ErrTooManyStreams) { // closed meanwhile
			c.release(1)
			return
		}
		c.refuse(st, m.Seq, false, protocol.StatusOverloaded,
			fmt.Sprintf("%s not executed: the connection has %d streams open, its limit (WithMaxStreams)", m.Method, s.opts.maxStreams))
		return
	}
	go c.runStream(sc, mt, argPtr, arg, st)
}

// wireShape is the wire's name for a stream kind.
func wireShape(k reflection.Kind) protocol.StreamShape {
	switch k {
	case reflection.ServerStream:
		return protocol.ServerStream
	case reflection.ClientStream:
		return protocol.ClientStream
	case reflection.BidiStream:
		return protocol.BidiStream
	}
	return 0
}

// kindOf is a stream shape's kind.
func kindOf(s protocol.StreamShape) reflection.Kind {
	switch s {
	case protocol.ServerStream:
		return reflection.ServerStream
	case protocol.ClientStream:
		return reflection.ClientStream
	}
	return reflection.BidiStream
}

// writeStreamFrame queues a stream frame that counts for nothing in flight.
func (c *conn) writeStreamFrame(frame []byte) error {
	return c.e.Write(frame, false)
}

// runStream runs a stream method through the stream interceptors, then ends
// the stream with the method's outcome: a clean end, the method's error, or
// (when the interceptors refused it) a not-executed refusal. The stream
// counts in flight until its end is written.
func (c *conn) runStream(sc *streamCore, mt *method, argPtr any, arg reflect.Value, st *requestStats) {
	seq := sc.s.ID()
	var ctx context.Context = sc.ctx
	if st != nil {
		ctx = st.begin(c.srv.opts.stats, ctx)
	}
	ran := false
	var reply reflect.Value
	final := func(ctx context.Context, s Stream) error {
		ran = true
		if s != Stream(sc) {
			sc.via = s
		}
		sc.ctx = ctx
		// Accepted: the caller's open returns, and its messages may come.
		c.send(&protocol.Message{Header: protocol.Header{Kind: protocol.KindResponse, Seq: seq}}, false)
		if w := c.srv.opts.streamWindow; w > 0 && mt.callKind != reflection.ServerStream {
			sc.s.Widen(w) // after the accept: the caller routes the stream's frames by now
		}
		if mt.reply != nil {
			reply = mt.newReply()
		}
		return mt.callStream(ctx, arg, mt.newStream(sc), reply)
	}
	var err error
	if ic := c.srv.streamIntercept; ic != nil {
		err = c.interceptStream(ctx, ic, sc, mt, argPtr, final)
	} else {
		err = final(ctx, sc)
	}
	if err == nil && reply.IsValid() { // a client stream's reply, before its end
		err = sc.SendMsg(reply.Interface())
	}
	c.e.RemoveStream(seq)
	c.mu.Lock()
	delete(c.running, seq)
	c.mu.Unlock()
	sc.rc.cancel()

	status, text := protocol.StatusOK, ""
	switch {
	case !ran && err != nil:
		status, text = refusalStatus(err), err.Error()
	case err != nil && isPanic(err):
		c.srv.opts.logger.Error("provider: stream method panicked", "method", mt.name, "remote", c.nc.RemoteAddr(), "err", err, "stack", string(panicStack(err)))
		status, text = protocol.StatusInternal, err.Error()
	case err != nil:
		status, text = protocol.StatusServiceError, err.Error()
	}
	sent := 0
	if !ran {
		sent = c.fail(seq, false, status, text) // refused: a response, as for a call
	} else {
		end := protocol.Message{Header: protocol.Header{Kind: protocol.KindStreamEnd, Status: status, Seq: seq}}
		if status != protocol.StatusOK {
			end.Flags, end.Payload = protocol.FlagError, []byte(text)
		}
		buf := getBuffer()
		frame, ferr := protocol.AppendFrame((*buf)[:0], &end, c.srv.opts.maxBody)
		if ferr != nil { // an error text past the body limit: cut it
			end.Payload = end.Payload[:min(len(end.Payload), 1024)]
			frame, _ = protocol.AppendFrame((*buf)[:0], &end, 0)
		}
		wrote, _ := sc.s.CloseSend(frame, func(f []byte) error { c.write(f, true); return nil })
		*buf = frame
		putBuffer(buf)
		if wrote {
			sent = len(frame)
		} else {
			c.release(1) // reset or cut: no end goes out
			// The caller gave up, or Shutdown reset the stream: whatever
			// the method returned then, the stream was aborted, not failed.
			status = protocol.StatusAborted
		}
		sc.s.Fail(errStreamOver)
	}
	if st != nil {
		st.end(c.srv.opts.stats, status, err, sent)
	}
}

// errStreamOver fails what is left of a stream whose method returned.
var errStreamOver = errors.New("provider: the stream's method has returned")

// interceptStream runs the stream interceptors around final; a panic in one
// is answered as a method's panic is.
func (c *conn) interceptStream(ctx context.Context, ic StreamInterceptor, sc *streamCore, mt *method, argPtr any, final StreamHandler) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = &panicError{value: r, stack: debug.Stack()}
		}
	}()
	name := mt.name
	dot := strings.IndexByte(name, '.')
	info := &StreamInfo{Method: name, Service: name[:dot], Name: name[dot+1:], Kind: mt.callKind, Args: argPtr,
		Peer: Peer{Addr: c.nc.RemoteAddr(), TLS: c.tlsState()}}
	return ic(ctx, info, sc, final)
}

// The engine routes the stream's frames: data and window frames to Flow,
// the rest to the methods below (engine.Stream).

// Flow implements engine.Stream.
func (sc *streamCore) Flow() *stream.Stream { return sc.s }

// PeerEnded implements engine.Stream: the caller has sent everything.
func (sc *streamCore) PeerEnded(*protocol.Message) { sc.s.PeerEnded(nil, false) }

// PeerReset implements engine.Stream: the caller gave up; the method's
// context ends.
func (sc *streamCore) PeerReset(*protocol.Message) {
	sc.s.Fail(errors.New("the caller reset the stream"))
	sc.rc.cancel()
}

// ConnClosed implements engine.Stream (the engine's Closed hook, conn.closed,
// ends the method's context).
func (sc *streamCore) ConnClosed(error) { sc.s.Fail(errConnClosed) }

// TooLarge implements engine.Stream: a message from the caller was over
// WithMaxBodySize; the stream was reset, and the method's context ends.
func (sc *streamCore) TooLarge(e *protocol.TooLargeError) {
	err := fmt.Errorf("a message of %d bytes is over the server's limit of %d bytes (WithMaxBodySize); the stream was reset", e.Header.BodyLen, e.Limit)
	sc.tooLarge.Store(&err)
	sc.s.Fail(err)
	sc.rc.cancel()
}

// abortStreams resets the streams still open on conns when Shutdown's
// context has ended, and gives each connection at most the drain grace to
// write the resets before it is closed, so that their callers read "aborted"
// rather than a closed connection (both say: maybe executed).
func (s *Server) abortStreams(conns []*conn) {
	var wg sync.WaitGroup
	for _, c := range conns {
		if c.openStreams() == 0 {
			continue
		}
		wg.Go(func() {
			c.abortStreams("the server shut down before the stream ended")
			c.awaitWritten(s.opts.drainGrace)
		})
	}
	wg.Wait()
}

// awaitWritten waits until every frame queued on the connection has been
// written, at most d.
func (c *conn) awaitWritten(d time.Duration) {
	deadline := time.Now().Add(d)
	for c.e.Queued() > 0 && time.Now().Before(deadline) {
		select {
		case <-c.e.Done():
			return
		default:
		}
		time.Sleep(time.Millisecond) // a write in progress ends within the write timeout
	}
}

// abortStreams resets every open stream of the connection with
// StatusAborted (maybe executed): Shutdown's context ended before their
// methods returned. Their contexts end, and no end frame follows.
func (c *conn) abortStreams(why string) {
	for _, s := range c.e.OpenStreams() {
		sc := s.(*streamCore)
		if !sc.s.Fail(fmt.Errorf("%w: %s", ErrStreamAborted, why)) {
			continue
		}
		c.e.Reset(sc.s.ID(), protocol.StatusAborted, sc.name+": "+why+"; it may have run in part")
		sc.rc.cancel()
	}
}

// openStreams reports how many streams are open on the connection.
func (c *conn) openStreams() int { return c.e.Streams() }
