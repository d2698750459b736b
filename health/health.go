// Package health holds the wire types of shoal's built-in health service, in
// the manner of grpc.health.v1: a provider answers "ShoalHealth.Check" for
// itself (Service "") and for each service it serves, and a consumer, the
// shoal command or a gateway asks it.
//
// The package is types only, so that both ends can import it without
// importing each other.
package health

// Service is the name the health service is registered under.
const Service = "ShoalHealth"

// The health service's methods.
const (
	// CheckMethod answers a CheckRequest with a CheckResponse.
	CheckMethod = Service + ".Check"
	// WatchMethod is a server stream of CheckResponses, one now and one at
	// every change, for providers and consumers that have streams.
	WatchMethod = Service + ".Watch"
)

// Status is a service's health.
type Status uint8

// The statuses, with grpc.health.v1's meanings.
const (
	// Unknown is the zero value: nothing was said.
	Unknown Status = iota
	// Serving: the service takes calls.
	Serving
	// NotServing: the service is there but must not be given calls (for
	// example the provider is shutting down).
	NotServing
	// ServiceUnknown: the provider serves no service of that name.
	ServiceUnknown
)

// String returns the status's name as grpc.health.v1 spells it: "SERVING",
// "NOT_SERVING", "SERVICE_UNKNOWN" or "UNKNOWN".
func (s Status) String() string {
	switch s {
	case Serving:
		return "SERVING"
	case NotServing:
		return "NOT_SERVING"
	case ServiceUnknown:
		return "SERVICE_UNKNOWN"
	}
	return "UNKNOWN"
}

// CheckRequest asks for one service's health; Service "" asks for the
// provider as a whole.
type CheckRequest struct {
	Service string
}

// CheckResponse is a service's health.
type CheckResponse struct {
	Status Status
}
