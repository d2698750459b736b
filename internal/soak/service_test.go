package soak

import (
	"context"
	"fmt"
	"time"
)

// Args and Reply are the soak service's messages.
type Args struct {
	N       int
	SleepMs int
	Payload string
}

type Reply struct {
	N       int
	Payload string
	From    string
}

// Soak is the service every provider of the soak serves as "Soak".
type Soak struct{ id string }

// Fast answers at once.
func (s *Soak) Fast(_ context.Context, args Args, reply *Reply) error {
	*reply = Reply{N: args.N + 1, Payload: args.Payload, From: s.id}
	return nil
}

// Sleep answers after args.SleepMs, or returns the context's error when the
// caller gives up first (its deadline travels with the request, and a
// cancel frame follows when it gives up).
func (s *Soak) Sleep(ctx context.Context, args Args, reply *Reply) error {
	t := time.NewTimer(time.Duration(args.SleepMs) * time.Millisecond)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
		return ctx.Err()
	}
	*reply = Reply{N: args.N + 1, Payload: args.Payload, From: s.id}
	return nil
}

// Fail returns a service error whose text the caller can check.
func (s *Soak) Fail(_ context.Context, args Args, _ *Reply) error {
	return fmt.Errorf("soak failure %d", args.N)
}
