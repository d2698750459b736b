package naming

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/hashicorp/consul/api"
)

// Open returns the registry a URL names:
//
//	memory://                                   a new, empty in-process registry (NewMemory)
//	static://tcp@127.0.0.1:9001,tcp@h:9002      a fixed list of addresses (NewStatic)
//	consul://127.0.0.1:8500                     a Consul agent (NewConsul)
//	consul://                                   Consul at CONSUL_HTTP_ADDR, or 127.0.0.1:8500
//
// A consul:// URL starts from api.DefaultConfig(), so CONSUL_HTTP_TOKEN and
// the TLS variables apply; a host in the URL overrides CONSUL_HTTP_ADDR. Query
// parameters set the options, as Go durations: ttl (WithTTL),
// deregister_after (WithDeregisterCriticalAfter), wait (WithWatchWait) and
// timeout (WithRequestTimeout), e.g. "consul://127.0.0.1:8500?ttl=5s".
//
// Each call returns a new registry: two Open("memory://") calls do not share
// instances. To share an in-process registry, pass the one value around.
// An unknown scheme or a malformed URL is an error that says what is wrong.
func Open(rawURL string) (Registry, error) {
	scheme, rest, ok := strings.Cut(rawURL, "://")
	if !ok || scheme == "" {
		return nil, fmt.Errorf("naming: registry URL %q: want scheme://..., one of memory://, static://tcp@host:port[,...], consul://host:port", redactURL(rawURL))
	}
	switch strings.ToLower(scheme) {
	case "memory":
		if rest != "" {
			return nil, fmt.Errorf("naming: registry URL %q: memory:// takes no address, got %q", redactURL(rawURL), rest)
		}
		return NewMemory(), nil
	case "static":
		if rest == "" {
			return nil, fmt.Errorf("naming: registry URL %q: static:// needs at least one address, e.g. static://tcp@127.0.0.1:9001", redactURL(rawURL))
		}
		s, err := NewStatic(strings.Split(rest, ",")...)
		if err != nil {
			return nil, fmt.Errorf("naming: registry URL %q: %w", redactURL(rawURL), err)
		}
		return s, nil
	case "consul":
		cfg, opts, err := parseConsulURL(rawURL)
		if err != nil {
			return nil, err
		}
		c, err := NewConsul(cfg, opts...)
		if err != nil {
			return nil, fmt.Errorf("naming: registry URL %q: %w", redactURL(rawURL), err)
		}
		return c, nil
	default:
		return nil, fmt.Errorf("naming: registry URL %q: unknown scheme %q (want memory, static or consul)", redactURL(rawURL), scheme)
	}
}

// parseConsulURL turns consul://[host:port][?ttl=...] into a Consul config
// and options.
func parseConsulURL(rawURL string) (*api.Config, []ConsulOption, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // url.Error repeats the URL, secrets and all
		}
		return nil, nil, fmt.Errorf("naming: registry URL %q: %w", redactURL(rawURL), err)
	}
	if u.User != nil || (u.Path != "" && u.Path != "/") || u.Fragment != "" {
		return nil, nil, fmt.Errorf("naming: registry URL %q: want consul://host:port[?ttl=10s&...], without user, path or fragment", redactURL(rawURL))
	}
	cfg := api.DefaultConfig()
	if u.Host != "" {
		if _, port, err := net.SplitHostPort(u.Host); err != nil || port == "" {
			return nil, nil, fmt.Errorf("naming: registry URL %q: address %q: want host:port", redactURL(rawURL), u.Host)
		}
		cfg.Address = u.Host
	}
	var opts []ConsulOption
	for key, vals := range u.Query() {
		if len(vals) != 1 {
			return nil, nil, fmt.Errorf("naming: registry URL %q: parameter %q given %d times", redactURL(rawURL), key, len(vals))
		}
		var opt func(time.Duration) ConsulOption
		switch key {
		case "ttl":
			opt = WithTTL
		case "deregister_after":
			opt = WithDeregisterCriticalAfter
		case "wait":
			opt = WithWatchWait
		case "timeout":
			opt = WithRequestTimeout
		default:
			if key == "token" {
				return nil, nil, fmt.Errorf("naming: registry URL %q: no token in URLs (they end up in logs and process listings): set CONSUL_HTTP_TOKEN or use naming.WithToken", redactURL(rawURL))
			}
			return nil, nil, fmt.Errorf("naming: registry URL %q: unknown parameter %q (want ttl, deregister_after, wait or timeout)", redactURL(rawURL), key)
		}
		d, err := time.ParseDuration(vals[0])
		if err != nil {
			return nil, nil, fmt.Errorf("naming: registry URL %q: parameter %s: %w", redactURL(rawURL), key, err)
		}
		opts = append(opts, opt(d))
	}
	return cfg, opts, nil
}

// redactURL returns rawURL fit for an error message: user information and
// query values, which may hold secrets, are replaced by "redacted".
func redactURL(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		if scheme, _, ok := strings.Cut(rawURL, "://"); ok {
			return scheme + "://(unparsable, not shown)"
		}
		return "(unparsable, not shown)"
	}
	if u.User != nil {
		u.User = url.User("redacted")
	}
	if u.RawQuery != "" {
		q := u.Query()
		for k := range q {
			q[k] = []string{"redacted"}
		}
		u.RawQuery = q.Encode()
	}
	return u.String()
}
