// Package reflection holds the wire types of shoal's built-in reflection
// service: a provider lists the services and methods it serves and describes a
// method's args and reply types as JSON Schema, so that the shoal command and
// the HTTP side can call a method without its Go types.
//
// The package is types only (and the schema derivation the provider uses), so
// that both ends can import it without importing each other.
package reflection

// Service is the name the reflection service is registered under.
const Service = "ShoalReflection"

// The reflection service's methods.
const (
	// ListMethod answers a ListRequest with a ListResponse.
	ListMethod = Service + ".List"
	// DescribeMethod answers a DescribeRequest with a DescribeResponse.
	DescribeMethod = Service + ".Describe"
)

// Kind says how a method is called.
type Kind string

// The kinds of method.
const (
	Unary        Kind = "unary"         // one args, one reply
	ServerStream Kind = "server_stream" // one args, a stream of replies
	ClientStream Kind = "client_stream" // a stream of args, one reply
	BidiStream   Kind = "bidi_stream"   // a stream each way
)

// ListRequest asks for every service and method a provider serves.
type ListRequest struct{}

// ListResponse lists a provider's services, sorted by name, the built-in
// ones included.
type ListResponse struct {
	Services []ServiceInfo
}

// ServiceInfo is one service and its methods, sorted by name.
type ServiceInfo struct {
	Name    string
	Methods []MethodInfo
}

// MethodInfo is one method: its name without the service ("Add") and kind.
type MethodInfo struct {
	Name string
	Kind Kind
}

// DescribeRequest asks for one method, named "Service.Method".
type DescribeRequest struct {
	Method string
}

// DescribeResponse describes one method. The schemas are JSON Schema
// documents (JSON text) of the args and reply types, with field names as the
// codecs use them; Example is a JSON body of the args type with zero values,
// ready to be edited and sent.
type DescribeResponse struct {
	Method      string
	Kind        Kind
	ArgsType    string // the Go type's name, e.g. "arith.Args"
	ReplyType   string
	ArgsSchema  string
	ReplySchema string
	Example     string
}
