package naming

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestOpen(t *testing.T) {
	m1, err := Open("memory://")
	if err != nil {
		t.Fatal(err)
	}
	defer m1.Close()
	m2, _ := Open("memory://")
	defer m2.Close()
	if _, err := m1.Register(t.Context(), &Instance{Service: "s", Addr: "tcp@h:1"}); err != nil {
		t.Fatal(err)
	}
	if got, _ := m2.Fetch(t.Context(), "s"); len(got) != 0 {
		t.Fatalf("two memory:// registries share instances: %v", got)
	}

	s, err := Open("static://tcp@127.0.0.1:9001,unix@/tmp/x.sock")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got, _ := s.Fetch(t.Context(), "arith"); len(got) != 2 || got[1].Addr != "unix@/tmp/x.sock" {
		t.Fatalf("static Fetch = %v", got)
	}

	c, err := Open("consul://127.0.0.1:8500?ttl=3s&deregister_after=2m&wait=30s&timeout=1s")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cc := c.(*Consul)
	if cc.o.ttl != 3*time.Second || cc.o.deregisterAfter != 2*time.Minute || cc.o.wait != 30*time.Second || cc.o.reqTimeout != time.Second {
		t.Fatalf("consul options from URL = %+v", cc.o)
	}
}

func TestOpenConsulHonoursEnvironment(t *testing.T) {
	t.Setenv("CONSUL_HTTP_ADDR", "127.0.0.1:18500")
	t.Setenv("CONSUL_HTTP_TOKEN", "secret-token")
	r, err := Open("consul://")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	c := r.(*Consul)
	cfg := c.conf
	if cfg.Address != "127.0.0.1:18500" || cfg.Token != "secret-token" {
		t.Fatalf("address %q token %q, want CONSUL_HTTP_ADDR and CONSUL_HTTP_TOKEN", cfg.Address, cfg.Token)
	}

	r2, err := Open("consul://10.0.0.1:8500")
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	if cfg := r2.(*Consul).conf; cfg.Address != "10.0.0.1:8500" || cfg.Token != "secret-token" {
		t.Fatalf("URL address did not override CONSUL_HTTP_ADDR: address %q token %q", cfg.Address, cfg.Token)
	}
}

func TestOpenErrors(t *testing.T) {
	for _, tc := range []struct{ url, want string }{
		{"", "want scheme://"},
		{"memory", "want scheme://"},
		{"://x", "want scheme://"},
		{"etcd://127.0.0.1:2379", `unknown scheme "etcd"`},
		{"memory://somewhere", "takes no address"},
		{"static://", "at least one address"},
		{"static://udp@127.0.0.1:9001", `unknown network "udp"`},
		{"static://tcp@127.0.0.1:9001,", `address "": bad address: empty`},
		{"static://tcp@127.0.0.1:99999", "not in 1..65535"},
		{"consul://127.0.0.1", "want host:port"},
		{"consul://127.0.0.1:8500/v1", "without user, path"},
		{"consul://127.0.0.1:8500?ttl=soon", "parameter ttl"},
		{"consul://127.0.0.1:8500?color=blue", `unknown parameter "color"`},
		{"consul://127.0.0.1:8500?ttl=1ms", "too short"},
		{"consul://127.0.0.1:8500?ttl=1s&ttl=2s", "given 2 times"},
		{"consul://[::1", "registry URL"},
	} {
		r, err := Open(tc.url)
		if err == nil {
			r.Close()
			t.Errorf("Open(%q) succeeded", tc.url)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Open(%q) = %q, want it to mention %q", tc.url, err, tc.want)
		}
	}
}

func TestOpenErrorsDoNotLeakSecrets(t *testing.T) {
	for _, raw := range []string{
		"consul://127.0.0.1:8500?token=s3cr3t",
		"consul://127.0.0.1:8500?ttl=nonsense&x=s3cr3t",
		"consul://user:s3cr3t@127.0.0.1:8500",
		"consul://127.0.0.1:8500/%zz?s3cr3t",
	} {
		_, err := Open(raw)
		if err == nil {
			t.Fatalf("Open(%q) succeeded", raw)
		}
		if strings.Contains(err.Error(), "s3cr3t") {
			t.Fatalf("Open(%q) error leaks the secret: %v", raw, err)
		}
	}
	_, err := Open("consul://127.0.0.1:8500?token=s3cr3t")
	if !strings.Contains(err.Error(), "CONSUL_HTTP_TOKEN") {
		t.Fatalf("a token parameter's error does not say where tokens go: %v", err)
	}
}

// Registry URL errors quote the URL with only secrets hidden, keep the part
// the user got wrong visible, and say "naming:" once.
func TestOpenErrorMessages(t *testing.T) {
	for _, tc := range []struct{ url, want string }{
		{"static://tcp@127.0.0.1", `naming: registry URL "static://tcp@127.0.0.1": address "tcp@127.0.0.1": bad address: missing port in address; want host:port, tcp@host:port or unix@/path/sock`},
		{"static://127.0.0.1:9001,tcp@127.0.0.1:9001", `naming: registry URL "static://127.0.0.1:9001,tcp@127.0.0.1:9001": address "tcp@127.0.0.1:9001" given twice`},
		{"consul://127.0.0.1:8500?ttl=soon", `naming: registry URL "consul://127.0.0.1:8500?ttl=soon": parameter ttl: "soon" is not a duration (e.g. 5s, 1m30s)`},
		{"consul://127.0.0.1:8500?ttl=1ms", `naming: registry URL "consul://127.0.0.1:8500?ttl=1ms": consul: TTL 1ms is too short (minimum 100ms)`},
		{"consul://127.0.0.1:8500?color=s3cr3t", `naming: registry URL "consul://127.0.0.1:8500?color=redacted": unknown parameter "color" (want ttl, deregister_after, wait or timeout)`},
		{"consul://user:s3cr3t@127.0.0.1:8500", `naming: registry URL "consul://user:redacted@127.0.0.1:8500": want consul://host:port[?ttl=10s&...], without user, path or fragment`},
	} {
		_, err := Open(tc.url)
		if err == nil || err.Error() != tc.want {
			t.Errorf("Open(%q):\n got %v\nwant %s", tc.url, err, tc.want)
		}
	}
	_, err := Open("static://tcp@127.0.0.1")
	if !errors.Is(err, ErrBadAddress) {
		t.Errorf("a bad static address: %v, want ErrBadAddress", err)
	}
}

// Every address form is accepted everywhere, and registries hand out the
// canonical one.
func TestAddressForms(t *testing.T) {
	for in, want := range map[string]string{
		"127.0.0.1:9001":     "tcp@127.0.0.1:9001",
		"tcp@127.0.0.1:9001": "tcp@127.0.0.1:9001",
		"localhost:80":       "tcp@localhost:80",
		"[::1]:9001":         "tcp@[::1]:9001",
		"tcp6@[::1]:9001":    "tcp6@[::1]:9001",
		"unix@/tmp/s.sock":   "unix@/tmp/s.sock",
	} {
		if got, err := CanonicalAddr(in); got != want || err != nil {
			t.Errorf("CanonicalAddr(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for in, want := range map[string]string{
		"":          `address "": bad address: empty; want host:port, tcp@host:port or unix@/path/sock`,
		"127.0.0.1": `address "127.0.0.1": bad address: missing port in address; want host:port, tcp@host:port or unix@/path/sock`,
		"udp@h:1":   `address "udp@h:1": bad address: unknown network "udp" (want tcp or unix)`,
		":9001":     `address ":9001": bad address: empty host`,
		"unix@":     `address "unix@": bad address: empty socket path`,
		"h:0":       `address "h:0": bad address: port "0" is not in 1..65535`,
		"tcp://h:1": `address "tcp://h:1": bad address: a URL, not an address; write tcp@h:1`,
	} {
		_, _, err := SplitAddr(in)
		if !errors.Is(err, ErrBadAddress) || err.Error() != want {
			t.Errorf("SplitAddr(%q) = %v, want %s", in, err, want)
		}
	}
	m := NewMemory()
	defer m.Close()
	if _, err := m.Register(t.Context(), &Instance{Service: "s", Addr: "127.0.0.1:9001"}); err != nil {
		t.Fatal(err)
	}
	s, _ := NewStatic("127.0.0.1:9002")
	defer s.Close()
	for _, r := range []Registry{m, s} {
		got, err := r.Fetch(t.Context(), "s")
		if err != nil || len(got) != 1 || !strings.HasPrefix(got[0].Addr, "tcp@127.0.0.1:900") {
			t.Errorf("%T.Fetch = %v, %v; want the address as tcp@host:port", r, got, err)
		}
	}
}
