package harness

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"testing"

	"github.com/shoalrpc/shoal/bench/peer"
)

// TestMain lets the tests start this test binary as a peer's server, the
// way shoalbench starts itself: "server -peer NAME -addr ADDR -exit-on-eof".
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "server" {
		os.Exit(testServer(os.Args[2:]))
	}
	os.Exit(m.Run())
}

func testServer(args []string) int {
	fs := flag.NewFlagSet("server", flag.ContinueOnError)
	name := fs.String("peer", "", "")
	addr := fs.String("addr", "127.0.0.1:0", "")
	eof := fs.Bool("exit-on-eof", false, "")
	listeners := fs.Int("listeners", 1, "")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	if *name == ScalePeer {
		if err := ServeScaleMain(ctx, "127.0.0.1", *listeners, os.Stdin, os.Stdout, *eof); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		return 0
	}
	var p peer.Server
	p, err := peer.ByName(*name)
	if sp, ok := peer.StreamByName(*name); ok {
		p, err = sp, nil
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	if err := ServeMain(ctx, p, *addr, os.Stdin, os.Stdout, *eof); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

func serverArgs(name string) []string {
	return []string{"server", "-peer", name, "-addr", "127.0.0.1:0", "-exit-on-eof"}
}

func testExe(t *testing.T) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return exe
}
