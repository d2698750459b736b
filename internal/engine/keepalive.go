package engine

import (
	"fmt"
	"time"

	"github.com/shoalrpc/shoal/internal/batchwriter"
	"github.com/shoalrpc/shoal/protocol"
)

// Keepalive is how a Conn watches a silent connection. The zero value
// sends nothing.
type Keepalive struct {
	// Interval and Timeout: when nothing has arrived for Interval, a
	// heartbeat goes out (at most one per Interval); after Timeout of
	// silence the connection is dead. Interval 0: no heartbeats.
	Interval, Timeout time.Duration
	// ProbeAfter and ProbeTimeout: while Busy, a connection silent for
	// ProbeAfter is sent a heartbeat (a probe), and is dead when nothing
	// arrives within ProbeTimeout of the probe's leaving: a peer that
	// vanished without a word is found in seconds, while a peer busy with
	// slow work answers the probe from its reader. ProbeAfter 0: no probes.
	ProbeAfter, ProbeTimeout time.Duration
	// Busy says whether the side waits for the peer (calls pending,
	// streams open). Required with ProbeAfter.
	Busy func() bool
}

func (k Keepalive) enabled() bool { return k.Interval > 0 || k.ProbeAfter > 0 }

// heardFrame notes that a frame arrived: the connection is alive.
func (c *Conn) heardFrame() {
	c.heard.Add(1)
	if c.probing.Load() {
		c.probing.Store(false)
	}
}

// Probing reports whether a probe has left and nothing has arrived since:
// a call that times out now timed out on a silent connection.
func (c *Conn) Probing() bool { return c.probing.Load() }

// Nudge tells a keepalive that sleeps while the side is not busy that
// the side may be busy now. It costs an atomic load when the keepalive is
// awake.
func (c *Conn) Nudge() {
	if c.idle.Load() && c.idle.CompareAndSwap(true, false) {
		select {
		case c.nudge <- struct{}{}:
		default:
		}
	}
}

// keepalive watches the connection for silence (see Keepalive).
func (c *Conn) keepalive() {
	o := &c.cfg.Keepalive
	tick := max(min(o.ProbeAfter, o.ProbeTimeout)/4, 5*time.Millisecond)
	// With probes it starts idle (New set c.idle): the first Nudge wakes it.
	t := time.NewTimer(o.Interval)
	if o.Interval <= 0 {
		t.Stop()
	}
	defer t.Stop()
	last, heardAt := c.heard.Load(), time.Now()
	var busySince, hbSent time.Time
	// A probe's timeout runs from when the writer took it, not from when it
	// was queued: behind a large frame that a slow link is still taking,
	// it would otherwise time out with the peer alive and reading.
	var probe batchwriter.Mark
	var probeQueued bool
	var probeSent time.Time // zero until the writer took the probe
	var frame []byte
	send := func(mark *batchwriter.Mark) bool {
		hb := protocol.Message{Header: protocol.Header{Kind: protocol.KindHeartbeat}}
		frame, _ = protocol.AppendFrame(frame[:0], &hb, 0)
		if err := c.w.Queue(frame, mark); err != nil {
			c.Close(fmt.Errorf("write heartbeat: %w", err))
			return false
		}
		return true
	}
	for {
		select {
		case <-c.done:
			return
		case <-c.nudge:
		case <-t.C:
		}
		now := time.Now()
		if n := c.heard.Load(); n != last {
			last, heardAt, probeQueued, probeSent = n, now, false, time.Time{}
			c.probing.Store(false)
		}
		busy := o.ProbeAfter > 0 && o.Busy()
		switch {
		case !busy:
			busySince = time.Time{}
		case busySince.IsZero():
			busySince = now // silence counts from when the side began to wait
		}
		if busy {
			from := heardAt // silent since the last frame, or since the side began to wait
			if busySince.After(from) {
				from = busySince
			}
			silent := now.Sub(from)
			if !probeQueued && silent >= o.ProbeAfter {
				if !send(&probe) {
					return
				}
				probeQueued, hbSent = true, now
			}
			if probeQueued && probeSent.IsZero() && c.w.Taken() >= probe.End() {
				probeSent = now
				c.probing.Store(true)
				if c.heard.Load() != last { // answered already: the next round resets it
					c.probing.Store(false)
				}
			}
			if !probeSent.IsZero() && now.Sub(probeSent) >= o.ProbeTimeout {
				c.Close(fmt.Errorf("no frame from the %s for %s while waiting on it; a probe went unanswered for %s",
					c.cfg.Peer, now.Sub(heardAt).Round(time.Millisecond), now.Sub(probeSent).Round(time.Millisecond)))
				return
			}
		}
		if o.Interval > 0 {
			silent := now.Sub(heardAt)
			if silent >= o.Timeout {
				c.Close(fmt.Errorf("no frame from the %s for %s", c.cfg.Peer, silent.Round(time.Millisecond)))
				return
			}
			if silent >= o.Interval && now.Sub(hbSent) >= o.Interval {
				if !send(nil) {
					return
				}
				hbSent = now
			}
		}
		next := o.Interval
		if busy && (next <= 0 || tick < next) {
			next = tick
		}
		if !busy && o.ProbeAfter > 0 {
			// Sleep until the side is busy again (Nudge) or the next
			// heartbeat is due. The flag is set before the last look at
			// Busy, so work that starts meanwhile is not missed.
			c.idle.Store(true)
			if o.Busy() && c.idle.CompareAndSwap(true, false) {
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
