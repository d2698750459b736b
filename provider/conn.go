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

	"github.com/shoalrpc/shoal/internal/engine"
	"github.com/shoalrpc/shoal/protocol"
)

var errConnClosed = errors.New("provider: connection closed")

// conn is one client connection on the connection engine (internal/engine),
// which reads and dispatches its frames, batches its writes, answers
// heartbeats and routes stream frames; here, each request is admitted,
// counted in flight and run on a goroutine of its own.
type conn struct {
	srv *Server
	nc  net.Conn
	e   *engine.Conn

	http      atomic.Pointer[httpConn] // while sniffed or served as HTTP (http.go): go-away goes there
	overLimit bool                     // past WithMaxConns: every request is refused
	inFlight  atomic.Int64             // this connection's requests read and not yet answered

	// What the connection costs, in bytes, is bounded by holdBound (see
	// awaitRoom): the engine's Queued counts every frame queued and not yet
	// written; reserved, for every request dispatched and not yet
	// answered, its frame and the size its reply is expected to have.
	reserved    atomic.Int64
	holdBound   int64
	readerWaits atomic.Bool   // the reader is in awaitRoom
	room        chan struct{} // wakes the reader in awaitRoom
	refusing    bool          // the reader's: requests running hold the bound, new ones are refused (see awaitRoom)

	mu      sync.Mutex
	running map[uint64]*requestContext // requests (and streams) a cancel frame or close can stop; nil once closed

	remote string // the peer's address, formatted once for stats handlers; "" without them
}

func newConn(s *Server, nc net.Conn) *conn {
	c := &conn{srv: s, nc: nc, running: make(map[uint64]*requestContext), room: make(chan struct{}, 1)}
	if len(s.opts.stats) > 0 {
		c.remote = nc.RemoteAddr().String()
	}
	// Back-pressure keeps what the connection holds near twice the body
	// limit (see awaitRoom); the writer's own limit, past which it gives up
	// on the peer, is only a backstop for replies far larger than expected.
	limit := bodyLimit(s.opts.maxBody)
	c.holdBound = 2 * int64(limit)
	c.e = engine.New(nc, engine.Config{
		Peer:         "client",
		MaxBody:      s.opts.maxBody,
		QueueLimit:   4 * limit,
		WriteTimeout: s.opts.writeTimeout,
		OnWritten:    c.release, // replies count in flight until the write that carries them returns
		Written:      c.wakeReader,
		IdleTimeout:  s.opts.idleTimeout,
		ReadTimeout:  s.opts.readTimeout,
		ReleaseIdle:  true,
	}, engine.Handlers{
		Request:    c.handle,
		Cancel:     c.cancelRequest,
		TooLarge:   c.refuseTooLarge,
		BeforeRead: c.beforeRead,
		Closed:     c.closed,
	})
	return c
}

// atBound says whether the connection holds its bound.
func (c *conn) atBound() bool {
	return c.e.Queued()+c.reserved.Load() >= c.holdBound
}

// wakeReader wakes the reader if it waits in awaitRoom, to look again.
func (c *conn) wakeReader() {
	if c.readerWaits.Load() {
		select {
		case c.room <- struct{}{}:
		default:
		}
	}
}

// roomWait is how long the reader waits for requests running to end when
// they alone hold the connection's bound (the peer takes its replies),
// before it reads on, refusing new requests: long enough for a burst of
// calls to a method that has not replied yet to learn its reply size, short
// enough that heartbeats and cancel frames are not held up for long.
const roomWait = 50 * time.Millisecond

// awaitRoom is back-pressure from the writer to the reader, called while
// the connection is at its bound. While frames are queued that the peer has
// not taken, no new frame is read, so no worker starts to encode a reply
// nobody will take: a peer that reads resumes the reader as its replies are
// written; one that does not is cut by the write timeout (connWriter closes
// the connection). When requests running hold the bound and the peer
// takes its replies, the reader waits at most roomWait for room (at once
// when refusing: it waited already), then reads on: cancel frames and
// heartbeats still arrive, and admit refuses new requests "overloaded"
// while the bound is held. It returns whether the connection is still open,
// and whether it is at its bound still (c.refusing).
func (c *conn) awaitRoom(refusing bool) (open, stillAtBound bool) {
	var timer *time.Timer
	defer func() {
		c.readerWaits.Store(false)
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		c.readerWaits.Store(true)
		if !c.atBound() {
			break
		}
		var timeout <-chan time.Time
		if c.e.Queued() == 0 { // requests running hold the bound
			if refusing {
				break
			}
			if timer == nil {
				timer = time.NewTimer(roomWait)
			}
			timeout = timer.C
		}
		select {
		case <-c.room:
		case <-timeout:
			refusing = true
		case <-c.e.Done():
			return false, false
		}
	}
	return true, c.atBound()
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
		s.opts.maxPerConn > 0 && perConn > int64(s.opts.maxPerConn),
		c.refusing:
		return protocol.StatusOverloaded
	}
	return protocol.StatusOK
}

// release ends n of this connection's requests' time in flight.
func (c *conn) release(n int) {
	c.inFlight.Add(-int64(n))
	c.srv.release(n)
}

// beforeRead is the engine's look before it reads the next frame: while the
// connection is at its bound it waits for room (awaitRoom); false: the
// connection closed meanwhile.
func (c *conn) beforeRead() bool {
	if !c.atBound() {
		c.refusing = false
		return true
	}
	var open bool
	open, c.refusing = c.awaitRoom(c.refusing)
	return open
}

// serve serves the connection until it fails or closes: TLS, then HTTP or
// the binary protocol, whose frames the engine reads and dispatches (to
// handle, for requests: where a request is decoded and counted in flight).
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
	var in io.Reader = c.nc
	if !s.opts.noHTTP {
		if in = c.sniff(); in == nil { // served as HTTP (http.go), or closed
			return
		}
	}
	if c.overLimit || s.shuttingDown.Load() {
		c.goAway() // clients go elsewhere; requests already sent are refused
	}
	if err := c.e.Serve(in); err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
		s.opts.logger.Info("provider: closing connection", "remote", c.nc.RemoteAddr(), "err", err)
		cause = err
	}
}

// cancelRequest ends request seq's context: its caller gave up.
func (c *conn) cancelRequest(seq uint64) {
	c.mu.Lock()
	rc := c.running[seq]
	c.mu.Unlock()
	if rc != nil {
		rc.cancel()
	}
}

// handshake completes a TLS handshake within the read timeout.
func (c *conn) handshake(tc *tls.Conn) error {
	ctx := context.Background() // Server.Close closes the connection: the handshake ends
	if t := c.srv.opts.readTimeout; t > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, t)
		defer cancel()
	}
	return tc.HandshakeContext(ctx)
}

// refuseTooLarge answers a request whose body was over the limit, and was
// skipped (m holds its header), with StatusTooLarge: not executed, and the
// connection's other calls carry on. It counts in flight like any request
// until its answer is flushed.
func (c *conn) refuseTooLarge(m *protocol.Message, e *protocol.TooLargeError) {
	if e.Header.Kind != protocol.KindRequest {
		return
	}
	h := e.Header
	st := c.beginRequest(m)
	c.admit()
	c.refuse(st, h.Seq, h.Flags&protocol.FlagOneWay != 0, protocol.StatusTooLarge,
		fmt.Sprintf("request body of %d bytes is over the server's limit of %d bytes; not executed", h.BodyLen, e.Limit))
}

// handle admits one request, decodes its arguments while m's payload is
// valid, and hands it to a worker.
func (c *conn) handle(m *protocol.Message) {
	if m.Flags&protocol.FlagStream != 0 {
		c.handleStream(m)
		return
	}
	s := c.srv
	oneWay := m.Flags&protocol.FlagOneWay != 0
	st := c.beginRequest(m)
	if status := c.admit(); status != protocol.StatusOK && (status != protocol.StatusShuttingDown || !s.answersWhileDraining(m.Method)) {
		c.refuse(st, m.Seq, oneWay, status, m.Method+" not executed")
		return
	}
	mt := c.resolve(m, st, oneWay)
	if mt == nil {
		return
	}
	if mt.streamType != nil {
		c.refuse(st, m.Seq, oneWay, protocol.StatusBadRequest, m.Method+" is a "+string(mt.callKind)+" method: open a stream (consumer.OpenServerStream, OpenClientStream, OpenBidiStream), do not call it")
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
	ctx := c.requestContextOf(m)
	// Reserve what the request will hold until its reply is queued: its
	// frame, and a reply the size of the method's recent ones.
	cost := protocol.HeaderSize + int(m.BodyLen)
	if !oneWay {
		cost += mt.expectedReply()
	}
	c.reserved.Add(int64(cost))
	c.mu.Lock()
	if c.running == nil { // closed while this request was decoded
		c.mu.Unlock()
		ctx.cancel()
	} else {
		c.running[m.Seq] = ctx
		c.mu.Unlock()
	}
	s.dispatch(task{c: c, ctx: ctx, mt: mt, argPtr: ptr, arg: arg, seq: m.Seq, codec: codec, oneWay: oneWay, compress: m.Flags & protocol.FlagCompress, stats: st, cost: cost})
}

// resolve finds the method request m names, or refuses m (bad request, or
// unknown service or method, with a suggestion) and returns nil.
func (c *conn) resolve(m *protocol.Message, st *requestStats, oneWay bool) *method {
	s := c.srv
	mt, status := s.lookup(m.Method)
	switch {
	case status == protocol.StatusBadRequest:
		c.refuse(st, m.Seq, oneWay, status, "method "+strconv.Quote(m.Method)+" is not of the form Service.Method")
		return nil
	case status != protocol.StatusOK:
		c.refuse(st, m.Seq, oneWay, status, s.unknownMessage(m.Method, status))
		return nil
	}
	return mt
}

// requestContextOf returns the context of request m: its deadline (the
// timeout it carries, from now) and metadata. It stands alone rather than
// hanging off the connection's: close cancels it through c.running, and the
// request avoids registering with (and locking) a parent shared by every
// request of the connection.
func (c *conn) requestContextOf(m *protocol.Message) *requestContext {
	var deadline time.Time
	if m.Timeout > 0 {
		deadline = time.Now().Add(m.Timeout)
	}
	return newRequestContext(deadline, m.Metadata, c)
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
	cost   int           // what the request reserves of its connection until answered (conn.reserved)

	// compress is FlagCompress when the client sent it: the reply is
	// compressed alike (protocol.AppendFrameEncode decides by its size).
	compress protocol.Flags
}

// run calls the method, through the interceptors if there are any, and
// sends its reply. This is where interceptors run. The request's
// reservation ends once its answer is queued (and counted there).
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
		t.mt.replied(sent)
	case err != nil:
		status = protocol.StatusServiceError
		sent = c.fail(seq, oneWay, status, err.Error())
		t.mt.replied(sent)
	case oneWay:
		c.release(1)
	default:
		status, sent = c.reply(seq, t.codec, t.compress, reply)
		t.mt.replied(sent)
	}
	c.unreserve(t.cost)
	if t.stats != nil {
		t.stats.end(c.srv.opts.stats, status, err, sent)
	}
}

// unreserve ends a request's reservation, once its answer is queued.
func (c *conn) unreserve(cost int) {
	c.reserved.Add(-int64(cost))
	c.wakeReader()
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
// or internal when v cannot be encoded) and the bytes of its frame; flags
// are the response's (FlagCompress or none).
func (c *conn) reply(seq uint64, codec protocol.Codec, flags protocol.Flags, v any) (protocol.Status, int) {
	buf := getBuffer()
	m := protocol.Message{Header: protocol.Header{Kind: protocol.KindResponse, Flags: flags, Seq: seq}}
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
func (c *conn) send(m *protocol.Message, counted bool) int { return c.e.Send(m, counted) }

// write queues frame; it counts in the engine's Queued until written.
func (c *conn) write(frame []byte, counted bool) { c.e.Write(frame, counted) }

// goAway tells the client to send no new calls on this connection, once.
func (c *conn) goAway() {
	if h := c.http.Load(); h != nil {
		h.goAway()
		return
	}
	c.e.GoAway()
}

// close closes the connection; replies not yet written are dropped (and
// released by the writer).
func (c *conn) close() { c.e.Close(errConnClosed) }

// closed is told by the engine that the connection has closed: its writer
// failed first (a handler that returns because its context was cancelled
// must not get its reply out), then its streams; here the contexts of its
// requests end.
func (c *conn) closed(error) {
	c.mu.Lock()
	running := c.running
	c.running = nil
	c.mu.Unlock()
	for _, rc := range running {
		rc.cancel()
	}
	c.srv.untrackConn(c)
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
