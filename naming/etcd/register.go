package etcd

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/shoalrpc/shoal/naming"
)

// reg is one active registration and its keep-alive goroutine.
type reg struct {
	r     *Registry
	inst  *naming.Instance
	key   string
	value string

	ctx        context.Context // ends the keep-alive
	stop       context.CancelFunc
	done       chan struct{} // closed when the keep-alive goroutine returns
	lease      clientv3.LeaseID
	deregister sync.Once
}

// Register puts in under prefix/service/id, bound to a lease with the TTL,
// and keeps the lease alive until the returned cancel is called or the
// registry is closed. ctx bounds the first put only.
//
// The ID defaults to naming.DefaultID (service-host-port), so a provider
// restarted at the same address replaces its own key. When the lease is lost
// (its keep-alive stream ends: etcd lost it, or etcd was unreachable for
// longer than the TTL) the registry grants a new lease and puts the instance
// again, retrying with backoff and jitter until it succeeds.
//
// The cancel stops the keep-alive, revokes the lease (which deletes the key
// at once) and deletes the key if the revoke failed, bounded by the request
// timeout. It is idempotent.
func (r *Registry) Register(ctx context.Context, in *naming.Instance) (context.CancelFunc, error) {
	inst, err := normalize(in)
	if err != nil {
		return nil, err
	}
	value, err := json.Marshal(record{ID: inst.ID, Service: inst.Service, Addr: inst.Addr, Weight: inst.Weight, Tags: inst.Tags, Meta: inst.Meta})
	if err != nil {
		return nil, fmt.Errorf("naming/etcd: register %s: %w", inst.ID, err)
	}
	gctx, stop := context.WithCancel(r.ctx)
	g := &reg{r: r, inst: inst, key: r.serviceKey(inst.Service) + inst.ID, value: string(value), ctx: gctx, stop: stop, done: make(chan struct{})}

	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		stop()
		return nil, naming.ErrClosed
	}
	if _, dup := r.regs[g.key]; dup {
		r.mu.Unlock()
		stop()
		return nil, fmt.Errorf("naming/etcd: register %s: instance ID already registered by this registry", inst.ID)
	}
	r.regs[g.key] = g // reserves the key while registering
	r.mu.Unlock()

	ka, err := g.put(ctx)
	if err != nil {
		stop()
		close(g.done)
		r.forget(g)
		return nil, err
	}
	r.mu.Lock()
	if r.closed {
		// Close saw g reserved and cancels it once done is closed.
		r.mu.Unlock()
		stop()
		close(g.done)
		return nil, naming.ErrClosed
	}
	r.wg.Add(1)
	r.mu.Unlock()
	go g.keepAlive(ka)
	return g.cancel, nil
}

// normalize is naming.Normalize, plus what keys need: no '/' in the
// service name or the ID.
func normalize(in *naming.Instance) (*naming.Instance, error) {
	out, err := naming.Normalize(in)
	if err != nil {
		return nil, err
	}
	if strings.Contains(out.Service, "/") || strings.Contains(out.ID, "/") {
		return nil, fmt.Errorf("%w: service %q, ID %q: etcd keys need names without '/'", naming.ErrInvalidInstance, out.Service, out.ID)
	}
	return out, nil
}

// put grants a lease, puts the instance bound to it and starts keeping the
// lease alive (for as long as g.ctx lasts).
func (g *reg) put(ctx context.Context) (<-chan *clientv3.LeaseKeepAliveResponse, error) {
	r := g.r
	ctx, cancel := context.WithTimeout(ctx, r.o.reqTimeout)
	defer cancel()
	ttl := int64((r.o.ttl + time.Second - 1) / time.Second)
	lease, err := r.cli.Grant(ctx, ttl)
	if err != nil {
		return nil, fmt.Errorf("naming/etcd: register %s: grant a %ds lease: %w", g.inst.ID, ttl, describe(err, &r.o))
	}
	if _, err := r.cli.Put(ctx, g.key, g.value, clientv3.WithLease(lease.ID)); err != nil {
		g.revoke(lease.ID)
		return nil, fmt.Errorf("naming/etcd: register %s: put %s: %w", g.inst.ID, g.key, describe(err, &r.o))
	}
	ka, err := r.cli.KeepAlive(g.ctx, lease.ID)
	if err != nil {
		g.revoke(lease.ID)
		return nil, fmt.Errorf("naming/etcd: register %s: keep the lease alive: %w", g.inst.ID, describe(err, &r.o))
	}
	g.lease = lease.ID
	r.registrations.Add(1)
	return ka, nil
}

// keepAlive drains the keep-alive responses; when the stream ends while the
// registration is active, the lease is lost: put the instance again under a
// new lease, with backoff and jitter, until it succeeds or g.ctx ends.
func (g *reg) keepAlive(ka <-chan *clientv3.LeaseKeepAliveResponse) {
	r := g.r
	defer r.wg.Done()
	defer close(g.done)
	log := r.o.logger.With("service", g.inst.Service, "id", g.inst.ID)
	bo := backoff{min: r.o.backoffMin, max: r.o.backoffMax}
	for {
		for range ka { // each response is a renewed lease
		}
		if g.ctx.Err() != nil {
			return
		}
		r.leaseLosses.Add(1)
		// Jitter, so that many instances do not all grant at once after
		// an etcd restart.
		d := rand.N(r.o.ttl/3) + time.Millisecond
		log.Info("etcd lease lost; registering again", "lease", int64(g.lease), "in", d)
		for {
			if !sleepCtx(g.ctx, d) {
				return
			}
			next, err := g.put(g.ctx)
			if err == nil {
				// The key is bound to the new lease now. The old one,
				// if etcd still has it, holds nothing and expires; it is
				// not revoked, since after an etcd reset its ID may
				// belong to someone else.
				ka = next
				r.reregistrations.Add(1)
				bo.reset()
				break
			}
			if g.ctx.Err() != nil {
				return
			}
			d = bo.next()
			log.Warn("etcd re-register failed; will retry", "err", err, "retry_in", d)
		}
	}
}

// revoke revokes lease id, bounded by the request timeout, ignoring errors
// (a lease etcd no longer has is gone already).
func (g *reg) revoke(id clientv3.LeaseID) {
	ctx, cancel := context.WithTimeout(context.Background(), g.r.o.reqTimeout)
	defer cancel()
	_, _ = g.r.cli.Revoke(ctx, id)
}

// cancel stops the keep-alive, revokes the lease first (deleting the key at
// once), deletes the key if that failed, and forgets the registration.
func (g *reg) cancel() {
	g.deregister.Do(func() {
		g.stop()
		<-g.done
		r := g.r
		ctx, cancel := context.WithTimeout(context.Background(), r.o.reqTimeout)
		defer cancel()
		if _, err := r.cli.Revoke(ctx, g.lease); err != nil {
			if _, err2 := r.cli.Delete(ctx, g.key); err2 != nil {
				r.o.logger.Warn("etcd deregister failed; the key goes when its lease expires", "id", g.inst.ID, "revoke_err", err, "delete_err", describe(err2, &r.o))
			}
		}
		r.forget(g)
	})
}

// kill stops the keep-alive of the instance with key without revoking its
// lease, as if its provider had been killed. A test hook; it reports whether
// the key was registered.
func (r *Registry) kill(key string) bool {
	r.mu.Lock()
	g := r.regs[key]
	r.mu.Unlock()
	if g == nil {
		return false
	}
	g.stop()
	<-g.done
	return true
}

func (r *Registry) forget(g *reg) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.regs[g.key] == g {
		delete(r.regs, g.key)
	}
}
