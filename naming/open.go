package naming

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/consul/api"
)

// Open returns the registry a URL names:
//
//	memory://                                   a new, empty in-process registry (NewMemory)
//	static://127.0.0.1:9001,tcp@h:9002          a fixed list of addresses (NewStatic), in any
//	                                            form SplitAddr accepts
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
// An unknown scheme or a malformed URL is an error that quotes the URL, with
// only secrets hidden (a password, and the values of parameters Open does
// not know, which may be tokens), and says what is wrong with it, once.
func Open(rawURL string) (Registry, error) {
	scheme, rest, ok := strings.Cut(rawURL, "://")
	if !ok || scheme == "" {
		return nil, urlErrorf(rawURL, "want scheme://..., one of memory://, static://host:port[,...], consul://host:port")
	}
	switch strings.ToLower(scheme) {
	case "memory":
		if rest != "" {
			return nil, urlErrorf(rawURL, "memory:// takes no address, got %q", rest)
		}
		return NewMemory(), nil
	case "static":
		if rest == "" {
			return nil, urlErrorf(rawURL, "static:// needs at least one address, e.g. static://127.0.0.1:9001")
		}
		s, err := newStatic(strings.Split(rest, ","))
		if err != nil {
			return nil, &urlError{url: redactURL(rawURL), err: err}
		}
		return s, nil
	case "consul":
		cfg, opts, err := parseConsulURL(rawURL)
		if err != nil {
			return nil, err
		}
		c, err := NewConsul(cfg, opts...)
		if err != nil {
			return nil, &urlError{url: redactURL(rawURL), err: err}
		}
		return c, nil
	default:
		return nil, urlErrorf(rawURL, "unknown scheme %q (want memory, static or consul)", scheme)
	}
}

// urlError is a registry URL that Open could not use: the URL, as fit to
// show, then what is wrong with it. The cause's own "naming: " prefix is
// dropped from the text, so that it is said once.
type urlError struct {
	url string // redacted
	err error
}

func (e *urlError) Error() string {
	return "naming: registry URL " + strconv.Quote(e.url) + ": " + strings.TrimPrefix(e.err.Error(), "naming: ")
}

func (e *urlError) Unwrap() error { return e.err }

func urlErrorf(rawURL, format string, args ...any) error {
	return &urlError{url: redactURL(rawURL), err: fmt.Errorf(format, args...)}
}

// consulParams are the query parameters of a consul:// URL: Go durations,
// never secret, so errors show them.
var consulParams = map[string]func(time.Duration) ConsulOption{
	"ttl":              WithTTL,
	"deregister_after": WithDeregisterCriticalAfter,
	"wait":             WithWatchWait,
	"timeout":          WithRequestTimeout,
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
		return nil, nil, &urlError{url: redactURL(rawURL), err: err}
	}
	if u.User != nil || (u.Path != "" && u.Path != "/") || u.Fragment != "" {
		return nil, nil, urlErrorf(rawURL, "want consul://host:port[?ttl=10s&...], without user, path or fragment")
	}
	cfg := api.DefaultConfig()
	if u.Host != "" {
		if _, port, err := net.SplitHostPort(u.Host); err != nil || port == "" {
			return nil, nil, urlErrorf(rawURL, "address %q: want host:port", u.Host)
		}
		cfg.Address = u.Host
	}
	var opts []ConsulOption
	for key, vals := range u.Query() {
		if len(vals) != 1 {
			return nil, nil, urlErrorf(rawURL, "parameter %q given %d times", key, len(vals))
		}
		opt, known := consulParams[key]
		if !known {
			if key == "token" {
				return nil, nil, urlErrorf(rawURL, "no token in URLs (they end up in logs and process listings): set CONSUL_HTTP_TOKEN or use naming.WithToken")
			}
			return nil, nil, urlErrorf(rawURL, "unknown parameter %q (want ttl, deregister_after, wait or timeout)", key)
		}
		d, err := time.ParseDuration(vals[0])
		if err != nil {
			return nil, nil, urlErrorf(rawURL, "parameter %s: %q is not a duration (e.g. 5s, 1m30s)", key, vals[0])
		}
		opts = append(opts, opt(d))
	}
	return cfg, opts, nil
}

// redactURL returns rawURL fit for an error message. Only what may be
// secret is hidden: a password, and the values of query parameters other
// than consul://'s durations (a token may hide under any name). A static://
// URL holds addresses only ("tcp@host" is not user information) and is
// shown as it is.
func redactURL(rawURL string) string {
	scheme, rest, ok := strings.Cut(rawURL, "://")
	if ok && strings.EqualFold(scheme, "static") {
		return rawURL
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		// Show what can be shown: up to the query, the password hidden.
		if !ok {
			return rawURL
		}
		if i := strings.IndexByte(rest, '?'); i >= 0 {
			rest = rest[:i] + "?(not shown)"
		}
		if at := strings.LastIndexByte(rest, '@'); at >= 0 {
			if user, _, hasPass := strings.Cut(rest[:at], ":"); hasPass {
				rest = user + ":redacted" + rest[at:]
			}
		}
		return scheme + "://" + rest
	}
	if _, hasPass := u.User.Password(); hasPass {
		u.User = url.UserPassword(u.User.Username(), "redacted")
	}
	if u.RawQuery != "" {
		q := u.Query()
		for k := range q {
			if _, known := consulParams[k]; !known {
				q[k] = []string{"redacted"}
			}
		}
		u.RawQuery = q.Encode()
	}
	return u.String()
}
