package provider

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// curlPath finds the curl binary: a test that needs it skips locally when
// it is missing, and fails under CI=true.
func curlPath(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("curl")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("curl is needed under CI=true (apt-get install curl): %v", err)
		}
		t.Skipf("no curl: %v", err)
	}
	return p
}

// curl runs curl with args and returns the HTTP status and the body.
func curl(t *testing.T, bin string, args ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	args = append([]string{"-s", "-S", "-w", "\n%{http_code}"}, args...)
	out, err := exec.CommandContext(ctx, bin, args...).Output()
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		t.Fatalf("curl %s: %v: %s", strings.Join(args, " "), err, exit.Stderr)
	} else if err != nil {
		t.Fatalf("curl %s: %v", strings.Join(args, " "), err)
	}
	i := strings.LastIndexByte(string(out), '\n')
	if i < 0 {
		t.Fatalf("curl printed no status: %q", out)
	}
	code, err := strconv.Atoi(string(out[i+1:]))
	if err != nil {
		t.Fatalf("curl printed status %q", out[i+1:])
	}
	return code, string(out[:i])
}

func TestCurl(t *testing.T) {
	bin := curlPath(t)
	auth := func(ctx context.Context, method string, md map[string]string) error {
		if method == "Calc.Meta" && md["token"] != "s3cret" {
			return errors.New("token please")
		}
		return nil
	}
	_, base, calc := startHTTP(t, WithAuth(auth), WithMaxBodySize(1<<10))
	big := t.TempDir() + "/big.json"
	if err := os.WriteFile(big, []byte(`{"A":"`+strings.Repeat("x", 4<<20)+`"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		code int
		body []string
	}{
		{"call", []string{"-d", `{"A":40,"B":2}`, base + "/Calc.Add"}, 200, []string{"42\n"}},
		{"list", []string{base + "/"}, 200, []string{`{"Name":"Calc","Methods":[{"Name":"Add","Kind":"unary"}`}},
		{"bad JSON", []string{"-d", `{"A":"forty"}`, base + "/Calc.Add"}, 400, []string{`"status":"bad_request"`, "Args.A"}},
		{"unknown method", []string{"-d", `{}`, base + "/Calc.Sub"}, 404, []string{`"status":"unknown_method"`, "it has Add, Fail, Meta, Panic, Wait"}},
		{"method error", []string{"-d", `{"A":3}`, base + "/Calc.Fail"}, 422, []string{`"status":"service_error"`, `"error":"no good: 3"`}},
		{"no token", []string{"-d", `{}`, base + "/Calc.Meta"}, 401, []string{`"status":"unauthenticated"`, "token please"}},
		{"token", []string{"-H", "Shoal-Meta-Token: s3cret", "-d", `{}`, base + "/Calc.Meta"}, 200, []string{`{"token":"s3cret"}`}},
		{"too large", []string{"-d", "@" + big, base + "/Calc.Add"}, 413, []string{`"status":"too_large"`, "over the server's limit of 1024 bytes"}},
		{"deadline", []string{"-d", `{}`, base + "/Calc.Wait?timeout=100ms"}, 504, []string{`"status":"deadline_exceeded"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body := curl(t, bin, tc.args...)
			if code != tc.code {
				t.Fatalf("status %d, want %d: %s", code, tc.code, body)
			}
			for _, want := range tc.body {
				if !strings.Contains(body, want) {
					t.Errorf("body %q lacks %q", body, want)
				}
			}
		})
	}
	<-calc.entered // the Wait that timed out
	if n := calc.ran.Load(); n != 4 {
		t.Fatalf("methods ran %d times, want 4 (Add, Fail, Meta with a token, Wait)", n)
	}
}
