// Package shoal is an RPC microframework for Go that serves plain Go
// structs. This package holds no code: it is the module's overview, and its
// example is the README's, run as a test.
//
//   - provider serves the exported methods of a struct
//     (func (t *T) M([ctx context.Context,] args A, reply *R) error) over a
//     compact binary protocol, registers itself in a registry and shuts down
//     without losing a request;
//   - consumer calls them: Client is one multiplexed connection, Pool keeps
//     connections per address, and ClientProxy adds discovery, load
//     balancing and fail policies;
//   - naming holds the registries (memory, static, Consul), loadbalance the
//     balancing policies, and protocol the wire format.
//
// Start with the README, or run the quickstart: go run ./demo/quickstart.
package shoal
