// Package shoal is an RPC microframework for Go that serves plain Go
// structs. This package holds no code: it is the module's overview, and its
// example is the README's first program, run as a test.
//
//   - provider serves the exported methods of a struct
//     (func (t *T) M([ctx context.Context,] args A, reply *R) error) as
//     "T.M" over a compact binary protocol, and as HTTP/JSON on the same
//     port (POST /T.M); serves stream methods (provider.ServerStream,
//     ClientStream, BidiStream) with flow control; registers itself in a registry under a service name
//     of your choosing; answers the built-in health (package health) and
//     reflection (package reflection) services; and shuts down without
//     losing a request;
//   - consumer calls them: Client is one multiplexed connection, Pool keeps
//     connections per address, and ClientProxy finds a service's instances
//     by its registry name and adds load balancing, fail policies and
//     active health checks; NewMethod makes a typed handle on one method,
//     OpenServerStream, OpenClientStream and OpenBidiStream open streams;
//   - naming holds the registries (memory and static built in; Consul, etcd
//     and DNS in naming/consul, naming/etcd and naming/dns) and the address
//     forms every part accepts ("host:port", "tcp@host:port",
//     "unix@/path", "http@host:port"); loadbalance holds the balancing
//     policies, and protocol the wire format and the codecs;
//   - stats is the seam every observer stands on: observability/otel
//     (OpenTelemetry tracing), observability/prom (Prometheus metrics) and
//     observability/admin (an admin page) are stats handlers in packages of
//     their own, outside the core;
//   - cmd/shoal is the command line (list, describe, call, health, watch,
//     load) and runs the HTTP/JSON gateway of package gateway.
//
// Install with go get github.com/shoalrpc/shoal@latest (Go 1.26 or later).
// Start with the README, or run the quickstart: go run ./demo/quickstart.
package shoal
