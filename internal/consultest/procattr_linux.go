package consultest

import "syscall"

// procAttr makes the kernel kill the agent if the test binary dies without
// running its cleanups (go test -timeout, a crash).
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
