package consumer

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"

	"golang.org/x/sync/errgroup"

	"github.com/shoalrpc/shoal/naming"
)

// Broadcast calls method on every instance at once. The first error cancels
// the other calls and is returned; when all succeed, reply holds one of the
// replies. Each call decodes into a reply of its own.
func (p *ClientProxy) Broadcast(ctx context.Context, method string, args, reply any) error {
	instances, rv, err := p.fanOutSetup(method, reply)
	if err != nil {
		return err
	}
	g, gctx := errgroup.WithContext(ctx)
	replies := make([]reflect.Value, len(instances))
	for i, in := range instances {
		g.Go(func() error {
			r := reflect.New(rv.Type().Elem())
			if err := p.attempt(gctx, in, 0, false, method, args, r.Interface()); err != nil {
				return fmt.Errorf("broadcast %s to %s: %w", method, in.ID, err)
			}
			replies[i] = r
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	rv.Elem().Set(replies[0].Elem())
	return nil
}

// Fork calls method on every instance at once; the first success wins,
// cancels the other calls, and its reply is kept. When every call fails, the
// errors are returned joined.
func (p *ClientProxy) Fork(ctx context.Context, method string, args, reply any) error {
	instances, rv, err := p.fanOutSetup(method, reply)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type outcome struct {
		reply reflect.Value
		err   error
	}
	results := make(chan outcome, len(instances))
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }() // the losers return once cancelled
	for _, in := range instances {
		wg.Go(func() {
			r := reflect.New(rv.Type().Elem())
			err := p.attempt(ctx, in, 0, false, method, args, r.Interface())
			if err != nil {
				err = fmt.Errorf("fork %s to %s: %w", method, in.ID, err)
			}
			results <- outcome{r, err}
		})
	}
	var errs []error
	for range instances {
		o := <-results
		if o.err == nil {
			cancel()
			rv.Elem().Set(o.reply.Elem())
			return nil
		}
		errs = append(errs, o.err)
	}
	return errors.Join(errs...)
}

// fanOutSetup checks a Broadcast or Fork call and returns every known
// instance (ejected ones too: a broadcast is for all of them).
func (p *ClientProxy) fanOutSetup(method string, reply any) ([]*naming.Instance, reflect.Value, error) {
	if p.closed.Load() {
		return nil, reflect.Value{}, ErrProxyClosed
	}
	rv := reflect.ValueOf(reply)
	if rv.Kind() != reflect.Pointer || rv.IsNil() {
		return nil, rv, fmt.Errorf("%w: %s: reply must be a non-nil pointer", ErrBadRequest, method)
	}
	instances := *p.instances.Load()
	if len(instances) == 0 {
		return nil, rv, errNoInstance(p.service)
	}
	return instances, rv, nil
}
