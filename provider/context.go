package provider

import (
	"context"
	"sync"
	"time"
)

type metadataKey struct{}

// Metadata returns the metadata the caller sent with the request handled
// under ctx, or nil. The map must not be modified.
func Metadata(ctx context.Context) map[string]string {
	md, _ := ctx.Value(metadataKey{}).(map[string]string)
	return md
}

// requestContext is the context a method runs under: the caller's deadline
// and metadata, cancelled by a cancel frame, by the end of the connection,
// or when the method returns.
//
// It arms no timer until the method asks for Done: only then does it make
// a standard context that carries the deadline, and from then on that
// context holds the state. Before, Err reads the clock. Most methods never
// wait on their context, and context.WithTimeout for every request, arming
// and stopping a timer, took 12 % of the server's CPU in the benchmark.
// Value hands the standard context's internals through, so contexts derived
// from this one attach to it directly, as they would to a context of the
// context package, without a goroutine to watch Done.
type requestContext struct {
	deadline time.Time // zero: none
	md       map[string]string
	conn     *conn // the request's connection, for PeerOf

	mu          sync.Mutex
	err         error           // before inner: Canceled or DeadlineExceeded once it is so
	inner       context.Context // made by the first Done
	innerCancel context.CancelFunc
}

// newRequestContext returns the context of a request due by deadline (zero:
// none) that carries metadata md.
func newRequestContext(deadline time.Time, md map[string]string, c *conn) *requestContext {
	return &requestContext{deadline: deadline, md: md, conn: c}
}

// Deadline implements context.Context.
func (c *requestContext) Deadline() (time.Time, bool) { return c.deadline, !c.deadline.IsZero() }

// Done implements context.Context.
func (c *requestContext) Done() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.inner == nil {
		c.expireLocked()
		if c.deadline.IsZero() {
			c.inner, c.innerCancel = context.WithCancel(context.Background())
		} else {
			// A deadline already past makes a context already done with
			// DeadlineExceeded, as Err has said.
			c.inner, c.innerCancel = context.WithDeadline(context.Background(), c.deadline)
		}
		if c.err == context.Canceled {
			c.innerCancel()
		}
	}
	return c.inner.Done()
}

// Err implements context.Context.
func (c *requestContext) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.inner != nil {
		return c.inner.Err()
	}
	c.expireLocked()
	return c.err
}

// Value implements context.Context: the metadata, and what the standard
// context made by Done answers for any other key.
func (c *requestContext) Value(key any) any {
	switch key {
	case metadataKey{}:
		if c.md == nil {
			return nil
		}
		return c.md
	case peerKey{}:
		return c.conn
	}
	c.mu.Lock()
	inner := c.inner
	c.mu.Unlock()
	if inner != nil {
		return inner.Value(key)
	}
	return nil
}

// cancel cancels the context, unless it is over already.
func (c *requestContext) cancel() {
	c.mu.Lock()
	if c.inner != nil {
		cancel := c.innerCancel
		c.mu.Unlock()
		cancel()
		return
	}
	c.expireLocked()
	if c.err == nil {
		c.err = context.Canceled
	}
	c.mu.Unlock()
}

// expireLocked records DeadlineExceeded once the deadline has passed.
func (c *requestContext) expireLocked() {
	if c.err == nil && !c.deadline.IsZero() && !time.Now().Before(c.deadline) {
		c.err = context.DeadlineExceeded
	}
}

// String names the context, as the context package's own do.
func (c *requestContext) String() string { return "provider.requestContext" }
