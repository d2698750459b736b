package etcdtest

import "syscall"

// procAttr makes the kernel kill etcd if the test binary dies without
// running its cleanups (go test -timeout, a crash).
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
