package consul

import (
	"strings"
	"testing"
	"time"

	"github.com/shoalrpc/shoal/naming"
)

// open is naming.Open with this package's backend, as a program opens a
// consul:// URL.
func open(rawURL string) (naming.Registry, error) { return naming.Open(rawURL, Backend()) }

func TestOpenTakesOptionsFromTheURL(t *testing.T) {
	c, err := open("consul://127.0.0.1:8500?ttl=3s&deregister_after=2m&wait=30s&timeout=1s")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cc := c.(*Registry)
	if cc.o.ttl != 3*time.Second || cc.o.deregisterAfter != 2*time.Minute || cc.o.wait != 30*time.Second || cc.o.reqTimeout != time.Second {
		t.Fatalf("consul options from URL = %+v", cc.o)
	}
}

func TestOpenConsulHonoursEnvironment(t *testing.T) {
	t.Setenv("CONSUL_HTTP_ADDR", "127.0.0.1:18500")
	t.Setenv("CONSUL_HTTP_TOKEN", "secret-token")
	r, err := open("consul://")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	c := r.(*Registry)
	cfg := c.conf
	if cfg.Address != "127.0.0.1:18500" || cfg.Token != "secret-token" {
		t.Fatalf("address %q token %q, want CONSUL_HTTP_ADDR and CONSUL_HTTP_TOKEN", cfg.Address, cfg.Token)
	}

	r2, err := open("consul://10.0.0.1:8500")
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	if cfg := r2.(*Registry).conf; cfg.Address != "10.0.0.1:8500" || cfg.Token != "secret-token" {
		t.Fatalf("URL address did not override CONSUL_HTTP_ADDR: address %q token %q", cfg.Address, cfg.Token)
	}
}

func TestOpenErrors(t *testing.T) {
	for _, tc := range []struct{ url, want string }{
		{"consul://127.0.0.1", "want host:port"},
		{"consul://127.0.0.1:8500/v1", "without user, path"},
		{"consul://127.0.0.1:8500?ttl=soon", "parameter ttl"},
		{"consul://127.0.0.1:8500?color=blue", `unknown parameter "color"`},
		{"consul://127.0.0.1:8500?ttl=1ms", "too short"},
		{"consul://127.0.0.1:8500?ttl=1s&ttl=2s", "given 2 times"},
		{"consul://[::1", "registry URL"},
	} {
		r, err := open(tc.url)
		if err == nil {
			r.Close()
			t.Errorf("Open(%q) succeeded", tc.url)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Open(%q) = %q, want it to mention %q", tc.url, err, tc.want)
		}
	}
	for _, tc := range []struct{ url, want string }{
		{"consul://127.0.0.1:8500?ttl=soon", `naming: registry URL "consul://127.0.0.1:8500?ttl=soon": parameter ttl: "soon" is not a duration (e.g. 5s, 1m30s)`},
		{"consul://127.0.0.1:8500?ttl=1ms", `naming: registry URL "consul://127.0.0.1:8500?ttl=1ms": consul: TTL 1ms is too short (minimum 100ms)`},
		{"consul://127.0.0.1:8500?color=s3cr3t", `naming: registry URL "consul://127.0.0.1:8500?color=redacted": unknown parameter "color" (want ttl, deregister_after, wait or timeout)`},
		{"consul://user:s3cr3t@127.0.0.1:8500", `naming: registry URL "consul://user:redacted@127.0.0.1:8500": want consul://host:port[?ttl=10s&...], without user, path or fragment`},
	} {
		_, err := open(tc.url)
		if err == nil || err.Error() != tc.want {
			t.Errorf("Open(%q):\n got %v\nwant %s", tc.url, err, tc.want)
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
		_, err := open(raw)
		if err == nil {
			t.Fatalf("open(%q) succeeded", raw)
		}
		if strings.Contains(err.Error(), "s3cr3t") {
			t.Fatalf("open(%q) error leaks the secret: %v", raw, err)
		}
	}
	_, err := open("consul://127.0.0.1:8500?token=s3cr3t")
	if !strings.Contains(err.Error(), "CONSUL_HTTP_TOKEN") {
		t.Fatalf("a token parameter's error does not say where tokens go: %v", err)
	}
}
