// Package toolproc finds the server binaries the project's scripts build
// (Consul, etcd) and starts them as children that die with the test binary.
// consultest and etcdtest stand on it.
package toolproc

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// CachePath returns where the project's script puts name at version:
// ${SHOAL_CACHE:-~/.cache/shoal}/name-version/name, or "" without a home.
func CachePath(name, version string) string {
	dir := os.Getenv("SHOAL_CACHE")
	if dir == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return ""
		}
		dir = filepath.Join(home, ".cache", "shoal")
	}
	return filepath.Join(dir, name+"-"+version, name)
}

// Binary returns the binary of name to use: the file env names if set, else
// the cached build, else one on PATH; otherwise an error ending with hint
// (how to build one).
func Binary(name, env, version, hint string) (string, error) {
	if p := os.Getenv(env); p != "" {
		if st, err := os.Stat(p); err != nil || st.IsDir() {
			return "", fmt.Errorf("%s=%s is not a file", env, p)
		}
		return p, nil
	}
	cached := CachePath(name, version)
	if cached != "" {
		if st, err := os.Stat(cached); err == nil && !st.IsDir() {
			return cached, nil
		}
	}
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	return "", fmt.Errorf("no %s binary (%s unset, %s missing, none on PATH): %s", name, env, cached, hint)
}

// LogTail returns the last 32 KiB of a child's log file, for a failed
// test's output.
func LogTail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	const limit = 32 << 10
	if len(b) > limit {
		b = append([]byte("…"), b[len(b)-limit:]...)
	}
	return string(b)
}
