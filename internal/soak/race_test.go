//go:build race

package soak

// The race detector's shadow memory inflates a process's resident memory
// (not the Go runtime's heap and stack accounting): its RSS bound is its own,
// and its numbers are not the ones to quote.
const (
	// maxRSSPerConn: 72.1 KiB measured under -race at 1,000 connections
	// (-short), 116.7 KiB at 10,000 and 119.0 KiB at 1,000 while an idle
	// connection kept its read buffer. The bound leaves about 30 % for noise.
	maxRSSPerConn = 95 << 10
	// maxGoPerConn: 10.4 KiB measured under -race at 1,000 connections
	// (-short): 2.1 KiB of heap and an 8 KiB stack, the race detector's
	// larger frames making the reading goroutine's stack grow to 8 KiB. It
	// was 42 KiB while an idle connection kept its 32 KiB read buffer.
	maxGoPerConn = 14 << 10
	raceNote     = " (race detector on: not representative)"
)
