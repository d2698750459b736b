package admin

import (
	"testing"
	"time"
)

func TestHistogramBucketsHoldTheirValues(t *testing.T) {
	for ns := int64(1); ns < int64(time.Hour); ns = ns*9/8 + 1 {
		b := bucketOf(ns)
		if hi := int64(upperBound(b)); ns > hi && b < nBuckets-1 {
			t.Fatalf("%d ns in bucket %d, whose upper bound is %d", ns, b, hi)
		}
		if b > 0 && ns <= int64(upperBound(b-1)) {
			t.Fatalf("%d ns in bucket %d, but the bucket before holds up to %d", ns, b, upperBound(b-1))
		}
	}
}

func TestHistogramQuantiles(t *testing.T) {
	var h histogram
	for i := 1; i <= 100; i++ {
		h.observe(time.Duration(i) * time.Millisecond)
	}
	q := h.quantiles(0.5, 0.9, 0.99, 1)
	for i, want := range []time.Duration{50 * time.Millisecond, 90 * time.Millisecond, 99 * time.Millisecond, 100 * time.Millisecond} {
		if q[i] < want || float64(q[i]) > 1.2*float64(want) {
			t.Errorf("quantile %d: %v, want %v to %v", i, q[i], want, time.Duration(1.2*float64(want)))
		}
	}
	var empty histogram
	if q := empty.quantiles(0.5); q[0] != 0 {
		t.Errorf("empty: %v", q)
	}
}
