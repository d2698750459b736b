package admin

import (
	"math/bits"
	"sync/atomic"
	"time"
)

// subBuckets is how many buckets each power of two of nanoseconds is split
// into: a quantile is then known within 2^(1/4), about 19 %, which is what
// a page read by a person needs.
const subBuckets = 4

// nBuckets covers 1 ns to 2^41 ns (about 37 minutes): bucket 0 holds
// durations under 8 ns, then each power of two from 8 ns is split in
// subBuckets; longer is counted in the last bucket.
const nBuckets = (41-3)*subBuckets + 1

// histogram counts durations in logarithmic buckets, without a lock: every
// field is an atomic counter.
type histogram struct {
	buckets [nBuckets]atomic.Uint64
	count   atomic.Uint64
	max     atomic.Int64
}

// bucketOf returns the bucket of a duration of ns nanoseconds.
func bucketOf(ns int64) int {
	if ns < 8 {
		return 0
	}
	u := uint64(ns)
	exp := bits.Len64(u) - 1                  // 2^exp <= u < 2^(exp+1), exp >= 3
	sub := int(u>>(exp-2)) & (subBuckets - 1) // the two bits after the leading one
	return min((exp-3)*subBuckets+sub+1, nBuckets-1)
}

// upperBound returns the longest duration bucket b holds.
func upperBound(b int) time.Duration {
	if b == 0 {
		return 7
	}
	exp, sub := (b-1)/subBuckets+3, (b-1)%subBuckets
	return time.Duration(uint64(1)<<exp + uint64(sub+1)<<(exp-2) - 1)
}

func (h *histogram) observe(d time.Duration) {
	h.buckets[bucketOf(int64(d))].Add(1)
	h.count.Add(1)
	for {
		m := h.max.Load()
		if int64(d) <= m || h.max.CompareAndSwap(m, int64(d)) {
			break
		}
	}
}

// quantiles returns the durations below which the fractions qs of the
// observations fall (each an upper bound, within a bucket's width), in
// order; zeros when nothing was observed.
func (h *histogram) quantiles(qs ...float64) []time.Duration {
	out := make([]time.Duration, len(qs))
	var counts [nBuckets]uint64
	var total uint64
	for i := range counts {
		counts[i] = h.buckets[i].Load()
		total += counts[i]
	}
	if total == 0 {
		return out
	}
	longest := time.Duration(h.max.Load())
	for i, q := range qs {
		rank := uint64(q*float64(total) + 0.5)
		rank = min(max(rank, 1), total)
		var seen uint64
		for b, c := range counts {
			seen += c
			if seen >= rank {
				out[i] = min(upperBound(b), longest)
				break
			}
		}
	}
	return out
}
