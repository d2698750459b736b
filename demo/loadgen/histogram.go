package loadgen

import (
	"math"
	"math/bits"
	"time"
)

// subBits is the precision of the histogram: 2^subBits buckets per power of
// two, so a quantile is off by at most 1/32 (about 3 %).
const subBits = 5

const (
	subCount = 1 << subBits
	// numBuckets covers every non-negative int64 nanosecond count.
	numBuckets = (64 - subBits) * subCount
)

// histogram counts durations in log-linear buckets. It is a value type: a
// copy is a snapshot, and snapshots subtract.
type histogram struct {
	counts [numBuckets]int64
	total  int64
}

// bucketOf returns the bucket index of v nanoseconds (v >= 0).
func bucketOf(v uint64) int {
	if v < subCount {
		return int(v)
	}
	e := bits.Len64(v) // >= subBits+1
	sub := (v >> (e - subBits - 1)) & (subCount - 1)
	return (e-subBits)*subCount + int(sub)
}

// bucketBounds returns the smallest and the largest value of bucket i.
func bucketBounds(i int) (lo, hi uint64) {
	if i < subCount {
		return uint64(i), uint64(i)
	}
	e := i/subCount + subBits
	sub := uint64(i % subCount)
	shift := e - subBits - 1
	lo = (subCount + sub) << shift
	hi = lo + (1 << shift) - 1
	return lo, hi
}

func (h *histogram) record(d time.Duration) {
	if d < 0 {
		d = 0
	}
	h.counts[bucketOf(uint64(d))]++
	h.total++
}

// sub subtracts an earlier snapshot of the same histogram.
func (h *histogram) sub(prev *histogram) {
	for i := range h.counts {
		h.counts[i] -= prev.counts[i]
	}
	h.total -= prev.total
}

// quantile returns the q-quantile (0 < q <= 1) as the middle of its
// bucket, or 0 for an empty histogram.
func (h *histogram) quantile(q float64) time.Duration {
	if h.total <= 0 {
		return 0
	}
	rank := int64(math.Ceil(q * float64(h.total)))
	rank = min(max(rank, 1), h.total)
	var seen int64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			lo, hi := bucketBounds(i)
			return time.Duration(lo + (hi-lo)/2)
		}
	}
	return 0 // unreachable: the counts add up to total
}
