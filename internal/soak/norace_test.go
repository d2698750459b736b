//go:build !race

package soak

const (
	// maxRSSPerConn bounds the resident memory one idle connection may cost
	// the provider: 6.8 KiB measured at 10,000 connections, 7.8–8.0 KiB at
	// 1,000 (-short) (15.1 and 16.5 KiB while an idle connection kept its
	// read buffer, 10.9 and 11.8 KiB while its goroutine kept an 8 KiB
	// stack). The bound leaves 25 % for noise.
	maxRSSPerConn = 10 << 10
	raceNote      = ""
)
