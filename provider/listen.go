package provider

import (
	"fmt"
	"net"
	"strings"

	"github.com/shoalrpc/shoal/naming"
)

// Listen listens on addr, given in any of the forms shoal's addresses take
// (see naming.SplitAddr): "127.0.0.1:9001", "tcp@127.0.0.1:9001",
// "http@127.0.0.1:9001" (a TCP listener: every one answers HTTP too) or
// "unix@/path/sock". Port 0 picks a free port, and an empty host (":9001")
// listens on every interface.
func Listen(addr string) (net.Listener, error) {
	network, address, ok := strings.Cut(addr, "@")
	if !ok {
		network, address = "tcp", addr
	}
	switch network {
	case "http": // the same listener answers http@ addresses
		network = "tcp"
		fallthrough
	case "tcp", "tcp4", "tcp6":
		if _, _, err := net.SplitHostPort(address); err != nil {
			// The dialling form's check says what is wrong, in the same words.
			if _, _, serr := naming.SplitAddr(addr); serr != nil {
				return nil, fmt.Errorf("provider: listen: %w", serr)
			}
			return nil, fmt.Errorf("provider: listen %q: %w", addr, err)
		}
	case "unix":
		if address == "" {
			_, _, err := naming.SplitAddr(addr)
			return nil, fmt.Errorf("provider: listen: %w", err)
		}
	default:
		_, _, err := naming.SplitAddr(addr)
		return nil, fmt.Errorf("provider: listen: %w", err)
	}
	ln, err := net.Listen(network, address)
	if err != nil {
		return nil, fmt.Errorf("provider: listen %q: %w", addr, err)
	}
	return ln, nil
}
