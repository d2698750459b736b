package loadbalance

import (
	"context"
	"testing"
)

func TestRandomUniform(t *testing.T) {
	ins := makeInstances(10, 1, 5, 1, 1, 1, 1, 1, 1, 1, 9) // weights are ignored
	b := New(Random, seeded(1))
	b.Update(ins)
	counts := countPicks(t, b, 50_000)
	assertChiSquare(t, ins, counts, []float64{1, 1, 1, 1, 1, 1, 1, 1, 1, 1})
}

// TestRandomSeed: the injected source drives the choices (same seed, same
// sequence; another seed, another sequence).
func TestRandomSeed(t *testing.T) {
	seq := func(seed uint64) string {
		b := New(Random, seeded(seed))
		b.Update(makeInstances(10))
		var s string
		for range 40 {
			id, _ := pick(t, b, context.Background())
			s += id + " "
		}
		return s
	}
	a, b := seq(7), seq(7)
	if a != b {
		t.Error("same seed, different sequences")
	}
	if seq(7) == seq(8) {
		t.Error("different seeds, same sequence")
	}
}
