package naming

import (
	"errors"
	"strings"
	"testing"
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

}

func TestOpenErrors(t *testing.T) {
	for _, tc := range []struct{ url, want string }{
		{"", "want scheme://"},
		{"memory", "want scheme://"},
		{"://x", "want scheme://"},
		{"etcd://127.0.0.1:2379", `unknown scheme "etcd" (want memory or static)`},
		{"consul://127.0.0.1:8500", `consul:// is opened by github.com/shoalrpc/shoal/naming/consul: naming.Open(url, consul.Backend())`},
		{"memory://somewhere", "takes no address"},
		{"static://", "at least one address"},
		{"static://udp@127.0.0.1:9001", `unknown network "udp"`},
		{"static://tcp@127.0.0.1:9001,", `address "": bad address: empty`},
		{"static://tcp@127.0.0.1:99999", "not in 1..65535"},
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

// Registry URL errors quote the URL with only secrets hidden, keep the part
// the user got wrong visible, and say "naming:" once.
func TestOpenErrorMessages(t *testing.T) {
	for _, tc := range []struct{ url, want string }{
		{"static://tcp@127.0.0.1", `naming: registry URL "static://tcp@127.0.0.1": address "tcp@127.0.0.1": bad address: missing port in address; want host:port, tcp@host:port or unix@/path/sock`},
		{"static://127.0.0.1:9001,tcp@127.0.0.1:9001", `naming: registry URL "static://127.0.0.1:9001,tcp@127.0.0.1:9001": address "tcp@127.0.0.1:9001" given twice`},
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
		"127.0.0.1:9001":      "tcp@127.0.0.1:9001",
		"tcp@127.0.0.1:9001":  "tcp@127.0.0.1:9001",
		"localhost:80":        "tcp@localhost:80",
		"[::1]:9001":          "tcp@[::1]:9001",
		"tcp6@[::1]:9001":     "tcp6@[::1]:9001",
		"unix@/tmp/s.sock":    "unix@/tmp/s.sock",
		"http@127.0.0.1:9001": "http@127.0.0.1:9001",
	} {
		if got, err := CanonicalAddr(in); got != want || err != nil {
			t.Errorf("CanonicalAddr(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for in, want := range map[string]string{
		"":          `address "": bad address: empty; want host:port, tcp@host:port or unix@/path/sock`,
		"127.0.0.1": `address "127.0.0.1": bad address: missing port in address; want host:port, tcp@host:port or unix@/path/sock`,
		"udp@h:1":   `address "udp@h:1": bad address: unknown network "udp" (want tcp, unix or http)`,
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
