package consumer

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shoalrpc/shoal/internal/batchwriter"
	"github.com/shoalrpc/shoal/internal/engine"
	"github.com/shoalrpc/shoal/naming"
	"github.com/shoalrpc/shoal/protocol"
	"github.com/shoalrpc/shoal/stats"
)

// Call is one call in progress, as Go returns it.
type Call struct {
	Method string     // the method called, "Service.Method"
	Args   any        // the arguments, as given
	Reply  any        // where the reply is decoded: a non-nil pointer, or nil to discard it
	Error  error      // set when the call completes
	Done   chan *Call // receives the call when it completes

	seq    uint64
	stream *clientStream    // a stream's open: registered with its seq; nil for a call
	stop   func() bool      // stops watching the caller's context (Go only)
	sizes  *wireSizes       // where send and complete count bytes; nil without stats
	mark   batchwriter.Mark // where the request lies in the write queue; set once queued
}

func (call *Call) finish() {
	if call.stop != nil {
		call.stop()
	}
	select {
	case call.Done <- call:
	default:
		// Go's caller gave a Done channel without room; like net/rpc, the
		// completion is dropped rather than blocking the reader.
	}
}

// Client is one long connection to a server, shared by any number of
// concurrent calls, each matched to its reply by sequence number.
type Client struct {
	addr      string
	opts      options
	nc        net.Conn
	e         *engine.Conn // the connection engine: reader, writer, keepalive, stream routing
	intercept Interceptor  // WithInterceptors as one; nil: none, or under a ClientProxy
	invoke    Invoker      // c.call, bound once

	mu       sync.Mutex
	pending  map[uint64]*Call
	seq      uint64
	draining bool  // the server sent go-away: no new calls
	err      error // why the client stopped; non-nil means stopped

	// closed mirrors draining || err != nil for readers that take no lock
	// (Usable, on every pooled call); it is set with them, under mu.
	closed atomic.Bool

	reader sync.WaitGroup // the engine's reader (engine.Conn.Serve)
}

// Dial connects to addr ("tcp@host:port", "unix@/path", or plain "host:port"
// for TCP; "http@host:port" runs the protocol through an HTTP CONNECT to a
// provider's port, for HTTP-only infrastructure).
func Dial(addr string, opts ...DialOption) (*Client, error) {
	return DialContext(context.Background(), addr, opts...)
}

// DialContext is Dial bounded by ctx as well as the dial timeout.
func DialContext(ctx context.Context, addr string, opts ...DialOption) (*Client, error) {
	o, err := dialOptions(opts)
	if err != nil {
		return nil, err
	}
	return dial(ctx, addr, o)
}

func dial(ctx context.Context, addr string, o options) (*Client, error) {
	network, address, err := splitAddr(addr)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, o.dialTimeout)
	defer cancel()
	dialContext := o.dialer
	if dialContext == nil {
		dialContext = (&net.Dialer{}).DialContext
	}
	viaHTTP := network == "http" // the binary protocol through an HTTP CONNECT (dialhttp.go)
	if viaHTTP {
		network = "tcp"
	}
	nc, err := dialContext(ctx, network, address)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrDial, addr, err)
	}
	if o.tls != nil {
		if nc, err = clientHandshake(ctx, nc, address, o.tls, viaHTTP); err != nil {
			return nil, fmt.Errorf("%w: %s: TLS: %w", ErrDial, addr, err)
		}
	} else if viaHTTP {
		if err = httpConnect(ctx, nc, address); err != nil {
			nc.Close()
			return nil, fmt.Errorf("%w: %s: %w", ErrDial, addr, err)
		}
	}
	c := &Client{
		addr:    addr,
		opts:    o,
		nc:      nc,
		pending: make(map[uint64]*Call),
	}
	if !o.underProxy {
		c.intercept = chain(o.interceptors)
	}
	c.invoke = c.call
	// No caller waits on the network (the engine's Async writer). A server
	// that stops reading can make us queue at most twice the body limit
	// (then a Call waits for room, see send); the pending table is bounded
	// too.
	c.e = engine.New(nc, engine.Config{
		Peer:         "server",
		MaxBody:      o.maxBody,
		QueueLimit:   2 * bodyLimit(o.maxBody),
		WriteTimeout: o.writeTimeout,
		Async:        true,
		Keepalive: engine.Keepalive{
			Interval: o.heartbeatInterval, Timeout: o.heartbeatTimeout,
			ProbeAfter: o.probeAfter, ProbeTimeout: o.probeTimeout,
			Busy: c.busy,
		},
		OnDead: o.onDead,
	}, engine.Handlers{
		Response:   c.complete,
		GoAway:     c.drain,
		TooLarge:   c.tooLarge,
		AfterFrame: c.closeIfDrained,
		Closed:     c.stop,
	})
	c.connEvent(true, nil)
	c.reader.Go(func() { c.e.Serve(nc) })
	return c, nil
}

// splitAddr accepts the address forms of naming.SplitAddr.
func splitAddr(addr string) (network, address string, err error) {
	network, address, err = naming.SplitAddr(addr)
	if err != nil {
		err = fmt.Errorf("consumer: dial: %w", err)
	}
	return network, address, err
}

// Addr returns the address the client was dialled with.
func (c *Client) Addr() string { return c.addr }

var callPool = sync.Pool{New: func() any { return &Call{Done: make(chan *Call, 1)} }}

// Call calls method ("Service.Method") with args and decodes the result into
// reply, waiting until it completes or ctx ends. ctx's deadline travels to
// the server, where the method's context ends with it.
//
// reply must be a non-nil pointer, or nil to discard the reply (the call
// still waits for the method to finish); anything else is an error wrapping
// ErrBadRequest, before anything is sent. A reply that does not fit reply's
// type is an error wrapping ErrReplyDecode.
//
// The interceptors of WithInterceptors run around it, and stats handlers see
// it as a call (unless the Client belongs to a ClientProxy, which reports
// its calls and attempts itself).
func (c *Client) Call(ctx context.Context, method string, args, reply any) error {
	var st *callStats
	if len(c.opts.stats) > 0 && !c.opts.underProxy {
		st, ctx = beginStats(ctx, c.opts.stats, stats.RPCInfo{Kind: stats.Call, Method: method, Addr: c.addr, Codec: c.opts.codec.Name()})
	}
	var err error
	if c.intercept != nil {
		err = c.intercept(ctx, method, args, reply, c.invoke)
	} else {
		err = c.do(ctx, method, args, reply, st.sizes())
	}
	st.end(ctx, err)
	return err
}

// call is Call without interceptors or stats: what the interceptors wrap.
func (c *Client) call(ctx context.Context, method string, args, reply any) error {
	return c.do(ctx, method, args, reply, nil)
}

// do makes one call and counts its bytes in sizes, when not nil.
func (c *Client) do(ctx context.Context, method string, args, reply any, sizes *wireSizes) error {
	if err := checkReply(method, reply); err != nil {
		return err
	}
	call := callPool.Get().(*Call)
	call.Method, call.Args, call.Reply, call.Error, call.sizes = method, args, reply, nil, sizes
	err := c.send(ctx, call, false, 0)
	if err == nil {
		err = c.wait(ctx, call)
	}
	*call = Call{Done: call.Done}
	callPool.Put(call)
	return err
}

// wait waits for a sent call's outcome or for ctx to end.
func (c *Client) wait(ctx context.Context, call *Call) error {
	select {
	case <-call.Done:
	case <-ctx.Done():
		if c.forget(call.seq) {
			return c.abandon(ctx, call)
		}
		<-call.Done // the reader is completing it: take its outcome
	}
	err := call.Error
	if err != nil {
		if cerr := contextEnded(ctx); cerr != nil {
			// The deadline travelled: the server's copy fired as ours did.
			// Only the context's error is wrapped, so the server's answer
			// cannot pass for the method's own error.
			err = fmt.Errorf("call %s: %w (server: %v)", call.Method, cerr, err)
		}
	}
	return err
}

// abandon is the outcome of a call whose context ended while it was pending
// (and that the caller has just taken out of the pending table): a request
// still in the write queue is withdrawn and was never sent (ErrNotSent, not
// executed); one already handed to the connection may have run, and the
// server is told to cancel it. A call that timed out while a probe of its
// connection was unanswered is marked so, for outlier ejection.
func (c *Client) abandon(ctx context.Context, call *Call) error {
	cerr := ctx.Err()
	if c.e.Withdraw(call.mark) {
		return fmt.Errorf("call %s: %w: %w", call.Method, ErrNotSent, cerr)
	}
	c.cancelRemote(ctx, call.seq)
	if errors.Is(cerr, context.DeadlineExceeded) && c.e.Probing() {
		return fmt.Errorf("call %s: %w (%w)", call.Method, cerr, errSilentConn)
	}
	return fmt.Errorf("call %s: %w", call.Method, cerr)
}

// Go starts a call and returns at once; the Call is sent on done when it
// completes (done nil: a new channel; otherwise it must be buffered). If ctx
// ends first, the call completes with ctx's error.
func (c *Client) Go(ctx context.Context, method string, args, reply any, done chan *Call) *Call {
	if done == nil {
		done = make(chan *Call, 1)
	} else if cap(done) == 0 {
		panic("consumer: Go with an unbuffered done channel")
	}
	call := &Call{Method: method, Args: args, Reply: reply, Done: done}
	if err := checkReply(method, reply); err != nil {
		call.Error = err
		call.finish()
	} else if err := c.send(ctx, call, true, 0); err != nil {
		call.Error = err
		call.finish()
	}
	return call
}

// Notify sends a one-way call: the server runs it and sends no reply. It
// returns once the call is queued for writing, without waiting on the
// network.
func (c *Client) Notify(ctx context.Context, method string, args any) error {
	return c.send(ctx, &Call{Method: method, Args: args}, false, protocol.FlagOneWay)
}

// send encodes call's request, registers the call as pending and queues the
// frame. On error the call is not pending. With watch, ctx ending completes
// the call.
func (c *Client) send(ctx context.Context, call *Call, watch bool, flags protocol.Flags) error {
	var timeout time.Duration
	if deadline, ok := ctx.Deadline(); ok {
		timeout = time.Until(deadline)
		if timeout <= 0 {
			return fmt.Errorf("call %s: %w", call.Method, context.DeadlineExceeded)
		}
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("call %s: %w", call.Method, err)
	}
	if c.opts.compress {
		flags |= protocol.FlagCompress
	}
	m := protocol.Message{
		Header:   protocol.Header{Kind: protocol.KindRequest, Flags: flags},
		Method:   call.Method,
		Metadata: c.metadata(ctx),
		Timeout:  timeout,
	}
	if call.stream != nil {
		m.Status = protocol.Status(call.stream.kind) // the stream's shape (protocol.StreamShape)
	}
	buf := getBuffer()
	defer putBuffer(buf)
	frame, err := protocol.AppendFrameEncode((*buf)[:0], &m, c.opts.codec, call.Args, c.opts.maxBody)
	*buf = frame
	if err != nil {
		if errors.Is(err, protocol.ErrTooLarge) {
			return fmt.Errorf("%w: %w: call %s: %w", ErrRequestTooLarge, ErrBadRequest, call.Method, err)
		}
		return fmt.Errorf("%w: call %s: %w", ErrBadRequest, call.Method, err)
	}
	oneWay := flags&protocol.FlagOneWay != 0

	c.mu.Lock()
	if err := c.refusal(); err != nil {
		c.mu.Unlock()
		return fmt.Errorf("call %s: %w", call.Method, err)
	}
	if !oneWay && c.opts.maxPending > 0 && len(c.pending) >= c.opts.maxPending {
		c.mu.Unlock()
		return fmt.Errorf("call %s: %w (%d)", call.Method, ErrTooManyPending, c.opts.maxPending)
	}
	c.seq++
	call.seq = c.seq
	if !oneWay {
		c.pending[call.seq] = call
	}
	if call.stream != nil {
		if err := c.addStream(call); err != nil { // the connection closed; stop is on its way
			delete(c.pending, call.seq)
			c.mu.Unlock()
			return fmt.Errorf("call %s: %w: %w", call.Method, ErrClientClosed, err)
		}
	}
	c.mu.Unlock()

	protocol.SetSeq(frame, call.seq)
	if call.sizes != nil {
		call.sizes.out = len(frame)
	}
	// The writer sets call.mark under its lock: stop, which fails the writer
	// first, sees it, and a call without one was never queued.
	// A full write queue (the connection is not taking bytes as fast as
	// callers give them) holds a Call until there is room or its context
	// ends; Go and Notify, which never wait, are refused at once. Either
	// way only that call is not sent: the connection and its other calls
	// go on.
	roomCtx := ctx
	if watch || oneWay {
		roomCtx = doneContext
	}
	if err := c.e.QueueWait(roomCtx, frame, &call.mark); errors.Is(err, batchwriter.ErrNoRoom) {
		if oneWay || c.forget(call.seq) {
			if roomCtx == doneContext {
				return fmt.Errorf("call %s: %w: write queue full", call.Method, ErrNotSent)
			}
			return fmt.Errorf("call %s: %w: write queue full: %w", call.Method, ErrNotSent, ctx.Err())
		}
		return nil // the connection failed meanwhile and completed the call: wait takes its outcome
	} else if err != nil {
		c.stop(fmt.Errorf("write: %w", err)) // completes the call, not sent, if it is pending
		if oneWay {
			return fmt.Errorf("call %s: %w: %w", call.Method, ErrNotSent, err)
		}
		return nil
	}
	if !oneWay && watch && ctx.Done() != nil {
		// Watched only now that call.mark is set. A call no longer pending
		// has completed already, and its finish ran without a stop.
		c.mu.Lock()
		if c.pending[call.seq] == call {
			call.stop = context.AfterFunc(ctx, func() {
				if c.forget(call.seq) {
					call.Error = c.abandon(ctx, call)
					call.finish()
				}
			})
		}
		c.mu.Unlock()
	}
	if !oneWay {
		c.e.Nudge() // calls are waiting: the keepalive watches for silence
	}
	return nil
}

// doneContext is a context that has ended: QueueWait with it never waits.
var doneContext = func() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}()

// contextEnded returns ctx's error, or DeadlineExceeded once the deadline has
// passed even if ctx's timer has not fired yet.
func contextEnded(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if d, ok := ctx.Deadline(); ok && !time.Now().Before(d) {
		return context.DeadlineExceeded
	}
	return nil
}

// cancelRemote tells the server the caller cancelled request seq, so its
// handler's context ends. Best effort: a failed write breaks the connection
// anyway.
func (c *Client) cancelRemote(ctx context.Context, seq uint64) {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return // the deadline travelled with the request: the server's copy ends it
	}
	c.e.Cancel(seq)
}

// metadata is what a call under ctx sends: the client's credentials and
// ctx's metadata (which wins on a clash).
func (c *Client) metadata(ctx context.Context) map[string]string {
	md := metadataFrom(ctx)
	switch {
	case len(c.opts.credentials) == 0:
		return md
	case len(md) == 0:
		return c.opts.credentials
	}
	merged := make(map[string]string, len(md)+len(c.opts.credentials))
	maps.Copy(merged, c.opts.credentials)
	maps.Copy(merged, md)
	return merged
}

// clientHandshake runs a TLS handshake on nc, naming the server from address
// when cfg does not.
func clientHandshake(ctx context.Context, nc net.Conn, address string, cfg *tls.Config, viaHTTP bool) (net.Conn, error) {
	if cfg.ServerName == "" {
		cfg = cfg.Clone()
		if host, _, err := net.SplitHostPort(address); err == nil {
			cfg.ServerName = host
		}
	}
	tc := tls.Client(nc, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		nc.Close()
		return nil, err
	}
	if viaHTTP { // CONNECT inside TLS: the provider reads HTTP once TLS is up
		if err := httpConnect(ctx, tc, address); err != nil {
			tc.Close()
			return nil, err
		}
	}
	// In TLS 1.3 the server checks a client certificate after our handshake
	// has returned; a heartbeat round trip surfaces its verdict now, as a
	// dial error, rather than on the first call.
	if err := ping(ctx, tc); err != nil {
		tc.Close()
		return nil, err
	}
	return tc, nil
}

// ping sends a heartbeat and reads the answer, before the connection's
// reader starts.
func ping(ctx context.Context, nc net.Conn) error {
	if d, ok := ctx.Deadline(); ok {
		nc.SetDeadline(d)
		defer nc.SetDeadline(time.Time{})
	}
	hb, _ := protocol.AppendFrame(nil, &protocol.Message{Header: protocol.Header{Kind: protocol.KindHeartbeat}}, 0)
	if _, err := nc.Write(hb); err != nil {
		return err
	}
	var head [protocol.HeaderSize]byte
	if _, err := io.ReadFull(nc, head[:]); err != nil {
		return err
	}
	h, err := protocol.ParseHeader(head[:], 64)
	if err != nil {
		return err
	}
	body := make([]byte, h.BodyLen)
	if _, err := io.ReadFull(nc, body); err != nil {
		return err
	}
	if h.Kind != protocol.KindHeartbeat {
		return fmt.Errorf("server answered a heartbeat with a %s frame", h.Kind)
	}
	return nil
}

func bodyLimit(n int) int {
	if n <= 0 {
		return protocol.DefaultMaxBodySize
	}
	return n
}

// refusal says why no new call may start, or nil. c.mu must be held.
func (c *Client) refusal() error {
	switch {
	case errors.Is(c.err, ErrClientClosed): // Close: say it once
		return c.err
	case c.err != nil:
		return fmt.Errorf("%w: %w", ErrClientClosed, c.err)
	case c.draining:
		return fmt.Errorf("%w: server sent go-away", ErrClientClosed)
	}
	return nil
}

// forget removes a pending call; false means the reader or stop already took it.
func (c *Client) forget(seq uint64) bool {
	c.mu.Lock()
	_, ok := c.pending[seq]
	delete(c.pending, seq)
	c.mu.Unlock()
	return ok
}

// tooLarge fails the call whose response was over the body limit, and
// was skipped whole: only that call fails.
func (c *Client) tooLarge(_ *protocol.Message, e *protocol.TooLargeError) {
	if e.Header.Kind != protocol.KindResponse {
		return
	}
	c.failOne(e.Header.Seq, func(method string) error {
		return fmt.Errorf("call %s: %w: %d bytes, over the client's limit of %d (WithMaxBodySize)",
			method, ErrReplyTooLarge, e.Header.BodyLen, e.Limit)
	})
}

// failOne completes pending call seq with the error errFor gives.
func (c *Client) failOne(seq uint64, errFor func(method string) error) {
	c.mu.Lock()
	call := c.pending[seq]
	delete(c.pending, seq)
	c.mu.Unlock()
	if call != nil {
		call.Error = errFor(call.Method)
		call.finish()
	}
}

// complete hands a response to its pending call.
func (c *Client) complete(m *protocol.Message) {
	c.mu.Lock()
	call := c.pending[m.Seq]
	delete(c.pending, m.Seq)
	c.mu.Unlock()
	if call == nil {
		return // the caller gave up on it
	}
	if call.sizes != nil {
		call.sizes.in = protocol.HeaderSize + int(m.BodyLen)
	}
	switch {
	case m.Flags&protocol.FlagError != 0:
		call.Error = statusError(call.Method, m.Status, string(m.Payload))
	case call.Reply == nil:
	default:
		codec, err := protocol.CodecByID(m.Codec)
		if err == nil {
			err = codec.Decode(m.Payload, call.Reply)
		}
		if err != nil {
			call.Error = fmt.Errorf("%w: call %s: %w", ErrReplyDecode, call.Method, err)
		}
	}
	call.finish()
}

// closeIfDrained closes a client the server asked to go away once its last
// pending call has completed.
func (c *Client) closeIfDrained() {
	if !c.closed.Load() {
		return // the common case, after every frame: not draining
	}
	c.mu.Lock()
	drained := c.draining && c.err == nil && len(c.pending) == 0 && c.e.Streams() == 0
	c.mu.Unlock()
	if drained {
		c.stop(errors.New("server sent go-away"))
	}
}

// stop closes the connection once and fails every pending call at once:
// with ErrConnClosed (maybe executed) if its request was handed to the
// connection, with ErrNotSent (not executed) if it never was, or was handed
// to it only after the reader had found it dead (deadAt).
func (c *Client) stop(cause error) {
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return
	}
	c.err = cause
	c.closed.Store(true)
	pending := c.pending
	c.pending = make(map[uint64]*Call)
	c.mu.Unlock()

	// The engine fails its writer first (nothing queued from now on is
	// written), closes the connection and fails the open streams; it says
	// what the writer had taken (lowered to where the reader found the
	// connection dead).
	taken := c.e.Close(cause)
	if errors.Is(cause, ErrClientClosed) {
		c.connEvent(false, nil)
	} else {
		c.connEvent(false, cause)
	}
	for _, call := range pending {
		if call.mark.NotTaken(taken) || call.mark == (batchwriter.Mark{}) {
			call.Error = fmt.Errorf("call %s: %w: %w", call.Method, ErrNotSent, cause)
		} else {
			call.Error = fmt.Errorf("call %s: %w: %w", call.Method, ErrConnClosed, cause)
		}
		call.finish()
	}
}

// Usable reports whether new calls may start on this client: it is open and
// the server has not asked it to go away.
func (c *Client) Usable() bool { return !c.closed.Load() }

// Pending reports how many calls are waiting for their replies.
func (c *Client) Pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.pending)
}

// Close closes the connection; calls still pending fail with ErrConnClosed.
// It waits for the client's goroutines and is safe to call more than once.
func (c *Client) Close() error {
	c.stop(ErrClientClosed)
	c.reader.Wait()
	c.e.Wait()
	return nil
}

var bufferPool = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

func getBuffer() *[]byte { return bufferPool.Get().(*[]byte) }

func putBuffer(b *[]byte) {
	if cap(*b) <= 64<<10 {
		bufferPool.Put(b)
	}
}

// closeWhenIdle stops new calls on the client and closes it once its pending
// calls have completed, as a go-away from the server would.
func (c *Client) closeWhenIdle() {
	c.drain()
	c.closeIfDrained()
}

// drain stops new calls on the client.
func (c *Client) drain() {
	c.mu.Lock()
	c.draining = true
	c.closed.Store(true)
	c.mu.Unlock()
}
