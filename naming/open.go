package naming

import (
	"fmt"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"
)

// Open returns the registry a URL names. Two schemes are built in:
//
//	memory://                                   a new, empty in-process registry (NewMemory)
//	static://127.0.0.1:9001,tcp@h:9002          a fixed list of addresses (NewStatic), in any
//	                                            form SplitAddr accepts
//
// and any other is opened by the backend given for it, which keeps registry
// clients out of programs that do not use them:
//
//	naming.Open("consul://127.0.0.1:8500?ttl=5s", consul.Backend())
//
// Each call returns a new registry: two Open("memory://") calls do not share
// instances. To share an in-process registry, pass the one value around.
// An unknown scheme or a malformed URL is an error that quotes the URL, with
// only secrets hidden (a password, and the values of parameters the backend
// does not call public, which may be tokens), and says what is wrong with
// it, once.
func Open(rawURL string, backends ...Backend) (Registry, error) {
	scheme, rest, ok := strings.Cut(rawURL, "://")
	if !ok || scheme == "" {
		return nil, urlErrorf(rawURL, nil, "want scheme://..., one of %s", schemeList(backends, "://"))
	}
	switch strings.ToLower(scheme) {
	case "memory":
		if rest != "" {
			return nil, urlErrorf(rawURL, nil, "memory:// takes no address, got %q", rest)
		}
		return NewMemory(), nil
	case "static":
		if rest == "" {
			return nil, urlErrorf(rawURL, nil, "static:// needs at least one address, e.g. static://127.0.0.1:9001")
		}
		s, err := newStatic(strings.Split(rest, ","))
		if err != nil {
			return nil, &urlError{url: redactURL(rawURL, nil), err: err}
		}
		return s, nil
	}
	for _, b := range backends {
		if strings.EqualFold(b.Scheme, scheme) && b.Open != nil {
			reg, err := b.Open(rawURL)
			if err != nil {
				return nil, &urlError{url: redactURL(rawURL, b.PublicParams), err: err}
			}
			return reg, nil
		}
	}
	msg := fmt.Sprintf("unknown scheme %q (want %s)", scheme, schemeList(backends, ""))
	if pkg, known := backendPackages[strings.ToLower(scheme)]; known {
		msg += fmt.Sprintf("; %s:// is opened by %s: naming.Open(url, %s.Backend())", scheme, pkg, path.Base(pkg))
	}
	return nil, urlErrorf(rawURL, nil, "%s", msg)
}

// backendPackages names the packages of shoal's own backends, for the hint
// when a program did not give one to Open.
var backendPackages = map[string]string{
	"consul": "github.com/shoalrpc/shoal/naming/consul",
	"etcd":   "github.com/shoalrpc/shoal/naming/etcd",
	"dns":    "github.com/shoalrpc/shoal/naming/dns",
}

// schemeList lists the schemes Open knows with these backends.
func schemeList(backends []Backend, suffix string) string {
	names := []string{"memory" + suffix, "static" + suffix}
	for _, b := range backends {
		names = append(names, b.Scheme+suffix)
	}
	return strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
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

func urlErrorf(rawURL string, public []string, format string, args ...any) error {
	return &urlError{url: redactURL(rawURL, public), err: fmt.Errorf(format, args...)}
}

// redactURL returns rawURL fit for an error message. Only what may be
// secret is hidden: a password, and the values of query parameters other
// than the public ones (a token may hide under any name). A static:// URL
// holds addresses only ("tcp@host" is not user information) and is shown as
// it is.
func redactURL(rawURL string, public []string) string {
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
			if !slices.Contains(public, k) {
				q[k] = []string{"redacted"}
			}
		}
		u.RawQuery = q.Encode()
	}
	return u.String()
}
