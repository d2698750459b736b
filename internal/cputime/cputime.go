// Package cputime reads the CPU time the process has used, for benchmarks
// that report CPU per operation: a figure less disturbed than wall time by
// other work on a shared machine.
package cputime

import (
	"syscall"
	"time"
)

// Process returns the user and system CPU time the process has used so far.
func Process() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
