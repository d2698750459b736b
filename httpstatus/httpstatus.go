// Package httpstatus says how shoal's call outcomes look over HTTP/JSON
// for the gateway (package gateway): the provider's own table and error
// body (provider.HTTPStatus, provider.HTTPError), so that a client sees the
// same statuses whichever it talks to, and the statuses of what happens
// between a gateway and the providers (no instances, unavailable, a
// deadline), which the provider's side never meets.
package httpstatus

import (
	"net/http"
	"strings"

	"github.com/shoalrpc/shoal/protocol"
	"github.com/shoalrpc/shoal/provider"
)

// Headers and query parameters of an HTTP/JSON call.
const (
	// MetadataPrefix starts the name of a request header that carries one
	// metadata entry: "Shoal-Meta-Tenant: a" is metadata "tenant" = "a"
	// (keys are lower-cased, as HTTP header names are case-insensitive).
	MetadataPrefix = provider.HTTPMetaPrefix
	// TimeoutHeader carries the call's deadline as a Go duration
	// ("250ms", "2s"); the query parameter TimeoutParam does the same.
	TimeoutHeader = provider.HTTPTimeoutHeader
	// TimeoutParam is the query parameter form of TimeoutHeader:
	// POST /Arith.Add?timeout=2s.
	TimeoutParam = "timeout"
	// ContentType is the content type of requests and replies.
	ContentType = "application/json"
)

// ErrorBody is the JSON body of every error answer, the provider's own:
//
//	{"status":"service_error","error":"divide by zero"}
//
// Status is shoal's status name with underscores (Name), Error the error's
// text: the method's own text, intact, for a service error.
type ErrorBody = provider.HTTPError

// Name is a status name as an error body carries it: with underscores,
// "unknown_method" for "unknown method".
func Name(status string) string { return strings.ReplaceAll(status, " ", "_") }

// Status names for outcomes that have no protocol.Status because no
// response arrived: they happen between a gateway and the providers.
const (
	NoInstances = "no instances"      // the registry lists no instance of the service
	Unavailable = "unavailable"       // no connection could be made, or it broke mid-call
	Deadline    = "deadline exceeded" // the call's deadline passed
	Canceled    = "canceled"          // the HTTP client went away
)

// Code returns the HTTP status for a shoal status: provider.HTTPStatus,
// the one table (service error 422, unknown service or method 404, bad
// request 400, unauthenticated 401, refused 403, too large 413, overloaded
// 429, shutting down 503, internal error 500).
func Code(s protocol.Status) int { return provider.HTTPStatus(s) }

// CodeOf returns the HTTP status for a status name: a protocol.Status's
// name (Code's table) or one of this package's transport statuses:
//
//	no instances, unavailable        503 Service Unavailable, with Retry-After
//	deadline exceeded                504 Gateway Timeout
//	canceled                         499 (the client closed the request, as nginx logs it)
func CodeOf(name string) int {
	switch name {
	case NoInstances, Unavailable:
		return http.StatusServiceUnavailable
	case Deadline:
		return http.StatusGatewayTimeout
	case Canceled:
		return 499
	}
	for s := protocol.StatusOK; s <= protocol.StatusRefused; s++ {
		if s.String() == name {
			return Code(s)
		}
	}
	return http.StatusInternalServerError
}

// RetryAfter returns the Retry-After value (seconds) to send with an error
// of the status named name, or "" for one a client should not simply
// retry: a draining or unreachable service is worth retrying soon.
func RetryAfter(name string) string {
	switch name {
	case protocol.StatusShuttingDown.String(), protocol.StatusOverloaded.String(), NoInstances, Unavailable:
		return "1"
	}
	return ""
}

// Metadata returns the metadata carried by h's MetadataPrefix headers,
// keys lower-cased, and the Authorization header as "authorization" (for
// the provider's WithAuth), or nil when there is none. A header given more
// than once keeps its first value.
func Metadata(h http.Header) map[string]string { return provider.HTTPMetadata(h) }
