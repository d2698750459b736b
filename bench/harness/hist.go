package harness

import (
	"math/bits"
	"time"
)

// Latencies are recorded in a log-linear histogram in the manner of
// HdrHistogram: exact below 128 ns, then 64 buckets per power of two, so a
// recorded value is off by less than 1/64 (1.6 %) of itself. Recording is
// allocation-free; each caller goroutine has its own histogram and they are
// merged after the round.
const (
	histSub     = 64 // buckets per power of two
	histSubBits = 6
	histBuckets = (40-histSubBits)*histSub + 2*histSub // up to 2^40 ns (18 min)
)

// Histogram counts latencies in nanoseconds.
type Histogram struct {
	counts [histBuckets]uint32
	total  uint64
}

func histIndex(ns uint64) int {
	if ns < 2*histSub {
		return int(ns)
	}
	shift := bits.Len64(ns) - histSubBits - 1
	i := shift*histSub + int(ns>>shift)
	if i >= histBuckets {
		return histBuckets - 1
	}
	return i
}

// histValue is the middle of bucket i, in nanoseconds.
func histValue(i int) uint64 {
	if i < 2*histSub {
		return uint64(i)
	}
	shift := i/histSub - 1
	m := uint64(i%histSub + histSub)
	return m<<shift + (uint64(1)<<shift)/2
}

// Record adds one latency.
func (h *Histogram) Record(d time.Duration) {
	if d < 0 {
		d = 0
	}
	h.counts[histIndex(uint64(d))]++
	h.total++
}

// Count is the number of recorded latencies.
func (h *Histogram) Count() uint64 { return h.total }

// Merge adds o's counts to h.
func (h *Histogram) Merge(o *Histogram) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.total += o.total
}

// Reset forgets every recorded latency.
func (h *Histogram) Reset() { *h = Histogram{} }

// Quantile returns the latency below which a fraction q (0..1) of the
// recorded ones fall; 0 when nothing was recorded.
func (h *Histogram) Quantile(q float64) time.Duration {
	if h.total == 0 {
		return 0
	}
	rank := uint64(q*float64(h.total) + 0.5)
	if rank < 1 {
		rank = 1
	}
	if rank > h.total {
		rank = h.total
	}
	var seen uint64
	for i, c := range h.counts {
		seen += uint64(c)
		if seen >= rank {
			return time.Duration(histValue(i))
		}
	}
	return time.Duration(histValue(histBuckets - 1))
}
