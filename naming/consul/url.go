package consul

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/shoalrpc/shoal/naming"
)

// Backend lets naming.Open open consul:// URLs:
//
//	reg, err := naming.Open("consul://127.0.0.1:8500?ttl=5s", consul.Backend())
//
// consul://host:port names an agent; consul:// alone the one at
// CONSUL_HTTP_ADDR, or 127.0.0.1:8500. The configuration starts from
// api.DefaultConfig(), so CONSUL_HTTP_TOKEN and the TLS variables apply; a
// host in the URL overrides CONSUL_HTTP_ADDR. Query parameters set options,
// as Go durations: ttl (WithTTL), deregister_after
// (WithDeregisterCriticalAfter), wait (WithWatchWait) and timeout
// (WithRequestTimeout). A token is never taken from a URL.
func Backend() naming.Backend {
	public := make([]string, 0, len(urlParams))
	for k := range urlParams {
		public = append(public, k)
	}
	return naming.Backend{Scheme: "consul", Open: Open, PublicParams: public}
}

// Open returns the Consul registry a consul:// URL names (see Backend).
func Open(rawURL string) (naming.Registry, error) {
	cfg, opts, err := parseURL(rawURL)
	if err != nil {
		return nil, err
	}
	return New(cfg, opts...)
}

// urlParams are the query parameters of a consul:// URL: Go durations,
// never secret, so errors show them.
var urlParams = map[string]func(time.Duration) Option{
	"ttl":              WithTTL,
	"deregister_after": WithDeregisterCriticalAfter,
	"wait":             WithWatchWait,
	"timeout":          WithRequestTimeout,
}

// parseURL turns consul://[host:port][?ttl=...] into a Consul config and
// options. Its errors do not repeat the URL: naming.Open quotes it.
func parseURL(rawURL string) (*api.Config, []Option, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // url.Error repeats the URL, secrets and all
		}
		return nil, nil, err
	}
	if u.User != nil || (u.Path != "" && u.Path != "/") || u.Fragment != "" {
		return nil, nil, fmt.Errorf("want consul://host:port[?ttl=10s&...], without user, path or fragment")
	}
	cfg := api.DefaultConfig()
	if u.Host != "" {
		if _, port, err := net.SplitHostPort(u.Host); err != nil || port == "" {
			return nil, nil, fmt.Errorf("address %q: want host:port", u.Host)
		}
		cfg.Address = u.Host
	}
	var opts []Option
	for key, vals := range u.Query() {
		if len(vals) != 1 {
			return nil, nil, fmt.Errorf("parameter %q given %d times", key, len(vals))
		}
		opt, known := urlParams[key]
		if !known {
			if key == "token" {
				return nil, nil, fmt.Errorf("no token in URLs (they end up in logs and process listings): set CONSUL_HTTP_TOKEN or use consul.WithToken")
			}
			return nil, nil, fmt.Errorf("unknown parameter %q (want ttl, deregister_after, wait or timeout)", key)
		}
		d, err := time.ParseDuration(vals[0])
		if err != nil {
			return nil, nil, fmt.Errorf("parameter %s: %q is not a duration (e.g. 5s, 1m30s)", key, vals[0])
		}
		opts = append(opts, opt(d))
	}
	return cfg, opts, nil
}
