package provider

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"reflect"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shoalrpc/shoal/internal/batchwriter"
	"github.com/shoalrpc/shoal/protocol"
)

var errConnClosed = errors.New("provider: connection closed")

// conn is one client connection: a goroutine reads and decodes requests, each
// request runs on its own goroutine, and replies are coalesced by a batch
// writer.
type conn struct {
	srv    *Server
	nc     net.Conn
	ctx    context.Context // cancelled when the connection closes
	cancel context.CancelFunc
	w      *batchwriter.Writer

	wentAway  atomic.Bool
	closeOnce sync.Once
	overLimit bool         // past WithMaxConns: every request is refused
	inFlight  atomic.Int64 // this connection's requests read and not yet answered

	mu      sync.Mutex
	running map[uint64]*requestContext // requests a cancel frame or close can stop; nil once closed
}

func newConn(s *Server, nc net.Conn) *conn {
	ctx, cancel := context.WithCancel(context.Background())
	c := &conn{srv: s, nc: nc, ctx: ctx, cancel: cancel, running: make(map[uint64]*requestContext)}
	var w io.Writer = nc
	if s.opts.writeTimeout > 0 {
		w = deadlineWriter{nc, s.opts.writeTimeout}
	}
	// Replies are counted in flight until the write that carries them
	// returns; a peer that does not read can make us queue at most twice the
	// body limit before the connection is closed.
	c.w = batchwriter.New(w, c.release, 2*bodyLimit(s.opts.maxBody))
	return c
}

// deadlineWriter bounds every write to a connection.
type deadlineWriter struct {
	nc      net.Conn
	timeout time.Duration
}

func (d deadlineWriter) Write(p []byte) (int, error) {
	d.nc.SetWriteDeadline(time.Now().Add(d.timeout))
	return d.nc.Write(p)
}

func bodyLimit(n int) int {
	if n <= 0 {
		return protocol.DefaultMaxBodySize
	}
	return n
}

// admit counts a request in flight, on the server and on this connection,
// from the moment its frame is read, and says whether it may run. Counting
// comes first, so Shutdown either waits for this request or the request sees
// the flag and is refused. Every admitted request is released once, by
// release, when its reply has been flushed (or dropped with its connection).
func (c *conn) admit() protocol.Status {
	s := c.srv
	server := s.inFlight.Add(1)
	perConn := c.inFlight.Add(1)
	switch {
	case s.shuttingDown.Load():
		return protocol.StatusShuttingDown
	case c.overLimit,
		s.opts.maxPerServer > 0 && server > int64(s.opts.maxPerServer),
		s.opts.maxPerConn > 0 && perConn > int64(s.opts.maxPerConn):
		return protocol.StatusOverloaded
	}
	return protocol.StatusOK
}

// release ends n of this connection's requests' time in flight.
func (c *conn) release(n int) {
	c.inFlight.Add(-int64(n))
	c.srv.release(n)
}

// serve reads frames until the connection fails or closes. This is where a
// request frame is decoded and counted in flight.
func (c *conn) serve() {
	var cause error // why the connection ended, for the stats handlers
	c.connEvent(true, nil)
	defer func() {
		c.close()
		c.connEvent(false, cause)
	}()
	s := c.srv
	if tc, ok := c.nc.(*tls.Conn); ok {
		if err := c.handshake(tc); err != nil {
			s.opts.logger.Info("provider: TLS handshake failed", "remote", c.nc.RemoteAddr(), "err", err)
			return
		}
	}
	r := protocol.NewReader(c.nc, s.opts.maxBody)
	r.OnWait = func(started bool) {
		timeout := s.opts.idleTimeout
		if started {
			timeout = s.opts.readTimeout
		}
		deadline := time.Time{}
		if timeout > 0 {
			deadline = time.Now().Add(timeout)
		}
		c.nc.SetReadDeadline(deadline)
	}
	var m protocol.Message
	for {
		if err := r.Read(&m); err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) && c.ctx.Err() == nil {
				s.opts.logger.Info("provider: closing connection", "remote", c.nc.RemoteAddr(), "err", err)
				cause = err
			}
			return
		}
		switch {
		case m.Kind == protocol.KindRequest:
			c.handle(&m)
		case m.Kind == protocol.KindHeartbeat && m.Flags&protocol.FlagReply == 0:
			c.send(&protocol.Message{Header: protocol.Header{Kind: protocol.KindHeartbeat, Flags: protocol.FlagReply, Seq: m.Seq}}, false)
		case m.Kind == protocol.KindHeartbeat:
			// An answer to nothing we asked: ignore.
		case m.Kind == protocol.KindCancel:
			c.mu.Lock()
			rc := c.running[m.Seq]
			c.mu.Unlock()
			if rc != nil {
				rc.cancel()
			}
		default:
			s.opts.logger.Info("provider: closing connection", "remote", c.nc.RemoteAddr(), "err", "unexpected "+m.Kind.String()+" frame from a client")
			return
		}
	}
}

// handshake completes a TLS handshake within the read timeout.
func (c *conn) handshake(tc *tls.Conn) error {
	ctx := c.ctx
	if t := c.srv.opts.readTimeout; t > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, t)
		defer cancel()
	}
	return tc.HandshakeContext(ctx)
}

// handle admits one request, decodes its arguments while m's payload is
// valid, and hands it to a worker.
func (c *conn) handle(m *protocol.Message) {
	s := c.srv
	oneWay := m.Flags&protocol.FlagOneWay != 0
	st := c.beginRequest(m)
	if status := c.admit(); status != protocol.StatusOK {
		c.refuse(st, m.Seq, oneWay, status, m.Method+" not executed")
		return
	}
	mt, status := s.lookup(m.Method)
	if status == protocol.StatusBadRequest {
		c.refuse(st, m.Seq, oneWay, status, "method "+strconv.Quote(m.Method)+" is not of the form Service.Method")
		return
	}
	if status != protocol.StatusOK {
		c.refuse(st, m.Seq, oneWay, status, s.unknownMessage(m.Method, status))
		return
	}
	codec, err := protocol.CodecByID(m.Codec)
	if err != nil {
		c.refuse(st, m.Seq, oneWay, protocol.StatusBadRequest, err.Error())
		return
	}
	ptr, arg := mt.newArg()
	if err := codec.Decode(m.Payload, ptr); err != nil {
		c.refuse(st, m.Seq, oneWay, protocol.StatusBadRequest, "decode "+m.Method+" args: "+err.Error())
		return
	}
	// The request's context stands alone rather than hanging off the
	// connection's: close cancels it through c.running, and the request
	// avoids registering with (and locking) a parent shared by every request
	// of the connection.
	var deadline time.Time
	if m.Timeout > 0 {
		deadline = time.Now().Add(m.Timeout)
	}
	ctx := newRequestContext(deadline, m.Metadata, c)
	c.mu.Lock()
	if c.running == nil { // closed while this request was decoded
		c.mu.Unlock()
		ctx.cancel()
	} else {
		c.running[m.Seq] = ctx
		c.mu.Unlock()
	}
	s.dispatch(task{c: c, ctx: ctx, mt: mt, argPtr: ptr, arg: arg, seq: m.Seq, codec: codec, oneWay: oneWay, stats: st})
}

// task is an admitted request, decoded and ready to run.
type task struct {
	c      *conn
	ctx    *requestContext
	mt     *method
	argPtr any           // the decoded arguments, as interceptors see them
	arg    reflect.Value // the same, as the method takes them
	seq    uint64
	codec  protocol.Codec
	oneWay bool
	stats  *requestStats // nil without stats handlers
}

// run calls the method, through the interceptors if there are any, and
// sends its reply. This is where interceptors run.
func (t *task) run() {
	c, seq, oneWay := t.c, t.seq, t.oneWay
	var ctx context.Context = t.ctx
	if t.stats != nil {
		ctx = t.stats.begin(c.srv.opts.stats, ctx)
	}
	var (
		reply any
		err   error
		ran   = true
	)
	if ic := c.srv.intercept; ic != nil {
		reply, err, ran = t.intercepted(ctx, ic)
	} else {
		rv := t.mt.newReply()
		err = t.mt.call(ctx, t.arg, rv)
		reply = rv.Interface()
	}
	t.finish()
	status, sent := protocol.StatusOK, 0
	switch {
	case !ran && err != nil:
		status = refusalStatus(err)
		sent = c.fail(seq, oneWay, status, err.Error())
	case err != nil && isPanic(err):
		c.srv.opts.logger.Error("provider: method panicked", "method", t.mt.name, "remote", c.nc.RemoteAddr(), "err", err, "stack", string(panicStack(err)))
		status = protocol.StatusInternal
		sent = c.fail(seq, oneWay, status, err.Error())
	case err != nil:
		status = protocol.StatusServiceError
		sent = c.fail(seq, oneWay, status, err.Error())
	case oneWay:
		c.release(1)
	default:
		status, sent = c.reply(seq, t.codec, reply)
	}
	if t.stats != nil {
		t.stats.end(c.srv.opts.stats, status, err, sent)
	}
}

// intercepted runs the method inside the interceptor chain. ran says whether
// the chain reached the method: an error from a chain that did not is a
// refusal. A panic in an interceptor is answered as a method's panic is.
func (t *task) intercepted(ctx context.Context, ic Interceptor) (reply any, err error, ran bool) {
	defer func() {
		if r := recover(); r != nil {
			reply, err, ran = nil, &panicError{value: r, stack: debug.Stack()}, true
		}
	}()
	name := t.mt.name
	dot := strings.IndexByte(name, '.')
	info := &RequestInfo{Method: name, Service: name[:dot], Name: name[dot+1:], Peer: t.c.nc.RemoteAddr(), TLS: t.c.tlsState()}
	final := func(ctx context.Context, args any) (any, error) {
		ran = true
		arg := t.arg
		if args != t.argPtr { // an interceptor passed arguments of its own
			var ok bool
			if arg, ok = t.mt.argOf(args); !ok {
				return nil, fmt.Errorf("provider: an interceptor passed %T as the arguments of %s, which takes %s", args, name, t.mt.argType)
			}
		}
		rv := t.mt.newReply()
		err := t.mt.call(ctx, arg, rv)
		return rv.Interface(), err
	}
	reply, err = ic(ctx, info, t.argPtr, final)
	return reply, err, ran
}

// panicStack returns the stack of a method's panic.
func panicStack(err error) []byte {
	var p *panicError
	if errors.As(err, &p) {
		return p.stack
	}
	return nil
}

// isPanic tells whether err is a method's panic. It is apart from run so
// that the target of errors.As escapes to the heap only for a failed call.
func isPanic(err error) bool {
	var p *panicError
	return errors.As(err, &p)
}

// finish ends the request's context and forgets it for cancel frames.
func (t *task) finish() {
	t.c.mu.Lock()
	delete(t.c.running, t.seq)
	t.c.mu.Unlock()
	t.ctx.cancel()
}

// reply sends a successful response carrying v, and returns its status (OK,
// or internal when v cannot be encoded) and the bytes of its frame.
func (c *conn) reply(seq uint64, codec protocol.Codec, v any) (protocol.Status, int) {
	buf := getBuffer()
	m := protocol.Message{Header: protocol.Header{Kind: protocol.KindResponse, Seq: seq}}
	frame, err := protocol.AppendFrameEncode((*buf)[:0], &m, codec, v, c.srv.opts.maxBody)
	if err != nil {
		putBuffer(buf)
		return protocol.StatusInternal, c.fail(seq, false, protocol.StatusInternal, "encode reply: "+err.Error())
	}
	c.write(frame, true)
	n := len(frame)
	*buf = frame
	putBuffer(buf)
	return protocol.StatusOK, n
}

// fail answers an admitted request with an error status (or, for a one-way
// request, just releases it), and returns the bytes of the frame it sent.
func (c *conn) fail(seq uint64, oneWay bool, status protocol.Status, msg string) int {
	if oneWay {
		c.release(1)
		return 0
	}
	m := protocol.Message{
		Header:  protocol.Header{Kind: protocol.KindResponse, Flags: protocol.FlagError, Status: status, Seq: seq},
		Payload: []byte(msg),
	}
	return c.send(&m, true)
}

// refuse answers a request that will not run, and ends its stats.
func (c *conn) refuse(st *requestStats, seq uint64, oneWay bool, status protocol.Status, msg string) {
	sent := c.fail(seq, oneWay, status, msg)
	if st != nil {
		st.begin(c.srv.opts.stats, newRequestContext(time.Time{}, st.md, c))
		st.end(c.srv.opts.stats, status, errors.New(msg), sent)
	}
}

// send writes a frame with no codec payload and returns its size.
func (c *conn) send(m *protocol.Message, counted bool) int {
	buf := getBuffer()
	frame, err := protocol.AppendFrame((*buf)[:0], m, c.srv.opts.maxBody)
	if err != nil { // an error message past the body limit: cut it
		m.Payload = m.Payload[:min(len(m.Payload), 1024)]
		frame, _ = protocol.AppendFrame((*buf)[:0], m, 0)
	}
	c.write(frame, counted)
	n := len(frame)
	*buf = frame
	putBuffer(buf)
	return n
}

func (c *conn) write(frame []byte, counted bool) {
	if err := c.w.Write(frame, counted); err != nil {
		c.close()
	}
}

// goAway tells the client to send no new calls on this connection, once.
func (c *conn) goAway() {
	if c.wentAway.CompareAndSwap(false, true) {
		c.send(&protocol.Message{Header: protocol.Header{Kind: protocol.KindGoAway}}, false)
	}
}

// close closes the connection and cancels the contexts of its requests;
// replies not yet written are dropped (and released by the writer).
func (c *conn) close() {
	c.closeOnce.Do(func() {
		// Writer first: a handler that returns because its context was
		// cancelled must not get its reply out.
		c.w.Fail(errConnClosed)
		c.nc.Close()
		c.cancel()
		c.mu.Lock()
		running := c.running
		c.running = nil
		c.mu.Unlock()
		for _, rc := range running {
			rc.cancel()
		}
		c.srv.untrackConn(c)
	})
}

// lookup finds a method by its "Service.Method" name; a name without a dot
// is a bad request.
func (s *Server) lookup(name string) (*method, protocol.Status) {
	if mt := (*s.methods.Load())[name]; mt != nil {
		return mt, protocol.StatusOK
	}
	dot := strings.LastIndexByte(name, '.')
	if dot < 0 {
		return nil, protocol.StatusBadRequest
	}
	if (*s.services.Load())[name[:dot]] {
		return nil, protocol.StatusUnknownMethod
	}
	return nil, protocol.StatusUnknownService
}

var bufferPool = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

func getBuffer() *[]byte { return bufferPool.Get().(*[]byte) }

func putBuffer(b *[]byte) {
	if cap(*b) <= 64<<10 {
		bufferPool.Put(b)
	}
}
