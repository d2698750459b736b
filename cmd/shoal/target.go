package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/shoalrpc/shoal/consumer"
	"github.com/shoalrpc/shoal/naming"
	"github.com/shoalrpc/shoal/naming/consul"
	"github.com/shoalrpc/shoal/naming/dns"
	"github.com/shoalrpc/shoal/naming/etcd"
	"github.com/shoalrpc/shoal/protocol"
)

// target is where calls go: one address, or a service in a registry.
type target struct {
	raw      string
	addr     string // an address: "tcp@127.0.0.1:9001"; "" for a registry target
	registry string // a registry URL: "consul://127.0.0.1:8500"
	service  string // the service's registry name: "arith"
}

// backends are the registries the command can open besides memory and static.
func backends() []naming.Backend {
	return []naming.Backend{consul.Backend(), etcd.Backend(), dns.Backend()}
}

// parseTarget reads a TARGET: an address, or a registry URL whose last
// path segment names the service.
func parseTarget(s string) (target, error) {
	t := target{raw: s}
	if s == "" {
		return t, usagef("empty TARGET: want an address (127.0.0.1:9001, unix@/path) or a registry URL and service (consul://127.0.0.1:8500/arith)")
	}
	scheme, rest, isURL := strings.Cut(s, "://")
	if !isURL {
		t.addr = s
		if !strings.Contains(s, "@") {
			t.addr = "tcp@" + s
		}
		if network, _, _ := strings.Cut(t.addr, "@"); network == "http" {
			return t, nil // Dial says whether this build speaks http@
		}
		if _, _, err := naming.SplitAddr(t.addr); err != nil {
			return t, usagef("TARGET %q: %v", s, err)
		}
		return t, nil
	}
	if strings.EqualFold(scheme, "memory") {
		return t, usagef("TARGET %q: memory:// is the registry of one process, which a command cannot see; give the provider's address, or static://tcp@host:port/service", s)
	}
	query := ""
	if i := strings.IndexByte(rest, '?'); i >= 0 {
		rest, query = rest[:i], rest[i:]
	}
	i := strings.LastIndexByte(rest, '/')
	if i < 0 || rest[i+1:] == "" {
		if strings.EqualFold(scheme, "static") && rest != "" && i < 0 {
			// static:// lists the same addresses for every service.
			t.registry, t.service = s, "static"
			return t, nil
		}
		return t, usagef("TARGET %q: name the service after the registry, as its last path segment: %s://%s/arith", s, scheme, strings.TrimSuffix(rest, "/"))
	}
	t.registry, t.service = scheme+"://"+rest[:i]+query, rest[i+1:]
	return t, nil
}

// String returns the target as given.
func (t target) String() string { return t.raw }

// conn is an open target: one Client, or a ClientProxy.
type conn struct {
	consumer.Caller
	close func() error
}

// Close closes the client or the proxy and its registry.
func (c *conn) Close() error { return c.close() }

// dial opens t: a Client for an address, a ClientProxy with proxyOpts for a
// registry target, each connection dialled with extra (TLS). Calls use the
// JSON codec.
func dial(ctx context.Context, t target, dialTimeout time.Duration, extra []consumer.DialOption, proxyOpts ...consumer.ProxyOption) (*conn, error) {
	dopts := append([]consumer.DialOption{consumer.WithCodec(protocol.JSON), consumer.WithDialTimeout(dialTimeout)}, extra...)
	if t.addr != "" {
		c, err := consumer.DialContext(ctx, t.addr, dopts...)
		if err != nil {
			if errors.Is(err, naming.ErrBadAddress) {
				return nil, usagef("TARGET %q: %v", t.raw, err)
			}
			return nil, err // it names the address
		}
		return &conn{Caller: c, close: c.Close}, nil
	}
	reg, err := naming.Open(t.registry, backends()...)
	if err != nil {
		return nil, usagef("TARGET %q: %v", t.raw, err)
	}
	opts := make([]consumer.ProxyOption, 0, len(dopts)+len(proxyOpts)+1)
	for _, o := range dopts {
		opts = append(opts, o)
	}
	opts = append(opts, consumer.WithWaitForInstances(dialTimeout))
	opts = append(opts, proxyOpts...)
	p, err := consumer.NewClientProxy(t.service, reg, opts...)
	if err != nil {
		reg.Close()
		return nil, fmt.Errorf("%s: %w", t.raw, err)
	}
	return &conn{Caller: p, close: func() error { return errors.Join(p.Close(), reg.Close()) }}, nil
}
