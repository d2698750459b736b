package naming

import (
	"context"
	"fmt"
	"sync"
)

// Static is a registry over a fixed list of addresses, for users without a
// service registry. Every service name resolves to the same list. Register
// is a no-op that returns a working (idempotent, no-op) cancel.
type Static struct {
	addrs []string

	mu      sync.Mutex
	closed  bool
	watches map[*staticWatch]struct{}
}

type staticWatch struct {
	out  *latest
	stop func() bool
}

// NewStatic returns a registry that resolves every service to addrs, each in
// a form SplitAddr accepts ("host:port", "tcp@host:port", "unix@/path"); the
// instances carry them as "network@address". At least one address is needed
// and duplicates are an error.
func NewStatic(addrs ...string) (*Static, error) {
	s, err := newStatic(addrs)
	if err != nil {
		return nil, fmt.Errorf("naming: static registry: %w", err)
	}
	return s, nil
}

// newStatic is NewStatic, its errors without the "naming: static registry"
// context (Open gives its own).
func newStatic(addrs []string) (*Static, error) {
	if len(addrs) == 0 {
		return nil, fmt.Errorf("no address given")
	}
	seen := make(map[string]bool, len(addrs))
	canonical := make([]string, 0, len(addrs))
	for _, a := range addrs {
		c, err := CanonicalAddr(a)
		if err != nil {
			return nil, err
		}
		if seen[c] {
			return nil, fmt.Errorf("address %q given twice", a)
		}
		seen[c] = true
		canonical = append(canonical, c)
	}
	return &Static{
		addrs:   canonical,
		watches: make(map[*staticWatch]struct{}),
	}, nil
}

// Register does nothing: a static list is configured, not registered into.
// It returns a cancel that does nothing either.
func (s *Static) Register(ctx context.Context, in *Instance) (context.CancelFunc, error) {
	if _, err := normalize(in); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	return func() {}, nil
}

// Fetch returns the configured addresses as instances of service, with
// IDs from DefaultID and weight 1, sorted by ID.
func (s *Static) Fetch(ctx context.Context, service string) ([]*Instance, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("static fetch %s: %w", service, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	return s.list(service), nil
}

// Watch delivers the configured list once; the channel is closed when ctx
// ends or the registry is closed.
func (s *Static) Watch(ctx context.Context, service string) (<-chan []*Instance, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("static watch %s: %w", service, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	w := &staticWatch{out: newLatest()}
	w.out.send(s.list(service))
	s.watches[w] = struct{}{}
	w.stop = context.AfterFunc(ctx, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if _, ok := s.watches[w]; !ok {
			return
		}
		delete(s.watches, w)
		w.out.close()
	})
	return w.out.ch, nil
}

// Close closes every watch channel. It is idempotent.
func (s *Static) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	for w := range s.watches {
		w.stop()
		w.out.close()
	}
	s.watches = nil
	return nil
}

func (s *Static) list(service string) []*Instance {
	out := make([]*Instance, 0, len(s.addrs))
	for _, a := range s.addrs {
		out = append(out, &Instance{ID: DefaultID(service, a), Service: service, Addr: a, Weight: 1})
	}
	sortInstances(out)
	return out
}
