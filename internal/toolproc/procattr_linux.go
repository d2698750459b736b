package toolproc

import "syscall"

// SysProcAttr makes the kernel kill a child if the test binary dies without
// running its cleanups (go test -timeout, a crash).
func SysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
