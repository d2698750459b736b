package main

import (
	"math"
	"math/bits"
	"slices"
	"time"
)

// subBits is the histogram's precision: 2^subBits buckets per power of
// two, so a quantile is off by at most 1/32 (about 3 %), in fixed memory
// however long a load runs.
const subBits = 5

const (
	subCount   = 1 << subBits
	numBuckets = (64 - subBits) * subCount // every non-negative int64 nanosecond count
)

// histogram counts latencies in log-linear buckets, with the exact
// minimum, maximum and sum. Each load worker has its own; merge adds them.
type histogram struct {
	counts   [numBuckets]int64
	total    int64
	sum      time.Duration
	min, max time.Duration
}

func bucketOf(v uint64) int {
	if v < subCount {
		return int(v)
	}
	e := bits.Len64(v)
	sub := (v >> (e - subBits - 1)) & (subCount - 1)
	return (e-subBits)*subCount + int(sub)
}

// bucketMid returns the middle of bucket i.
func bucketMid(i int) time.Duration {
	if i < subCount {
		return time.Duration(i)
	}
	e := i/subCount + subBits
	shift := e - subBits - 1
	lo := (subCount + uint64(i%subCount)) << shift
	return time.Duration(lo + (1<<shift-1)/2)
}

func (h *histogram) record(d time.Duration) {
	d = max(d, 0)
	h.counts[bucketOf(uint64(d))]++
	if h.total == 0 || d < h.min {
		h.min = d
	}
	h.max = max(h.max, d)
	h.total++
	h.sum += d
}

func (h *histogram) merge(o *histogram) {
	if o.total == 0 {
		return
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	if h.total == 0 || o.min < h.min {
		h.min = o.min
	}
	h.max = max(h.max, o.max)
	h.total += o.total
	h.sum += o.sum
}

// quantile returns the q-quantile, within the bucket's precision and
// inside [min, max].
func (h *histogram) quantile(q float64) time.Duration {
	if h.total == 0 {
		return 0
	}
	rank := min(max(int64(math.Ceil(q*float64(h.total))), 1), h.total)
	var seen int64
	for i, c := range h.counts {
		if seen += c; seen >= rank {
			return min(max(bucketMid(i), h.min), h.max)
		}
	}
	return h.max
}

func (h *histogram) mean() time.Duration {
	if h.total == 0 {
		return 0
	}
	return h.sum / time.Duration(h.total)
}

// bars returns n bars from min to max, in the manner of hey: each bar's
// upper bound and how many calls took more than the bound before it and up
// to its own. The bounds grow geometrically (each bar spans the same ratio),
// so that a long tail does not squeeze every call into the first bar; a
// count is assigned by its bucket's middle.
func (h *histogram) bars(n int) (bounds []time.Duration, counts []int64) {
	if h.total == 0 {
		return nil, nil
	}
	bounds = make([]time.Duration, n)
	counts = make([]int64, n)
	lo := max(float64(h.min), 1)
	ratio := math.Pow(float64(h.max)/lo, 1/float64(n))
	for i := range bounds {
		bounds[i] = time.Duration(lo * math.Pow(ratio, float64(i+1)))
	}
	bounds[n-1] = h.max
	for i, c := range h.counts {
		if c == 0 {
			continue
		}
		v := min(max(bucketMid(i), h.min), h.max)
		j, _ := slices.BinarySearch(bounds, v)
		counts[min(j, n-1)] += c
	}
	return bounds, counts
}
