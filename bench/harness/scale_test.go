package harness

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestRunScaleEndToEnd runs a small scale benchmark (every curve, two
// points each, short rounds) against the scale server in its own process,
// and checks the points, the tables, the files and that no server is left.
func TestRunScaleEndToEnd(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var progress bytes.Buffer
	rep, err := RunScale(ctx, ScaleConfig{
		Sizes: []int{64, 300 << 10}, CompressSizes: []int{300 << 10}, Callers: []int{1, 50}, Conns: 2, Instances: []int{1, 3},
		SizeCallers: 2, ProxyCallers: 4, Rounds: 2,
		Duration: 100 * time.Millisecond, Warmup: 20 * time.Millisecond,
		Exe: testExe(t), ServerArgs: serverArgs, Progress: &progress,
	})
	if err != nil {
		t.Fatalf("%v\n%s", err, progress.String())
	}
	want := []string{"size=64", "size=307200", "size-s2=307200", "callers=1", "callers=50", "pool=1", "pool=50", "instances=1", "instances=3"}
	if len(rep.Points) != len(want) {
		t.Fatalf("%d points, want %d: %+v", len(rep.Points), len(want), rep.Points)
	}
	for i, p := range rep.Points {
		if got := p.Curve + "=" + itoa(p.X); got != want[i] {
			t.Errorf("point %d is %s, want %s", i, got, want[i])
		}
		if p.Rounds != 2 || p.Calls == 0 || p.Errors != 0 || p.CallsPerSec <= 0 {
			t.Errorf("%s=%d: %d rounds, %d calls, %d errors", p.Curve, p.X, p.Rounds, p.Calls, p.Errors)
		}
		if p.Curve == CurveSize || p.Curve == CurveSizeS2 {
			if wantMB := p.CallsPerSec * float64(p.X) / 1e6; p.MBPerSec != wantMB {
				t.Errorf("size=%d: %v MB/s, want %v", p.X, p.MBPerSec, wantMB)
			}
			if runtime.GOOS == "linux" && p.CPUnsPerByte <= 0 {
				t.Errorf("size=%d: no CPU per byte", p.X)
			}
		} else if p.MBPerSec != 0 {
			t.Errorf("%s=%d has MB/s", p.Curve, p.X)
		}
	}
	if len(rep.Rounds) != 2*len(want) {
		t.Errorf("%d rounds, want %d", len(rep.Rounds), 2*len(want))
	}
	if left := children(t); len(left) > 0 {
		t.Errorf("server processes left after RunScale: %v", left)
	}

	var table bytes.Buffer
	if err := rep.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"Payload size", "| 307 200 |", "WithConnsPerAddr(2)", "WithCompression (s2", "ClientProxy over N instances", "CPU ns/byte", rep.Machine.CPU} {
		if !strings.Contains(table.String(), s) {
			t.Errorf("table lacks %q:\n%s", s, table.String())
		}
	}
	t.Logf("\n%s", table.String())

	jsonPath := filepath.Join(t.TempDir(), "scale.json")
	png, err := rep.WriteFiles(jsonPath, true)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(jsonPath)
	if err != nil {
		t.Fatal(err)
	}
	var back ScaleReport
	if err := json.Unmarshal(b, &back); err != nil || len(back.Points) != len(rep.Points) {
		t.Errorf("JSON round trip: %v, %d points", err, len(back.Points))
	}
	img, err := os.ReadFile(png)
	if err != nil || !bytes.HasPrefix(img, []byte("\x89PNG\r\n\x1a\n")) {
		t.Errorf("chart %s is not a PNG: %v", png, err)
	}
}

// TestRunScaleRefusesBadConfig checks the config is checked before the
// server starts.
func TestRunScaleRefusesBadConfig(t *testing.T) {
	good := ScaleConfig{Sizes: []int{64}, Conns: 1, SizeCallers: 1, ProxyCallers: 1, Rounds: 1, Duration: time.Second, Exe: "x", ServerArgs: serverArgs}
	for name, mutate := range map[string]func(*ScaleConfig){
		"no points":     func(c *ScaleConfig) { c.Sizes = nil },
		"no rounds":     func(c *ScaleConfig) { c.Rounds = 0 },
		"size":          func(c *ScaleConfig) { c.Sizes = []int{0} },
		"instances":     func(c *ScaleConfig) { c.Instances = []int{5000} },
		"conns":         func(c *ScaleConfig) { c.Conns = 0 },
		"no exe":        func(c *ScaleConfig) { c.Exe = "" },
		"neg warm-up":   func(c *ScaleConfig) { c.Warmup = -1 },
		"callers range": func(c *ScaleConfig) { c.Callers = []int{200000} },
	} {
		c := good
		mutate(&c)
		if _, err := RunScale(context.Background(), c); err == nil || !strings.HasPrefix(err.Error(), "config: ") {
			t.Errorf("%s: %v, want a config error before anything starts", name, err)
		}
	}
}

func itoa(n int) string { return strings.TrimSpace(strings.ReplaceAll(group(float64(n)), " ", "")) }
