package provider

import (
	"errors"
	"net"
	"strings"
	"testing"
	"time"
)

func TestInvalidOptionValuesMakeServeFailNamingTheOption(t *testing.T) {
	tests := []struct {
		opt  Option
		want string
	}{
		{WithRegisterAttempts(0, time.Second), "provider: WithRegisterAttempts(0, 1s)"},
		{WithMaxBodySize(-1), "provider: WithMaxBodySize(-1): negative size"},
		{WithIdleTimeout(-time.Second), "provider: WithIdleTimeout(-1s)"},
		{WithDrainGrace(-time.Second), "provider: WithDrainGrace(-1s)"},
		{WithTimeouts(-time.Second, 0), "provider: WithTimeouts(-1s, 0s): negative duration"},
		{WithMaxConns(-1), "provider: WithMaxConns(-1)"},
		{WithMaxConcurrent(1, -1), "provider: WithMaxConcurrent(1, -1)"},
	}
	for _, tt := range tests {
		s := NewServer(quietLogger(), tt.opt)
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		err = s.Serve(ln)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Serve with an invalid option: %v, want %q", err, tt.want)
		}
		if _, err := ln.Accept(); !errors.Is(err, net.ErrClosed) {
			t.Errorf("the listener was left open: %v", err)
		}
	}
}
