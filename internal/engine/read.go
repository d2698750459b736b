package engine

import (
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/shoalrpc/shoal/protocol"
)

// frameHandler handles one kind of frame; an error ends the connection.
type frameHandler func(c *Conn, m *protocol.Message) error

// frameHandlers is the dispatch table: every kind a peer may send, and what
// the engine does with it. A kind missing here is a protocol violation.
var frameHandlers = [...]frameHandler{
	protocol.KindRequest:    (*Conn).request,
	protocol.KindResponse:   (*Conn).response,
	protocol.KindHeartbeat:  (*Conn).heartbeat,
	protocol.KindGoAway:     (*Conn).goAwayFrame,
	protocol.KindCancel:     (*Conn).cancelFrame,
	protocol.KindStreamData: (*Conn).streamData,
	protocol.KindStreamEnd:  (*Conn).streamEnd,
	protocol.KindWindow:     (*Conn).window,
	protocol.KindReset:      (*Conn).reset,
}

// Serve reads frames from in (the connection, or what a server read of it
// already, followed by it) until the connection fails or closes. This is
// where a frame is decoded and dispatched. When Serve ends the connection
// is closed; it returns why: nil when it was closed by Close, the read
// error (a peer that closed wraps io.EOF) or the protocol violation
// otherwise.
func (c *Conn) Serve(in io.Reader) error {
	r := protocol.NewReader(in, c.cfg.MaxBody)
	if c.cfg.ReleaseIdle || c.cfg.IdleTimeout > 0 || c.cfg.ReadTimeout > 0 {
		r.OnWait = c.onWait
	}
	var m protocol.Message
	for {
		if c.h.BeforeRead != nil && !c.h.BeforeRead() {
			c.Close(nil)
			return nil
		}
		if err := r.Read(&m); err != nil {
			var tooLarge *protocol.TooLargeError
			if errors.As(err, &tooLarge) {
				// Skipped whole: the connection is in step.
				c.heardFrame()
				if err := c.tooLarge(&m, tooLarge); err != nil {
					c.Close(err)
					return err
				}
				continue
			}
			return c.readFailed(err)
		}
		c.heardFrame()
		var handle frameHandler
		if int(m.Kind) < len(frameHandlers) {
			handle = frameHandlers[m.Kind]
		}
		if handle == nil {
			return c.violation(&m)
		}
		if err := handle(c, &m); err != nil {
			c.Close(err)
			return err
		}
		if c.h.AfterFrame != nil {
			c.h.AfterFrame()
		}
	}
}

// readFailed ends the connection on a read error.
func (c *Conn) readFailed(err error) error {
	select {
	case <-c.done:
		return nil // closed by Close: the read error is its consequence
	default:
	}
	// Whatever the writer takes from now on goes to a connection known to
	// be dead: those frames were not sent.
	c.deadAt.Store(c.w.Taken() + 1)
	if c.cfg.OnDead != nil {
		c.cfg.OnDead()
	}
	if errors.Is(err, io.EOF) {
		err = fmt.Errorf("%s closed the connection: %w", c.cfg.Peer, err)
	}
	c.Close(err)
	return err
}

// violation ends the connection on a frame its side never receives.
func (c *Conn) violation(m *protocol.Message) error {
	err := fmt.Errorf("%w: unexpected %s frame from the %s", protocol.ErrMalformed, m.Kind, c.cfg.Peer)
	c.Close(err)
	return err
}

// onWait sets the read deadline before the reader waits on the connection:
// the idle timeout between frames (none while streams are open: they are
// activity), the read timeout within one.
func (c *Conn) onWait(started bool) {
	timeout := c.cfg.IdleTimeout
	switch {
	case started:
		timeout = c.cfg.ReadTimeout
	case timeout > 0 && c.Streams() > 0:
		timeout = 0
	}
	var deadline time.Time
	if timeout > 0 {
		deadline = time.Now().Add(timeout)
	}
	c.nc.SetReadDeadline(deadline)
}

// tooLarge handles a frame whose body was over MaxBody and was skipped: a
// request or response goes to the side (only that call fails); a stream
// message resets its stream both ways, since a stream that lost a message
// must not go on as if it had not. Any other kind has a small body by the
// protocol, or is not one this side receives: a violation.
func (c *Conn) tooLarge(m *protocol.Message, e *protocol.TooLargeError) error {
	switch k := e.Header.Kind; {
	case k == protocol.KindRequest && c.h.Request != nil, k == protocol.KindResponse && c.h.Response != nil:
		if c.h.TooLarge != nil {
			c.h.TooLarge(m, e)
		}
	case k == protocol.KindStreamData:
		s := c.stream(e.Header.Seq)
		if s == nil || !c.RemoveStream(e.Header.Seq) {
			return nil // ended already
		}
		c.Reset(e.Header.Seq, protocol.StatusTooLarge, fmt.Sprintf("a stream message of %d bytes is over the %s's limit of %d bytes",
			e.Header.BodyLen, c.self(), e.Limit))
		s.TooLarge(e)
	default:
		return fmt.Errorf("%w: a %s frame of %d bytes from the %s", protocol.ErrMalformed, k, e.Header.BodyLen, c.cfg.Peer)
	}
	return nil
}

// self names this end, for messages the peer reads.
func (c *Conn) self() string {
	if c.cfg.Peer == "server" {
		return "client"
	}
	return "server"
}

func (c *Conn) request(m *protocol.Message) error {
	if c.h.Request == nil {
		return c.unexpected(m)
	}
	c.h.Request(m)
	return nil
}

func (c *Conn) response(m *protocol.Message) error {
	if c.h.Response == nil {
		return c.unexpected(m)
	}
	c.h.Response(m)
	return nil
}

// heartbeat answers a heartbeat; an answer needs nothing more: its arrival
// is what the keepalive looks for.
func (c *Conn) heartbeat(m *protocol.Message) error {
	if m.Flags&protocol.FlagReply == 0 {
		c.Send(&protocol.Message{Header: protocol.Header{Kind: protocol.KindHeartbeat, Flags: protocol.FlagReply, Seq: m.Seq}}, false)
	}
	return nil
}

func (c *Conn) goAwayFrame(m *protocol.Message) error {
	if c.h.GoAway == nil {
		return c.unexpected(m)
	}
	c.h.GoAway()
	return nil
}

func (c *Conn) cancelFrame(m *protocol.Message) error {
	if c.h.Cancel == nil {
		return c.unexpected(m)
	}
	c.h.Cancel(m.Seq)
	return nil
}

// unexpected is the error of a frame its side never receives.
func (c *Conn) unexpected(m *protocol.Message) error {
	return fmt.Errorf("%w: unexpected %s frame from the %s", protocol.ErrMalformed, m.Kind, c.cfg.Peer)
}

// Stream frames go to their stream; a frame for a stream that has ended
// (or never was) is ignored: its end and the frame crossed. A violation of
// a stream's window ends the connection.

func (c *Conn) streamData(m *protocol.Message) error {
	if s := c.stream(m.Seq); s != nil {
		return s.Flow().Deliver(m)
	}
	return nil
}

func (c *Conn) window(m *protocol.Message) error {
	if s := c.stream(m.Seq); s != nil {
		return s.Flow().Grant(protocol.WindowIncrement(m))
	}
	return nil
}

func (c *Conn) streamEnd(m *protocol.Message) error {
	if s := c.stream(m.Seq); s != nil {
		s.PeerEnded(m)
	}
	return nil
}

func (c *Conn) reset(m *protocol.Message) error {
	if s := c.stream(m.Seq); s != nil {
		s.PeerReset(m)
	}
	return nil
}
