package naming

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// SplitAddr splits an instance address of the form "tcp@host:port" or
// "unix@/path/sock" into the network and the network address, ready for
// net.Dial. It returns an error naming the problem when addr is malformed.
func SplitAddr(addr string) (network, address string, err error) {
	network, address, ok := strings.Cut(addr, "@")
	if !ok {
		return "", "", fmt.Errorf("naming: address %q: want network@address, e.g. tcp@127.0.0.1:9001", addr)
	}
	switch network {
	case "tcp", "tcp4", "tcp6":
		host, port, err := net.SplitHostPort(address)
		if err != nil {
			return "", "", fmt.Errorf("naming: address %q: %w", addr, err)
		}
		if host == "" {
			return "", "", fmt.Errorf("naming: address %q: empty host", addr)
		}
		if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
			return "", "", fmt.Errorf("naming: address %q: port %q is not in 1..65535", addr, port)
		}
	case "unix":
		if address == "" {
			return "", "", fmt.Errorf("naming: address %q: empty socket path", addr)
		}
	default:
		return "", "", fmt.Errorf("naming: address %q: unknown network %q (want tcp or unix)", addr, network)
	}
	return network, address, nil
}

// DefaultID returns the stable instance ID used when Instance.ID is empty:
// "service-host-port" for TCP addresses and "service-unix-path" for Unix
// sockets, with every character outside [A-Za-z0-9._-] replaced by '-', so
// the ID is safe in Consul's URL paths. The same service at the same address
// always gets the same ID, so a restarted provider replaces its old entry.
func DefaultID(service, addr string) string {
	network, address, err := SplitAddr(addr)
	var raw string
	switch {
	case err != nil:
		raw = service + "-" + addr
	case network == "unix":
		raw = service + "-unix-" + address
	default:
		host, port, _ := net.SplitHostPort(address)
		raw = service + "-" + host + "-" + port
	}
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '_', r == '-':
			return r
		}
		return '-'
	}, raw)
}

// ErrInvalidInstance is wrapped by the error Register returns for an
// instance without a service name or with a malformed address.
var ErrInvalidInstance = errors.New("naming: invalid instance")

// normalize validates in and returns the copy a registry stores: ID filled
// with DefaultID when empty, Weight at least 1, empty Tags and Meta as nil,
// Tags and Meta copied so the caller may reuse its own.
func normalize(in *Instance) (*Instance, error) {
	if in == nil {
		return nil, fmt.Errorf("%w: nil instance", ErrInvalidInstance)
	}
	if in.Service == "" {
		return nil, fmt.Errorf("%w: empty service name (addr %q)", ErrInvalidInstance, in.Addr)
	}
	if _, _, err := SplitAddr(in.Addr); err != nil {
		return nil, fmt.Errorf("%w: service %q: %w", ErrInvalidInstance, in.Service, err)
	}
	out := cloneInstance(in)
	if out.ID == "" {
		out.ID = DefaultID(out.Service, out.Addr)
	}
	out.Weight = in.EffectiveWeight()
	return out, nil
}

// cloneInstance returns a deep copy of in, with empty Tags and Meta as nil.
func cloneInstance(in *Instance) *Instance {
	out := *in
	out.Tags = nil
	if len(in.Tags) > 0 {
		out.Tags = slices.Clone(in.Tags)
	}
	out.Meta = nil
	if len(in.Meta) > 0 {
		out.Meta = make(map[string]string, len(in.Meta))
		for k, v := range in.Meta {
			out.Meta[k] = v
		}
	}
	return &out
}

// sortInstances orders a snapshot by ID (then Addr) so snapshots compare
// deterministically.
func sortInstances(list []*Instance) {
	sort.Slice(list, func(i, j int) bool {
		if list[i].ID != list[j].ID {
			return list[i].ID < list[j].ID
		}
		return list[i].Addr < list[j].Addr
	})
}

// sameSnapshot reports whether two sorted snapshots hold equal instances.
func sameSnapshot(a, b []*Instance) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := a[i], b[i]
		if x.ID != y.ID || x.Service != y.Service || x.Addr != y.Addr || x.Weight != y.Weight ||
			!slices.Equal(x.Tags, y.Tags) || !mapsEqual(x.Meta, y.Meta) {
			return false
		}
	}
	return true
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}
