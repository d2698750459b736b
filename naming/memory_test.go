package naming

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"
)

func TestMemoryRegisterFetchWatch(t *testing.T) {
	ctx := t.Context()
	m := NewMemory()
	defer m.Close()

	ch, err := m.Watch(ctx, "arith")
	if err != nil {
		t.Fatal(err)
	}
	if snap := next(t, ch, time.Second); len(snap) != 0 || snap == nil {
		t.Fatalf("first snapshot = %#v, want an empty, non-nil list", snap)
	}

	in := &Instance{Service: "arith", Addr: "tcp@127.0.0.1:9001", Weight: 3, Tags: []string{"v1"}, Meta: map[string]string{"zone": "a"}}
	cancel1, err := m.Register(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	in.Meta["zone"] = "changed" // the registry keeps its own copy
	want1 := &Instance{ID: "arith-127.0.0.1-9001", Service: "arith", Addr: "tcp@127.0.0.1:9001", Weight: 3, Tags: []string{"v1"}, Meta: map[string]string{"zone": "a"}}
	if snap := next(t, ch, time.Second); !reflect.DeepEqual(snap, []*Instance{want1}) {
		t.Fatalf("snapshot = %v, want %v", snap, []*Instance{want1})
	}

	cancel2, err := m.Register(ctx, &Instance{ID: "a-first", Service: "arith", Addr: "unix@/tmp/arith.sock"})
	if err != nil {
		t.Fatal(err)
	}
	snap := next(t, ch, time.Second)
	if !hasIDs("a-first", "arith-127.0.0.1-9001")(snap) || snap[0].Weight != 1 {
		t.Fatalf("snapshot = %v (weight %d), want sorted by ID with weight 0 read as 1", ids(snap), snap[0].Weight)
	}
	got, err := m.Fetch(ctx, "arith")
	if err != nil || !reflect.DeepEqual(got, snap) {
		t.Fatalf("Fetch = %v, %v; want %v", got, err, snap)
	}
	if other, _ := m.Fetch(ctx, "other"); len(other) != 0 {
		t.Fatalf("Fetch(other) = %v, want empty", other)
	}

	if _, err := m.Register(ctx, &Instance{Service: "arith", Addr: "tcp@127.0.0.1:9001"}); err == nil {
		t.Fatal("registering a duplicate ID succeeded")
	}

	cancel1()
	cancel1() // idempotent
	if snap := next(t, ch, time.Second); !hasIDs("a-first")(snap) {
		t.Fatalf("after cancel: %v", ids(snap))
	}
	cancel2()
	if snap := next(t, ch, time.Second); len(snap) != 0 {
		t.Fatalf("after last cancel: %v, want empty", ids(snap))
	}
}

func TestMemoryWatchEndsWithContextAndClose(t *testing.T) {
	m := NewMemory()
	ctx, cancel := context.WithCancel(t.Context())
	ch1, err := m.Watch(ctx, "s")
	if err != nil {
		t.Fatal(err)
	}
	ch2, err := m.Watch(t.Context(), "s")
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	assertClosed(t, ch1, time.Second)
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	assertClosed(t, ch2, time.Second)
	if err := m.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := m.Register(t.Context(), &Instance{Service: "s", Addr: "tcp@h:1"}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Register after Close: %v, want ErrClosed", err)
	}
	if _, err := m.Fetch(t.Context(), "s"); !errors.Is(err, ErrClosed) {
		t.Fatalf("Fetch after Close: %v, want ErrClosed", err)
	}
	if _, err := m.Watch(t.Context(), "s"); !errors.Is(err, ErrClosed) {
		t.Fatalf("Watch after Close: %v, want ErrClosed", err)
	}
}

func TestMemoryRejectsInvalidInstances(t *testing.T) {
	m := NewMemory()
	defer m.Close()
	for _, in := range []*Instance{
		nil,
		{Addr: "tcp@127.0.0.1:1"},
		{Service: "s"},
		{Service: "s", Addr: "127.0.0.1"},
		{Service: "s", Addr: "udp@127.0.0.1:9001"},
		{Service: "s", Addr: "tcp@127.0.0.1"},
		{Service: "s", Addr: "tcp@127.0.0.1:0"},
		{Service: "s", Addr: "unix@"},
	} {
		if _, err := m.Register(t.Context(), in); !errors.Is(err, ErrInvalidInstance) {
			t.Errorf("Register(%+v) = %v, want ErrInvalidInstance", in, err)
		}
	}
}

// TestMemorySlowReaderGetsLatest: many changes while nobody reads; the
// reader then sees exactly the final state.
func TestMemorySlowReaderGetsLatest(t *testing.T) {
	m := NewMemory()
	defer m.Close()
	ch, err := m.Watch(t.Context(), "s")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := m.Register(t.Context(), &Instance{Service: "s", Addr: fmt.Sprintf("tcp@127.0.0.1:%d", 9000+i)}); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if snap := next(t, ch, time.Second); len(snap) != 20 {
		t.Fatalf("slow reader got %d instances, want the latest snapshot with 20", len(snap))
	}
	select {
	case snap := <-ch:
		t.Fatalf("unexpected extra snapshot of %d", len(snap))
	default:
	}
}

// TestMemoryCloseDropsInstances: Close ends every watch, drops every
// instance and refuses every later use; an instance's cancel stays safe.
func TestMemoryCloseDropsInstances(t *testing.T) {
	m := NewMemory()
	cancel, err := m.Register(t.Context(), &Instance{Service: "s", Addr: "tcp@h:1"})
	if err != nil {
		t.Fatal(err)
	}
	ch, err := m.Watch(t.Context(), "s")
	if err != nil {
		t.Fatal(err)
	}
	if snap := next(t, ch, 10*time.Second); len(snap) != 1 {
		t.Fatalf("watch before Close: %d instances, want 1", len(snap))
	}
	if err := m.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	// The watch ends: its channel closes, with no snapshot still showing
	// the instance in between.
	select {
	case snap, ok := <-ch:
		if ok {
			t.Fatalf("watch got a snapshot of %d after Close, want its channel closed", len(snap))
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the watch channel was not closed within 10s of Close")
	}
	if list, err := m.Fetch(t.Context(), "s"); !errors.Is(err, ErrClosed) {
		t.Fatalf("Fetch after Close = %d instances, %v; want ErrClosed", len(list), err)
	}
	if _, err := m.Watch(t.Context(), "s"); !errors.Is(err, ErrClosed) {
		t.Fatalf("Watch after Close: %v, want ErrClosed", err)
	}
	if _, err := m.Register(t.Context(), &Instance{Service: "s", Addr: "tcp@h:2"}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Register after Close: %v, want ErrClosed", err)
	}
	m.mu.Lock()
	held := len(m.services)
	m.mu.Unlock()
	if held != 0 {
		t.Fatalf("the closed registry still holds %d services", held)
	}
	cancel() // safe after Close
	if err := m.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}
