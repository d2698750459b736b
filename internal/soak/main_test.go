package soak

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

// helperEnv names the role of a child process started by a test of this
// package; the child runs that role instead of the tests.
const helperEnv = "SHOAL_SOAK_HELPER"

func TestMain(m *testing.M) {
	switch os.Getenv(helperEnv) {
	case "":
	case idleProviderRole:
		os.Exit(runIdleProvider())
	default:
		os.Stderr.WriteString("soak: unknown " + helperEnv + "=" + os.Getenv(helperEnv) + "\n")
		os.Exit(2)
	}
	goleak.VerifyTestMain(m)
}
