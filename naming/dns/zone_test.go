package dns

import (
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
)

// zone is a real DNS server (github.com/miekg/dns) on a loopback UDP port,
// serving records the test changes while it runs.
type zone struct {
	addr    string
	mu      sync.Mutex
	hosts   map[string][]netip.Addr // fqdn → A/AAAA
	srvs    map[string][]*mdns.SRV  // fqdn → SRV
	drop    atomic.Bool             // answer nothing: the resolver times out
	queries atomic.Int64            // questions received
}

// startZone starts the server; it stops when the test ends.
func startZone(t *testing.T) *zone {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	z := &zone{addr: pc.LocalAddr().String(), hosts: map[string][]netip.Addr{}, srvs: map[string][]*mdns.SRV{}}
	started := make(chan struct{})
	srv := &mdns.Server{PacketConn: pc, Handler: mdns.HandlerFunc(z.serve), NotifyStartedFunc: func() { close(started) }}
	done := make(chan error, 1)
	go func() { done <- srv.ActivateAndServe() }()
	select {
	case <-started:
	case err := <-done:
		t.Fatalf("dns server: %v", err)
	}
	t.Cleanup(func() {
		if err := srv.Shutdown(); err != nil {
			t.Errorf("dns server shutdown: %v", err)
		}
		<-done
	})
	return z
}

// setHosts replaces the A/AAAA records of name.
func (z *zone) setHosts(name string, addrs ...string) {
	z.mu.Lock()
	defer z.mu.Unlock()
	var list []netip.Addr
	for _, a := range addrs {
		list = append(list, netip.MustParseAddr(a))
	}
	z.hosts[mdns.Fqdn(name)] = list
}

// srv is one SRV record: target, port, weight, priority.
type srv struct {
	target           string
	port             uint16
	weight, priority uint16
}

// setSRV replaces the SRV records of name.
func (z *zone) setSRV(name string, recs ...srv) {
	z.mu.Lock()
	defer z.mu.Unlock()
	var list []*mdns.SRV
	for _, r := range recs {
		list = append(list, &mdns.SRV{
			Hdr:    mdns.RR_Header{Name: mdns.Fqdn(name), Rrtype: mdns.TypeSRV, Class: mdns.ClassINET, Ttl: 1},
			Target: mdns.Fqdn(r.target), Port: r.port, Weight: r.weight, Priority: r.priority,
		})
	}
	z.srvs[mdns.Fqdn(name)] = list
}

func (z *zone) serve(w mdns.ResponseWriter, req *mdns.Msg) {
	z.queries.Add(1)
	if z.drop.Load() {
		return // no answer at all: the client times out
	}
	m := new(mdns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	z.mu.Lock()
	for _, q := range req.Question {
		name := strings.ToLower(q.Name)
		hosts, hok := z.hosts[name]
		srvs, sok := z.srvs[name]
		if !hok && !sok {
			m.Rcode = mdns.RcodeNameError
			continue
		}
		hdr := mdns.RR_Header{Name: q.Name, Rrtype: q.Qtype, Class: mdns.ClassINET, Ttl: 1}
		switch q.Qtype {
		case mdns.TypeA:
			for _, a := range hosts {
				if a.Is4() {
					m.Answer = append(m.Answer, &mdns.A{Hdr: hdr, A: a.AsSlice()})
				}
			}
		case mdns.TypeAAAA:
			for _, a := range hosts {
				if a.Is6() {
					m.Answer = append(m.Answer, &mdns.AAAA{Hdr: hdr, AAAA: a.AsSlice()})
				}
			}
		case mdns.TypeSRV:
			for _, r := range srvs {
				m.Answer = append(m.Answer, r)
			}
		}
	}
	z.mu.Unlock()
	_ = w.WriteMsg(m)
}

// newTestRegistry returns a registry on z for name, closed when the test ends.
func newTestRegistry(t *testing.T, z *zone, name string, opts ...Option) *Registry {
	t.Helper()
	opts = append([]Option{WithServer(z.addr), WithTimeout(2 * time.Second)}, opts...)
	r, err := New(name, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}
