package harness

import (
	"math"
	"testing"
	"time"
)

func TestHistIndexRoundTrip(t *testing.T) {
	prev := -1
	for _, ns := range []uint64{0, 1, 127, 128, 129, 200, 1000, 12345, 1 << 20, 987654321, 1 << 39} {
		i := histIndex(ns)
		if i < prev {
			t.Errorf("index not monotonic at %d", ns)
		}
		prev = i
		v := histValue(i)
		if diff := math.Abs(float64(v) - float64(ns)); diff > float64(ns)/64+1 {
			t.Errorf("%d ns lands in bucket %d worth %d ns", ns, i, v)
		}
	}
}

func TestQuantile(t *testing.T) {
	var h Histogram
	if h.Quantile(0.5) != 0 {
		t.Error("empty histogram: quantile not 0")
	}
	for i := 1; i <= 1000; i++ {
		h.Record(time.Duration(i) * time.Microsecond)
	}
	var m Histogram
	m.Merge(&h)
	for _, c := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 500 * time.Microsecond}, {0.99, 990 * time.Microsecond}, {0.999, 999 * time.Microsecond}, {1, time.Millisecond}} {
		got := m.Quantile(c.q)
		if math.Abs(float64(got-c.want)) > float64(c.want)/60 {
			t.Errorf("q%v = %v, want about %v", c.q, got, c.want)
		}
	}
	if m.Count() != 1000 {
		t.Errorf("count %d", m.Count())
	}
}
