package dns

import (
	"context"
	"testing"

	"github.com/miekg/dns"

	"github.com/peerd/peerd/catalog/state"
)

// FuzzHandleQuery feeds arbitrary wire bytes to the handler: it must never
// panic, and must either drop the message or answer with a response that
// packs, unpacks, echoes the query's ID and fits the transport.
func FuzzHandleQuery(f *testing.F) {
	for _, q := range []struct {
		name  string
		qtype uint16
	}{
		{"billing.virtual.b.peerd.", dns.TypeA},
		{"billing.service.b.peer.peerd.", dns.TypeSRV},
		{"web.service.peerd.", dns.TypeANY},
		{"0a000005.addr.peerd.", dns.TypeAAAA},
		{"peerd.", dns.TypeSOA},
		{"example.com.", dns.TypeA},
	} {
		m := new(dns.Msg)
		m.SetQuestion(q.name, q.qtype)
		m.SetEdns0(1232, false)
		b, err := m.Pack()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, false)
		f.Add(b, true)
	}
	f.Add([]byte{0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, false)
	st, err := state.NewStore()
	if err != nil {
		f.Fatal(err)
	}
	if err := st.VirtualIPsUpdate(1, &state.VirtualIPsRequest{Assign: []*state.VirtualIP{
		{Peer: "b", Service: "billing", IPv4: "240.0.0.1", IPv6: "fd70:6565:7264::1"}}}); err != nil {
		f.Fatal(err)
	}
	s, err := New(Config{View: func() *state.Store { return st }})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, wire []byte, tcp bool) {
		req := new(dns.Msg)
		if err := req.Unpack(wire); err != nil {
			return // the server drops what does not parse
		}
		resp := s.Handle(context.Background(), req, tcp)
		if resp == nil {
			if !req.Response {
				t.Fatal("dropped a query")
			}
			return
		}
		out, err := resp.Pack()
		if err != nil {
			t.Fatalf("response does not pack: %v\n%v", err, resp)
		}
		limit := 65535
		if !tcp {
			limit = 4096
		}
		if len(out) > limit {
			t.Fatalf("response of %d bytes over a %d-byte transport", len(out), limit)
		}
		back := new(dns.Msg)
		if err := back.Unpack(out); err != nil {
			t.Fatalf("response does not unpack: %v", err)
		}
		if back.Id != req.Id || !back.Response {
			t.Fatalf("response id %d (response %t), query id %d", back.Id, back.Response, req.Id)
		}
	})
}
