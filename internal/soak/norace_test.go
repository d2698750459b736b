//go:build !race

package soak

const (
	raceFactor = 1
	raceNote   = ""
)
