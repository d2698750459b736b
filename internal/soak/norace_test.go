//go:build !race

package soak

const (
	// maxRSSPerConn bounds the resident memory one idle connection may cost
	// the provider: 15.1 KiB measured at 10,000 connections, 16.5 KiB at
	// 1,000 (-short), both steady to 0.1 KiB over runs. The bound leaves
	// 15–25 % for noise and catches a 35 % regression (20.4 KiB).
	maxRSSPerConn = 19 << 10
	raceNote      = ""
)
