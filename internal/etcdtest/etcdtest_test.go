package etcdtest

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestStopResume: the data dir survives Resume and not ResumeFresh.
func TestStopResume(t *testing.T) {
	s := Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	health := func() string {
		body, err := s.get(ctx, "http://"+s.Endpoint()+"/health")
		if err != nil {
			return err.Error()
		}
		return body
	}
	if h := health(); !strings.Contains(h, `"health":"true"`) {
		t.Fatalf("after Start: %s", h)
	}
	s.Stop()
	if h := health(); strings.Contains(h, `"health":"true"`) {
		t.Fatalf("after Stop, still healthy: %s", h)
	}
	first := s.dataDir
	s.Resume()
	if s.dataDir != first {
		t.Fatalf("Resume changed the data dir %s → %s", first, s.dataDir)
	}
	s.Stop()
	s.ResumeFresh()
	if s.dataDir == first {
		t.Fatal("ResumeFresh kept the data dir")
	}
	if h := health(); !strings.Contains(h, `"health":"true"`) {
		t.Fatalf("after ResumeFresh: %s", h)
	}
}
