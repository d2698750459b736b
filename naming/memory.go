package naming

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// ErrClosed is returned by a registry's methods after Close.
var ErrClosed = errors.New("naming: registry closed")

// Memory is an in-process registry, safe for concurrent use. It is the
// embedded default the quickstart uses: providers and consumers in one
// process share instances by sharing one *Memory value.
//
// Every Open("memory://") and every NewMemory call gives a new, empty
// registry; there is no process-wide registry.
type Memory struct {
	mu       sync.Mutex
	closed   bool
	services map[string]map[string]*Instance // service → ID → instance
	watchers map[string]map[*memWatch]struct{}
}

type memWatch struct {
	out  *latest
	stop func() bool // stops the context.AfterFunc that ends the watch
}

// NewMemory returns a new, empty in-process registry.
func NewMemory() *Memory {
	return &Memory{
		services: make(map[string]map[string]*Instance),
		watchers: make(map[string]map[*memWatch]struct{}),
	}
}

// Register stores in until the returned cancel is called or the registry is
// closed. An empty ID is filled with DefaultID; registering an ID that is
// already present in the service is an error. The instance is copied, so the
// caller may reuse in. ctx is only checked before registering. Cancel is
// idempotent and safe to call after Close.
func (m *Memory) Register(ctx context.Context, in *Instance) (context.CancelFunc, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("memory register: %w", err)
	}
	inst, err := normalize(in)
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, ErrClosed
	}
	byID := m.services[inst.Service]
	if byID == nil {
		byID = make(map[string]*Instance)
		m.services[inst.Service] = byID
	}
	if _, dup := byID[inst.ID]; dup {
		return nil, fmt.Errorf("memory register %s: instance ID already registered in service %q", inst.ID, inst.Service)
	}
	byID[inst.ID] = inst
	m.notifyLocked(inst.Service)

	var once sync.Once
	return func() {
		once.Do(func() {
			m.mu.Lock()
			defer m.mu.Unlock()
			byID := m.services[inst.Service]
			if byID[inst.ID] != inst {
				return // closed meanwhile
			}
			delete(byID, inst.ID)
			if len(byID) == 0 {
				delete(m.services, inst.Service)
			}
			m.notifyLocked(inst.Service)
		})
	}, nil
}

// Fetch returns the instances of service sorted by ID; an unknown service
// gives an empty list, not an error.
func (m *Memory) Fetch(ctx context.Context, service string) ([]*Instance, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("memory fetch %s: %w", service, err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, ErrClosed
	}
	return m.snapshotLocked(service), nil
}

// Watch delivers the current instances of service at once and then a full
// snapshot after every change, until ctx ends or the registry is closed;
// then the channel is closed. A slow reader only misses stale snapshots.
func (m *Memory) Watch(ctx context.Context, service string) (<-chan []*Instance, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("memory watch %s: %w", service, err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, ErrClosed
	}
	w := &memWatch{out: newLatest()}
	set := m.watchers[service]
	if set == nil {
		set = make(map[*memWatch]struct{})
		m.watchers[service] = set
	}
	set[w] = struct{}{}
	w.out.send(m.snapshotLocked(service))
	w.stop = context.AfterFunc(ctx, func() {
		m.mu.Lock()
		defer m.mu.Unlock()
		set := m.watchers[service]
		if _, ok := set[w]; !ok {
			return // closed by Close
		}
		delete(set, w)
		if len(set) == 0 {
			delete(m.watchers, service)
		}
		w.out.close()
	})
	return w.out.ch, nil
}

// Close drops every instance and closes every watch channel. It is
// idempotent.
func (m *Memory) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil
	}
	m.closed = true
	for _, set := range m.watchers {
		for w := range set {
			w.stop()
			w.out.close()
		}
	}
	m.watchers = nil
	m.services = nil
	return nil
}

// notifyLocked sends a fresh snapshot to every watcher of service.
func (m *Memory) notifyLocked(service string) {
	for w := range m.watchers[service] {
		w.out.send(m.snapshotLocked(service))
	}
}

// snapshotLocked returns a sorted deep copy of service's instances.
func (m *Memory) snapshotLocked(service string) []*Instance {
	byID := m.services[service]
	out := make([]*Instance, 0, len(byID))
	for _, in := range byID {
		out = append(out, cloneInstance(in))
	}
	sortInstances(out)
	return out
}
