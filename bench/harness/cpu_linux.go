package harness

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// userHZ is the unit of the CPU times in /proc: USER_HZ, 100 on every
// Linux architecture Go supports.
const userHZ = 100

// selfCPU is the CPU time (user + system) this process has used.
func selfCPU() (time.Duration, error) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, fmt.Errorf("getrusage: %w", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), nil
}

// procCPU is the CPU time (user + system, all threads) process pid has
// used, from /proc/PID/stat; its resolution is 1/USER_HZ (10 ms).
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("server CPU time: %w", err)
	}
	// The command name, in parentheses, may hold spaces: fields are
	// counted after its closing parenthesis, where field 3 (state) starts.
	s := string(b)
	end := strings.LastIndexByte(s, ')')
	if end < 0 {
		return 0, fmt.Errorf("server CPU time: /proc/%d/stat: no command name", pid)
	}
	f := strings.Fields(s[end+1:])
	const utime, stime = 14 - 3, 15 - 3
	if len(f) <= stime {
		return 0, fmt.Errorf("server CPU time: /proc/%d/stat: %d fields", pid, len(f)+2)
	}
	u, err1 := strconv.ParseUint(f[utime], 10, 64)
	st, err2 := strconv.ParseUint(f[stime], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("server CPU time: /proc/%d/stat: utime %q stime %q", pid, f[utime], f[stime])
	}
	return time.Duration(u+st) * time.Second / userHZ, nil
}

// machineCPU is the CPU time every core of the machine has spent busy
// (user, nice, system, irq, softirq) and the time the hypervisor stole
// from it, from /proc/stat.
func machineCPU() (busy, steal time.Duration, err error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, fmt.Errorf("machine CPU time: %w", err)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 8 || f[0] != "cpu" {
		return 0, 0, fmt.Errorf("machine CPU time: unexpected /proc/stat line %q", line)
	}
	var ticks [7]uint64 // user nice system idle iowait irq softirq
	var stolen uint64
	for i, v := range f[1:] {
		if i > 7 { // guest times are already counted in user
			break
		}
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("machine CPU time: /proc/stat field %q", v)
		}
		if i == 7 {
			stolen = n
		} else {
			ticks[i] = n
		}
	}
	used := ticks[0] + ticks[1] + ticks[2] + ticks[5] + ticks[6]
	return time.Duration(used) * time.Second / userHZ, time.Duration(stolen) * time.Second / userHZ, nil
}

// serverSysProcAttr makes a server process its own process group (so the
// runner kills it and anything it started at once) and has the kernel kill
// it when the runner dies.
func serverSysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
