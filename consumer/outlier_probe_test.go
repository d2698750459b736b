package consumer

import (
	"errors"
	"testing"
	"time"

	"github.com/shoalrpc/shoal/naming"
)

func TestProbationAdmitsOneAttemptAtATime(t *testing.T) {
	o := newOutliers(1, time.Second, time.Second)
	now := time.Now()
	all := []*naming.Instance{{ID: "a"}, {ID: "b"}}
	if !o.record("a", errors.New("dial: no route to host"), now) {
		t.Fatal("one fault with consecutive=1 did not eject")
	}
	o.filter(all, now.Add(2*time.Second), nil) // its time served: on probation
	if !o.admit("a") {
		t.Fatal("the probe was refused")
	}
	if o.admit("a") {
		t.Fatal("a second attempt went to the instance on probation while its probe was out")
	}
	if !o.admit("b") {
		t.Fatal("a healthy instance was refused")
	}
	o.record("a", nil, now.Add(2*time.Second)) // the probe answered: back in full
	for range 2 {
		if !o.admit("a") {
			t.Fatal("an instance whose probe succeeded is still limited")
		}
	}
}
