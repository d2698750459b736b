package soak

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// Args and Reply are the soak service's messages. ID names the call for the
// server-side record of executions; 0 (warm-up calls) is not recorded.
type Args struct {
	ID      uint64
	N       int
	SleepMs int
	Payload string
}

type Reply struct {
	N       int
	Payload string
	From    string
	Gen     int
}

// execRec is one execution of a recorded call: which provider, in which of
// its lives (generation), ran it.
type execRec struct {
	id   uint64
	node uint8
	gen  uint16
}

// Soak is the service every provider of the soak serves as "Soak". Each
// instance is one life of one provider: node and gen say which, and execs
// records every call it ran, independently of what its callers saw.
type Soak struct {
	id   string
	node int
	gen  int

	mu    sync.Mutex
	execs []execRec
}

// ran records that the method of call id started to run.
func (s *Soak) ran(id uint64) {
	if id == 0 {
		return
	}
	s.mu.Lock()
	s.execs = append(s.execs, execRec{id: id, node: uint8(s.node), gen: uint16(s.gen)})
	s.mu.Unlock()
}

// records returns a copy of the executions recorded so far, and the bytes
// the record holds.
func (s *Soak) records() ([]execRec, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]execRec(nil), s.execs...), cap(s.execs) * execRecSize
}

// Fast answers at once.
func (s *Soak) Fast(_ context.Context, args Args, reply *Reply) error {
	s.ran(args.ID)
	*reply = Reply{N: args.N + 1, Payload: args.Payload, From: s.id, Gen: s.gen}
	return nil
}

// Sleep answers after args.SleepMs, or returns the context's error when the
// caller gives up first (its deadline travels with the request, and a
// cancel frame follows when it gives up).
func (s *Soak) Sleep(ctx context.Context, args Args, reply *Reply) error {
	s.ran(args.ID)
	t := time.NewTimer(time.Duration(args.SleepMs) * time.Millisecond)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
		return ctx.Err()
	}
	*reply = Reply{N: args.N + 1, Payload: args.Payload, From: s.id, Gen: s.gen}
	return nil
}

// Fail returns a service error whose text the caller can check, naming the
// provider and generation that ran it.
func (s *Soak) Fail(_ context.Context, args Args, _ *Reply) error {
	s.ran(args.ID)
	return fmt.Errorf("soak failure %d from %s gen %d", args.N, s.id, s.gen)
}
