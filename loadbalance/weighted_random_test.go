package loadbalance

import (
	"testing"
)

func TestWeightedRandomProportional(t *testing.T) {
	ins := makeInstances(0, 1, 2, 3, 4, 0) // 0 counts as 1
	b := New(WeightedRandom, seeded(11))
	b.Update(ins)
	counts := countPicks(t, b, 60_000)
	assertChiSquare(t, ins, counts, []float64{1, 2, 3, 4, 1})
}

// TestWeightedRandomHeavy: a clamped huge weight takes nearly everything,
// without overflow.
func TestWeightedRandomHeavy(t *testing.T) {
	ins := makeInstances(0, int(^uint(0)>>1), 1, 1)
	b := New(WeightedRandom, seeded(12))
	b.Update(ins)
	counts := countPicks(t, b, 10_000)
	if counts["i0"] < 9_900 {
		t.Errorf("counts %v: the heaviest instance should take > 99 %%", counts)
	}
}
