package harness

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"time"
)

// Machine describes where and on what code a run happened.
type Machine struct {
	CPU        string `json:"cpu"`
	Cores      int    `json:"cores"`
	GOMAXPROCS int    `json:"gomaxprocs"`
	OS         string `json:"os"`
	Kernel     string `json:"kernel,omitempty"`
	Go         string `json:"go"`
	Date       string `json:"date"`
	Commit     string `json:"commit,omitempty"`
	// Dirty is true when the work tree had uncommitted changes to tracked
	// files (shoal's numbers then come from code no commit holds); the
	// reports in bench/results, which every run rewrites, do not count.
	Dirty bool `json:"dirty,omitempty"`
	// LoadBefore and LoadAfter are the 1-minute load averages at the start
	// and the end of the run.
	LoadBefore string `json:"load_before,omitempty"`
	LoadAfter  string `json:"load_after,omitempty"`
	// OtherBusy is the share of the machine's CPU (all cores) that other
	// processes used while the run measured: 0 on a quiet machine. -1 when
	// unknown.
	OtherBusy float64 `json:"other_busy"`
	// Steal is the share of the machine's CPU its hypervisor took away
	// during the run.
	Steal float64 `json:"steal"`
}

// machineInfo gathers what can be known before the run.
func machineInfo(ctx context.Context) Machine {
	m := Machine{
		CPU:        cpuModel(),
		Cores:      runtime.NumCPU(),
		GOMAXPROCS: runtime.GOMAXPROCS(0),
		OS:         runtime.GOOS + "/" + runtime.GOARCH,
		Kernel:     readTrim("/proc/sys/kernel/osrelease"),
		Go:         runtime.Version(),
		Date:       time.Now().UTC().Format(time.RFC3339),
		LoadBefore: loadAvg(),
		OtherBusy:  -1,
	}
	m.Commit = git(ctx, "rev-parse", "--short", "HEAD")
	if m.Commit != "" {
		m.Dirty = git(ctx, "status", "--porcelain", "--untracked-files=no", "--", ":(top)", ":(top,exclude)bench/results") != ""
	}
	return m
}

func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return runtime.GOARCH
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return runtime.GOARCH
}

func readTrim(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

func loadAvg() string {
	f := strings.Fields(readTrim("/proc/loadavg"))
	if len(f) == 0 {
		return ""
	}
	return f[0]
}

// git runs git with args in the current directory, bounded to 5 s; "" on
// any failure (no git, not a checkout).
func git(ctx context.Context, args ...string) string {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "git", args...).Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}
