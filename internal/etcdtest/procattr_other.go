//go:build !linux

package etcdtest

import "syscall"

// procAttr: elsewhere, cleanups are the only way etcd is stopped.
func procAttr() *syscall.SysProcAttr { return nil }
