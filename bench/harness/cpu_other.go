//go:build unix && !linux

package harness

import (
	"errors"
	"syscall"
	"time"
)

var errNoProc = errors.New("CPU accounting needs Linux")

func selfCPU() (time.Duration, error)                    { return 0, errNoProc }
func procCPU(int) (time.Duration, error)                 { return 0, errNoProc }
func machineCPU() (busy, steal time.Duration, err error) { return 0, 0, errNoProc }
func serverSysProcAttr() *syscall.SysProcAttr            { return &syscall.SysProcAttr{Setpgid: true} }
