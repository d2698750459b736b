package naming

import (
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// next receives one snapshot from ch within d, failing the test otherwise.
func next(t *testing.T, ch <-chan []*Instance, d time.Duration) []*Instance {
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

// ids renders a snapshot compactly for failure messages.
func ids(list []*Instance) string {
	s := "["
	for i, in := range list {
		if i > 0 {
			s += " "
		}
		s += in.ID
	}
	return s + "]"
}

func hasIDs(want ...string) func([]*Instance) bool {
	return func(list []*Instance) bool {
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
func assertClosed(t *testing.T, ch <-chan []*Instance, d time.Duration) {
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
