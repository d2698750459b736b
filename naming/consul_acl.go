package naming

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"

	"github.com/hashicorp/consul/api"
)

// ErrPermissionDenied is wrapped by the errors of a Consul registry when
// Consul's ACL system refused a request: no token where the default policy
// is deny, a token Consul does not know ("ACL not found"), or a token whose
// policies do not grant what the request needs. Such an error also says
// which token was used (never its value) and what it needs; the Consul
// response (an api.StatusError with code 403) stays reachable through
// errors.As.
//
// A Fetch whose result Consul filtered by ACLs (the token may read the
// service but not every node it runs on) is an ErrPermissionDenied too,
// rather than a silently incomplete list.
var ErrPermissionDenied = errors.New("permission denied by Consul ACLs")

// WithToken sets the ACL token sent with every request of the registry:
// registration, heartbeats, deregistration, Fetch and Watch queries. It
// overrides the token of the api.Config passed to NewConsul and the
// CONSUL_HTTP_TOKEN and CONSUL_HTTP_TOKEN_FILE variables; an empty token
// leaves them in charge.
//
// A provider's token needs `service "<name>" { policy = "write" }`; a
// consumer's needs `service "<name>" { policy = "read" }` and
// `node_prefix "" { policy = "read" }`. There is deliberately no consul://
// URL parameter for the token: URLs end up in logs, flags and process
// listings.
func WithToken(token string) ConsulOption {
	return func(o *consulOptions) { o.token = token }
}

// resolveToken returns the token every request carries ("" for Consul's
// anonymous token) and a description of where it came from, for error
// messages. conf is the config after api.NewClient filled it in (it applies
// CONSUL_HTTP_TOKEN and CONSUL_HTTP_TOKEN_FILE when conf has no token).
func resolveToken(o *consulOptions, conf *api.Config) (token, source string) {
	switch {
	case o.token != "":
		return o.token, "the ACL token from naming.WithToken"
	case conf.Token == "":
		return "", "no ACL token: set CONSUL_HTTP_TOKEN or use naming.WithToken"
	case conf.TokenFile != "":
		return conf.Token, "the ACL token from file " + conf.TokenFile
	case conf.Token == os.Getenv(api.HTTPTokenEnvName):
		return conf.Token, "the ACL token from " + api.HTTPTokenEnvName
	default:
		return conf.Token, "the ACL token from api.Config.Token"
	}
}

// queryOptions returns the options of one request: the registry's token and
// ctx.
func (c *Consul) queryOptions(ctx context.Context) *api.QueryOptions {
	return (&api.QueryOptions{Token: c.token}).WithContext(ctx)
}

// aclError wraps err in ErrPermissionDenied, with the token's origin and
// what the request needs, when Consul answered 403; other errors are
// returned as they are.
func (c *Consul) aclError(err error, needs string) error {
	if !isPermissionDenied(err) {
		return err
	}
	c.aclDenials.Add(1)
	return fmt.Errorf("%w (%s; it needs %s): %w", ErrPermissionDenied, c.tokenSource, needs, err)
}

// filteredError is the error of a health query whose result Consul filtered
// by ACLs.
func (c *Consul) filteredError(service string) error {
	c.aclDenials.Add(1)
	return fmt.Errorf("%w (%s; Consul filtered the instances of %q out of the answer, it needs %s)",
		ErrPermissionDenied, c.tokenSource, service, readNeeds(service))
}

// hintAnonymous logs, once per registry, that an empty answer to an
// anonymous query may be the ACLs' doing: with a default policy of deny,
// Consul answers a service the token may not read with an empty list, not
// an error.
func (c *Consul) hintAnonymous(service string, n int, meta *api.QueryMeta) {
	if n > 0 || c.token != "" || meta == nil || meta.DefaultACLPolicy != "deny" {
		return
	}
	c.anonHint.Do(func() {
		c.o.logger.Warn("consul answered an empty list to a query without an ACL token while its default ACL policy is deny;"+
			" if instances are expected, set CONSUL_HTTP_TOKEN or use naming.WithToken",
			"service", service, "needs", readNeeds(service))
	})
}

func writeNeeds(service string) string {
	return fmt.Sprintf("service %q { policy = \"write\" }", service)
}

func readNeeds(service string) string {
	return fmt.Sprintf("service %q { policy = \"read\" } and node_prefix \"\" { policy = \"read\" }", service)
}

// isPermissionDenied reports whether Consul refused a request by ACL: it
// answers 403 with "Permission denied: ..." or "ACL not found".
func isPermissionDenied(err error) bool {
	var se api.StatusError
	if errors.As(err, &se) {
		return se.Code == http.StatusForbidden
	}
	return err != nil && strings.Contains(err.Error(), "Unexpected response code: 403")
}
