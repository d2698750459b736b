package consul

import (
	"bytes"
	"context"
	"errors"
	"github.com/shoalrpc/shoal/internal/namingtest"
	"github.com/shoalrpc/shoal/naming"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/shoalrpc/shoal/internal/consultest"
)

// These tests run against a real consul agent -dev started with ACLs on and
// a default policy of deny (consultest.StartWithACL).

// logCapture is a slog handler that keeps every record as text.
type logCapture struct {
	mu  sync.Mutex
	buf bytes.Buffer
	h   slog.Handler
}

func newLogCapture() *logCapture {
	lc := &logCapture{}
	lc.h = slog.NewTextHandler(&lc.buf, &slog.HandlerOptions{Level: slog.LevelDebug})
	return lc
}

func (lc *logCapture) logger() *slog.Logger { return slog.New(lc) }

func (lc *logCapture) Enabled(context.Context, slog.Level) bool { return true }
func (lc *logCapture) Handle(ctx context.Context, r slog.Record) error {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	return lc.h.Handle(ctx, r)
}
func (lc *logCapture) WithAttrs(as []slog.Attr) slog.Handler {
	return &logView{lc: lc, attrs: as}
}
func (lc *logCapture) WithGroup(string) slog.Handler { return lc }

// lines returns the captured lines that contain every one of subs.
func (lc *logCapture) lines(subs ...string) []string {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	var out []string
	for l := range strings.SplitSeq(lc.buf.String(), "\n") {
		ok := l != ""
		for _, s := range subs {
			ok = ok && strings.Contains(l, s)
		}
		if ok {
			out = append(out, l)
		}
	}
	return out
}

// logView is a logCapture with attributes (logger.With).
type logView struct {
	lc    *logCapture
	attrs []slog.Attr
}

func (v *logView) Enabled(context.Context, slog.Level) bool { return true }
func (v *logView) Handle(ctx context.Context, r slog.Record) error {
	r.AddAttrs(v.attrs...)
	return v.lc.Handle(ctx, r)
}
func (v *logView) WithAttrs(as []slog.Attr) slog.Handler {
	return &logView{lc: v.lc, attrs: append(append([]slog.Attr(nil), v.attrs...), as...)}
}
func (v *logView) WithGroup(string) slog.Handler { return v }

// newACLConsul is newTestConsul with a token: "" sends none (unless
// CONSUL_HTTP_TOKEN is set).
func newACLConsul(t *testing.T, agent *consultest.Agent, token string, opts ...Option) *Registry {
	t.Helper()
	return newTestConsul(t, agent, append([]Option{WithToken(token)}, opts...)...)
}

// adminClient is a Consul API client with the management token.
func adminClient(t *testing.T, agent *consultest.Agent) *api.Client {
	t.Helper()
	c, err := api.NewClient(&api.Config{Address: agent.Addr(), Token: agent.ManagementToken()})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// createToken makes a policy with rules and a token holding it, through the
// ACL API, and returns the token's secret and accessor IDs.
func createToken(t *testing.T, admin *api.Client, name, rules string) (secret, accessor string) {
	t.Helper()
	pol, _, err := admin.ACL().PolicyCreate(&api.ACLPolicy{Name: name, Rules: rules}, nil)
	if err != nil {
		t.Fatalf("creating policy %s: %v", name, err)
	}
	tok, _, err := admin.ACL().TokenCreate(&api.ACLToken{
		Description: "shoal test " + name,
		Policies:    []*api.ACLTokenPolicyLink{{ID: pol.ID}},
	}, nil)
	if err != nil {
		t.Fatalf("creating token for %s: %v", name, err)
	}
	return tok.SecretID, tok.AccessorID
}

// registeredAnywhere lists the services the agent holds and the catalog's
// instances of service, seen with the management token.
func registeredAnywhere(t *testing.T, admin *api.Client, service string) (agentIDs []string, catalog int) {
	t.Helper()
	svcs, err := admin.Agent().Services()
	if err != nil {
		t.Fatal(err)
	}
	for id := range svcs {
		agentIDs = append(agentIDs, id)
	}
	entries, _, err := admin.Catalog().Service(service, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	return agentIDs, len(entries)
}

const (
	// arithRules is the least a provider and consumer of "arith" need.
	arithRules = `service "arith" { policy = "write" }
node_prefix "" { policy = "read" }
service_prefix "" { policy = "read" }`
	// serviceOnlyRules may read "arith" but no node.
	serviceOnlyRules = `service "arith" { policy = "read" }`
)

// roundTrip registers an arith instance through provider, sees it passing
// through consumer's Fetch and Watch, deregisters it and sees it gone.
func roundTrip(t *testing.T, provider, consumer *Registry, port string) {
	t.Helper()
	id := "arith-127.0.0.1-" + port
	ch, err := consumer.Watch(t.Context(), "arith")
	if err != nil {
		t.Fatal(err)
	}
	if snap := namingtest.Next(t, ch, 5*time.Second); len(snap) != 0 {
		t.Fatalf("first snapshot %s, want empty", namingtest.IDs(snap))
	}
	cancel, err := provider.Register(t.Context(), &naming.Instance{Service: "arith", Addr: "tcp@127.0.0.1:" + port})
	if err != nil {
		t.Fatalf("Register: %v", err)
	}
	if got, err := consumer.Fetch(t.Context(), "arith"); err != nil || !namingtest.HasIDs(id)(got) {
		t.Fatalf("Fetch after Register = %s, %v; want %s passing", namingtest.IDs(got), err, id)
	}
	namingtest.WaitSnapshot(t, ch, 5*time.Second, "the instance", namingtest.HasIDs(id))
	cancel()
	if got, err := consumer.Fetch(t.Context(), "arith"); err != nil || len(got) != 0 {
		t.Fatalf("Fetch after deregister = %s, %v; want empty", namingtest.IDs(got), err)
	}
	namingtest.WaitSnapshot(t, ch, 5*time.Second, "no instance", namingtest.HasIDs())
	if st := provider.Stats(); st.ACLDenials != 0 {
		t.Fatalf("provider stats %+v: ACL denials with a sufficient token", st)
	}
}

func TestConsulACLManagementToken(t *testing.T) {
	t.Parallel()
	agent, mgmt := consultest.StartWithACL(t)
	roundTrip(t, newACLConsul(t, agent, mgmt), newACLConsul(t, agent, mgmt), "9001")
}

func TestConsulACLLeastPrivilegeToken(t *testing.T) {
	t.Parallel()
	agent, _ := consultest.StartWithACL(t)
	admin := adminClient(t, agent)
	token, accessor := createToken(t, admin, "arith-rw", arithRules)
	provider := newACLConsul(t, agent, token)
	roundTrip(t, provider, newACLConsul(t, agent, token), "9002")

	// The token may not write another service.
	_, err := provider.Register(t.Context(), &naming.Instance{Service: "other", Addr: "tcp@127.0.0.1:9003"})
	if !errors.Is(err, ErrPermissionDenied) || !strings.Contains(err.Error(), `service "other" { policy = "write" }`) {
		t.Fatalf("Register of a service the token may not write = %v; want ErrPermissionDenied naming what it needs", err)
	}
	t.Logf("a service outside the policy: %v", err)

	// Revoking the token while an instance is registered: the heartbeats are
	// refused, counted and logged as errors, not retried in silence.
	logs := newLogCapture()
	revoked := newACLConsul(t, agent, token, WithLogger(logs.logger()))
	if _, err := revoked.Register(t.Context(), &naming.Instance{Service: "arith", Addr: "tcp@127.0.0.1:9004"}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.ACL().TokenDelete(accessor, nil); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for revoked.Stats().ACLDenials == 0 || len(logs.lines("level=ERROR", "permission denied")) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no refused heartbeat logged within 10s of revoking the token: %+v", revoked.Stats())
		}
		time.Sleep(20 * time.Millisecond) // polling: heartbeats are TTL/3 apart
	}
	t.Logf("after revocation: %s", logs.lines("level=ERROR")[0])
}

// TestConsulACLDenied: without a token, or with one Consul does not know,
// Register fails at once with a permission error and leaves nothing behind;
// Fetch fails with ErrPermissionDenied (without a token too, although Consul
// answers that query with an empty list); a watch logs the refusal as an
// error, backs off and delivers nothing.
func TestConsulACLDenied(t *testing.T) {
	t.Parallel()
	agent, mgmt := consultest.StartWithACL(t)
	admin := adminClient(t, agent)
	owner := newACLConsul(t, agent, mgmt)
	cancel, err := owner.Register(t.Context(), &naming.Instance{Service: "arith", Addr: "tcp@127.0.0.1:9010"})
	if err != nil {
		t.Fatal(err)
	}
	defer cancel()
	serviceOnly, _ := createToken(t, admin, "arith-read-no-nodes", serviceOnlyRules)

	for _, tc := range []struct {
		name, token  string
		inError      string // Consul's own reason, kept in Register's error
		inFetchError string
	}{
		{"no token", "", "anonymous token lacks permission 'service:write'", "no ACL token: set CONSUL_HTTP_TOKEN"},
		{"bogus token", "00000000-1111-2222-3333-444444444444", "ACL not found", "ACL not found"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.token == "" && (os.Getenv("CONSUL_HTTP_TOKEN") != "" || os.Getenv("CONSUL_HTTP_TOKEN_FILE") != "") {
				t.Skip("CONSUL_HTTP_TOKEN or CONSUL_HTTP_TOKEN_FILE is set: no anonymous request to test")
			}
			logs := newLogCapture()
			c := newACLConsul(t, agent, tc.token, WithLogger(logs.logger()))
			start := time.Now()
			_, err := c.Register(t.Context(), &naming.Instance{Service: "arith", Addr: "tcp@127.0.0.1:9011"})
			if !errors.Is(err, ErrPermissionDenied) {
				t.Fatalf("Register = %v; want ErrPermissionDenied", err)
			}
			var se api.StatusError
			if !errors.As(err, &se) || se.Code != http.StatusForbidden {
				t.Fatalf("Register error %v does not carry Consul's 403", err)
			}
			msg := err.Error()
			for _, want := range []string{"permission denied", tc.inError, `service "arith" { policy = "write" }`} {
				if !strings.Contains(msg, want) {
					t.Fatalf("Register error %q does not say %q", msg, want)
				}
			}
			if tc.token != "" && strings.Contains(msg, tc.token) {
				t.Fatalf("Register error %q shows the token", msg)
			}
			t.Logf("Register failed in %v: %v", time.Since(start), err)
			agentIDs, inCatalog := registeredAnywhere(t, admin, "arith")
			if len(agentIDs) != 1 || agentIDs[0] != "arith-127.0.0.1-9010" || inCatalog != 1 {
				t.Fatalf("after the refused Register the agent holds %v and the catalog %d arith instances; want only the owner's",
					agentIDs, inCatalog)
			}

			ctx, stop := context.WithCancel(t.Context())
			defer stop()
			ch, err := c.Watch(ctx, "arith")
			if err != nil {
				t.Fatal(err)
			}
			_, fetchErr := c.Fetch(t.Context(), "arith")
			// Without a token Consul answers an empty list, not an error;
			// the registry asks Consul whether the anonymous token may read
			// the service, and says it may not, rather than "no instance".
			if !errors.Is(fetchErr, ErrPermissionDenied) || !strings.Contains(fetchErr.Error(), tc.inFetchError) ||
				!strings.Contains(fetchErr.Error(), `service "arith" { policy = "read" }`) {
				t.Fatalf("Fetch = %v; want ErrPermissionDenied saying %q and what the token needs", fetchErr, tc.inFetchError)
			}
			t.Logf("Fetch: %v", fetchErr)
			// The watch delivers nothing (not an empty list), logs the
			// refusal at error level and retries.
			deadline := time.Now().Add(10 * time.Second)
			for c.Stats().WatchErrors < 3 || len(logs.lines("level=ERROR", "refused the watch", "permission denied")) < 3 {
				if time.Now().After(deadline) {
					t.Fatalf("watch: %+v, logs:\n%s", c.Stats(), strings.Join(logs.lines(), "\n"))
				}
				time.Sleep(10 * time.Millisecond) // polling the watch's counters
			}
			select {
			case snap := <-ch:
				t.Fatalf("watch with a bogus token delivered %s", namingtest.IDs(snap))
			default:
			}
			stop()
			namingtest.AssertClosed(t, ch, 5*time.Second)
		})
	}

	// A token that may read the service but no node: Consul filters the
	// instances out; Fetch says so instead of returning an empty list.
	c := newACLConsul(t, agent, serviceOnly)
	_, err = c.Fetch(t.Context(), "arith")
	if !errors.Is(err, ErrPermissionDenied) || !strings.Contains(err.Error(), "filtered") ||
		!strings.Contains(err.Error(), `node_prefix "" { policy = "read" }`) {
		t.Fatalf("Fetch without node:read = %v; want ErrPermissionDenied about filtering", err)
	}
	t.Logf("Fetch without node:read: %v", err)
}

// TestConsulACLAnonymousMayRead: where the anonymous token may read
// services and nodes (a common setup for DNS), a Fetch without a token gets
// the instances, and an empty list for a service with none: the check behind
// an empty anonymous answer is not a blanket refusal.
func TestConsulACLAnonymousMayRead(t *testing.T) {
	t.Parallel()
	if os.Getenv("CONSUL_HTTP_TOKEN") != "" || os.Getenv("CONSUL_HTTP_TOKEN_FILE") != "" {
		t.Skip("CONSUL_HTTP_TOKEN or CONSUL_HTTP_TOKEN_FILE is set: no anonymous request to test")
	}
	agent, mgmt := consultest.StartWithACL(t)
	admin := adminClient(t, agent)
	pol, _, err := admin.ACL().PolicyCreate(&api.ACLPolicy{Name: "anonymous-read",
		Rules: `service_prefix "" { policy = "read" }
node_prefix "" { policy = "read" }`}, nil)
	if err != nil {
		t.Fatal(err)
	}
	const anonymousAccessor = "00000000-0000-0000-0000-000000000002"
	if _, _, err := admin.ACL().TokenUpdate(&api.ACLToken{AccessorID: anonymousAccessor,
		Policies: []*api.ACLTokenPolicyLink{{ID: pol.ID}}}, nil); err != nil {
		t.Fatal(err)
	}
	cancel, err := newACLConsul(t, agent, mgmt).Register(t.Context(), &naming.Instance{Service: "arith", Addr: "tcp@127.0.0.1:9030"})
	if err != nil {
		t.Fatal(err)
	}
	defer cancel()
	c := newACLConsul(t, agent, "")
	// Token policies reach the agent's ACL cache within a moment.
	deadline := time.Now().Add(10 * time.Second)
	for {
		got, err := c.Fetch(t.Context(), "arith")
		if err == nil && namingtest.HasIDs("arith-127.0.0.1-9030")(got) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("anonymous Fetch with read granted = %s, %v; want the instance", namingtest.IDs(got), err)
		}
		time.Sleep(50 * time.Millisecond) // polling Consul's ACL cache, an outside event
	}
	if got, err := c.Fetch(t.Context(), "none"); err != nil || len(got) != 0 {
		t.Fatalf("anonymous Fetch of a service with no instance, read granted = %s, %v; want an empty list", namingtest.IDs(got), err)
	}
}

// TestConsulACLRevokedWatchKeepsItsList: a watch whose token is revoked
// keeps its last good list (it delivers no empty snapshot), and surfaces the
// refusal: logged at error level with what the token needs, counted in
// Stats, and Fetch fails with ErrPermissionDenied.
func TestConsulACLRevokedWatchKeepsItsList(t *testing.T) {
	t.Parallel()
	agent, mgmt := consultest.StartWithACL(t)
	admin := adminClient(t, agent)
	token, accessor := createToken(t, admin, "arith-rw", arithRules)
	cancel, err := newACLConsul(t, agent, mgmt).Register(t.Context(), &naming.Instance{Service: "arith", Addr: "tcp@127.0.0.1:9040"})
	if err != nil {
		t.Fatal(err)
	}
	defer cancel()
	logs := newLogCapture()
	// A blocking query waits 1 s at most, then asks again with the token.
	c := newACLConsul(t, agent, token, WithLogger(logs.logger()), WithWatchWait(time.Second))
	ch, err := c.Watch(t.Context(), "arith")
	if err != nil {
		t.Fatal(err)
	}
	namingtest.WaitSnapshot(t, ch, 5*time.Second, "the instance", namingtest.HasIDs("arith-127.0.0.1-9040"))
	if _, err := admin.ACL().TokenDelete(accessor, nil); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for c.Stats().ACLDenials == 0 || len(logs.lines("level=ERROR", "refused the watch", "permission denied", `policy = \"read\"`)) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no refused watch query surfaced within 10 s of revoking the token: %+v, logs:\n%s",
				c.Stats(), strings.Join(logs.lines(), "\n"))
		}
		time.Sleep(20 * time.Millisecond) // polling the watch's counters
	}
	select {
	case snap := <-ch:
		if !namingtest.HasIDs("arith-127.0.0.1-9040")(snap) {
			t.Fatalf("after the token was revoked the watch delivered %s; want it to keep its last good list", namingtest.IDs(snap))
		}
	default:
	}
	if _, err := c.Fetch(t.Context(), "arith"); !errors.Is(err, ErrPermissionDenied) {
		t.Fatalf("Fetch with the revoked token = %v; want ErrPermissionDenied", err)
	}
}

// TestConsulACLTokenFromEnvironment: CONSUL_HTTP_TOKEN is honoured, with a
// config from New's caller or from Open, and WithToken overrides it.
func TestConsulACLTokenFromEnvironment(t *testing.T) {
	agent, mgmt := consultest.StartWithACL(t)

	t.Setenv("CONSUL_HTTP_TOKEN_FILE", "") // it would win over CONSUL_HTTP_TOKEN
	t.Setenv("CONSUL_HTTP_TOKEN", mgmt)
	roundTrip(t, newTestConsul(t, agent), newTestConsul(t, agent), "9020")

	r, err := Open("consul://" + agent.Addr() + "?ttl=2s&timeout=2s")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	cancel, err := r.Register(t.Context(), &naming.Instance{Service: "arith", Addr: "tcp@127.0.0.1:9021"})
	if err != nil {
		t.Fatalf("Open(consul://...) with CONSUL_HTTP_TOKEN: Register: %v", err)
	}
	cancel()

	t.Setenv("CONSUL_HTTP_TOKEN", "00000000-1111-2222-3333-444444444444")
	_, err = newTestConsul(t, agent).Register(t.Context(), &naming.Instance{Service: "arith", Addr: "tcp@127.0.0.1:9022"})
	if !errors.Is(err, ErrPermissionDenied) || !strings.Contains(err.Error(), "from CONSUL_HTTP_TOKEN") {
		t.Fatalf("Register with a bogus CONSUL_HTTP_TOKEN = %v; want ErrPermissionDenied naming the variable", err)
	}
	roundTrip(t, newACLConsul(t, agent, mgmt), newACLConsul(t, agent, mgmt), "9023")
}

// TestConsulTokenOnEveryRequest checks, against a recording fake agent,
// that every kind of request carries the token: register, TTL updates,
// health queries of Fetch and Watch, deregister.
func TestConsulTokenOnEveryRequest(t *testing.T) {
	for _, tc := range []struct {
		name, env, option, want string
	}{
		{"WithToken", "", "option-token", "option-token"},
		{"CONSUL_HTTP_TOKEN", "env-token", "", "env-token"},
		{"WithToken over CONSUL_HTTP_TOKEN", "env-token", "option-token", "option-token"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("CONSUL_HTTP_TOKEN", tc.env)
			t.Setenv("CONSUL_HTTP_TOKEN_FILE", "")
			var mu sync.Mutex
			seen := map[string][]string{} // request kind → tokens
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				var kind string
				switch p := r.URL.Path; {
				case strings.HasPrefix(p, "/v1/agent/service/register"):
					kind = "register"
				case strings.HasPrefix(p, "/v1/agent/check/update/"):
					kind = "ttl"
				case strings.HasPrefix(p, "/v1/agent/service/deregister/"):
					kind = "deregister"
				case strings.HasPrefix(p, "/v1/health/service/") && r.URL.Query().Get("index") != "":
					kind = "blocking health"
				case strings.HasPrefix(p, "/v1/health/service/"):
					kind = "health"
				default:
					http.Error(w, "unexpected", http.StatusBadRequest)
					return
				}
				mu.Lock()
				seen[kind] = append(seen[kind], r.Header.Get("X-Consul-Token"))
				mu.Unlock()
				if strings.HasPrefix(kind, "blocking") {
					<-r.Context().Done() // a blocking query that waits until the watch ends
					return
				}
				if strings.Contains(kind, "health") {
					w.Header().Set("X-Consul-Index", "7")
					_, _ = w.Write([]byte("[]"))
				}
			}))
			defer srv.Close()
			opts := []Option{WithTTL(150 * time.Millisecond), WithWatchRateLimit(0, 1)}
			if tc.option != "" {
				opts = append(opts, WithToken(tc.option))
			}
			c, err := New(&api.Config{Address: strings.TrimPrefix(srv.URL, "http://")}, opts...)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			cancel, err := c.Register(t.Context(), &naming.Instance{Service: "s", Addr: "tcp@127.0.0.1:1"})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := c.Fetch(t.Context(), "s"); err != nil {
				t.Fatal(err)
			}
			ch, err := c.Watch(t.Context(), "s")
			if err != nil {
				t.Fatal(err)
			}
			namingtest.Next(t, ch, 5*time.Second)
			kinds := func() int {
				mu.Lock()
				defer mu.Unlock()
				return len(seen)
			}
			deadline := time.Now().Add(5 * time.Second)
			for c.Stats().Heartbeats < 1 || kinds() < 4 { // register, ttl, health, blocking health
				if time.Now().After(deadline) {
					t.Fatalf("requests seen: %v, stats %+v", seen, c.Stats())
				}
				time.Sleep(10 * time.Millisecond) // polling the fake agent's record
			}
			cancel()
			c.Close()
			mu.Lock()
			defer mu.Unlock()
			for _, kind := range []string{"register", "ttl", "health", "blocking health", "deregister"} {
				if len(seen[kind]) == 0 {
					t.Fatalf("no %s request seen: %v", kind, seen)
				}
				for _, tok := range seen[kind] {
					if tok != tc.want {
						t.Fatalf("%s request carried token %q, want %q (all: %v)", kind, tok, tc.want, seen)
					}
				}
			}
		})
	}
}
