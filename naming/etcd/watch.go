package etcd

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/shoalrpc/shoal/naming"
)

// Watch follows the instances of service and delivers full snapshots, sorted
// by ID: the first at once (an empty list too), then every change. A slow
// reader only misses stale snapshots, never the latest.
//
// It reads the service's keys, then watches them from the read's revision
// + 1. When the watch breaks (the revision was compacted, etcd canceled it)
// or a periodic check (WithResync) finds the view out of step with etcd (a
// different number of keys, or a revision that went backwards: etcd lost its
// data), it reads and watches again, with backoff and jitter. After etcd
// lost its data it first waits one TTL, so live providers have put their
// instances again before the list is read.
//
// While etcd is unreachable the watch keeps the last good list: it delivers
// nothing. The channel is closed when ctx ends or the registry is closed.
func (r *Registry) Watch(ctx context.Context, service string) (<-chan []*naming.Instance, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("naming/etcd: watch %s: %w", service, err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, naming.ErrClosed
	}
	wctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(r.ctx, cancel)
	out := naming.NewSnapshots()
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		defer out.Close()
		defer stop()
		defer cancel()
		w := &watcher{r: r, service: service, prefix: r.serviceKey(service), out: out}
		w.run(wctx)
	}()
	return out.C(), nil
}

// watcher is the state of one Watch.
type watcher struct {
	r       *Registry
	service string
	prefix  string
	out     *naming.Snapshots

	keys map[string]*naming.Instance // every key under prefix; nil for values that are not instances
	rev  int64                       // the highest revision seen
	last []*naming.Instance          // the last delivered snapshot
	sent bool
}

// errReset says etcd's revision went backwards: it lost its data.
var errReset = errors.New("etcd revision went backwards (etcd lost its data)")

func (w *watcher) run(ctx context.Context) {
	r := w.r
	log := r.o.logger.With("service", w.service)
	bo := backoff{min: r.o.backoffMin, max: r.o.backoffMax}
	for {
		err := w.follow(ctx, &bo)
		if ctx.Err() != nil {
			return
		}
		r.watchRestarts.Add(1)
		d := bo.next()
		if errors.Is(err, errReset) {
			d = max(d, r.o.ttl)
		}
		log.Warn("etcd watch restarting; keeping the last list", "err", err, "retry_in", d, "instances", len(w.last))
		if !sleepCtx(ctx, d) {
			return
		}
	}
}

// follow reads the keys, delivers the snapshot and watches from the next
// revision until the watch breaks, the view is found out of step, or ctx
// ends. It returns why it stopped.
func (w *watcher) follow(ctx context.Context, bo *backoff) error {
	r := w.r
	gctx, cancel := context.WithTimeout(ctx, r.o.reqTimeout)
	resp, err := r.cli.Get(gctx, w.prefix, clientv3.WithPrefix())
	cancel()
	if err != nil {
		r.watchErrors.Add(1)
		return fmt.Errorf("read %s: %w", w.prefix, describe(err, &r.o))
	}
	w.rev = resp.Header.Revision
	w.keys = make(map[string]*naming.Instance, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		w.keys[string(kv.Key)] = r.decode(w.service, kv.Key, kv.Value)
	}
	w.deliver()

	wctx, stop := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer stop()
	wch := r.cli.Watch(wctx, w.prefix, clientv3.WithPrefix(), clientv3.WithRev(w.rev+1))
	resync := time.NewTicker(r.o.resync)
	defer resync.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case wr, ok := <-wch:
			if !ok {
				return errors.New("watch channel closed")
			}
			if err := wr.Err(); err != nil {
				if errors.Is(err, rpctypes.ErrCompacted) {
					return fmt.Errorf("watch from revision %d: compacted up to %d: %w", w.rev+1, wr.CompactRevision, err)
				}
				return fmt.Errorf("watch: %w", describe(err, &r.o))
			}
			if wr.Canceled {
				return errors.New("watch canceled by etcd")
			}
			bo.reset()
			for _, ev := range wr.Events {
				key := string(ev.Kv.Key)
				switch ev.Type {
				case mvccpb.PUT:
					w.keys[key] = r.decode(w.service, ev.Kv.Key, ev.Kv.Value)
				case mvccpb.DELETE:
					delete(w.keys, key)
				}
			}
			w.rev = max(w.rev, wr.Header.Revision)
			w.deliver()
		case <-resync.C:
			if err := w.check(ctx); err != nil {
				return err
			}
		}
	}
}

// check compares the view with etcd: the number of keys under the prefix
// and the revision. An unreachable etcd is not a reason to start over (the
// client's watch resumes by itself when etcd is back); a mismatch is.
func (w *watcher) check(ctx context.Context) error {
	r := w.r
	r.watchChecks.Add(1)
	ctx, cancel := context.WithTimeout(ctx, r.o.reqTimeout)
	defer cancel()
	resp, err := r.cli.Get(ctx, w.prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	switch {
	case err != nil:
		r.watchErrors.Add(1)
		r.o.logger.Warn("etcd unreachable; keeping the last list", "service", w.service, "err", describe(err, &r.o), "instances", len(w.last))
		return nil
	case resp.Header.Revision < w.rev:
		return fmt.Errorf("%w: %d after %d", errReset, resp.Header.Revision, w.rev)
	case resp.Count != int64(len(w.keys)):
		return fmt.Errorf("view out of step: %d keys in etcd at revision %d, %d watched", resp.Count, resp.Header.Revision, len(w.keys))
	}
	return nil
}

// deliver sends the current snapshot if it differs from the last one.
func (w *watcher) deliver() {
	snap := make([]*naming.Instance, 0, len(w.keys))
	for _, in := range w.keys {
		if in != nil {
			snap = append(snap, in)
		}
	}
	naming.SortInstances(snap)
	if w.sent && naming.SameInstances(w.last, snap) {
		return
	}
	w.last, w.sent = snap, true
	w.out.Send(naming.CloneInstances(snap))
}
