// Package consultest runs a real Consul agent in dev mode for tests.
//
// The binary is found through, in order: the SHOAL_CONSUL environment
// variable, the cache that scripts/consul.sh build fills
// (${SHOAL_CACHE:-$HOME/.cache/shoal}/consul-1.21.0/consul), and consul on
// PATH. Without one, Start skips the test, or fails it when CI=true.
//
// StartWithACL starts the agent with ACLs on (default policy deny) and
// returns its management token.
package consultest

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"github.com/shoalrpc/shoal/internal/toolproc"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Version is the Consul version scripts/consul.sh builds.
const Version = "1.21.0"

// StartTimeout bounds how long Start and Restart wait for the agent to
// elect itself leader and register its node.
const StartTimeout = 30 * time.Second

const buildHint = "build it with scripts/consul.sh build (about 4 minutes, cached afterwards), or set SHOAL_CONSUL to a consul binary"

// Agent is one consul agent -dev process on free loopback ports.
type Agent struct {
	t       testing.TB
	bin     string
	dir     string
	logPath string
	ports   ports
	client  *http.Client

	// token is the initial management token of an agent with ACLs on
	// (StartWithACL), "" otherwise.
	token string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
	runs int
}

type ports struct {
	http, dns, grpc, grpcTLS, serfLAN, serfWAN, server int
}

// Binary returns the consul binary a test would use, or an error carrying the
// hint how to build one.
func Binary() (string, error) { return toolproc.Binary("consul", "SHOAL_CONSUL", Version, buildHint) }

// CachePath returns where scripts/consul.sh build puts the binary.
func CachePath() string { return toolproc.CachePath("consul", Version) }

// Start starts a dev agent on free loopback ports and waits until it has a
// leader and its node is in the catalog. The agent is killed by t.Cleanup,
// whether the test passes or not; if the test failed, the agent's log is
// written to the test output.
func Start(t testing.TB) *Agent {
	t.Helper()
	return start(t, "")
}

// StartWithACL starts a dev agent like Start, with Consul's ACL system on and
// a default policy of deny, and returns it with its management token (a
// random UUID, the agent's initial_management token, also used as the
// agent's own token so that it can register its node). It waits until the
// agent has a leader, its node is in the catalog and the ACL system answers
// GET /v1/acl/token/self for the management token. Restart keeps the token.
func StartWithACL(t testing.TB) (a *Agent, managementToken string) {
	t.Helper()
	token, err := randomUUID()
	if err != nil {
		t.Fatalf("consultest: management token: %v", err)
	}
	return start(t, token), token
}

// ManagementToken returns the management token of an agent started by
// StartWithACL, or "" when its ACLs are off.
func (a *Agent) ManagementToken() string { return a.token }

func start(t testing.TB, token string) *Agent {
	t.Helper()
	bin, err := Binary()
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("consultest: %v", err)
		}
		t.Skipf("consultest: %v", err)
	}
	dir := t.TempDir() // removed after the cleanup below, which runs first
	a := &Agent{
		t:       t,
		bin:     bin,
		dir:     dir,
		logPath: filepath.Join(dir, "consul.log"),
		token:   token,
		client: &http.Client{
			Timeout:   2 * time.Second,
			Transport: &http.Transport{DisableKeepAlives: true},
		},
	}
	t.Cleanup(a.cleanup)

	// Free ports can be taken by someone else between choosing and binding
	// them; try a few times with fresh ports.
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		if a.ports, err = freePorts(); err != nil {
			t.Fatalf("consultest: choosing ports: %v", err)
		}
		if lastErr = a.start(); lastErr == nil {
			return a
		}
		a.kill()
	}
	t.Fatalf("consultest: starting consul: %v\n%s", lastErr, toolproc.LogTail(a.logPath))
	return nil
}

// Addr returns the host:port of the agent's HTTP API, the value for
// CONSUL_HTTP_ADDR or api.Config.Address.
func (a *Agent) Addr() string {
	return "127.0.0.1:" + strconv.Itoa(a.ports.http)
}

// Stop terminates the agent and waits for it to exit. A dev agent keeps
// everything in memory, so its registrations are gone afterwards. Stopping a
// stopped agent does nothing.
func (a *Agent) Stop() {
	a.t.Helper()
	a.mu.Lock()
	cmd, done := a.cmd, a.done
	a.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		a.t.Logf("consultest: consul did not stop within 10s of SIGTERM; killing it")
		a.kill()
	}
	a.mu.Lock()
	a.cmd, a.done = nil, nil
	a.mu.Unlock()
}

// Restart stops the agent (if it runs) and starts it again on the same
// ports, empty: a dev agent keeps its state in memory only (no data dir), so
// every registration is gone, as with a fresh data dir. It waits for a
// leader. Stop, then Restart later, leaves the agent away in between, as a
// registry outage does.
func (a *Agent) Restart() {
	a.t.Helper()
	a.Stop()
	if err := a.start(); err != nil {
		a.t.Fatalf("consultest: restarting consul on the same ports: %v\n%s", err, toolproc.LogTail(a.logPath))
	}
}

// start runs the agent on a.ports and waits until it is ready.
func (a *Agent) start() error {
	a.runs++
	logf, err := os.OpenFile(a.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close() // the child has its own descriptor
	fmt.Fprintf(logf, "==== consultest: run %d of %s, http port %d ====\n", a.runs, a.bin, a.ports.http)

	p := a.ports
	args := []string{"agent", "-dev",
		"-node=shoal-test",
		"-bind=127.0.0.1",
		"-client=127.0.0.1",
		"-http-port=" + strconv.Itoa(p.http),
		"-dns-port=" + strconv.Itoa(p.dns),
		"-grpc-port=" + strconv.Itoa(p.grpc),
		"-grpc-tls-port=" + strconv.Itoa(p.grpcTLS),
		"-serf-lan-port=" + strconv.Itoa(p.serfLAN),
		"-serf-wan-port=" + strconv.Itoa(p.serfWAN),
		"-server-port=" + strconv.Itoa(p.server),
		"-log-level=info",
		"-hcl=connect { enabled = false }",
	}
	if a.token != "" {
		// Dev mode bootstraps the ACL system with initial_management; the
		// agent token lets the agent register its own node under deny.
		args = append(args, fmt.Sprintf(
			`-hcl=acl { enabled = true default_policy = "deny" enable_token_persistence = false tokens { initial_management = %q agent = %q } }`,
			a.token, a.token))
	}
	cmd := exec.Command(a.bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Dir = a.dir
	cmd.SysProcAttr = toolproc.SysProcAttr()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("exec %s: %w", a.bin, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	a.mu.Lock()
	a.cmd, a.done = cmd, done
	a.mu.Unlock()
	return a.waitReady(done)
}

// waitReady polls the HTTP API until the agent has a leader and its own node
// is in the catalog (and, with ACLs on, the ACL system knows the management
// token), the agent exits, or StartTimeout passes.
func (a *Agent) waitReady(exited <-chan struct{}) error {
	ctx, cancel := context.WithTimeout(context.Background(), StartTimeout)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	base := "http://" + a.Addr()
	var last error
	for {
		leader, err := a.get(ctx, base+"/v1/status/leader")
		if err == nil && leader != `""` && leader != "" {
			var nodes string
			nodes, err = a.get(ctx, base+"/v1/catalog/node/shoal-test")
			if err == nil && nodes != "null" && a.token != "" {
				// ACLs are ready once the management token resolves.
				_, err = a.get(ctx, base+"/v1/acl/token/self")
			}
			if err == nil && nodes != "null" {
				return nil
			}
			if err == nil {
				err = errors.New("node not yet in catalog")
			}
		} else if err == nil {
			err = errors.New("no leader yet")
		}
		last = err
		select {
		case <-exited:
			return fmt.Errorf("consul exited during start-up (last probe: %v)", last)
		case <-ctx.Done():
			return fmt.Errorf("consul not ready after %v: %v", StartTimeout, last)
		case <-tick.C:
		}
	}
}

func (a *Agent) get(ctx context.Context, url string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	if a.token != "" {
		req.Header.Set("X-Consul-Token", a.token)
	}
	resp, err := a.client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s: %s: %s", url, resp.Status, bytes.TrimSpace(body))
	}
	return string(bytes.TrimSpace(body)), nil
}

// kill ends the agent at once and waits for it.
func (a *Agent) kill() {
	a.mu.Lock()
	cmd, done := a.cmd, a.done
	a.cmd, a.done = nil, nil
	a.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	<-done
}

func (a *Agent) cleanup() {
	a.kill()
	if a.t.Failed() {
		a.t.Logf("consultest: consul log (%s):\n%s", a.logPath, toolproc.LogTail(a.logPath))
	}
}

// freePorts picks distinct loopback ports that are free for both TCP and
// UDP (DNS and Serf use both).
func freePorts() (ports, error) {
	var got []int
	seen := map[int]bool{}
	for len(got) < 7 {
		p, err := freePort()
		if err != nil {
			return ports{}, err
		}
		if !seen[p] {
			seen[p] = true
			got = append(got, p)
		}
	}
	return ports{http: got[0], dns: got[1], grpc: got[2], grpcTLS: got[3], serfLAN: got[4], serfWAN: got[5], server: got[6]}, nil
}

func freePort() (int, error) {
	for i := 0; i < 50; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		port := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		l.Close()
		if err != nil {
			continue // UDP side taken; try another
		}
		u.Close()
		return port, nil
	}
	return 0, errors.New("no port free for both TCP and UDP after 50 tries")
}

// randomUUID returns a random (version 4) UUID, the form Consul wants for a
// token's secret.
func randomUUID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16]), nil
}
