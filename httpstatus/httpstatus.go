// Package httpstatus is the one place that says how shoal's call outcomes
// look over HTTP/JSON: the HTTP status of each protocol.Status, the JSON
// body of an error, and the headers that carry metadata and a deadline. The
// gateway (package gateway) answers with it, and so can the provider's own
// HTTP side, so that a client sees the same statuses whichever it talks to.
//
// It imports only the protocol package, so that both ends can use it.
package httpstatus

import (
	"net/http"
	"strings"

	"github.com/shoalrpc/shoal/protocol"
)

// Headers and query parameters of an HTTP/JSON call.
const (
	// MetadataPrefix starts the name of a request header that carries one
	// metadata entry: "Shoal-Meta-Tenant: a" is metadata "tenant" = "a"
	// (keys are lower-cased, as HTTP header names are case-insensitive).
	MetadataPrefix = "Shoal-Meta-"
	// TimeoutHeader carries the call's deadline as a Go duration
	// ("250ms", "2s"); the query parameter TimeoutParam does the same.
	TimeoutHeader = "Shoal-Timeout"
	// TimeoutParam is the query parameter form of TimeoutHeader:
	// POST /Arith.Add?timeout=2s.
	TimeoutParam = "timeout"
	// ContentType is the content type of requests and replies.
	ContentType = "application/json"
)

// ErrorBody is the JSON body of every error answer, as the provider's own
// HTTP side writes it (provider.HTTPError):
//
//	{"status":"service_error","error":"divide by zero"}
//
// Status is shoal's status name with underscores (Name), Error the error's
// text: the method's own text, intact, for a service error.
type ErrorBody struct {
	Status string `json:"status"`
	Error  string `json:"error"`
}

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

// Code returns the HTTP status for a shoal status, the same table as the
// provider's own HTTP side (provider.HTTPStatus):
//
//	ok                               200 OK
//	service error (the method's own) 422 Unprocessable Content, the message intact in the body
//	                                 (a 4xx: it ran, so HTTP clients and proxies must not retry it)
//	unknown service, unknown method  404 Not Found
//	bad request                      400 Bad Request
//	unauthenticated                  401 Unauthorized
//	refused (by a server interceptor) 403 Forbidden
//	too large                        413 Content Too Large
//	overloaded                       429 Too Many Requests
//	shutting down                    503 Service Unavailable, with Retry-After
//	internal error, anything else    500 Internal Server Error
func Code(s protocol.Status) int {
	switch s {
	case protocol.StatusOK:
		return http.StatusOK
	case protocol.StatusUnknownService, protocol.StatusUnknownMethod:
		return http.StatusNotFound
	case protocol.StatusBadRequest:
		return http.StatusBadRequest
	case protocol.StatusUnauthenticated:
		return http.StatusUnauthorized
	case protocol.StatusRefused:
		return http.StatusForbidden
	case protocol.StatusTooLarge:
		return http.StatusRequestEntityTooLarge
	case protocol.StatusServiceError:
		return http.StatusUnprocessableEntity
	case protocol.StatusOverloaded:
		return http.StatusTooManyRequests
	case protocol.StatusShuttingDown:
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

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
func Metadata(h http.Header) map[string]string {
	var md map[string]string
	for k, vs := range h {
		key := ""
		switch {
		case len(k) > len(MetadataPrefix) && strings.EqualFold(k[:len(MetadataPrefix)], MetadataPrefix):
			key = k[len(MetadataPrefix):]
		case strings.EqualFold(k, "Authorization"):
			key = k
		}
		if key == "" || len(vs) == 0 {
			continue
		}
		if md == nil {
			md = make(map[string]string)
		}
		md[strings.ToLower(key)] = vs[0]
	}
	return md
}
