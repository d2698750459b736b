package dns

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/shoalrpc/shoal/naming"
)

// watch is one Watch's request channel for ResolveNow.
type watch struct {
	now chan struct{} // buffer of one: a pending on-demand resolution
}

// Watch resolves the name at once, then every refresh interval and on
// ResolveNow, and delivers full snapshots sorted by ID: the first answer
// (an empty list too), then every change. A slow reader only misses stale
// snapshots, never the latest.
//
// A resolution that fails (the resolver times out or is unreachable) keeps
// the last list: nothing is delivered, and the watch tries again sooner,
// with backoff up to the refresh interval. A name that does not exist
// (NXDOMAIN) or has no records is an answer: the empty list. The channel is
// closed when ctx ends or the registry is closed.
func (r *Registry) Watch(ctx context.Context, service string) (<-chan []*naming.Instance, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("naming/dns: watch %s: %w", service, err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, naming.ErrClosed
	}
	w := &watch{now: make(chan struct{}, 1)}
	r.watches[w] = struct{}{}
	wctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(r.ctx, cancel)
	out := naming.NewSnapshots()
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		defer out.Close()
		defer stop()
		defer cancel()
		defer r.forget(w)
		r.watch(wctx, service, w, out)
	}()
	return out.C(), nil
}

func (r *Registry) forget(w *watch) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.watches, w)
}

// watch is the resolve loop of one Watch.
func (r *Registry) watch(ctx context.Context, service string, w *watch, out *naming.Snapshots) {
	log := r.o.logger.With("service", service, "name", r.name(service))
	var last []*naming.Instance
	sent := false
	var lastResolve time.Time
	retry := time.Second // delay after a failure; doubles up to the refresh
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		case <-w.now:
			if wait := time.Until(lastResolve.Add(r.o.minResolve)); wait > 0 && !sleepCtx(ctx, wait) {
				return
			}
			r.resolveNows.Add(1)
		}
		lastResolve = time.Now()
		list, err := r.resolve(ctx, service)
		next := r.o.refresh
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			// Jitter spreads the retries of many consumers.
			next = min(retry, r.o.refresh)
			next = next/2 + rand.N(next/2+1)
			retry *= 2
			log.Warn("DNS resolution failed; keeping the last list", "err", err, "retry_in", next, "instances", len(last))
		default:
			retry = time.Second
			if !sent || !naming.SameInstances(last, list) {
				last, sent = list, true
				out.Send(naming.CloneInstances(list))
			}
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(next)
	}
}

// sleepCtx waits for d or until ctx ends; it reports whether d elapsed.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
