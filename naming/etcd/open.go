package etcd

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/shoalrpc/shoal/naming"
)

// Backend lets naming.Open open etcd:// URLs (see Open for their form):
//
//	reg, err := naming.Open("etcd://127.0.0.1:2379/shoal?ttl=5s", etcd.Backend())
func Backend() naming.Backend {
	return naming.Backend{Scheme: Scheme, Open: Open, PublicParams: publicParams}
}

// publicParams are the query parameters whose values are never secret, so
// errors may show them.
var publicParams = []string{"ttl", "timeout", "dial_timeout", "resync", "tls", "cacert", "cert", "key"}

// Open returns the registry an etcd:// URL names:
//
//	etcd://127.0.0.1:2379/shoal                  one endpoint, keys under /shoal
//	etcd://10.0.0.1:2379,10.0.0.2:2379/prod?ttl=5s   several endpoints
//	etcd:///                                    ETCDCTL_ENDPOINTS, or 127.0.0.1:2379; prefix /shoal
//	etcd://app@10.0.0.1:2379/shoal?cacert=/etc/etcd/ca.pem   user app, password from ETCDCTL_PASSWORD, TLS
//
// The path is the key prefix (default DefaultPrefix). Query parameters:
// ttl, timeout (request), dial_timeout and resync as Go durations (WithTTL,
// WithRequestTimeout, WithDialTimeout, WithResync); cacert, cert and key as
// file paths, and tls=true for TLS with the system's roots.
//
// The environment fills what the URL leaves out, with etcdctl's names:
// ETCDCTL_ENDPOINTS (comma-separated), ETCDCTL_USER ("user" or
// "user:password"), ETCDCTL_PASSWORD, ETCDCTL_CACERT, ETCDCTL_CERT,
// ETCDCTL_KEY and ETCDCTL_INSECURE_SKIP_TLS_VERIFY. A password is never
// taken from the URL (URLs end up in logs and process listings). Errors say
// which setting, and where it came from, is wrong; they do not repeat the
// URL (naming.Open quotes it, secrets hidden).
func Open(rawURL string) (naming.Registry, error) {
	eps, opts, err := parseURL(rawURL, os.Getenv)
	if err != nil {
		return nil, err
	}
	return New(eps, opts...)
}

// parseURL turns an etcd:// URL plus the environment into endpoints and
// options.
func parseURL(rawURL string, getenv func(string) string) ([]string, []Option, error) {
	fail := func(format string, a ...any) ([]string, []Option, error) {
		return nil, nil, fmt.Errorf("naming/etcd: "+format, a...)
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // url.Error repeats the URL, secrets and all
		}
		return fail("%w", err)
	}
	if !strings.EqualFold(u.Scheme, Scheme) {
		return fail("scheme %q, want %s://", u.Scheme, Scheme)
	}
	if u.Fragment != "" {
		return fail("want etcd://host:port[,host:port]/prefix[?ttl=10s&...], without fragment")
	}
	var opts []Option

	// Endpoints.
	var eps []string
	source := "the URL"
	hosts := u.Host
	if hosts == "" {
		hosts, source = getenv("ETCDCTL_ENDPOINTS"), "ETCDCTL_ENDPOINTS"
	}
	if hosts == "" {
		hosts, source = "127.0.0.1:2379", "the default"
	}
	for _, h := range strings.Split(hosts, ",") {
		h = strings.TrimSpace(h)
		hp := strings.TrimPrefix(strings.TrimPrefix(h, "http://"), "https://")
		if _, port, err := net.SplitHostPort(hp); err != nil || port == "" {
			return fail("endpoint %q (from %s): want host:port", h, source)
		}
		eps = append(eps, h)
	}
	if p := strings.Trim(u.Path, "/"); p != "" {
		opts = append(opts, WithPrefix(p))
	}

	// Credentials: the URL's user, else ETCDCTL_USER; the password from
	// ETCDCTL_USER's "user:password" or ETCDCTL_PASSWORD.
	var user, pass, authSource string
	if u.User != nil {
		if _, has := u.User.Password(); has {
			return fail("no password in URLs (they end up in logs and process listings): set ETCDCTL_PASSWORD or use etcd.WithAuth")
		}
		user, authSource = u.User.Username(), "the URL"
		pass = getenv("ETCDCTL_PASSWORD")
		if pass != "" {
			authSource = "the URL and ETCDCTL_PASSWORD"
		}
	} else if eu := getenv("ETCDCTL_USER"); eu != "" {
		authSource = "ETCDCTL_USER"
		var ok bool
		if user, pass, ok = strings.Cut(eu, ":"); !ok {
			pass = getenv("ETCDCTL_PASSWORD")
			authSource = "ETCDCTL_USER and ETCDCTL_PASSWORD"
		}
	} else if getenv("ETCDCTL_PASSWORD") != "" {
		return fail("ETCDCTL_PASSWORD is set but no user is (set ETCDCTL_USER or put user@ in the URL)")
	}
	if user != "" {
		if pass == "" {
			return fail("user %q (from %s) without a password: set ETCDCTL_PASSWORD", user, authSource)
		}
		opts = append(opts, func(o *options) { o.user, o.pass, o.authSource = user, pass, authSource })
	}

	// Query parameters.
	q := u.Query()
	tlsFiles := map[string]string{}
	tlsSource := map[string]string{}
	useTLS := false
	for key, vals := range q {
		if len(vals) != 1 {
			return fail("parameter %q given %d times", key, len(vals))
		}
		v := vals[0]
		var opt func(time.Duration) Option
		switch key {
		case "ttl":
			opt = WithTTL
		case "timeout":
			opt = WithRequestTimeout
		case "dial_timeout":
			opt = WithDialTimeout
		case "resync":
			opt = WithResync
		case "cacert", "cert", "key":
			tlsFiles[key], tlsSource[key] = v, "?"+key+"= in the URL"
			continue
		case "tls":
			b, err := strconv.ParseBool(v)
			if err != nil {
				return fail("parameter tls: %w", err)
			}
			useTLS = b
			continue
		case "password", "token":
			return fail("no %s in URLs (they end up in logs and process listings): set ETCDCTL_USER and ETCDCTL_PASSWORD or use etcd.WithAuth", key)
		default:
			return fail("unknown parameter %q (want ttl, timeout, dial_timeout, resync, cacert, cert, key or tls)", key)
		}
		d, err := time.ParseDuration(v)
		if err != nil {
			return fail("parameter %s: %w", key, err)
		}
		opts = append(opts, opt(d))
	}
	for key, env := range map[string]string{"cacert": "ETCDCTL_CACERT", "cert": "ETCDCTL_CERT", "key": "ETCDCTL_KEY"} {
		if _, ok := tlsFiles[key]; !ok {
			if v := getenv(env); v != "" {
				tlsFiles[key], tlsSource[key] = v, env
			}
		}
	}
	insecure := false
	if v := getenv("ETCDCTL_INSECURE_SKIP_TLS_VERIFY"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return fail("ETCDCTL_INSECURE_SKIP_TLS_VERIFY=%q: %w", v, err)
		}
		insecure = b
	}
	for _, ep := range eps {
		useTLS = useTLS || strings.HasPrefix(ep, "https://")
	}
	if useTLS || len(tlsFiles) > 0 || insecure {
		cfg, src, err := tlsConfig(tlsFiles, tlsSource, insecure)
		if err != nil {
			return fail("%w", err)
		}
		opts = append(opts, func(o *options) { o.tls, o.tlsSource = cfg, src })
	}
	return eps, opts, nil
}

// tlsConfig builds the TLS settings from files; errors name the file and
// where its path came from.
func tlsConfig(files, source map[string]string, insecure bool) (*tls.Config, string, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: insecure} //nolint:gosec // only when ETCDCTL_INSECURE_SKIP_TLS_VERIFY asks
	var srcs []string
	if p, ok := files["cacert"]; ok {
		pem, err := os.ReadFile(p)
		if err != nil {
			return nil, "", fmt.Errorf("TLS CA file (from %s): %w", source["cacert"], err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, "", fmt.Errorf("TLS CA file %s (from %s): no PEM certificate in it", p, source["cacert"])
		}
		cfg.RootCAs = pool
		srcs = append(srcs, source["cacert"])
	}
	cert, hasCert := files["cert"]
	key, hasKey := files["key"]
	switch {
	case hasCert && hasKey:
		pair, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			return nil, "", fmt.Errorf("TLS client certificate %s and key %s (from %s and %s): %w", cert, key, source["cert"], source["key"], err)
		}
		cfg.Certificates = []tls.Certificate{pair}
		srcs = append(srcs, source["cert"], source["key"])
	case hasCert:
		return nil, "", fmt.Errorf("TLS client certificate %s (from %s) without a key: set ETCDCTL_KEY or ?key=", cert, source["cert"])
	case hasKey:
		return nil, "", fmt.Errorf("TLS client key %s (from %s) without a certificate: set ETCDCTL_CERT or ?cert=", key, source["key"])
	}
	if insecure {
		srcs = append(srcs, "ETCDCTL_INSECURE_SKIP_TLS_VERIFY")
	}
	if len(srcs) == 0 {
		srcs = append(srcs, "the system's root CAs")
	}
	return cfg, strings.Join(srcs, ", "), nil
}
