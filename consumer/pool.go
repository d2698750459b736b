package consumer

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"

	"golang.org/x/sync/singleflight"
)

// Pool keeps a fixed number of long connections to each address (default 1,
// WithConnsPerAddr), dialled on first use. A connection that broke, or that
// its server asked to go away, is replaced on the next Get. Concurrent Gets
// that need the same connection share one dial.
type Pool struct {
	opts options
	dial singleflight.Group

	mu     sync.Mutex
	addrs  map[string]*slots
	closed bool
}

// slots are the connections to one address, used in turn.
type slots struct {
	conns []*Client
	next  int
}

// NewPool returns an empty pool; opts apply to every connection it makes.
func NewPool(opts ...Option) *Pool { return newPool(buildOptions(opts)) }

func newPool(o options) *Pool {
	return &Pool{opts: o, addrs: make(map[string]*slots)}
}

// ErrPoolClosed is returned by Get after Close.
var ErrPoolClosed = fmt.Errorf("%w: pool closed", ErrClientClosed)

// Get returns a usable connection to addr, dialling one if needed. The dial
// is shared with other callers and bounded by the dial timeout; ctx bounds
// only this caller's wait.
func (p *Pool) Get(ctx context.Context, addr string) (*Client, error) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, ErrPoolClosed
	}
	s := p.addrs[addr]
	if s == nil {
		s = &slots{conns: make([]*Client, p.opts.connsPerAddr)}
		p.addrs[addr] = s
	}
	i := s.next
	s.next = (s.next + 1) % len(s.conns)
	c := s.conns[i]
	p.mu.Unlock()
	if c != nil && c.Usable() {
		return c, nil
	}

	ch := p.dial.DoChan(addr+"#"+strconv.Itoa(i), func() (any, error) {
		return p.replace(addr, i)
	})
	select {
	case r := <-ch:
		if r.Err != nil {
			return nil, r.Err
		}
		return r.Val.(*Client), nil
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: waiting for a connection to %s: %w", ErrDial, addr, ctx.Err())
	}
}

// replace dials connection i to addr unless a usable one is already there.
func (p *Pool) replace(addr string, i int) (*Client, error) {
	p.mu.Lock()
	if s := p.addrs[addr]; s != nil && s.conns[i] != nil && s.conns[i].Usable() {
		c := s.conns[i]
		p.mu.Unlock()
		return c, nil
	}
	p.mu.Unlock()

	c, err := dial(context.Background(), addr, p.opts)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	s := p.addrs[addr]
	if p.closed {
		p.mu.Unlock()
		c.Close()
		return nil, ErrPoolClosed
	}
	if s == nil {
		p.mu.Unlock()
		c.Close()
		return nil, fmt.Errorf("%w: %s left while it was being dialled", ErrClientClosed, addr)
	}
	old := s.conns[i]
	s.conns[i] = c
	p.mu.Unlock()
	if old != nil {
		old.closeWhenIdle()
	}
	return c, nil
}

// Drop stops using the connections to addr: they close once their pending
// calls have completed.
func (p *Pool) Drop(addr string) {
	p.mu.Lock()
	s := p.addrs[addr]
	delete(p.addrs, addr)
	p.mu.Unlock()
	if s != nil {
		for _, c := range s.conns {
			if c != nil {
				c.closeWhenIdle()
			}
		}
	}
}

// Close closes every connection; their pending calls fail with
// ErrConnClosed. Later Gets fail with ErrPoolClosed. It is safe to call twice.
func (p *Pool) Close() error {
	p.mu.Lock()
	p.closed = true
	addrs := p.addrs
	p.addrs = make(map[string]*slots)
	p.mu.Unlock()
	var errs []error
	for _, s := range addrs {
		for _, c := range s.conns {
			if c != nil {
				errs = append(errs, c.Close())
			}
		}
	}
	return errors.Join(errs...)
}
