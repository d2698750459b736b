package etcd

import (
	"context"
	"errors"
	"github.com/shoalrpc/shoal/internal/namingtest"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"

	"github.com/shoalrpc/shoal/internal/etcdtest"
	"github.com/shoalrpc/shoal/internal/testcert"
	"github.com/shoalrpc/shoal/naming"
)

func TestParseURL(t *testing.T) {
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	type want struct {
		eps        string
		prefix     string
		user, pass string
		authSource string
		tls        bool
		ttl        time.Duration
	}
	good := []struct {
		url  string
		env  map[string]string
		want want
	}{
		{"etcd://127.0.0.1:2379/shoal?ttl=5s", nil, want{eps: "127.0.0.1:2379", prefix: "/shoal", ttl: 5 * time.Second}},
		{"etcd://10.0.0.1:2379,10.0.0.2:2379/prod/", nil, want{eps: "10.0.0.1:2379,10.0.0.2:2379", prefix: "/prod"}},
		{"etcd:///", nil, want{eps: "127.0.0.1:2379", prefix: DefaultPrefix}},
		{"etcd://", map[string]string{"ETCDCTL_ENDPOINTS": "h1:1,h2:2"}, want{eps: "h1:1,h2:2", prefix: DefaultPrefix}},
		{"etcd://app@h:1/x", map[string]string{"ETCDCTL_PASSWORD": "pw"}, want{eps: "h:1", prefix: "/x", user: "app", pass: "pw", authSource: "the URL and ETCDCTL_PASSWORD"}},
		{"etcd://h:1/x", map[string]string{"ETCDCTL_USER": "u:p"}, want{eps: "h:1", prefix: "/x", user: "u", pass: "p", authSource: "ETCDCTL_USER"}},
		{"etcd://h:1/x", map[string]string{"ETCDCTL_USER": "u", "ETCDCTL_PASSWORD": "p"}, want{eps: "h:1", prefix: "/x", user: "u", pass: "p", authSource: "ETCDCTL_USER and ETCDCTL_PASSWORD"}},
		{"etcd://h:1/x?tls=true", nil, want{eps: "h:1", prefix: "/x", tls: true}},
	}
	for _, g := range good {
		eps, opts, err := parseURL(g.url, env(g.env))
		if err != nil {
			t.Errorf("parseURL(%q): %v", g.url, err)
			continue
		}
		o := options{prefix: DefaultPrefix}
		for _, opt := range opts {
			opt(&o)
		}
		got := want{eps: strings.Join(eps, ","), prefix: "/" + strings.Trim(o.prefix, "/"), user: o.user, pass: o.pass, authSource: o.authSource, tls: o.tls != nil, ttl: o.ttl}
		if got != g.want {
			t.Errorf("parseURL(%q) = %+v, want %+v", g.url, got, g.want)
		}
	}

	bad := []struct {
		url  string
		env  map[string]string
		want string
	}{
		{"etcd://u:secret@h:1/x", nil, "no password in URLs"},
		{"etcd://h:1/x?password=secret", nil, "no password in URLs"},
		{"etcd://h:1/x?ttl=soon", nil, "parameter ttl"},
		{"etcd://h:1/x?wait=1s", nil, "unknown parameter"},
		{"etcd://h/x", nil, `endpoint "h" (from the URL)`},
		{"etcd:///x", map[string]string{"ETCDCTL_ENDPOINTS": "nohost"}, "(from ETCDCTL_ENDPOINTS)"},
		{"etcd://h:1/x", map[string]string{"ETCDCTL_USER": "u"}, `user "u" (from ETCDCTL_USER and ETCDCTL_PASSWORD) without a password`},
		{"etcd://h:1/x", map[string]string{"ETCDCTL_PASSWORD": "p"}, "no user is"},
		{"etcd://h:1/x", map[string]string{"ETCDCTL_CACERT": "/nonexistent/ca.pem"}, "TLS CA file (from ETCDCTL_CACERT)"},
		{"etcd://h:1/x?cacert=/nonexistent/ca.pem", nil, "TLS CA file (from ?cacert= in the URL)"},
		{"etcd://h:1/x", map[string]string{"ETCDCTL_CERT": "/c.pem"}, "without a key"},
		{"consul://h:1/x", nil, "scheme"},
	}
	for _, b := range bad {
		_, _, err := parseURL(b.url, env(b.env))
		if err == nil || !strings.Contains(err.Error(), b.want) {
			t.Errorf("parseURL(%q, %v) = %v, want an error with %q", b.url, b.env, err, b.want)
		}
		if err != nil && strings.Contains(err.Error(), "secret") {
			t.Errorf("parseURL(%q): the error shows the secret: %v", b.url, err)
		}
	}
}

func TestNamingOpenWithTheBackend(t *testing.T) {
	_, err := naming.Open("etcd://app:secret@127.0.0.1:2379/shoal?ttl=5s", Backend())
	if err == nil || !strings.Contains(err.Error(), "no password in URLs") || strings.Contains(err.Error(), "secret") {
		t.Fatalf("naming.Open with a password in the URL: %v; want a refusal that hides it", err)
	}
	reg, err := naming.Open("etcd://127.0.0.1:2379/shoal?ttl=5s", Backend())
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := reg.(*Registry); !ok {
		t.Fatalf("naming.Open gave a %T", reg)
	}
	reg.Close()
}

// TestTLSFromTheEnvironment: etcd serves clients over TLS and requires
// client certificates; Open takes the CA and the client pair from
// ETCDCTL_CACERT, ETCDCTL_CERT and ETCDCTL_KEY, and says where the TLS
// settings came from when they are not enough.
func TestTLSFromTheEnvironment(t *testing.T) {
	b := testcert.New(t)
	files := b.WritePEM(t, t.TempDir())
	srv := etcdtest.StartTLS(t, files, b.ClientConfig(true))
	url := "etcd://" + srv.Endpoint() + "/shoal?dial_timeout=2s&timeout=2s"

	t.Setenv("ETCDCTL_CACERT", files.CA)
	t.Setenv("ETCDCTL_CERT", files.ClientCert)
	t.Setenv("ETCDCTL_KEY", files.ClientKey)
	reg, err := Open(url)
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	cancel, err := reg.Register(t.Context(), &naming.Instance{Service: "svc", Addr: "tcp@127.0.0.1:9601"})
	if err != nil {
		t.Fatal(err)
	}
	defer cancel()
	if got, err := reg.Fetch(t.Context(), "svc"); err != nil || len(got) != 1 {
		t.Fatalf("Fetch over TLS = %s, %v", namingtest.IDs(got), err)
	}

	// Without the client certificate etcd refuses the handshake.
	t.Setenv("ETCDCTL_CERT", "")
	t.Setenv("ETCDCTL_KEY", "")
	reg2, err := Open(url)
	if err == nil {
		defer reg2.Close()
		_, err = reg2.Fetch(t.Context(), "svc")
	}
	if err == nil || !strings.Contains(err.Error(), "ETCDCTL_CACERT") {
		t.Fatalf("without a client certificate: %v; want an error naming where the TLS settings came from", err)
	}
	t.Logf("without a client certificate: %v", err)
}

// TestAuthFromTheURLAndTheEnvironment: with etcd's auth on, the user comes
// from the URL or ETCDCTL_USER and the password from ETCDCTL_PASSWORD; a
// refused login says which user and where it came from.
func TestAuthFromTheURLAndTheEnvironment(t *testing.T) {
	srv := startEtcd(t)
	admin := newTestRegistry(t, srv.Endpoint())
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	for _, step := range []func() error{
		func() error { _, err := admin.cli.UserAdd(ctx, "root", "rootpw"); return err },
		func() error { _, err := admin.cli.UserGrantRole(ctx, "root", "root"); return err },
		func() error { _, err := admin.cli.AuthEnable(ctx); return err },
	} {
		if err := step(); err != nil {
			t.Fatal(err)
		}
	}
	base := "etcd://" + srv.Endpoint() + "/shoal?dial_timeout=2s&timeout=2s"
	try := func() error {
		reg, err := Open(base)
		if err != nil {
			return err
		}
		defer reg.Close()
		_, err = reg.Fetch(t.Context(), "svc")
		return err
	}

	// No user at all.
	if err := try(); err == nil || !strings.Contains(err.Error(), "no user given") {
		t.Fatalf("without credentials: %v; want an error saying no user was given", err)
	}

	// The wrong password.
	t.Setenv("ETCDCTL_USER", "root")
	t.Setenv("ETCDCTL_PASSWORD", "wrong")
	err := try()
	if !errors.Is(err, rpctypes.ErrAuthFailed) || !strings.Contains(err.Error(), `user "root" from ETCDCTL_USER and ETCDCTL_PASSWORD`) {
		t.Fatalf("with a wrong password: %v; want ErrAuthFailed naming the user and where it came from", err)
	}
	if strings.Contains(err.Error(), "wrong") {
		t.Fatalf("the error shows the password: %v", err)
	}

	// The right one, user from the URL.
	t.Setenv("ETCDCTL_USER", "")
	t.Setenv("ETCDCTL_PASSWORD", "rootpw")
	reg, err := Open("etcd://root@" + srv.Endpoint() + "/shoal")
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	c, err := reg.Register(t.Context(), &naming.Instance{Service: "svc", Addr: "tcp@127.0.0.1:9701"})
	if err != nil {
		t.Fatal(err)
	}
	defer c()
	if got, err := reg.Fetch(t.Context(), "svc"); err != nil || len(got) != 1 {
		t.Fatalf("Fetch as root = %s, %v", namingtest.IDs(got), err)
	}
}
