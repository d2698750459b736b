package consumer

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"

	"golang.org/x/sync/singleflight"
)

// Pool keeps a fixed number of long connections to each address (default 1,
// WithConnsPerAddr), dialled on first use. A connection that broke, or that
// its server asked to go away, is replaced on the next Get. Concurrent Gets
// that need the same connection share one dial.
type Pool struct {
	opts options
	dial singleflight.Group

	addrs  sync.Map    // address → *slots; read without a lock on every Get
	closed atomic.Bool // Get refuses once set

	mu sync.Mutex // serialises changes: new slots, replacing, dropping, closing
}

// slots are the connections to one address, used in turn.
type slots struct {
	conns []atomic.Pointer[Client]
	next  atomic.Uint32
}

// NewPool returns an empty pool; opts apply to every connection it makes.
// An invalid option value is an error naming the option.
func NewPool(opts ...PoolOption) (*Pool, error) {
	o, err := poolOptions(opts)
	if err != nil {
		return nil, err
	}
	return newPool(o), nil
}

func newPool(o options) *Pool { return &Pool{opts: o} }

// ErrPoolClosed is returned by Get after Close.
var ErrPoolClosed = fmt.Errorf("%w: pool closed", ErrClientClosed)

// Get returns a usable connection to addr, dialling one if needed. The dial
// is shared with other callers and bounded by the dial timeout; ctx bounds
// only this caller's wait. When the connection is there, Get takes no lock.
func (p *Pool) Get(ctx context.Context, addr string) (*Client, error) {
	if p.closed.Load() {
		return nil, ErrPoolClosed
	}
	s := p.slotsFor(addr)
	i := int(s.next.Add(1)-1) % len(s.conns)
	if c := s.conns[i].Load(); c != nil && c.Usable() {
		return c, nil
	}

	ch := p.dial.DoChan(addr+"#"+strconv.Itoa(i), func() (any, error) {
		return p.replace(addr, s, i)
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

// slotsFor returns addr's slots, making them on first use.
func (p *Pool) slotsFor(addr string) *slots {
	if s, ok := p.addrs.Load(addr); ok {
		return s.(*slots)
	}
	s, _ := p.addrs.LoadOrStore(addr, &slots{conns: make([]atomic.Pointer[Client], p.opts.connsPerAddr)})
	return s.(*slots)
}

// replace dials connection i of s, addr's slots, unless a usable one is
// already there.
func (p *Pool) replace(addr string, s *slots, i int) (*Client, error) {
	if c := s.conns[i].Load(); c != nil && c.Usable() {
		return c, nil
	}
	c, err := dial(context.Background(), addr, p.opts)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	if p.closed.Load() {
		p.mu.Unlock()
		c.Close()
		return nil, ErrPoolClosed
	}
	if cur, ok := p.addrs.Load(addr); !ok || cur.(*slots) != s {
		p.mu.Unlock()
		c.Close()
		return nil, fmt.Errorf("%w: %s left while it was being dialled", ErrClientClosed, addr)
	}
	old := s.conns[i].Swap(c)
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
	s, ok := p.addrs.LoadAndDelete(addr)
	p.mu.Unlock()
	if ok {
		for i := range s.(*slots).conns {
			if c := s.(*slots).conns[i].Load(); c != nil {
				c.closeWhenIdle()
			}
		}
	}
}

// Close closes every connection; their pending calls fail with
// ErrConnClosed. Later Gets fail with ErrPoolClosed. It is safe to call twice.
func (p *Pool) Close() error {
	p.mu.Lock()
	p.closed.Store(true)
	var all []*slots
	p.addrs.Range(func(addr, s any) bool {
		all = append(all, s.(*slots))
		p.addrs.Delete(addr)
		return true
	})
	p.mu.Unlock()
	var errs []error
	for _, s := range all {
		for i := range s.conns {
			if c := s.conns[i].Load(); c != nil {
				errs = append(errs, c.Close())
			}
		}
	}
	return errors.Join(errs...)
}
