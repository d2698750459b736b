package consumer

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shoalrpc/shoal/internal/batchwriter"
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
	w         *batchwriter.Writer
	intercept Interceptor // WithInterceptors as one; nil: none, or under a ClientProxy
	invoke    Invoker     // c.call, bound once

	mu       sync.Mutex
	pending  map[uint64]*Call
	streams  map[uint64]*clientStream // open streams (and streams opening), by seq
	seq      uint64
	draining bool  // the server sent go-away: no new calls
	err      error // why the client stopped; non-nil means stopped

	// closed mirrors draining || err != nil for readers that take no lock
	// (Usable, on every pooled call); it is set with them, under mu.
	closed atomic.Bool

	framesRead atomic.Uint64  // for heartbeats: did anything arrive lately?
	probing    atomic.Bool    // a probe is out and nothing has arrived since it was sent
	deadAt     atomic.Int64   // 1 + the writer's Taken when the reader found the connection dead; 0: not found
	idle       atomic.Bool    // the keepalive sleeps until nudged: no call was pending
	nudge      chan struct{}  // wakes the keepalive when calls start while it is idle
	closing    chan struct{}  // closed when the client stops
	goroutines sync.WaitGroup // the reader, the writer and the keepalive
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
		nudge:   make(chan struct{}, 1),
		closing: make(chan struct{}),
	}
	if !o.underProxy {
		c.intercept = chain(o.interceptors)
	}
	c.invoke = c.call
	// No caller waits on the network. A caller that finds the writer idle
	// writes the batch itself, as long as the write completes promptly (no
	// goroutine switch: the common case costs what it did when callers
	// always flushed); what it cannot write within promptWrite, a goroutine
	// of the connection's own writes, under the write timeout, after which
	// the connection is declared dead. A TLS connection cannot resume a write
	// cut by a deadline, so its frames are all written by that goroutine. A
	// server that stops reading can make us queue at most twice the body
	// limit before the connection fails; the pending table is bounded too.
	async := batchwriter.Async{OnError: c.writeFailed}
	if _, isTLS := nc.(*tls.Conn); !isTLS {
		async.TryWrite = c.tryWrite
	}
	c.w = batchwriter.NewAsync(deadlineWriter{nc, o.writeTimeout}, nil, 2*bodyLimit(o.maxBody), async)
	c.connEvent(true, nil)
	c.goroutines.Go(c.w.Run)
	c.goroutines.Go(c.read)
	if o.heartbeatInterval > 0 || o.probeAfter > 0 {
		c.idle.Store(o.probeAfter > 0)
		c.goroutines.Go(c.keepalive)
	}
	return c, nil
}

// promptWrite is how long a caller may spend writing a batch before the
// connection's writer goroutine takes over the rest.
const promptWrite = time.Millisecond

// tryWrite is a caller's write: it stops with batchwriter.ErrWouldBlock when
// the connection does not take the bytes within promptWrite.
func (c *Client) tryWrite(p []byte) (int, error) {
	c.nc.SetWriteDeadline(time.Now().Add(promptWrite))
	n, err := c.nc.Write(p)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return n, batchwriter.ErrWouldBlock
	}
	return n, err
}

// deadlineWriter is the writer goroutine's: every write must make progress
// within the timeout (0: no limit). A TLS connection cannot resume a write a
// deadline cut, but then the connection is dead anyway.
type deadlineWriter struct {
	nc      net.Conn
	timeout time.Duration
}

// Write writes p in chunks, each with a deadline of its own, so the timeout
// measures a peer that takes nothing, not a large batch on a slow link.
func (d deadlineWriter) Write(p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		chunk := p[:min(len(p), writeChunk)]
		var deadline time.Time
		if d.timeout > 0 {
			deadline = time.Now().Add(d.timeout)
		}
		d.nc.SetWriteDeadline(deadline)
		n, err := d.nc.Write(chunk)
		written += n
		if err != nil {
			return written, err
		}
		p = p[n:]
	}
	return written, nil
}

// writeChunk is the most the writer goroutine writes under one deadline.
const writeChunk = 256 << 10

// writeFailed is told by the writer that a write failed: the connection is
// dead, and its pending calls fail at once.
func (c *Client) writeFailed(err error) {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		err = fmt.Errorf("write: the server took no bytes for %s (write timeout): %w", c.opts.writeTimeout, err)
	} else {
		err = fmt.Errorf("write: %w", err)
	}
	c.stop(err)
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
	if c.w.Withdraw(call.mark) {
		return fmt.Errorf("call %s: %w: %w", call.Method, ErrNotSent, cerr)
	}
	c.cancelRemote(ctx, call.seq)
	if errors.Is(cerr, context.DeadlineExceeded) && c.probing.Load() {
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
		c.addStream(call)
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
	if err := c.w.QueueWait(roomCtx, frame, &call.mark); errors.Is(err, batchwriter.ErrNoRoom) {
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
	if !oneWay && c.idle.Load() && c.idle.CompareAndSwap(true, false) {
		select { // calls are waiting: the keepalive watches for silence
		case c.nudge <- struct{}{}:
		default:
		}
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
	var b [protocol.HeaderSize + 3]byte
	frame, err := protocol.AppendFrame(b[:0], &protocol.Message{Header: protocol.Header{Kind: protocol.KindCancel, Seq: seq}}, 0)
	if err == nil {
		c.w.Write(frame, false)
	}
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

// read is the connection's only reader: it matches responses to pending
// calls, decodes each reply straight into the caller's value and wakes the
// caller.
func (c *Client) read() {
	r := protocol.NewReader(c.nc, c.opts.maxBody)
	var m protocol.Message
	for {
		if err := r.Read(&m); err != nil {
			var tooLarge *protocol.TooLargeError
			if errors.As(err, &tooLarge) {
				// Skipped whole: the stream is in step, and only the call
				// that frame answered fails.
				c.heard()
				if tooLarge.Header.Kind == protocol.KindResponse {
					c.failOne(tooLarge.Header.Seq, func(method string) error {
						return fmt.Errorf("call %s: %w: %d bytes, over the client's limit of %d (WithMaxBodySize)",
							method, ErrReplyTooLarge, tooLarge.Header.BodyLen, tooLarge.Limit)
					})
				}
				continue
			}
			// Whatever the writer takes from now on goes to a connection
			// known to be dead: those calls were not sent.
			c.deadAt.Store(c.w.Taken() + 1)
			if c.opts.onDead != nil {
				c.opts.onDead()
			}
			if errors.Is(err, io.EOF) {
				err = fmt.Errorf("server closed the connection: %w", err)
			}
			c.stop(err)
			return
		}
		c.heard()
		switch m.Kind {
		case protocol.KindResponse:
			c.complete(&m)
		case protocol.KindHeartbeat:
			// Its arrival is all the keepalive needs.
		case protocol.KindGoAway:
			c.drain()
		case protocol.KindStreamData, protocol.KindStreamEnd, protocol.KindWindow, protocol.KindReset:
			if err := c.streamFrame(&m); err != nil {
				c.stop(err)
				return
			}
		default:
			c.stop(fmt.Errorf("%w: unexpected %s frame from the server", protocol.ErrMalformed, m.Kind))
			return
		}
		c.closeIfDrained()
	}
}

// heard notes that a frame arrived: the connection is alive.
func (c *Client) heard() {
	c.framesRead.Add(1)
	if c.probing.Load() {
		c.probing.Store(false)
	}
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
	c.mu.Lock()
	drained := c.draining && len(c.pending) == 0 && len(c.streams) == 0
	c.mu.Unlock()
	if drained {
		c.stop(errors.New("server sent go-away"))
	}
}

// keepalive watches the connection for silence. While calls are pending, a
// connection that has received nothing for the probe interval is sent a
// heartbeat (a probe), and is declared dead when nothing arrives within the
// probe timeout: a peer that vanished without a word is found in seconds,
// while a server busy with slow methods answers the probe from its reader.
// While no call is pending, a heartbeat goes out when nothing has arrived
// for the heartbeat interval, and the connection is declared dead after the
// heartbeat timeout.
func (c *Client) keepalive() {
	o := &c.opts
	tick := max(min(o.probeAfter, o.probeTimeout)/4, 5*time.Millisecond)
	// It starts idle (dial set c.idle): the first call nudges it.
	t := time.NewTimer(o.heartbeatInterval)
	if o.heartbeatInterval <= 0 {
		t.Stop()
	}
	defer t.Stop()
	last, heardAt := c.framesRead.Load(), time.Now()
	var busySince, hbSent time.Time
	// A probe's timeout runs from when the writer took it, not from when it
	// was queued: behind a large request that a slow link is still taking,
	// it would otherwise time out with the peer alive and reading.
	var probe batchwriter.Mark
	var probeQueued bool
	var probeSent time.Time // zero until the writer took the probe
	var frame []byte
	send := func(mark *batchwriter.Mark) bool {
		hb := protocol.Message{Header: protocol.Header{Kind: protocol.KindHeartbeat}}
		frame, _ = protocol.AppendFrame(frame[:0], &hb, 0)
		if err := c.w.Queue(frame, mark); err != nil {
			c.stop(fmt.Errorf("write heartbeat: %w", err))
			return false
		}
		return true
	}
	for {
		select {
		case <-c.closing:
			return
		case <-c.nudge:
		case <-t.C:
		}
		now := time.Now()
		if n := c.framesRead.Load(); n != last {
			last, heardAt, probeQueued, probeSent = n, now, false, time.Time{}
			c.probing.Store(false)
		}
		busy := o.probeAfter > 0 && c.busy()
		switch {
		case !busy:
			busySince = time.Time{}
		case busySince.IsZero():
			busySince = now // silence counts from when calls began to wait
		}
		if busy {
			from := heardAt // silent since the last frame, or since calls began to wait
			if busySince.After(from) {
				from = busySince
			}
			silent := now.Sub(from)
			if !probeQueued && silent >= o.probeAfter {
				if !send(&probe) {
					return
				}
				probeQueued, hbSent = true, now
			}
			if probeQueued && probeSent.IsZero() && c.w.Taken() >= probe.End() {
				probeSent = now
				c.probing.Store(true)
				if c.framesRead.Load() != last { // answered already: the next round resets it
					c.probing.Store(false)
				}
			}
			if !probeSent.IsZero() && now.Sub(probeSent) >= o.probeTimeout {
				c.stop(fmt.Errorf("no frame from the server for %s with calls pending; a probe went unanswered for %s",
					now.Sub(heardAt).Round(time.Millisecond), now.Sub(probeSent).Round(time.Millisecond)))
				return
			}
		}
		if o.heartbeatInterval > 0 {
			silent := now.Sub(heardAt)
			if silent >= o.heartbeatTimeout {
				c.stop(fmt.Errorf("no frame from the server for %s", silent.Round(time.Millisecond)))
				return
			}
			if silent >= o.heartbeatInterval && now.Sub(hbSent) >= o.heartbeatInterval {
				if !send(nil) {
					return
				}
				hbSent = now
			}
		}
		next := o.heartbeatInterval
		if busy && (next <= 0 || tick < next) {
			next = tick
		}
		if !busy && o.probeAfter > 0 {
			// Sleep until the next call starts (it nudges us) or the next
			// heartbeat is due. The flag is set before the last look at the
			// pending table, so a call that starts meanwhile is not missed.
			c.idle.Store(true)
			if c.busy() && c.idle.CompareAndSwap(true, false) {
				next = time.Nanosecond
			}
		}
		if next > 0 {
			t.Reset(next)
		} else {
			t.Stop()
		}
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
	streams := c.streams
	c.streams = nil
	c.mu.Unlock()

	close(c.closing)
	taken := c.w.Fail(ErrClientClosed)
	if deadAt := c.deadAt.Load(); deadAt > 0 {
		taken = min(taken, deadAt-1)
	}
	c.nc.Close()
	if errors.Is(cause, ErrClientClosed) {
		c.connEvent(false, nil)
	} else {
		c.connEvent(false, cause)
	}
	for _, cs := range streams {
		cs.fail(fmt.Errorf("stream %s: %w: %w", cs.method, ErrConnClosed, cause))
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
	c.goroutines.Wait()
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
