package engine

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/shoalrpc/shoal/internal/batchwriter"
	"github.com/shoalrpc/shoal/protocol"
)

// newWriter makes the connection's batch writer, in the mode cfg says.
func (c *Conn) newWriter() *batchwriter.Writer {
	if !c.cfg.Async {
		return batchwriter.New(syncWriter{c}, c.cfg.OnWritten, c.cfg.QueueLimit)
	}
	// No caller waits on the network. A caller that finds the writer idle
	// writes the batch itself, as long as the write completes promptly (no
	// goroutine switch: the common case costs what it would if callers
	// always flushed); what it cannot write within promptWrite, the
	// writer's goroutine writes, under the write timeout, after which the
	// connection is dead. A TLS connection cannot resume a write cut by a
	// deadline, so its frames are all written by that goroutine.
	async := batchwriter.Async{OnError: c.writeFailed}
	if _, isTLS := c.nc.(*tls.Conn); !isTLS {
		async.TryWrite = c.tryWrite
	}
	return batchwriter.NewAsync(deadlineWriter{c}, c.cfg.OnWritten, c.cfg.QueueLimit, async)
}

// syncWriter is what a writer without Async writes to: every write is
// bounded by the write timeout, and a failed write closes the connection.
// Closing here, whichever goroutine is flushing, is what cuts a peer that
// stopped reading while no other frame is coming to notice the failure. It
// closes from a goroutine of its own, so that no lock the writer may hold
// while it writes is taken again from inside its write.
type syncWriter struct{ c *Conn }

// Write writes one batch under the write timeout.
func (w syncWriter) Write(p []byte) (int, error) {
	c := w.c
	if t := c.cfg.WriteTimeout; t > 0 {
		c.nc.SetWriteDeadline(time.Now().Add(t))
	}
	n, err := c.nc.Write(p)
	if err != nil {
		go c.Close(c.writeError(err))
		return n, err
	}
	c.queued.Add(-int64(len(p)))
	if c.cfg.Written != nil {
		c.cfg.Written()
	}
	return n, nil
}

// promptWrite is how long a caller may spend writing a batch before the
// writer's goroutine takes over the rest.
const promptWrite = time.Millisecond

// tryWrite is a caller's write: it stops with batchwriter.ErrWouldBlock when
// the connection does not take the bytes within promptWrite.
func (c *Conn) tryWrite(p []byte) (int, error) {
	c.nc.SetWriteDeadline(time.Now().Add(promptWrite))
	n, err := c.nc.Write(p)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return n, batchwriter.ErrWouldBlock
	}
	return n, err
}

// deadlineWriter is the async writer's goroutine's: every write must make
// progress within the write timeout (0: no limit).
type deadlineWriter struct{ c *Conn }

// writeChunk is the most the writer's goroutine writes under one deadline.
const writeChunk = 256 << 10

// Write writes p in chunks, each with a deadline of its own, so the timeout
// measures a peer that takes nothing, not a large batch on a slow link.
func (d deadlineWriter) Write(p []byte) (int, error) {
	c := d.c
	written := 0
	for len(p) > 0 {
		chunk := p[:min(len(p), writeChunk)]
		var deadline time.Time
		if t := c.cfg.WriteTimeout; t > 0 {
			deadline = time.Now().Add(t)
		}
		c.nc.SetWriteDeadline(deadline)
		n, err := c.nc.Write(chunk)
		written += n
		if err != nil {
			return written, err
		}
		p = p[n:]
	}
	return written, nil
}

// writeFailed is told by the async writer that a write failed: the
// connection is dead.
func (c *Conn) writeFailed(err error) { c.Close(c.writeError(err)) }

// writeError says why a write failed.
func (c *Conn) writeError(err error) error {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return fmt.Errorf("write: the %s took no bytes for %s (write timeout): %w", c.cfg.Peer, c.cfg.WriteTimeout, err)
	}
	return fmt.Errorf("write: %w", err)
}

// Write queues a copy of frame; counted frames are reported to OnWritten
// once written or dropped. A writer that fails (the connection closed, or
// more than QueueLimit bytes queued) closes the connection, and Write
// returns its error.
func (c *Conn) Write(frame []byte, counted bool) error {
	if !c.cfg.Async {
		c.queued.Add(int64(len(frame)))
	}
	if err := c.w.Write(frame, counted); err != nil {
		c.Close(err)
		return err
	}
	return nil
}

// Queue queues a copy of an uncounted frame and stores where it lies in
// *mark, for Withdraw and Taken (Async).
func (c *Conn) Queue(frame []byte, mark *batchwriter.Mark) error {
	if err := c.w.Queue(frame, mark); err != nil {
		c.Close(err)
		return err
	}
	return nil
}

// QueueWait is Queue for a caller that would rather wait for room in a
// full queue than fail the connection: when ctx ends first it returns
// batchwriter.ErrNoRoom, the frame was not queued and the connection goes
// on. Any other error is the writer's: the connection has failed.
func (c *Conn) QueueWait(ctx context.Context, frame []byte, mark *batchwriter.Mark) error {
	return c.w.QueueWait(ctx, frame, mark)
}

// Withdraw takes a queued frame back, if the writer has not taken it, and
// reports whether none of it was or will be handed to the connection.
func (c *Conn) Withdraw(m batchwriter.Mark) bool { return c.w.Withdraw(m) }

// Taken reports the position before which every queued byte was handed to
// the connection (see batchwriter.Writer.Taken).
func (c *Conn) Taken() int64 { return c.w.Taken() }

// Queued reports how many bytes are queued and not yet written (without
// Async).
func (c *Conn) Queued() int64 { return c.queued.Load() }

var bufferPool = sync.Pool{New: func() any { b := make([]byte, 0, 256); return &b }}

// Send writes a frame with no codec payload (m's payload is sent as it is)
// and returns its size. A payload past the body limit (an error text) is
// cut to 1 KiB.
func (c *Conn) Send(m *protocol.Message, counted bool) int {
	buf := bufferPool.Get().(*[]byte)
	frame, err := protocol.AppendFrame((*buf)[:0], m, c.cfg.MaxBody)
	if err != nil {
		m.Payload = m.Payload[:min(len(m.Payload), 1024)]
		frame, _ = protocol.AppendFrame((*buf)[:0], m, 0)
	}
	c.Write(frame, counted)
	n := len(frame)
	if cap(frame) <= 64<<10 {
		*buf = frame
		bufferPool.Put(buf)
	}
	return n
}

// GoAway tells the peer to send no new calls on this connection, once.
func (c *Conn) GoAway() {
	if c.wentAway.CompareAndSwap(false, true) {
		c.Send(&protocol.Message{Header: protocol.Header{Kind: protocol.KindGoAway}}, false)
	}
}

// Cancel tells the server the caller gave up on request seq.
func (c *Conn) Cancel(seq uint64) {
	c.Send(&protocol.Message{Header: protocol.Header{Kind: protocol.KindCancel, Seq: seq}}, false)
}

// Reset tells the peer stream seq is abandoned, with status and a text
// (none for StatusOK: the caller gave up).
func (c *Conn) Reset(seq uint64, status protocol.Status, text string) {
	m := protocol.Message{Header: protocol.Header{Kind: protocol.KindReset, Status: status, Seq: seq}}
	if status != protocol.StatusOK {
		m.Flags, m.Payload = protocol.FlagError, []byte(text)
	}
	c.Send(&m, false)
}

// WentAway reports whether GoAway was sent.
func (c *Conn) WentAway() bool { return c.wentAway.Load() }
