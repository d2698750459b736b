package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseConcurrency(t *testing.T) {
	got, err := parseConcurrency("100, 1000")
	if err != nil || len(got) != 2 || got[0] != 100 || got[1] != 1000 {
		t.Errorf("parseConcurrency: %v, %v", got, err)
	}
	for _, bad := range []string{"", "0", "-5", "x", "100,", "200000"} {
		if _, err := parseConcurrency(bad); err == nil {
			t.Errorf("parseConcurrency(%q): no error", bad)
		}
	}
}

func TestParsePeers(t *testing.T) {
	ps, err := parsePeers("shoal,net/rpc,raw")
	if err != nil || len(ps) != 3 || ps[1].Name() != "net/rpc" {
		t.Errorf("parsePeers: %v, %v", ps, err)
	}
	for _, bad := range []string{"", "shoal,shoal", "thrift"} {
		if _, err := parsePeers(bad); err == nil {
			t.Errorf("parsePeers(%q): no error", bad)
		}
	}
}

func TestLoopbackOnly(t *testing.T) {
	for _, ok := range []string{"127.0.0.1:0", "127.1.2.3:9000", "[::1]:0", "localhost:0"} {
		if err := checkLoopback(ok); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
	for _, bad := range []string{"0.0.0.0:0", ":0", "10.0.0.1:80", "example.com:80", "nope"} {
		if err := checkLoopback(bad); err == nil {
			t.Errorf("%s: accepted", bad)
		}
	}
	err := serverMain(context.Background(), []string{"-peer", "raw", "-addr", "0.0.0.0:0"}, strings.NewReader(""), io.Discard)
	if err == nil {
		t.Error("server mode listened on a non-loopback address")
	}
}

func TestServerModeServesUntilStdinCloses(t *testing.T) {
	var out bytes.Buffer
	// stdin is already at its end: the server prints its address and stops.
	err := serverMain(context.Background(), []string{"-peer", "shoal", "-exit-on-eof"}, strings.NewReader(""), &out)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out.String(), "listening on 127.0.0.1:") {
		t.Errorf("printed %q", out.String())
	}
}

func TestServerModeWritesACPUProfile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "server.pprof")
	err := serverMain(context.Background(), []string{"-peer", "shoal", "-exit-on-eof", "-cpuprofile", file}, strings.NewReader(""), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) < 2 || b[0] != 0x1f || b[1] != 0x8b { // pprof profiles are gzipped
		t.Errorf("profile is %d bytes, not a gzipped pprof profile", len(b))
	}
}

func TestRunnerRejectsBadFlags(t *testing.T) {
	for _, args := range [][]string{{"-c", "0"}, {"-peers", "nope"}, {"extra"}} {
		if err := runMain(context.Background(), args, io.Discard, io.Discard); err == nil {
			t.Errorf("%v: no error", args)
		}
	}
}

func TestParseInts(t *testing.T) {
	got, err := parseInts("-sizes", "64, 1024")
	if err != nil || len(got) != 2 || got[1] != 1024 {
		t.Errorf("parseInts: %v, %v", got, err)
	}
	if got, err := parseInts("-instances", " "); err != nil || got != nil {
		t.Errorf("parseInts of nothing: %v, %v", got, err)
	}
	for _, bad := range []string{"0", "-1", "x", "64,"} {
		if _, err := parseInts("-sizes", bad); err == nil {
			t.Errorf("parseInts(%q): no error", bad)
		}
	}
}

// TestListenersOnlyForScale checks -listeners is refused for a peer's
// server and bounded for the scale server.
func TestListenersOnlyForScale(t *testing.T) {
	if err := serverMain(context.Background(), []string{"-peer", "raw", "-listeners", "3"}, strings.NewReader(""), io.Discard); err == nil {
		t.Error("a peer's server accepted -listeners 3")
	}
	if err := serverMain(context.Background(), []string{"-peer", "scale", "-listeners", "0"}, strings.NewReader(""), io.Discard); err == nil {
		t.Error("the scale server accepted -listeners 0")
	}
}

// TestStreamModeRefusesBadFlags checks the stream mode's flags are checked
// before any server starts.
func TestStreamModeRefusesBadFlags(t *testing.T) {
	for _, args := range [][]string{{"-msgs", "2KB"}, {"-streams", "0"}, {"-streams", "5000"}, {"-rounds", "0"}, {"extra"}} {
		if err := streamMain(context.Background(), args, io.Discard, io.Discard); err == nil {
			t.Errorf("stream %q: no error", args)
		}
	}
}
