package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

func TestRunWithAdminPageAndHealthChecks(t *testing.T) {
	c, err := parseFlags([]string{"-admin", "127.0.0.1:9100", "-health-check", "2s"}, &bytes.Buffer{})
	if err != nil || c.admin != "127.0.0.1:9100" || c.healthCheck != 2*time.Second {
		t.Fatalf("parsed %+v, %v", c, err)
	}
	if _, err := parseFlags([]string{"-health-check", "-1s"}, &bytes.Buffer{}); err == nil {
		t.Error("a negative -health-check was accepted")
	}
	url, _ := serveArith(t, 1)
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"-registry", url, "-calls", "10", "-sleep", "1", "-admin", "127.0.0.1:0", "-health-check", "1s"}, &stdout, &stderr)
	if code != exitOK {
		t.Fatalf("exit %d; stderr:\n%s", code, stderr.String())
	}
	if !strings.Contains(stderr.String(), "admin page: http://127.0.0.1:") {
		t.Errorf("stderr does not give the admin page's address:\n%s", stderr.String())
	}
}
