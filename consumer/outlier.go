package consumer

import (
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shoalrpc/shoal/naming"
)

// outliers ejects instances that keep failing at the connection level: after
// `after` consecutive faults an instance is left out of picks for a period
// that doubles with every ejection in a row (base, 2·base, … up to max).
// When the period ends the instance is let back in on probation: its next
// call decides — a success clears its record, a fault ejects it again at
// once. At least one instance is always left in.
type outliers struct {
	after     int
	base, max time.Duration

	tracked atomic.Int64 // len(byID), so a success with nothing tracked takes no lock

	mu     sync.Mutex
	byID   map[string]*health
	timer  *time.Timer
	wakeup time.Time
	done   bool
}

type health struct {
	faults    int       // consecutive faults
	ejections int       // ejections in a row
	until     time.Time // ejected until then
	probing   bool      // let back in; the next outcome decides
	probeOut  bool      // on probation, with an attempt under way: others go elsewhere
}

func newOutliers(after int, base, max time.Duration) *outliers {
	return &outliers{after: after, base: base, max: max, byID: make(map[string]*health)}
}

// record notes an attempt's outcome (fault nil: the instance answered) and
// reports whether it ejected the instance.
func (o *outliers) record(id string, fault error, now time.Time) bool {
	if o.after <= 0 || (fault == nil && o.tracked.Load() == 0) {
		return false
	}
	o.mu.Lock()
	defer o.unlock()
	h := o.byID[id]
	if fault == nil {
		if h != nil && (h.faults > 0 || h.probing) {
			delete(o.byID, id)
		}
		return false
	}
	if h == nil {
		h = &health{}
		o.byID[id] = h
	}
	if !h.until.IsZero() && now.Before(h.until) {
		return false // already out
	}
	h.faults++
	if !h.probing && h.faults < o.after {
		return false
	}
	h.ejections++
	h.faults, h.probing, h.probeOut = 0, false, false
	period := min(o.base<<min(h.ejections-1, 30), o.max)
	if period <= 0 {
		period = o.max
	}
	h.until = now.Add(period)
	return true
}

// admit reports whether an attempt may go to instance id. An instance on
// probation takes one attempt at a time until an outcome decides: callers do
// not pile up behind a probe that waits on a host that vanished (a dial
// that takes the dial timeout), while the other instances serve them.
func (o *outliers) admit(id string) bool {
	if o == nil || o.tracked.Load() == 0 {
		return true
	}
	o.mu.Lock()
	defer o.unlock()
	h := o.byID[id]
	if h == nil || !h.probing {
		return true
	}
	if h.probeOut {
		return false
	}
	h.probeOut = true
	return true
}

// unlock publishes how many instances are tracked, then releases o.mu.
func (o *outliers) unlock() {
	o.tracked.Store(int64(len(o.byID)))
	o.mu.Unlock()
}

// filter returns the instances to pick from at now, and when an ejection
// next ends (zero if none is pending). Instances whose period has ended go
// on probation; readmitted (if not nil) is told each of them.
func (o *outliers) filter(all []*naming.Instance, now time.Time, readmitted func(*naming.Instance)) ([]*naming.Instance, time.Time) {
	o.mu.Lock()
	defer o.unlock()
	if len(o.byID) == 0 {
		return all, time.Time{}
	}
	var next time.Time
	healthy := make([]*naming.Instance, 0, len(all))
	var ejected []*naming.Instance
	for _, in := range all {
		h := o.byID[in.ID]
		switch {
		case h == nil || h.until.IsZero():
			healthy = append(healthy, in)
		case now.Before(h.until):
			ejected = append(ejected, in)
			if next.IsZero() || h.until.Before(next) {
				next = h.until
			}
		default: // served its time: one probe decides
			h.until, h.probing = time.Time{}, true
			healthy = append(healthy, in)
			if readmitted != nil {
				readmitted(in)
			}
		}
	}
	if len(healthy) == 0 && len(ejected) > 0 {
		// Never eject them all: keep the one whose period ends first.
		first := slices.MinFunc(ejected, func(a, b *naming.Instance) int { return o.byID[a.ID].until.Compare(o.byID[b.ID].until) })
		healthy = append(healthy, first)
	}
	// Forget instances that left the registry.
	for id := range o.byID {
		if !slices.ContainsFunc(all, func(in *naming.Instance) bool { return in.ID == id }) {
			delete(o.byID, id)
		}
	}
	return healthy, next
}

// wakeAt arranges for refresh to run at t (the earliest pending time wins).
func (o *outliers) wakeAt(t time.Time, refresh func()) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.done || (!o.wakeup.IsZero() && !t.Before(o.wakeup) && o.timer != nil) {
		return
	}
	if o.timer != nil {
		o.timer.Stop()
	}
	o.wakeup = t
	o.timer = time.AfterFunc(time.Until(t), func() {
		o.mu.Lock()
		o.wakeup = time.Time{}
		o.mu.Unlock()
		refresh()
	})
}

// stop cancels a pending wake-up.
func (o *outliers) stop() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.done = true
	if o.timer != nil {
		o.timer.Stop()
	}
}
