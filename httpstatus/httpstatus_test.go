package httpstatus

import (
	"net/http"
	"reflect"
	"testing"

	"github.com/shoalrpc/shoal/protocol"
)

func TestCodes(t *testing.T) {
	for name, code := range map[string]int{
		"ok": 200, "service error": 422, "unknown service": 404, "unknown method": 404, "bad request": 400,
		"unauthenticated": 401, "refused": 403, "too large": 413, "overloaded": 429, "shutting down": 503,
		"internal error": 500, NoInstances: 503, Unavailable: 503, Deadline: 504, Canceled: 499, "anything else": 500,
	} {
		if got := CodeOf(name); got != code {
			t.Errorf("CodeOf(%q) = %d, want %d", name, got, code)
		}
	}
	for s := protocol.StatusOK; s <= protocol.StatusRefused; s++ {
		if Code(s) != CodeOf(s.String()) {
			t.Errorf("Code(%v) = %d, CodeOf its name %d", s, Code(s), CodeOf(s.String()))
		}
	}
	for _, name := range []string{"shutting down", "overloaded", NoInstances, Unavailable} {
		if RetryAfter(name) == "" {
			t.Errorf("no Retry-After for %q", name)
		}
	}
	if RetryAfter("service error") != "" || Name("unknown method") != "unknown_method" {
		t.Error("RetryAfter or Name")
	}
}

func TestMetadata(t *testing.T) {
	h := http.Header{}
	h.Set("Shoal-Meta-Tenant", "acme")
	h.Add("shoal-meta-trace-id", "1")
	h.Add("shoal-meta-trace-id", "2")
	h.Set("Shoal-Meta-", "no key")
	h.Set("Authorization", "Bearer x")
	h.Set("Accept", "*/*")
	want := map[string]string{"tenant": "acme", "trace-id": "1", "authorization": "Bearer x"}
	if got := Metadata(h); !reflect.DeepEqual(got, want) {
		t.Errorf("Metadata = %v, want %v", got, want)
	}
	if got := Metadata(http.Header{"Accept": {"*/*"}}); got != nil {
		t.Errorf("Metadata without any = %v", got)
	}
}
