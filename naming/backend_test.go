package naming

import (
	"fmt"
	"testing"
)

func TestSnapshotsSlowReaderMissesOnlyStale(t *testing.T) {
	l := NewSnapshots()
	for i := range 100 {
		l.Send([]*Instance{{ID: fmt.Sprint(i)}})
	}
	if got := <-l.C(); got[0].ID != "99" {
		t.Fatalf("slow reader got %s, want the latest (99)", got[0].ID)
	}
	l.Send(nil)
	l.Close()
	if got, ok := <-l.C(); !ok || got != nil {
		t.Fatalf("buffered snapshot lost at close: %v %v", got, ok)
	}
	if _, ok := <-l.C(); ok {
		t.Fatal("channel not closed")
	}
}
