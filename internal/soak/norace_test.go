//go:build !race

package soak

const (
	// maxRSSPerConn bounds the resident memory one idle connection may cost
	// the provider: 10.9 KiB measured at 10,000 connections, 11.8 KiB at
	// 1,000 (-short) (15.1 and 16.5 KiB while an idle connection kept its
	// read buffer). The bound leaves 20–30 % for noise.
	maxRSSPerConn = 14 << 10
	raceNote      = ""
)
