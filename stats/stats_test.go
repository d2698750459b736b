package stats_test

import (
	"errors"
	"testing"

	"github.com/shoalrpc/shoal/protocol"
	"github.com/shoalrpc/shoal/stats"
)

// TestCodeNamesEveryStatus: each wire status, and each reason a client
// gives for a missing response, has its own code; none falls to "error".
func TestCodeNamesEveryStatus(t *testing.T) {
	want := map[string]string{
		"connection closed": "conn_closed", "deadline exceeded": "deadline_exceeded",
		"canceled": "canceled", "dial failed": "dial_failed",
	}
	for s := protocol.StatusOK; s <= protocol.StatusRefused; s++ {
		want[s.String()] = ""
	}
	seen := map[string]string{}
	for status, code := range want {
		got := (&stats.RPCEnd{Status: status, Err: errors.New("x")}).Code()
		if got == "error" || (code != "" && got != code) {
			t.Errorf("Code of status %q = %q, want %q", status, got, code)
		}
		if other, dup := seen[got]; dup {
			t.Errorf("statuses %q and %q share code %q", status, other, got)
		}
		seen[got] = status
	}
	if got := (&stats.RPCEnd{}).Code(); got != "ok" {
		t.Errorf("Code of an empty success = %q, want ok", got)
	}
	if got := (&stats.RPCEnd{Status: "status(99)", Err: errors.New("x")}).Code(); got != "error" {
		t.Errorf("Code of an unknown status = %q, want error", got)
	}
}
