// Package soak holds shoal's long-running tests; it has no code of its own.
//
// TestSoak runs mixed calls at high concurrency through a Failover and a
// Failfast ClientProxy while a deterministic schedule shuts providers down
// gracefully, kills them and restarts them on their old addresses. Every
// call is accounted for twice, independently: by the outcome its caller saw
// and by the providers' own record of the calls they ran, reconciled per call
// ID; goroutines and heap must return to their baseline. It runs for 60 s, 5 s with -short, or as
// long as SHOAL_SOAK says (e.g. SHOAL_SOAK=10s).
//
// TestIdleConnections opens 10,000 idle connections (1,000 with -short) to a
// provider running in a child process and measures the provider's memory per
// connection: resident set size from /proc and the Go runtime's heap and
// stacks.
package soak
