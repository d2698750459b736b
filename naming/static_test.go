package naming

import (
	"context"
	"reflect"
	"testing"
	"time"
)

func TestStatic(t *testing.T) {
	s, err := NewStatic("tcp@127.0.0.1:9002", "tcp@127.0.0.1:9001")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	want := []*Instance{
		{ID: "arith-127.0.0.1-9001", Service: "arith", Addr: "tcp@127.0.0.1:9001", Weight: 1},
		{ID: "arith-127.0.0.1-9002", Service: "arith", Addr: "tcp@127.0.0.1:9002", Weight: 1},
	}
	got, err := s.Fetch(t.Context(), "arith")
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("Fetch = %v, %v; want %v", got, err, want)
	}

	cancel, err := s.Register(t.Context(), &Instance{Service: "arith", Addr: "tcp@127.0.0.1:9003"})
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	cancel()
	if got, _ := s.Fetch(t.Context(), "arith"); !reflect.DeepEqual(got, want) {
		t.Fatalf("Register changed the static list: %v", got)
	}

	ctx, stop := context.WithCancel(t.Context())
	ch, err := s.Watch(ctx, "arith")
	if err != nil {
		t.Fatal(err)
	}
	if snap := next(t, ch, time.Second); !reflect.DeepEqual(snap, want) {
		t.Fatalf("Watch = %v, want %v", snap, want)
	}
	stop()
	assertClosed(t, ch, time.Second)

	ch2, err := s.Watch(t.Context(), "arith")
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	assertClosed(t, ch2, time.Second)
}

func TestNewStaticErrors(t *testing.T) {
	for _, addrs := range [][]string{
		nil,
		{""},
		{"udp@127.0.0.1:9001"},
		{"tcp@127.0.0.1:9001", "tcp@127.0.0.1:9001"},
		{"127.0.0.1:9001", "tcp@127.0.0.1:9001"},
		{"tcp@:9001"},
	} {
		if _, err := NewStatic(addrs...); err == nil {
			t.Errorf("NewStatic(%q) succeeded", addrs)
		}
	}
}
