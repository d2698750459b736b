// Package engine is the connection engine both ends of a shoal connection
// run on. A Conn owns everything a connection does whatever its side:
//
//   - the reader (read.go): one goroutine decodes frames and dispatches each
//     by its kind from one table; frames the side handles (a server's
//     requests and cancels, a client's responses and go-away) go to its
//     Handlers, the rest are the engine's;
//   - the batching writer (write.go): frames from any goroutine, coalesced
//     into few writes, either flushed by the callers (a server's replies) or
//     never waiting on the network (a client's calls);
//   - heartbeats (keepalive.go): answered on both sides; sent, and the
//     connection declared dead, while it is silent (a client's);
//   - go-away, cancel and reset frames, sent once and routed;
//   - the routing of stream frames to their streams, whose flow control is
//     package stream's;
//   - the end: Close fails the writer, closes the connection, fails every
//     open stream and tells the side, once.
//
// The provider and the consumer sit on top: admission, the in-flight
// count, methods and interceptors on one side; pending calls, retries and
// the balancer on the other.
package engine

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shoalrpc/shoal/internal/batchwriter"
	"github.com/shoalrpc/shoal/internal/stream"
	"github.com/shoalrpc/shoal/protocol"
)

// ErrClosed is the error of an operation on a Conn that has closed.
var ErrClosed = errors.New("engine: connection closed")

// ErrTooManyStreams is AddStream's error when the connection has as many
// streams open as its limit.
var ErrTooManyStreams = errors.New("engine: too many streams open")

// Config is how a Conn reads, writes and keeps the connection alive. The
// zero value reads frames up to protocol.DefaultMaxBodySize, writes with
// no timeout from the callers' goroutines, and sends no heartbeat.
type Config struct {
	// Peer names the other end in errors: "server" or "client".
	Peer string
	// MaxBody is the largest frame body read, and the largest written by
	// Send (0: protocol.DefaultMaxBodySize).
	MaxBody int
	// QueueLimit is the most bytes queued for writing (0: no limit). Past
	// it Write fails and closes the connection: memory held for a peer
	// that does not read stays bounded. QueueWait waits for room instead.
	QueueLimit int
	// WriteTimeout bounds every write (0: none): a peer that takes no
	// bytes for that long is dead, and the connection is closed.
	WriteTimeout time.Duration
	// Async makes writes never wait on the network: a goroutine of the
	// engine writes what the callers could not write promptly (a client's
	// callers must not be held by a slow server). Without it the goroutine
	// that finds the writer idle writes the batch (a server's handlers).
	Async bool
	// OnWritten, if set, is told how many counted frames each write
	// carried (see batchwriter.New): each counted frame once, written or
	// dropped.
	OnWritten func(counted int)
	// Written, if set, is called after each write that succeeded (not with
	// Async): the side's back-pressure looks at Queued again.
	Written func()

	// IdleTimeout closes a connection on which no frame began for that
	// long while no stream is open (0: never). ReadTimeout bounds the
	// rest of a frame once its first bytes arrived (0: none).
	IdleTimeout, ReadTimeout time.Duration
	// ReleaseIdle makes the reader hold no buffer while it waits for a
	// frame (protocol.Reader.OnWait): for a server's many mostly idle
	// connections.
	ReleaseIdle bool

	// Keepalive sends heartbeats on a silent connection and declares it
	// dead when they go unanswered.
	Keepalive Keepalive
	// OnDead, if set, runs when the reader finds the connection dead,
	// before it closes (tests).
	OnDead func()
}

// Handlers are what the side on top of a Conn does with the frames the
// engine does not handle itself, and how it learns of the connection's
// end. A nil frame handler means the side never receives that kind: such a
// frame is a protocol violation, and ends the connection. A message passed
// to a handler is valid only until it returns.
type Handlers struct {
	Request  func(m *protocol.Message) // a server's
	Response func(m *protocol.Message) // a client's
	Cancel   func(seq uint64)          // a server's: the caller gave up on request seq
	GoAway   func()                    // a client's: send no new calls here
	// TooLarge is told of a request or response whose body was over
	// MaxBody and was skipped (m holds its header): the connection is in
	// step and goes on.
	TooLarge func(m *protocol.Message, e *protocol.TooLargeError)
	// AfterFrame, if set, runs after each frame dispatched.
	AfterFrame func()
	// BeforeRead, if set, runs before each frame is read; false ends
	// Serve (back-pressure: the connection closed while it waited).
	BeforeRead func() bool
	// Closed, if set, is told once that the connection has closed, and
	// why, after the writer has failed, the connection is closed and
	// every stream has been failed.
	Closed func(cause error)
}

// Stream is what the side keeps for each open stream: the engine routes
// the stream's frames to it.
type Stream interface {
	// Flow is the stream's flow-controlled state: data frames are
	// delivered to it, window frames grant it credit.
	Flow() *stream.Stream
	// PeerEnded is told that the peer sent the stream's end frame.
	PeerEnded(m *protocol.Message)
	// PeerReset is told that the peer reset the stream.
	PeerReset(m *protocol.Message)
	// TooLarge is told that a message of the stream was over the body
	// limit and was skipped: the engine has stopped routing the stream
	// and reset it for the peer; the side fails it.
	TooLarge(e *protocol.TooLargeError)
	// ConnClosed is told that the connection ended with the stream open.
	ConnClosed(cause error)
}

// Conn is one connection on the engine. Make it with New; start its reader
// with Serve.
type Conn struct {
	nc  net.Conn
	cfg Config
	h   Handlers
	w   *batchwriter.Writer

	queued   atomic.Int64 // bytes queued and not yet written (not with Async)
	wentAway atomic.Bool

	// For the keepalive and for telling sent from unsent frames.
	heard   atomic.Uint64 // frames read
	probing atomic.Bool   // a probe is out and nothing has arrived since it was taken
	deadAt  atomic.Int64  // 1 + the writer's Taken when the reader found the connection dead; 0: not found
	idle    atomic.Bool   // the keepalive sleeps until nudged
	nudge   chan struct{}

	mu      sync.Mutex
	streams map[uint64]Stream // open streams, by the sequence number that opened them
	closed  bool

	closeOnce  sync.Once
	taken      int64 // the writer's Taken when it failed, set by Close
	cause      error // why the connection closed, set by Close
	told       atomic.Bool
	done       chan struct{} // closed by Close
	goroutines sync.WaitGroup
}

// New returns a Conn on nc. With Async it starts the writer's goroutine,
// and with a Keepalive the keepalive's; Wait waits for them after Close.
func New(nc net.Conn, cfg Config, h Handlers) *Conn {
	if cfg.Peer == "" {
		cfg.Peer = "peer"
	}
	c := &Conn{nc: nc, cfg: cfg, h: h, done: make(chan struct{}), nudge: make(chan struct{}, 1)}
	c.w = c.newWriter()
	if cfg.Async {
		c.goroutines.Go(c.w.Run)
	}
	if cfg.Keepalive.enabled() {
		c.idle.Store(cfg.Keepalive.ProbeAfter > 0)
		c.goroutines.Go(c.keepalive)
	}
	return c
}

// NetConn returns the connection the Conn runs on.
func (c *Conn) NetConn() net.Conn { return c.nc }

// Done is closed once the connection has closed.
func (c *Conn) Done() <-chan struct{} { return c.done }

// Close closes the connection, once, and returns the writer's Taken as it
// was when it failed (see batchwriter.Writer.Fail; lowered to where the
// reader found the connection dead, if it did): no frame queued at or
// after that position reached the peer. It fails the writer first, so
// nothing queued after Close is written, then closes the connection, fails
// every open stream with ConnClosed(cause) and tells Handlers.Closed.
// Later calls return the same position.
func (c *Conn) Close(cause error) (taken int64) {
	if cause == nil {
		cause = ErrClosed
	}
	c.closeOnce.Do(func() {
		c.mu.Lock()
		c.closed = true
		streams := c.streams
		c.streams = nil
		c.mu.Unlock()
		c.cause = cause
		c.taken = c.w.Fail(cause)
		if deadAt := c.deadAt.Load(); deadAt > 0 {
			c.taken = min(c.taken, deadAt-1)
		}
		c.nc.Close()
		close(c.done)
		for _, s := range streams {
			s.ConnClosed(cause)
		}
	})
	if c.h.Closed != nil && c.told.CompareAndSwap(false, true) {
		c.h.Closed(c.cause)
	}
	return c.taken
}

// Wait waits for the engine's own goroutines (the async writer, the
// keepalive) once the connection has closed.
func (c *Conn) Wait() { c.goroutines.Wait() }

// AddStream routes the frames of stream seq to s from now on. It refuses a
// stream past limit open streams (limit > 0) with ErrTooManyStreams, and
// any once the connection has closed, with ErrClosed.
func (c *Conn) AddStream(seq uint64, s Stream, limit int) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.closed:
		return ErrClosed
	case limit > 0 && len(c.streams) >= limit:
		return fmt.Errorf("%w: %d open, the limit", ErrTooManyStreams, len(c.streams))
	}
	if c.streams == nil {
		c.streams = make(map[uint64]Stream)
	}
	c.streams[seq] = s
	return nil
}

// RemoveStream stops routing stream seq's frames; it reports whether the
// stream was routed (false: removed already, or the connection closed).
func (c *Conn) RemoveStream(seq uint64) bool {
	c.mu.Lock()
	_, ok := c.streams[seq]
	delete(c.streams, seq)
	c.mu.Unlock()
	return ok
}

// Streams reports how many streams are open.
func (c *Conn) Streams() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.streams)
}

// OpenStreams returns the streams open now.
func (c *Conn) OpenStreams() []Stream {
	c.mu.Lock()
	defer c.mu.Unlock()
	open := make([]Stream, 0, len(c.streams))
	for _, s := range c.streams {
		open = append(open, s)
	}
	return open
}

// stream returns the stream seq routes to, or nil.
func (c *Conn) stream(seq uint64) Stream {
	c.mu.Lock()
	s := c.streams[seq]
	c.mu.Unlock()
	return s
}
