// Package namingtest holds what the tests of every registry backend
// (naming/consul, naming/etcd, naming/dns) do with a Watch: take the next
// snapshot, wait for one that satisfies a condition, check that the channel
// closed, and print a snapshot compactly in failures.
package namingtest

import (
	"strings"
	"testing"
	"time"

	"github.com/shoalrpc/shoal/naming"
)

// Next receives one snapshot from ch within d, failing the test otherwise.
func Next(t testing.TB, ch <-chan []*naming.Instance, d time.Duration) []*naming.Instance {
	t.Helper()
	select {
	case snap, ok := <-ch:
		if !ok {
			t.Fatal("watch channel closed")
		}
		return snap
	case <-time.After(d):
		t.Fatalf("no snapshot within %v", d)
		return nil
	}
}

// WaitSnapshot reads snapshots from ch until one satisfies ok, failing the
// test after d; what names the condition in the failure. It returns the
// matching snapshot.
func WaitSnapshot(t testing.TB, ch <-chan []*naming.Instance, d time.Duration, what string, ok func([]*naming.Instance) bool) []*naming.Instance {
	t.Helper()
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	var last []*naming.Instance
	for {
		select {
		case snap, open := <-ch:
			if !open {
				t.Fatalf("watch channel closed while waiting for %s (last %s)", what, IDs(last))
			}
			if ok(snap) {
				return snap
			}
			last = snap
		case <-deadline.C:
			t.Fatalf("no snapshot with %s within %v (last %s)", what, d, IDs(last))
			return nil
		}
	}
}

// IDs renders a snapshot's instance IDs compactly: "[a b c]".
func IDs(list []*naming.Instance) string {
	ids := make([]string, len(list))
	for i, in := range list {
		ids[i] = in.ID
	}
	return "[" + strings.Join(ids, " ") + "]"
}

// HasIDs is a WaitSnapshot condition: exactly these IDs, in this order.
func HasIDs(want ...string) func([]*naming.Instance) bool {
	return func(list []*naming.Instance) bool {
		if len(list) != len(want) {
			return false
		}
		for i := range list {
			if list[i].ID != want[i] {
				return false
			}
		}
		return true
	}
}

// AssertClosed checks that ch is closed within d, after any buffered
// snapshot.
func AssertClosed(t testing.TB, ch <-chan []*naming.Instance, d time.Duration) {
	t.Helper()
	timeout := time.After(d)
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				return
			}
		case <-timeout:
			t.Fatalf("watch channel not closed within %v", d)
		}
	}
}
