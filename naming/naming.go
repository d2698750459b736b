// Package naming describes service instances and the registries that hold them.
//
// A provider registers an Instance; a consumer fetches or watches the instances
// of a service by name. Built in: memory (in-process, the default) and static
// (a fixed list of addresses). Consul is in naming/consul, a package of its
// own so that programs which do not use it do not link its client; Open
// picks a registry from a URL, opening other schemes with the Backends it
// is given.
package naming

import "context"

// Instance is one provider of a service at one address.
type Instance struct {
	ID      string            // unique within the service, stable across restarts at one address
	Service string            // e.g. "arith"
	Addr    string            // "tcp@127.0.0.1:9001" or "unix@/path/sock"
	Weight  int               // >= 1; 0 is read as 1
	Tags    []string          // free-form labels
	Meta    map[string]string // free-form key/value metadata
}

// EffectiveWeight returns the instance's weight, reading 0 or less as 1.
func (in *Instance) EffectiveWeight() int {
	if in.Weight < 1 {
		return 1
	}
	return in.Weight
}

// Registry stores the instances of services and tells watchers when they change.
type Registry interface {
	// Register publishes in until the returned cancel is called.
	Register(ctx context.Context, in *Instance) (deregister context.CancelFunc, err error)
	// Fetch returns the current instances of service.
	Fetch(ctx context.Context, service string) ([]*Instance, error)
	// Watch delivers full snapshots of service's instances until ctx ends;
	// a slow reader may miss stale snapshots but always gets the latest.
	Watch(ctx context.Context, service string) (<-chan []*Instance, error)
	// Close releases the registry's resources.
	Close() error
}
