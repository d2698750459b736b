package integration

import (
	"context"
	"errors"
	"reflect"
	"testing"
)

// Bulk answers small requests with large replies, and fills replies in
// place as net/rpc methods do.
type Bulk struct{}

// Tally counts words into the reply map, which it does not make: under
// net/rpc the server makes it.
func (Bulk) Tally(ctx context.Context, words []string, counts *map[string]int) error {
	for _, w := range words {
		(*counts)[w]++
	}
	return nil
}

// Fresh fails unless its reply slice arrives empty and non-nil, as net/rpc
// makes it.
func (Bulk) Fresh(_ int, out *[]string) error {
	if *out == nil {
		return errors.New("reply slice is nil")
	}
	*out = append(*out, "made")
	return nil
}

// TestReplyMapsAndSlicesAreMadeAsNetRPCMakesThem calls a method that fills
// its reply map in place, and one that needs its reply slice non-nil.
func TestReplyMapsAndSlicesAreMadeAsNetRPCMakesThem(t *testing.T) {
	s := serve(t)
	if err := s.srv.Register(Bulk{}); err != nil {
		t.Fatal(err)
	}
	c := dial(t, s.addr)
	var counts map[string]int
	if err := c.Call(context.Background(), "Bulk.Tally", []string{"a", "b", "a"}, &counts); err != nil {
		t.Fatal(err)
	}
	if want := map[string]int{"a": 2, "b": 1}; !reflect.DeepEqual(counts, want) {
		t.Fatalf("Tally: %v, want %v", counts, want)
	}
	var out []string
	if err := c.Call(context.Background(), "Bulk.Fresh", 0, &out); err != nil || len(out) != 1 || out[0] != "made" {
		t.Fatalf("Fresh: %q, %v", out, err)
	}
}
