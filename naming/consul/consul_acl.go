package consul

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
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
// rather than a silently incomplete list; so is an empty answer the token may
// not read (no token, or one revoked while a watch waited; see Fetch).
var ErrPermissionDenied = errors.New("permission denied by Consul ACLs")

// WithToken sets the ACL token sent with every request of the registry:
// registration, heartbeats, deregistration, Fetch and Watch queries. It
// overrides the token of the api.Config passed to New and the
// CONSUL_HTTP_TOKEN and CONSUL_HTTP_TOKEN_FILE variables; an empty token
// leaves them in charge.
//
// A provider's token needs `service "<name>" { policy = "write" }`; a
// consumer's needs `service "<name>" { policy = "read" }` and
// `node_prefix "" { policy = "read" }`. There is deliberately no consul://
// URL parameter for the token: URLs end up in logs, flags and process
// listings.
func WithToken(token string) Option {
	return func(o *options) { o.token = token }
}

// resolveToken returns the token every request carries ("" for Consul's
// anonymous token) and a description of where it came from, for error
// messages. conf is the config after api.NewClient filled it in (it applies
// CONSUL_HTTP_TOKEN and CONSUL_HTTP_TOKEN_FILE when conf has no token).
func resolveToken(o *options, conf *api.Config) (token, source string) {
	switch {
	case o.token != "":
		return o.token, "the ACL token from consul.WithToken"
	case conf.Token == "":
		return "", "no ACL token: set CONSUL_HTTP_TOKEN or use consul.WithToken"
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
func (c *Registry) queryOptions(ctx context.Context) *api.QueryOptions {
	return (&api.QueryOptions{Token: c.token}).WithContext(ctx)
}

// aclError wraps err in ErrPermissionDenied, with the token's origin and
// what the request needs, when Consul answered 403; other errors are
// returned as they are.
func (c *Registry) aclError(err error, needs string) error {
	if !isPermissionDenied(err) {
		return err
	}
	c.aclDenials.Add(1)
	return fmt.Errorf("%w (%s; it needs %s): %w", ErrPermissionDenied, c.tokenSource, needs, err)
}

// filteredError is the error of a health query whose result Consul filtered
// by ACLs.
func (c *Registry) filteredError(service string) error {
	c.aclDenials.Add(1)
	return fmt.Errorf("%w (%s; Consul filtered the instances of %q out of the answer, it needs %s)",
		ErrPermissionDenied, c.tokenSource, service, readNeeds(service))
}

// checkEmpty turns an empty answer to a health query, while Consul's
// default ACL policy is deny, into an error wrapping ErrPermissionDenied
// when the token (the registry's, else the agent's default token, else
// anonymous) may not read the service's instances. Consul answers such a
// query with an empty list rather than an error: to a request without a
// token it also hides the flag that says the answer was filtered, and a
// blocking query whose token was deleted meanwhile comes back empty. Without
// this check a missing or revoked token would look like a service with no
// instance, and a consumer would wait for instances it can never see. It
// asks Consul's ACL authorization endpoint; when that fails too, the error
// says so (never an empty list).
func (c *Registry) checkEmpty(ctx context.Context, service string, n int, meta *api.QueryMeta) error {
	if n > 0 || meta == nil || meta.DefaultACLPolicy != "deny" {
		return nil
	}
	allowed, err := c.mayRead(ctx, service)
	switch {
	case isPermissionDenied(err):
		return c.aclError(err, readNeeds(service))
	case err != nil:
		return fmt.Errorf("consul answered no instance of %q while its default ACL policy is deny,"+
			" and checking whether the token may read it failed (%s; a consumer needs %s): %w",
			service, c.tokenSource, readNeeds(service), err)
	case allowed:
		return nil // the token may read them: there are none
	}
	c.aclDenials.Add(1)
	return fmt.Errorf("%w (%s; Consul answered no instance of %q, which the token may not read; it needs %s)",
		ErrPermissionDenied, c.tokenSource, service, readNeeds(service))
}

// mayRead asks Consul (POST /v1/internal/acl/authorize, the endpoint
// Consul's UI uses) whether the registry's token may read service and every
// node, which a health query needs.
func (c *Registry) mayRead(ctx context.Context, service string) (bool, error) {
	type authz struct {
		Resource, Segment, Access string
		Allow                     bool `json:",omitempty"`
	}
	body, err := json.Marshal([]authz{{Resource: "service", Segment: service, Access: "read"}, {Resource: "node", Access: "read"}})
	if err != nil {
		return false, err
	}
	ctx, cancel := context.WithTimeout(ctx, c.o.reqTimeout)
	defer cancel()
	path := c.conf.PathPrefix + "/v1/internal/acl/authorize"
	if c.conf.Datacenter != "" {
		path += "?dc=" + url.QueryEscape(c.conf.Datacenter)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, path, bytes.NewReader(body))
	if err != nil {
		return false, err
	}
	// As the api package does: the host may be a unix socket's path, which
	// the client's transport dials whatever the URL says.
	req.URL.Scheme, req.URL.Host, req.Host = c.conf.Scheme, c.conf.Address, c.conf.Address
	req.Header = c.client.Headers()
	req.Header.Set("Content-Type", "application/json")
	if c.token != "" {
		req.Header.Set("X-Consul-Token", c.token)
	}
	if a := c.conf.HttpAuth; a != nil {
		req.SetBasicAuth(a.Username, a.Password)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return false, fmt.Errorf("%s: %w", path, api.StatusError{Code: resp.StatusCode, Body: string(bytes.TrimSpace(msg))})
	}
	var out []authz
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<16)).Decode(&out); err != nil {
		return false, fmt.Errorf("%s: %w", path, err)
	}
	if len(out) != 2 {
		return false, fmt.Errorf("%s: %d answers to 2 questions", path, len(out))
	}
	return out[0].Allow && out[1].Allow, nil
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
