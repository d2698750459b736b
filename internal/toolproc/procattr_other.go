//go:build !linux

package toolproc

import "syscall"

// SysProcAttr: elsewhere, cleanups are the only way a child is stopped.
func SysProcAttr() *syscall.SysProcAttr { return nil }
