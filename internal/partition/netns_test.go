package partition

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// Addresses of the veth pair: TEST-NET-1 (RFC 5737), which no real network
// uses, and which lives only on the pair, inside the two namespaces the test
// creates. Nothing in the host's own namespace changes.
const (
	clientIP = "192.0.2.1"
	serverIP = "192.0.2.2"
)

// netns is a pair of network namespaces joined by a veth pair: the client's
// end in one, the server's in the other.
type netns struct {
	t              *testing.T
	client, server string // namespace names
	serverLink     string // the veth end in the server's namespace
	clientFD       *os.File
	serverFD       *os.File
}

// requireNetns skips the test unless it may create network namespaces (root
// and the ip command); under CI=true it fails instead.
func requireNetns(t *testing.T) {
	t.Helper()
	why := ""
	if os.Geteuid() != 0 {
		why = "needs root to create network namespaces"
	} else if _, err := exec.LookPath("ip"); err != nil {
		why = "needs iproute2's ip command"
	}
	if why == "" {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s (CI=true: not skipped)", why)
	}
	t.Skip(why)
}

// newNetns creates the two namespaces and the veth pair, with addresses on
// the pair only; t.Cleanup deletes them (deleting a namespace deletes its
// end of the pair, and with it the pair), whatever the test's outcome.
func newNetns(t *testing.T) *netns {
	t.Helper()
	requireNetns(t)
	id := fmt.Sprintf("%d", os.Getpid()%1000000)
	n := &netns{t: t, client: "shoalc" + id, server: "shoals" + id, serverLink: "shs" + id}
	clientLink := "shc" + id
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	run("netns", "add", n.client)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", n.client).Run() })
	run("netns", "add", n.server)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", n.server).Run() })
	run("-n", n.client, "link", "add", clientLink, "type", "veth", "peer", "name", n.serverLink, "netns", n.server)
	run("-n", n.client, "addr", "add", clientIP+"/30", "dev", clientLink)
	run("-n", n.server, "addr", "add", serverIP+"/30", "dev", n.serverLink)
	for _, ns := range []string{n.client, n.server} {
		run("-n", ns, "link", "set", "lo", "up")
	}
	run("-n", n.client, "link", "set", clientLink, "up")
	run("-n", n.server, "link", "set", n.serverLink, "up")
	var err error
	if n.clientFD, err = os.Open("/var/run/netns/" + n.client); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.clientFD.Close() })
	if n.serverFD, err = os.Open("/var/run/netns/" + n.server); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.serverFD.Close() })
	return n
}

// setLink sets the server's end of the pair up or down: down, the client's
// packets to the server vanish without an error, as to a crashed host.
func (n *netns) setLink(up bool) {
	n.t.Helper()
	state := "down"
	if up {
		state = "up"
	}
	if out, err := exec.Command("ip", "-n", n.server, "link", "set", n.serverLink, state).CombinedOutput(); err != nil {
		n.t.Fatalf("ip link set %s: %v: %s", state, err, out)
	}
}

// in runs f on a thread that has entered namespace ns; sockets f creates
// belong to that namespace for good. The thread is never unlocked, so it
// exits with the goroutine and no other goroutine ever runs in ns.
func in(ns *os.File, f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := unix.Setns(int(ns.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns: %w", err)
			return
		}
		errc <- f()
	}()
	return <-errc
}

// listen listens on the server's address, inside its namespace.
func (n *netns) listen() (net.Listener, error) {
	var ln net.Listener
	err := in(n.serverFD, func() (err error) {
		ln, err = net.Listen("tcp", serverIP+":0")
		return err
	})
	return ln, err
}

// dial dials address from the client's namespace when it is the server's
// address, and from the host's (loopback) otherwise.
func (n *netns) dial(ctx context.Context, network, address string) (net.Conn, error) {
	if !strings.HasPrefix(address, serverIP+":") {
		return (&net.Dialer{}).DialContext(ctx, network, address)
	}
	var nc net.Conn
	err := in(n.clientFD, func() (err error) {
		nc, err = (&net.Dialer{}).DialContext(ctx, network, address)
		return err
	})
	return nc, err
}
