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

// ErrBadAddress is wrapped by the error for an address that is not one of
// the forms SplitAddr accepts.
var ErrBadAddress = errors.New("bad address")

// addrForms is what an address error says is wanted.
const addrForms = "want host:port, tcp@host:port or unix@/path/sock"

// SplitAddr splits an address into the network and the network address,
// ready for net.Dial. Every part of shoal that takes an address (Dial, the
// registries, Instance.Addr, the demo's flags) accepts the same forms:
//
//	127.0.0.1:9001        TCP (a host name or [IPv6]:port too)
//	tcp@127.0.0.1:9001    TCP, as registries store it (also tcp4@, tcp6@)
//	unix@/path/sock       a Unix socket
//	http@127.0.0.1:9001   TCP, the binary protocol through an HTTP CONNECT
//	                      (for HTTP-only infrastructure; a provider answers it
//	                      on its one port)
//
// A malformed address is an error wrapping ErrBadAddress that quotes it as
// given and says what is wrong.
func SplitAddr(addr string) (network, address string, err error) {
	bad := func(why string) (string, string, error) {
		return "", "", fmt.Errorf("address %q: %w: %s", addr, ErrBadAddress, why)
	}
	if scheme, rest, isURL := strings.Cut(addr, "://"); isURL && !strings.Contains(scheme, "@") {
		// "tcp://h:p" is a URL, not an address; registries take URLs.
		return bad(fmt.Sprintf("a URL, not an address; write %s@%s", scheme, rest))
	}
	network, address, ok := strings.Cut(addr, "@")
	if !ok {
		network, address = "tcp", addr
	}
	switch network {
	case "tcp", "tcp4", "tcp6", "http":
		if address == "" {
			return bad("empty; " + addrForms)
		}
		host, port, err := net.SplitHostPort(address)
		if err != nil {
			var ae *net.AddrError
			if errors.As(err, &ae) {
				return bad(ae.Err + "; " + addrForms)
			}
			return bad(err.Error())
		}
		if host == "" {
			return bad("empty host")
		}
		if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
			return bad(fmt.Sprintf("port %q is not in 1..65535", port))
		}
	case "unix":
		if address == "" {
			return bad("empty socket path")
		}
	default:
		return bad(fmt.Sprintf("unknown network %q (want tcp, unix or http)", network))
	}
	return network, address, nil
}

// CanonicalAddr returns addr in the form registries store, "network@address"
// ("127.0.0.1:9001" becomes "tcp@127.0.0.1:9001"), or SplitAddr's error.
func CanonicalAddr(addr string) (string, error) {
	network, address, err := SplitAddr(addr)
	if err != nil {
		return "", err
	}
	return network + "@" + address, nil
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
	addr, err := CanonicalAddr(in.Addr)
	if err != nil {
		return nil, fmt.Errorf("%w: service %q: %w", ErrInvalidInstance, in.Service, err)
	}
	out := cloneInstance(in)
	out.Addr = addr
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
