//go:build !race

package soak

const (
	// maxRSSPerConn bounds the resident memory one idle connection may cost
	// the provider: 6.8 KiB measured at 10,000 connections, 7.8–8.0 KiB at
	// 1,000 (-short) (15.1 and 16.5 KiB while an idle connection kept its
	// read buffer, 10.9 and 11.8 KiB while its goroutine kept an 8 KiB
	// stack). The bound leaves 25 % for noise.
	maxRSSPerConn = 10 << 10
	// maxGoPerConn bounds the Go heap and stacks one idle connection may cost
	// the provider: 6.0 KiB measured at 10,000 connections, 6.2 KiB at 1,000
	// (-short): 2 KiB of heap and the reading goroutine's 4 KiB stack. It was
	// 41.9 KiB while an idle connection kept its 32 KiB read buffer, and
	// 10.1 KiB while the payload check's 2 KiB frame made that stack grow to
	// 8 KiB. The bound leaves about 30 % for noise and fails if either
	// comes back.
	maxGoPerConn = 8 << 10
	raceNote     = ""
)
