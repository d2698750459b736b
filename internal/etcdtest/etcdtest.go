// Package etcdtest runs a real single-member etcd server for tests, on free
// loopback ports with a temporary data dir.
//
// The binary is found through, in order: the SHOAL_ETCD environment
// variable, the cache that scripts/etcd.sh build fills
// (${SHOAL_CACHE:-$HOME/.cache/shoal}/etcd-3.6.16/etcd), and etcd on PATH.
// Without one, Start skips the test, or fails it when CI=true.
package etcdtest

import (
	"context"
	"crypto/tls"
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
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/shoalrpc/shoal/internal/testcert"
)

// Version is the etcd version scripts/etcd.sh builds (tools/etcd/go.mod).
const Version = "3.6.16"

// StartTimeout bounds how long Start and the restarts wait for etcd to
// report itself healthy.
const StartTimeout = 30 * time.Second

const buildHint = "build it with scripts/etcd.sh build (about 2-4 minutes, cached afterwards), or set SHOAL_ETCD to an etcd binary"

// Server is one etcd process serving clients on a loopback port.
type Server struct {
	t       testing.TB
	bin     string
	root    string // holds the data dirs and the log
	dataDir string
	logPath string
	client  int // client port
	peer    int // peer port
	http    *http.Client
	tls     *testcert.Files // serve clients TLS and require their certificates

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
	runs int
}

// Binary returns the etcd binary a test would use, or an error carrying the
// hint how to build one.
func Binary() (string, error) { return toolproc.Binary("etcd", "SHOAL_ETCD", Version, buildHint) }

// CachePath returns where scripts/etcd.sh build puts the binary.
func CachePath() string { return toolproc.CachePath("etcd", Version) }

// Start starts etcd on free loopback ports with a fresh data dir and waits
// until it is healthy. It is killed by t.Cleanup, whether the test passes or
// not (and by the kernel if the test binary dies); if the test failed, its
// log is written to the test output.
func Start(t testing.TB) *Server {
	t.Helper()
	return start(t, nil)
}

// StartTLS starts etcd like Start, serving clients over TLS with the server
// certificate in files and requiring client certificates signed by its CA.
func StartTLS(t testing.TB, files testcert.Files, clientConfig *tls.Config) *Server {
	t.Helper()
	return start(t, &tlsSetup{files: files, client: clientConfig})
}

type tlsSetup struct {
	files  testcert.Files
	client *tls.Config // for the health probe
}

func start(t testing.TB, ts *tlsSetup) *Server {
	t.Helper()
	bin, err := Binary()
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("etcdtest: %v", err)
		}
		t.Skipf("etcdtest: %v", err)
	}
	root := t.TempDir()
	s := &Server{
		t:       t,
		bin:     bin,
		root:    root,
		dataDir: filepath.Join(root, "data-1"),
		logPath: filepath.Join(root, "etcd.log"),
		http: &http.Client{
			Timeout:   2 * time.Second,
			Transport: &http.Transport{DisableKeepAlives: true},
		},
	}
	if ts != nil {
		s.tls = &ts.files
		s.http.Transport = &http.Transport{DisableKeepAlives: true, TLSClientConfig: ts.client}
	}
	t.Cleanup(s.cleanup)
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		if s.client, s.peer, err = freePorts(); err != nil {
			t.Fatalf("etcdtest: choosing ports: %v", err)
		}
		if lastErr = s.start(); lastErr == nil {
			return s
		}
		s.kill()
		_ = os.RemoveAll(s.dataDir)
	}
	t.Fatalf("etcdtest: starting etcd: %v\n%s", lastErr, toolproc.LogTail(s.logPath))
	return nil
}

// Endpoint returns the host:port clients connect to.
func (s *Server) Endpoint() string { return "127.0.0.1:" + strconv.Itoa(s.client) }

func (s *Server) scheme() string {
	if s.tls != nil {
		return "https"
	}
	return "http"
}

// Stop terminates etcd (SIGTERM, then SIGKILL after 10 s) and waits for it to
// exit. The data dir stays. Stopping a stopped server does nothing.
func (s *Server) Stop() {
	s.t.Helper()
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		s.t.Logf("etcdtest: etcd did not stop within 10s of SIGTERM; killing it")
		s.kill()
	}
	s.mu.Lock()
	s.cmd, s.done = nil, nil
	s.mu.Unlock()
}

// Resume starts a stopped server again on the same ports with the same data
// dir: keys, leases and revisions survive.
func (s *Server) Resume() {
	s.t.Helper()
	if err := s.start(); err != nil {
		s.t.Fatalf("etcdtest: starting etcd again on the same ports: %v\n%s", err, toolproc.LogTail(s.logPath))
	}
}

// ResumeFresh starts a stopped server again on the same ports with a new,
// empty data dir: a new cluster, with no keys and revisions from 1.
func (s *Server) ResumeFresh() {
	s.t.Helper()
	s.dataDir = filepath.Join(s.root, "data-"+strconv.Itoa(s.runs+1))
	s.Resume()
}

// Restart stops the server and starts it again with the same data dir.
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	s.Resume()
}

// start runs etcd and waits until it is healthy.
func (s *Server) start() error {
	s.runs++
	logf, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close() // the child has its own descriptor
	fmt.Fprintf(logf, "==== etcdtest: run %d of %s, client port %d, data %s ====\n", s.runs, s.bin, s.client, s.dataDir)
	clientURL := s.scheme() + "://127.0.0.1:" + strconv.Itoa(s.client)
	peerURL := "http://127.0.0.1:" + strconv.Itoa(s.peer)
	args := []string{
		"--name=shoal-test",
		"--data-dir=" + s.dataDir,
		"--listen-client-urls=" + clientURL,
		"--advertise-client-urls=" + clientURL,
		"--listen-peer-urls=" + peerURL,
		"--initial-advertise-peer-urls=" + peerURL,
		"--initial-cluster=shoal-test=" + peerURL,
		"--log-level=warn",
		// A test server: a lost write after a crash does not matter, and
		// fsync on a loaded CI machine takes seconds.
		"--unsafe-no-fsync",
	}
	if s.tls != nil {
		args = append(args,
			"--cert-file="+s.tls.ServerCert,
			"--key-file="+s.tls.ServerKey,
			"--client-cert-auth",
			"--trusted-ca-file="+s.tls.CA,
		)
	}
	cmd := exec.Command(s.bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Dir = s.root
	cmd.SysProcAttr = toolproc.SysProcAttr()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("exec %s: %w", s.bin, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	s.mu.Lock()
	s.cmd, s.done = cmd, done
	s.mu.Unlock()
	return s.waitHealthy(done)
}

// waitHealthy polls /health until etcd answers {"health":"true"}, exits, or
// StartTimeout passes.
func (s *Server) waitHealthy(exited <-chan struct{}) error {
	ctx, cancel := context.WithTimeout(context.Background(), StartTimeout)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	url := s.scheme() + "://" + s.Endpoint() + "/health"
	var last error
	for {
		body, err := s.get(ctx, url)
		if err == nil && strings.Contains(body, `"health":"true"`) {
			return nil
		}
		if err == nil {
			err = fmt.Errorf("not healthy yet: %s", body)
		}
		last = err
		select {
		case <-exited:
			return fmt.Errorf("etcd exited during start-up (last probe: %v)", last)
		case <-ctx.Done():
			return fmt.Errorf("etcd not healthy after %v: %v", StartTimeout, last)
		case <-tick.C:
		}
	}
}

func (s *Server) get(ctx context.Context, url string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := s.http.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(body)), nil
}

// kill ends etcd at once and waits for it.
func (s *Server) kill() {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.cmd, s.done = nil, nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	<-done
}

func (s *Server) cleanup() {
	s.kill()
	if s.t.Failed() {
		s.t.Logf("etcdtest: etcd log (%s):\n%s", s.logPath, toolproc.LogTail(s.logPath))
	}
}

// freePorts picks two distinct free loopback TCP ports.
func freePorts() (client, peer int, err error) {
	var got []int
	for len(got) < 2 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, 0, err
		}
		p := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if len(got) == 0 || got[0] != p {
			got = append(got, p)
		}
	}
	if got[0] == got[1] {
		return 0, 0, errors.New("the same port twice")
	}
	return got[0], got[1], nil
}
