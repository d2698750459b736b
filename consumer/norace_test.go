//go:build !race

package consumer_test

// raceEnabled: the race detector is off.
const raceEnabled = false
