package consul

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/shoalrpc/shoal/internal/namingtest"
	"github.com/shoalrpc/shoal/naming"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
)

func TestNextWaitIndex(t *testing.T) {
	for _, tc := range []struct{ sent, got, want uint64 }{
		{0, 10, 10},  // first query
		{10, 10, 10}, // wait expired, nothing changed
		{10, 12, 12}, // change
		{12, 5, 0},   // went backwards: start over
		{0, 0, 1},    // a zero index never blocks: read as 1
		{7, 0, 0},    // backwards to zero
	} {
		if got := nextWaitIndex(tc.sent, tc.got); got != tc.want {
			t.Errorf("nextWaitIndex(%d, %d) = %d, want %d", tc.sent, tc.got, got, tc.want)
		}
	}
}

func TestSnapshotDedup(t *testing.T) {
	a := &naming.Instance{ID: "a", Service: "s", Addr: "tcp@h:1", Weight: 1}
	a2 := &naming.Instance{ID: "a", Service: "s", Addr: "tcp@h:1", Weight: 2}
	at := &naming.Instance{ID: "a", Service: "s", Addr: "tcp@h:1", Weight: 1, Tags: []string{"x"}}
	am := &naming.Instance{ID: "a", Service: "s", Addr: "tcp@h:1", Weight: 1, Meta: map[string]string{"k": "v"}}
	b := &naming.Instance{ID: "b", Service: "s", Addr: "tcp@h:2", Weight: 1}
	var d snapshotDedup
	steps := []struct {
		snap []*naming.Instance
		want bool
	}{
		{[]*naming.Instance{}, true}, // the first snapshot, empty, is delivered
		{nil, false},
		{[]*naming.Instance{a}, true},
		{naming.CloneInstances([]*naming.Instance{a}), false}, // equal values, new pointers
		{[]*naming.Instance{a2}, true},                        // weight changed
		{[]*naming.Instance{at}, true},                        // tags changed
		{[]*naming.Instance{am}, true},                        // meta changed
		{[]*naming.Instance{am, b}, true},
		{[]*naming.Instance{am, b}, false},
		{[]*naming.Instance{}, true}, // everything gone is a change too
	}
	for i, s := range steps {
		if got := d.changed(s.snap); got != s.want {
			t.Errorf("step %d: changed(%v) = %v, want %v", i, namingtest.IDs(s.snap), got, s.want)
		}
	}
}

func TestBackoffBounds(t *testing.T) {
	b := backoff{min: 100 * time.Millisecond, max: time.Second}
	steps := []time.Duration{100, 200, 400, 800, 1000, 1000, 1000}
	for round := 0; round < 2; round++ {
		for i, step := range steps {
			step *= time.Millisecond
			d := b.next()
			if d < step/2 || d > step {
				t.Fatalf("round %d delay %d = %v, want within [%v, %v]", round, i, d, step/2, step)
			}
		}
		b.reset()
	}
}

func TestIsCheckGone(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{nil, false},
		{fmt.Errorf("consul heartbeat x: %w", api.StatusError{Code: 404, Body: `Unknown check ID "x-ttl"`}), true},
		{api.StatusError{Code: 500, Body: `CheckID "x-ttl" does not have associated TTL`}, true},
		{errors.New(`Unexpected response code: 500 (Unknown check "x")`), true},
		{api.StatusError{Code: 500, Body: "No cluster leader"}, false},
		{errors.New("dial tcp 127.0.0.1:8500: connect: connection refused"), false},
	} {
		if got := isCheckGone(tc.err); got != tc.want {
			t.Errorf("isCheckGone(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

func TestInstanceFromService(t *testing.T) {
	// Registered by shoal: Addr from the reserved meta key, which is stripped.
	got := instanceFromService(&api.AgentService{
		ID: "s-1", Service: "s", Address: "10.0.0.1", Port: 9001,
		Meta:    map[string]string{metaAddr: "tcp@10.0.0.1:9001", "zone": "a"},
		Weights: api.AgentWeights{Passing: 5, Warning: 1},
	}, &api.Node{Address: "10.0.0.9"})
	want := &naming.Instance{ID: "s-1", Service: "s", Addr: "tcp@10.0.0.1:9001", Weight: 5, Meta: map[string]string{"zone": "a"}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	// Registered by another tool: Addr from the node's address, weight 1.
	got = instanceFromService(&api.AgentService{ID: "x", Service: "s", Port: 80, Tags: []string{}, Meta: map[string]string{}}, &api.Node{Address: "::1"})
	want = &naming.Instance{ID: "x", Service: "s", Addr: "tcp@[::1]:80", Weight: 1}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
}

// fakeHealth is a scripted /v1/health/service endpoint: every request's
// index goes to reqs, and the handler answers with the next value from
// resps.
type fakeHealth struct {
	reqs  chan string
	resps chan fakeResp
}

type fakeResp struct {
	status  int
	index   uint64
	entries []*api.ServiceEntry
}

func (f *fakeHealth) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !strings.HasPrefix(r.URL.Path, "/v1/health/service/") || r.URL.Query().Get("passing") == "" {
		http.Error(w, "unexpected request "+r.URL.String(), http.StatusBadRequest)
		return
	}
	select {
	case f.reqs <- r.URL.Query().Get("index"):
	case <-r.Context().Done():
		return
	}
	select {
	case resp := <-f.resps:
		if resp.status != http.StatusOK {
			http.Error(w, "scripted failure", resp.status)
			return
		}
		w.Header().Set("X-Consul-Index", fmt.Sprint(resp.index))
		_ = json.NewEncoder(w).Encode(resp.entries)
	case <-r.Context().Done():
	}
}

func entry(id string, port int) *api.ServiceEntry {
	return &api.ServiceEntry{
		Node: &api.Node{Node: "n", Address: "127.0.0.1"},
		Service: &api.AgentService{ID: id, Service: "svc", Address: "127.0.0.1", Port: port,
			Meta: map[string]string{metaAddr: fmt.Sprintf("tcp@127.0.0.1:%d", port)}, Weights: api.AgentWeights{Passing: 1}},
	}
}

// TestConsulWatchLoopIndexAndDedup drives the real watch loop against a
// scripted health endpoint: the index is carried forward, reset to 0 when
// it goes backwards and after an error, identical snapshots are delivered
// once, and an empty list is delivered.
func TestConsulWatchLoopIndexAndDedup(t *testing.T) {
	f := &fakeHealth{reqs: make(chan string), resps: make(chan fakeResp)}
	srv := httptest.NewServer(f)
	defer srv.Close()
	c, err := New(&api.Config{Address: strings.TrimPrefix(srv.URL, "http://")},
		WithBackoff(time.Millisecond, 2*time.Millisecond), WithWatchRateLimit(0, 1))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ch, err := c.Watch(t.Context(), "svc")
	if err != nil {
		t.Fatal(err)
	}
	a, b := entry("a", 1), entry("b", 2)
	script := []struct {
		wantIndex string // "" for 0: the client leaves the parameter out
		resp      fakeResp
		deliver   []string // IDs of the snapshot delivered after this answer; nil: none
	}{
		{"", fakeResp{200, 10, []*api.ServiceEntry{a}}, []string{"a"}},
		{"10", fakeResp{200, 10, []*api.ServiceEntry{a}}, nil}, // wait expired, same list
		{"10", fakeResp{200, 12, []*api.ServiceEntry{b, a}}, []string{"a", "b"}},
		{"12", fakeResp{200, 5, []*api.ServiceEntry{a, b}}, nil}, // backwards, same list
		{"", fakeResp{500, 0, nil}, nil},                         // index reset: no index param; then an error
		{"", fakeResp{200, 7, []*api.ServiceEntry{}}, []string{}},
		{"7", fakeResp{200, 9, nil}, nil}, // still empty
		{"9", fakeResp{}, nil},            // left hanging until the end
	}
	for i, step := range script {
		select {
		case idx := <-f.reqs:
			if idx != step.wantIndex {
				t.Fatalf("step %d: query index %q, want %q", i, idx, step.wantIndex)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("step %d: no query", i)
		}
		// The previous answer has been fully handled: the loop sent this
		// query. Check what it delivered.
		if i > 0 {
			checkDelivery(t, i-1, ch, script[i-1].deliver)
		}
		if i == len(script)-1 {
			break
		}
		f.resps <- step.resp
	}
	if st := c.Stats(); st.WatchErrors != 1 || st.WatchQueries != uint64(len(script)) {
		t.Fatalf("stats %+v: want 1 error and %d queries", st, len(script))
	}
	c.Close()
	namingtest.AssertClosed(t, ch, 5*time.Second)
}

func checkDelivery(t *testing.T, step int, ch <-chan []*naming.Instance, want []string) {
	t.Helper()
	select {
	case snap := <-ch:
		if want == nil {
			t.Fatalf("after step %d: unexpected snapshot %s", step, namingtest.IDs(snap))
		}
		if snap == nil || !namingtest.HasIDs(want...)(snap) {
			t.Fatalf("after step %d: snapshot %s, want %v", step, namingtest.IDs(snap), want)
		}
	default:
		if want != nil {
			t.Fatalf("after step %d: no snapshot, want %v", step, want)
		}
	}
}

// TestConsulUnreachable: with no agent, Register fails with a clear error and
// a watch backs off instead of spinning, delivering nothing.
func TestConsulUnreachable(t *testing.T) {
	c, err := New(&api.Config{Address: "127.0.0.1:1"},
		WithBackoff(20*time.Millisecond, 100*time.Millisecond), WithRequestTimeout(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, err = c.Register(t.Context(), &naming.Instance{Service: "s", Addr: "tcp@127.0.0.1:9001"})
	if err == nil || !strings.Contains(err.Error(), "consul register s-127.0.0.1-9001") {
		t.Fatalf("Register = %v, want a wrapped consul register error", err)
	}

	start := time.Now()
	ctx, cancel := context.WithCancel(t.Context())
	ch, err := c.Watch(ctx, "s")
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for c.Stats().WatchErrors < 8 {
		if time.Now().After(deadline) {
			t.Fatalf("watch made only %d failed queries in 10s", c.Stats().WatchErrors)
		}
		time.Sleep(5 * time.Millisecond) // polling an external condition
	}
	// Backoff lower bounds for 7 gaps: 10+20+40+50+50+50+50 ms.
	if el := time.Since(start); el < 260*time.Millisecond {
		t.Fatalf("8 failed queries in %v: the watch does not back off", el)
	}
	select {
	case snap := <-ch:
		t.Fatalf("watch delivered %v with Consul unreachable", snap)
	default:
	}
	cancel()
	namingtest.AssertClosed(t, ch, 2*time.Second)
}

// TestConsulWaitFitsHTTPTimeout: a client-wide HTTP timeout shorter than the
// blocking wait shrinks the wait instead of cutting queries short.
func TestConsulWaitFitsHTTPTimeout(t *testing.T) {
	c, err := New(&api.Config{Address: "127.0.0.1:1", HttpClient: &http.Client{Timeout: 30 * time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if w := c.o.wait; w+w/16 >= 30*time.Second || w < 20*time.Second {
		t.Fatalf("wait %v with a 30s HTTP timeout", w)
	}
	if _, err := New(&api.Config{Address: "127.0.0.1:1", HttpClient: &http.Client{Timeout: time.Second}}); err == nil {
		t.Fatal("a 1s HTTP timeout was accepted for blocking queries")
	}
}
