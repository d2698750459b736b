//go:build !linux

package consultest

import "syscall"

// procAttr: elsewhere, cleanups are the only way the agent is stopped.
func procAttr() *syscall.SysProcAttr { return nil }
