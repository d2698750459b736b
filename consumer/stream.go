package consumer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/shoalrpc/shoal/internal/stream"
	"github.com/shoalrpc/shoal/naming"
	"github.com/shoalrpc/shoal/protocol"
	"github.com/shoalrpc/shoal/stats"
)

// Stream errors, testable with errors.Is; see also ErrStreamAborted.
var (
	// ErrStreamClosed: Send after CloseSend or Close, or after the server
	// ended the stream (Recv then returns the stream's outcome).
	ErrStreamClosed = errors.New("shoal: stream closed")
	// ErrStreamAborted: the server reset the stream while its method ran
	// (it shut down before the method returned). Maybe executed.
	ErrStreamAborted = errors.New("shoal: stream aborted by the server")
)

// StreamKind says which of the three stream shapes a stream has.
type StreamKind uint8

// Stream kinds.
const (
	ServerStreaming = StreamKind(protocol.ServerStream) // one message of arguments, a stream of replies
	ClientStreaming = StreamKind(protocol.ClientStream) // a stream of arguments, one reply
	BidiStreaming   = StreamKind(protocol.BidiStream)   // a stream each way
)

// String returns the kind's name as package reflection spells it.
func (k StreamKind) String() string {
	switch k {
	case ServerStreaming:
		return "server_stream"
	case ClientStreaming:
		return "client_stream"
	case BidiStreaming:
		return "bidi_stream"
	}
	return "stream(?)"
}

// StreamOpener opens streams: *Client opens them on its connection,
// *ClientProxy on one instance it picks when the stream opens.
type StreamOpener interface {
	openStream(ctx context.Context, method string, kind StreamKind, args any) (*clientStream, error)
}

// StreamDesc describes a stream being opened, for stream interceptors.
type StreamDesc struct {
	Method string     // "Service.Method"
	Kind   StreamKind // its shape
	Args   any        // a server stream's arguments; nil for the others
}

// Streamer opens a stream: what a stream interceptor wraps.
type Streamer func(ctx context.Context, desc *StreamDesc) (ClientStream, error)

// StreamInterceptor runs around the opening of a stream: it sees the
// context and the stream's description, may refuse it (return an error
// without calling open), and may wrap the stream it returns, to watch its
// messages or its end.
type StreamInterceptor func(ctx context.Context, desc *StreamDesc, open Streamer) (ClientStream, error)

// ClientStream is an open stream as interceptors see it: messages of any
// type. The typed streams (RecvStream, SendStream, BidiStream) send and
// receive through it.
type ClientStream interface {
	// SendMsg sends m, waiting for the server's window.
	SendMsg(m any) error
	// RecvMsg decodes the next message into m (a pointer); io.EOF at a
	// clean end, the method's error (*ServiceError) otherwise.
	RecvMsg(m any) error
	// CloseSend says the caller has sent everything.
	CloseSend() error
	// Close abandons the stream (the server's method sees its context
	// end) unless it has ended already; it is safe to call more than once.
	Close() error
}

// WithStreamInterceptors adds interceptors around the opening of every
// stream, in order, the first outermost. On a ClientProxy they run once per
// stream, around its opens on each instance tried.
func WithStreamInterceptors(ics ...StreamInterceptor) DialOption {
	return dialOption(func(o *options) {
		for _, ic := range ics {
			if ic != nil {
				o.streamIcs = append(o.streamIcs, ic)
			}
		}
	})
}

// open opens a stream through the stream interceptors of o.
func open(ctx context.Context, ics []StreamInterceptor, desc *StreamDesc, final Streamer) (ClientStream, error) {
	if len(ics) == 0 {
		return final(ctx, desc)
	}
	return ics[0](ctx, desc, func(ctx context.Context, desc *StreamDesc) (ClientStream, error) {
		return open(ctx, ics[1:], desc, final)
	})
}

// OpenServerStream opens a server stream: the method receives args once and
// sends a stream of replies, which Recv returns, then io.EOF. The stream
// lives until it ends, Close, or ctx ends (which resets it: the method's
// context ends too).
func OpenServerStream[R any](ctx context.Context, o StreamOpener, method string, args any) (*RecvStream[R], error) {
	s, err := openVia(ctx, o, &StreamDesc{Method: method, Kind: ServerStreaming, Args: args})
	if err != nil {
		return nil, err
	}
	return &RecvStream[R]{s: s}, nil
}

// OpenClientStream opens a client stream: Send sends messages, CloseAndRecv
// says that was all and returns the method's reply.
func OpenClientStream[A, R any](ctx context.Context, o StreamOpener, method string) (*SendStream[A, R], error) {
	s, err := openVia(ctx, o, &StreamDesc{Method: method, Kind: ClientStreaming})
	if err != nil {
		return nil, err
	}
	return &SendStream[A, R]{s: s}, nil
}

// OpenBidiStream opens a bidirectional stream: Send and Recv may be used
// at once, from two goroutines.
func OpenBidiStream[A, R any](ctx context.Context, o StreamOpener, method string) (*BidiStream[A, R], error) {
	s, err := openVia(ctx, o, &StreamDesc{Method: method, Kind: BidiStreaming})
	if err != nil {
		return nil, err
	}
	return &BidiStream[A, R]{s: s}, nil
}

// openVia opens a stream on o through its stream interceptors.
func openVia(ctx context.Context, o StreamOpener, desc *StreamDesc) (ClientStream, error) {
	if o == nil {
		return nil, fmt.Errorf("%w: open stream %s: no client", ErrBadRequest, desc.Method)
	}
	var ics []StreamInterceptor
	switch o := o.(type) {
	case *Client:
		if !o.opts.underProxy {
			ics = o.opts.streamIcs
		}
	case *ClientProxy:
		ics = o.opts.streamIcs
	}
	return open(ctx, ics, desc, func(ctx context.Context, desc *StreamDesc) (ClientStream, error) {
		cs, err := o.openStream(ctx, desc.Method, desc.Kind, desc.Args)
		if err != nil {
			return nil, err
		}
		return cs, nil
	})
}

// RecvStream is the caller's end of a server stream.
type RecvStream[R any] struct{ s ClientStream }

// Recv returns the next message, waiting for it: io.EOF once the method
// returned nil and every message was taken; the method's error (a
// *ServiceError), or what ended the stream, otherwise.
func (s *RecvStream[R]) Recv() (*R, error) {
	m := new(R)
	if err := s.s.RecvMsg(m); err != nil {
		return nil, err
	}
	return m, nil
}

// Close abandons the stream unless it has ended; see ClientStream.Close.
func (s *RecvStream[R]) Close() error { return s.s.Close() }

// SendStream is the caller's end of a client stream.
type SendStream[A, R any] struct{ s ClientStream }

// Send sends one message, waiting while the server's window is full.
func (s *SendStream[A, R]) Send(m *A) error { return s.s.SendMsg(m) }

// CloseAndRecv says every message was sent and returns the method's reply
// (nil for a method without one), or its error.
func (s *SendStream[A, R]) CloseAndRecv() (*R, error) {
	if err := s.s.CloseSend(); err != nil {
		return nil, err
	}
	reply := new(R)
	err := s.s.RecvMsg(reply)
	if err == io.EOF {
		return nil, nil // the method has no reply
	}
	if err != nil {
		return nil, err
	}
	var extra R
	if err := s.s.RecvMsg(&extra); err != io.EOF {
		if err == nil {
			err = fmt.Errorf("%w: a client stream's method sent more than one reply", ErrBadRequest)
		}
		return nil, err
	}
	return reply, nil
}

// Close abandons the stream unless it has ended; see ClientStream.Close.
func (s *SendStream[A, R]) Close() error { return s.s.Close() }

// BidiStream is the caller's end of a bidirectional stream.
type BidiStream[A, R any] struct{ s ClientStream }

// Send sends one message, waiting while the server's window is full.
func (s *BidiStream[A, R]) Send(m *A) error { return s.s.SendMsg(m) }

// Recv returns the next message; see RecvStream.Recv.
func (s *BidiStream[A, R]) Recv() (*R, error) {
	m := new(R)
	if err := s.s.RecvMsg(m); err != nil {
		return nil, err
	}
	return m, nil
}

// CloseSend says every message was sent; Recv goes on until the method ends.
func (s *BidiStream[A, R]) CloseSend() error { return s.s.CloseSend() }

// Close abandons the stream unless it has ended; see ClientStream.Close.
func (s *BidiStream[A, R]) Close() error { return s.s.Close() }

// clientStream is one stream of a Client's connection.
type clientStream struct {
	c       *Client
	method  string
	kind    StreamKind // its values are protocol.StreamShape's, sent with the open
	ctx     context.Context
	s       *stream.Stream
	codec   protocol.Codec
	endMu   sync.Mutex
	ended   bool
	endErr  error         // the outcome, once ended
	unwatch func() bool   // stops watching ctx
	onEnd   []func(error) // told the stream's outcome once: the balancer, stats
}

// whenEnded calls f with the stream's outcome when it ends, or at once if it
// has ended already (the server may end a stream before its open returns).
func (cs *clientStream) whenEnded(f func(error)) {
	cs.endMu.Lock()
	if cs.ended {
		err := cs.endErr
		cs.endMu.Unlock()
		f(err)
		return
	}
	cs.onEnd = append(cs.onEnd, f)
	cs.endMu.Unlock()
}

// openStream opens a stream on the connection: it sends the open request
// and waits for the server to accept or refuse it.
func (c *Client) openStream(ctx context.Context, method string, kind StreamKind, args any) (*clientStream, error) {
	var st *callStats
	if len(c.opts.stats) > 0 && !c.opts.underProxy {
		st, ctx = beginStats(ctx, c.opts.stats, stats.RPCInfo{Kind: stats.Call, Method: method, Addr: c.addr, Codec: c.opts.codec.Name(), Stream: true})
	}
	if kind != ServerStreaming {
		args = nil
	}
	cs := &clientStream{c: c, method: method, kind: kind, ctx: ctx, codec: c.opts.codec}
	cs.s = stream.New(0, c.writeStreamFrame)
	call := &Call{Method: method, Args: args, Done: make(chan *Call, 1), stream: cs}
	err := c.send(ctx, call, false, protocol.FlagStream)
	if err == nil {
		if err = c.wait(ctx, call); err != nil {
			c.removeStream(call.seq)
		}
	}
	if err != nil {
		err = fmt.Errorf("open stream: %w", err)
		st.end(ctx, err)
		return nil, err
	}
	if w := c.opts.streamWindow; w > 0 && kind != ClientStreaming {
		cs.s.Widen(w) // accepted: the server routes the stream's frames by now
	}
	if st != nil {
		cs.whenEnded(func(err error) { st.end(ctx, err) })
	}
	unwatch := context.AfterFunc(ctx, func() {
		cs.reset(fmt.Errorf("stream %s: %w", method, ctx.Err()))
	})
	cs.endMu.Lock()
	if cs.ended {
		cs.endMu.Unlock()
		unwatch()
	} else {
		cs.unwatch = unwatch
		cs.endMu.Unlock()
	}
	return cs, nil
}

// addStream has the engine route the frames of the stream a call opens,
// under its seq. c.mu must be held.
func (c *Client) addStream(call *Call) error {
	call.stream.s.SetID(call.seq)
	return c.e.AddStream(call.seq, call.stream, 0)
}

// removeStream forgets stream seq; it reports whether it was there.
func (c *Client) removeStream(seq uint64) bool { return c.e.RemoveStream(seq) }

// busy says whether calls wait for replies or streams are open: the
// keepalive then watches the connection for silence.
func (c *Client) busy() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.pending) > 0 || c.e.Streams() > 0
}

// writeStreamFrame queues a stream frame.
func (c *Client) writeStreamFrame(frame []byte) error {
	if err := c.e.Write(frame, false); err != nil {
		return fmt.Errorf("%w: %w", ErrConnClosed, err)
	}
	return nil
}

// The engine routes the stream's frames: data and window frames to Flow,
// the rest to the methods below (engine.Stream).

// Flow implements engine.Stream.
func (cs *clientStream) Flow() *stream.Stream { return cs.s }

// PeerEnded implements engine.Stream: the server's end, with the method's
// outcome.
func (cs *clientStream) PeerEnded(m *protocol.Message) {
	var err error
	if m.Flags&protocol.FlagError != 0 || m.Status != protocol.StatusOK {
		err = statusError(cs.method, m.Status, string(m.Payload))
	}
	// The outcome is reported (stats, the balancer) before Recv can return
	// it: a caller that has read the end sees the stream's stats ended.
	cs.c.removeStream(m.Seq)
	cs.finish(err)
	cs.s.PeerEnded(err, true)
}

// PeerReset implements engine.Stream.
func (cs *clientStream) PeerReset(m *protocol.Message) {
	cs.fail(statusError(cs.method, m.Status, string(m.Payload)))
}

// ConnClosed implements engine.Stream.
func (cs *clientStream) ConnClosed(cause error) {
	cs.fail(fmt.Errorf("stream %s: %w: %w", cs.method, ErrConnClosed, cause))
}

// TooLarge implements engine.Stream: a message from the server over
// WithMaxBodySize was skipped, and the stream reset.
func (cs *clientStream) TooLarge(e *protocol.TooLargeError) {
	cs.fail(fmt.Errorf("stream %s: %w: a message of %d bytes, over the client's limit of %d (WithMaxBodySize); the stream was reset",
		cs.method, ErrReplyTooLarge, e.Header.BodyLen, e.Limit))
}

// finish reports the stream's outcome, once, and stops watching its context.
func (cs *clientStream) finish(err error) {
	cs.endMu.Lock()
	if cs.ended {
		cs.endMu.Unlock()
		return
	}
	cs.ended, cs.endErr = true, err
	unwatch, onEnd := cs.unwatch, cs.onEnd
	cs.onEnd = nil
	cs.endMu.Unlock()
	if unwatch != nil {
		unwatch()
	}
	for _, f := range onEnd {
		f(err)
	}
}

// fail ends the stream with err, from the server's side or the connection's.
func (cs *clientStream) fail(err error) {
	cs.s.Fail(err)
	cs.c.removeStream(cs.s.ID())
	cs.finish(err)
}

// reset ends the stream from the caller's side: the server is told (its
// method's context ends) unless the stream is over already or its deadline
// passed.
func (cs *clientStream) reset(err error) {
	if !cs.c.removeStream(cs.s.ID()) {
		return // ended already
	}
	defer cs.c.closeIfDrained() // the server asked us to go away: this may have been the last stream
	cs.s.Fail(err)
	if errors.Is(err, context.DeadlineExceeded) {
		// The deadline travelled with the open: the server's copy ends the
		// method's context as ours ended, as for a call.
		cs.finish(err)
		return
	}
	cs.c.e.Reset(cs.s.ID(), protocol.StatusOK, "")
	cs.finish(err)
}

// SendMsg implements ClientStream.
func (cs *clientStream) SendMsg(v any) error {
	buf := getBuffer()
	defer putBuffer(buf)
	m := protocol.Message{Header: protocol.Header{Kind: protocol.KindStreamData, Seq: cs.s.ID()}}
	if cs.c.opts.compress {
		m.Flags = protocol.FlagCompress // compressed when large enough and smaller for it
	}
	frame, err := protocol.AppendFrameEncode((*buf)[:0], &m, cs.codec, v, cs.c.opts.maxBody)
	*buf = frame
	if err != nil {
		return fmt.Errorf("%w: stream %s: %w", ErrBadRequest, cs.method, err)
	}
	if err := cs.s.Send(cs.ctx, frame); err != nil {
		return cs.wrap(err)
	}
	return nil
}

// RecvMsg implements ClientStream.
func (cs *clientStream) RecvMsg(v any) error {
	msg, err := cs.s.Recv(cs.ctx)
	if err != nil {
		return cs.wrap(err)
	}
	codec, err := protocol.CodecByID(msg.Codec)
	if err == nil {
		err = codec.Decode(msg.Payload, v)
	}
	cs.s.Recycle(msg.Payload) // decoded: the codecs copy what they keep
	if err != nil {
		return fmt.Errorf("%w: stream %s: %w", ErrReplyDecode, cs.method, err)
	}
	return nil
}

// CloseSend implements ClientStream.
func (cs *clientStream) CloseSend() error {
	var b [protocol.HeaderSize + 3]byte
	frame, _ := protocol.AppendFrame(b[:0], &protocol.Message{Header: protocol.Header{Kind: protocol.KindStreamEnd, Seq: cs.s.ID()}}, 0)
	if _, err := cs.s.CloseSend(frame, nil); err != nil {
		return cs.wrap(err)
	}
	return nil
}

// Close implements ClientStream.
func (cs *clientStream) Close() error {
	cs.reset(fmt.Errorf("stream %s: %w", cs.method, ErrStreamClosed))
	return nil
}

// wrap says why a stream operation failed: io.EOF as it is; the caller's
// context's error when it has ended (the deadline travelled: the server's
// copy may have ended the method first, and its answer must not pass for
// the method's own error).
func (cs *clientStream) wrap(err error) error {
	if err == io.EOF {
		return err
	}
	if cerr := contextEnded(cs.ctx); cerr != nil {
		if errors.Is(err, cerr) {
			return err
		}
		return fmt.Errorf("stream %s: %w (server: %v)", cs.method, cerr, err)
	}
	if errors.Is(err, stream.ErrSendClosed) {
		return fmt.Errorf("stream %s: %w", cs.method, ErrStreamClosed)
	}
	return err
}

// openStream opens a stream on one instance: it picks one, and, while the
// open is refused without the method having run (not executed), tries
// another, as a call would. Once open, the stream stays on that instance;
// its outcome is reported to the balancer when it ends. Stats handlers see
// each instance tried as an attempt, as for a call.
func (p *ClientProxy) openStream(ctx context.Context, method string, kind StreamKind, args any) (*clientStream, error) {
	if p.closed.Load() {
		return nil, fmt.Errorf("open stream %s: %w", method, ErrProxyClosed)
	}
	var st *callStats
	if len(p.opts.stats) > 0 {
		st, ctx = beginStats(ctx, p.opts.stats, stats.RPCInfo{Kind: stats.Call, Method: method, Service: p.service, Codec: p.opts.codec.Name(), Stream: true})
	}
	var (
		state   = callState{method: method}
		plan    = retryPlan{action: tryOther}
		in      *naming.Instance
		lastErr error
		n       int // attempts
	)
	for {
		if err := sleep(ctx, plan.wait); err != nil {
			err = fmt.Errorf("open stream %s: %w (after: %w)", method, err, lastErr)
			st.end(ctx, err)
			return nil, err
		}
		next, done, err := p.pick(ctx, plan, in)
		if err != nil {
			if lastErr != nil {
				err = fmt.Errorf("%w (after: %w)", err, lastErr)
			}
			st.end(ctx, err)
			return nil, err
		}
		in = next
		n++
		// Each open is an attempt, as a call's are: tracing shows the
		// instance it went to, and the attempt carries the trace context.
		at, actx := beginStats(ctx, p.opts.stats, stats.RPCInfo{
			Kind: stats.Attempt, Method: method, Service: p.service, Addr: in.Addr,
			Attempt: n, Retry: n > 1, Codec: p.opts.codec.Name(), Stream: true,
		})
		var cs *clientStream
		c, err := p.pool.Get(actx, in.Addr)
		if err == nil {
			cs, err = c.openStream(actx, method, kind, args)
		}
		if err == nil {
			picked := in
			cs.whenEnded(func(err error) {
				p.observe(ctx, picked, done, err, classify(ctx, err))
				at.end(ctx, err)
				st.end(ctx, err)
			})
			return cs, nil
		}
		at.end(ctx, err)
		errKind := classify(ctx, err)
		p.observe(ctx, in, done, err, errKind)
		if errKind != kindNotExecuted { // a stream is retried only if nothing of it ran
			st.end(ctx, err)
			return nil, err
		}
		if plan = p.decide(errKind, in, &state, *p.healthy.Load()); plan.action == giveUp {
			st.end(ctx, err)
			return nil, err
		}
		lastErr = err
	}
}
