//go:build race

package soak

// The race detector's shadow memory inflates a process's resident memory
// (not the Go runtime's heap and stack accounting): its RSS bound is its own,
// and its numbers are not the ones to quote.
const (
	// maxRSSPerConn: 116.7 KiB measured under -race at 10,000 connections,
	// 119.0 KiB at 1,000 (-short). The bound leaves about 25 % for noise and
	// catches a 35 % regression (157.5 KiB).
	maxRSSPerConn = 150 << 10
	raceNote      = " (race detector on: not representative)"
)
