package consul

import (
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/shoalrpc/shoal/naming"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// next receives one snapshot from ch within d, failing the test otherwise.
func next(t *testing.T, ch <-chan []*naming.Instance, d time.Duration) []*naming.Instance {
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

// waitSnapshot reads snapshots from ch until one satisfies ok, failing the
// test after d. It returns the matching snapshot.
func waitSnapshot(t *testing.T, ch <-chan []*naming.Instance, d time.Duration, what string, ok func([]*naming.Instance) bool) []*naming.Instance {
	t.Helper()
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	var last []*naming.Instance
	for {
		select {
		case snap, open := <-ch:
			if !open {
				t.Fatalf("watch channel closed while waiting for %s (last %s)", what, ids(last))
			}
			if ok(snap) {
				return snap
			}
			last = snap
		case <-deadline.C:
			t.Fatalf("no snapshot with %s within %v (last %s)", what, d, ids(last))
			return nil
		}
	}
}

// ids renders a snapshot compactly for failure messages.
func ids(list []*naming.Instance) string {
	s := "["
	for i, in := range list {
		if i > 0 {
			s += " "
		}
		s += in.ID
	}
	return s + "]"
}

func hasIDs(want ...string) func([]*naming.Instance) bool {
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

// assertClosed checks that ch is closed within d (after draining a buffered
// snapshot).
func assertClosed(t *testing.T, ch <-chan []*naming.Instance, d time.Duration) {
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
