package consul

import (
	"context"
	"errors"
	"fmt"
	"github.com/shoalrpc/shoal/naming"
	"math/rand/v2"
	"time"

	"github.com/hashicorp/consul/api"
)

// Watch follows the passing instances of service with blocking queries on
// Consul's health endpoint and delivers full snapshots, sorted by ID, to the
// returned channel: the first answer at once (an empty list too), then every
// change. Identical consecutive snapshots are delivered once. A slow reader
// only misses stale snapshots, never the latest.
//
// While Consul is unreachable the watch keeps the last good list (it
// delivers nothing) and retries with exponential backoff and jitter; queries
// are rate-limited. A query Consul refuses by ACL (ErrPermissionDenied, as
// Fetch defines it: an empty answer the token may not read included, such as
// the one a blocking query gets when its token is deleted) is treated the
// same way: the watch keeps its last good list,
// logs the refusal at error level with what the token needs, counts it in
// Stats (WatchErrors, ACLDenials) and retries with backoff, since the
// token's policy may be put right while the watch runs. Fetch returns that
// error to its caller, so a consumer that fetches first (NewClientProxy)
// fails clearly. The channel is closed when ctx ends or the registry is
// closed.
func (c *Registry) Watch(ctx context.Context, service string) (<-chan []*naming.Instance, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("consul watch %s: %w", service, err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, naming.ErrClosed
	}
	wctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(c.ctx, cancel)
	out := naming.NewSnapshots()
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		defer out.Close()
		defer stop()
		defer cancel()
		c.watch(wctx, service, out)
	}()
	return out.C(), nil
}

// watch runs the blocking-query loop of one Watch until ctx ends.
func (c *Registry) watch(ctx context.Context, service string, out *naming.Snapshots) {
	limiter := c.newWatchLimiter()
	bo := backoff{min: c.o.backoffMin, max: c.o.backoffMax}
	var dedup snapshotDedup
	var index uint64
	log := c.o.logger.With("service", service)
	for {
		if err := limiter.Wait(ctx); err != nil {
			return // ctx ended
		}
		entries, meta, err := c.query(ctx, service, index)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			c.watchErrors.Add(1)
			// After a failure the agent may have restarted with a lower
			// index; a blocking query on the old index would then hang for
			// the whole wait. Start over with a non-blocking query.
			index = 0
			d := bo.next()
			if errors.Is(err, ErrPermissionDenied) {
				log.Error("consul refused the watch query; keeping the last good list", "err", err, "retry_in", d)
			} else {
				log.Warn("consul watch query failed; keeping the last good list", "err", err, "retry_in", d)
			}
			if !sleepCtx(ctx, d) {
				return
			}
			continue
		}
		bo.reset()
		index = nextWaitIndex(index, meta.LastIndex)
		if snap := instancesFromEntries(entries); dedup.changed(snap) {
			out.Send(naming.CloneInstances(snap))
		}
	}
}

// query sends one blocking health query. Its deadline is the wait plus
// Consul's jitter (wait/16) plus the request timeout, so it is never shorter
// than the wait.
func (c *Registry) query(ctx context.Context, service string, index uint64) ([]*api.ServiceEntry, *api.QueryMeta, error) {
	c.watchQueries.Add(1)
	ctx, cancel := context.WithTimeout(ctx, c.o.wait+c.o.wait/16+c.o.reqTimeout)
	defer cancel()
	q := c.queryOptions(ctx)
	q.WaitIndex, q.WaitTime = index, c.o.wait
	entries, meta, err := c.client.Health().Service(service, "", true, q)
	if err != nil {
		return nil, nil, fmt.Errorf("consul watch %s (index %d): %w", service, index, c.aclError(err, readNeeds(service)))
	}
	if meta.ResultsFilteredByACLs {
		return nil, nil, fmt.Errorf("consul watch %s (index %d): %w", service, index, c.filteredError(service))
	}
	if err := c.checkEmpty(ctx, service, len(entries), meta); err != nil {
		return nil, nil, fmt.Errorf("consul watch %s (index %d): %w", service, index, err)
	}
	return entries, meta, nil
}

// nextWaitIndex returns the WaitIndex of the next blocking query, given the
// index the last query waited on (sent) and the X-Consul-Index it got back.
//
// An index that goes backwards (the agent restarted or restored a snapshot)
// resets to 0, so the next query answers at once and blocking starts afresh.
// A returned index of 0 is read as 1: waiting on 0 would never block, and
// the loop would spin.
func nextWaitIndex(sent, got uint64) uint64 {
	switch {
	case got < sent:
		return 0
	case got == 0:
		return 1
	}
	return got
}

// snapshotDedup remembers the last delivered snapshot so that identical
// consecutive snapshots (a blocking query that timed out, a change elsewhere
// in the catalog) are delivered once. The first snapshot, empty or not, is
// always delivered.
type snapshotDedup struct {
	last []*naming.Instance
	sent bool
}

// changed reports whether snap (sorted) differs from the last delivered
// snapshot, and if so remembers it.
func (d *snapshotDedup) changed(snap []*naming.Instance) bool {
	if d.sent && naming.SameInstances(d.last, snap) {
		return false
	}
	d.last, d.sent = snap, true
	return true
}

// backoff is exponential backoff with jitter: the n-th delay is drawn from
// [step/2, step] where step = min·2ⁿ, capped at max.
type backoff struct {
	min, max time.Duration
	n        int
}

func (b *backoff) next() time.Duration {
	step := b.min
	for i := 0; i < b.n && step < b.max; i++ {
		step *= 2
	}
	if step > b.max {
		step = b.max
	} else {
		b.n++
	}
	return step/2 + rand.N(step/2+1)
}

func (b *backoff) reset() { b.n = 0 }
