//go:build race

package soak

// The race detector's shadow memory and larger goroutine records inflate a
// process's memory; bounds are looser under it, and its numbers are not the
// ones to quote.
const (
	raceFactor = 4
	raceNote   = " (race detector on: not representative)"
)
