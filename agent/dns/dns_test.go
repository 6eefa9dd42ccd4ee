package dns

import (
	"context"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/peerd/peerd/catalog/state"
	"github.com/peerd/peerd/internal/sockets"
)

// testStore holds: b/billing imported with two passing instances behind
// gateway 10.0.0.5:8443 and a critical one behind 10.0.0.6, its virtual IPs,
// and a local service web on 127.0.0.1:8080.
func testStore(t *testing.T) *state.Store {
	t.Helper()
	st, err := state.NewStore()
	if err != nil {
		t.Fatal(err)
	}
	imp := func(node, id, gw, status string) *state.RegisterRequest {
		return &state.RegisterRequest{PeerName: "b", Node: &state.Node{Node: node, Address: "192.168.1.1"},
			Service: &state.Service{ID: id, Service: "billing", Port: 9090,
				TaggedAddresses: map[string]state.ServiceAddress{state.TaggedAddressGateway: {Address: gw, Port: 8443}}},
			Checks: []*state.HealthCheck{{CheckID: id + ":overall-check", ServiceID: id, Status: status}}}
	}
	reqs := []*state.RegisterRequest{
		imp("b1", "billing-1", "10.0.0.5", state.HealthPassing),
		imp("b2", "billing-2", "10.0.0.5", state.HealthPassing),
		imp("b3", "billing-3", "10.0.0.6", state.HealthCritical),
		{Node: &state.Node{Node: "n1", Address: "127.0.0.1"}, Service: &state.Service{ID: "web", Service: "web", Port: 8080}},
	}
	if err := st.RegisterBatch(1, reqs); err != nil {
		t.Fatal(err)
	}
	if err := st.VirtualIPsUpdate(2, &state.VirtualIPsRequest{Assign: []*state.VirtualIP{
		{Peer: "b", Service: "billing", IPv4: "240.0.0.1", IPv6: "fd70:6565:7264::1"}}}); err != nil {
		t.Fatal(err)
	}
	return st
}

func startServer(t *testing.T, st *state.Store, mod func(*Config)) *Server {
	t.Helper()
	cfg := Config{Addr: "127.0.0.1:0", View: func() *state.Store { return st }, Registerer: prometheus.NewRegistry()}
	if mod != nil {
		mod(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close(context.Background()) })
	return s
}

func query(t *testing.T, addr, network, name string, qtype uint16) *dns.Msg {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	c := &dns.Client{Net: network, Timeout: 5 * time.Second}
	resp, _, err := c.Exchange(m, addr)
	if err != nil {
		t.Fatalf("query %s %s over %s: %v", name, dns.TypeToString[qtype], network, err)
	}
	return resp
}

func answers(resp *dns.Msg) []string {
	var out []string
	for _, rr := range resp.Answer {
		switch r := rr.(type) {
		case *dns.A:
			out = append(out, r.A.String())
		case *dns.AAAA:
			out = append(out, r.AAAA.String())
		case *dns.SRV:
			out = append(out, r.Target+":"+strconv.Itoa(int(r.Port)))
		case *dns.TXT:
			out = append(out, strings.Join(r.Txt, ""))
		}
		if rr.Header().Ttl != 0 && strings.HasSuffix(strings.ToLower(rr.Header().Name), "peerd.") {
			out = append(out, "nonzero-ttl")
		}
	}
	return out
}

func TestAnswersFromCatalog(t *testing.T) {
	s := startServer(t, testStore(t), nil)
	for _, tc := range []struct {
		name  string
		qtype uint16
		net   string
		rcode int
		want  []string
	}{
		{"billing.virtual.b.peerd.", dns.TypeA, "udp", dns.RcodeSuccess, []string{"240.0.0.1"}},
		{"BiLLing.Virtual.B.PEERD.", dns.TypeAAAA, "tcp", dns.RcodeSuccess, []string{"fd70:6565:7264::1"}},
		{"billing.service.b.peer.peerd.", dns.TypeA, "udp", dns.RcodeSuccess, []string{"10.0.0.5"}},
		{"billing.service.b.peer.peerd.", dns.TypeSRV, "udp", dns.RcodeSuccess, []string{"0a000005.addr.peerd.:8443", "0a000005.addr.peerd.:8443"}},
		{"0a000005.addr.peerd.", dns.TypeA, "udp", dns.RcodeSuccess, []string{"10.0.0.5"}},
		{"web.service.peerd.", dns.TypeA, "udp", dns.RcodeSuccess, []string{"127.0.0.1"}},
		{"web.service.peerd.", dns.TypeSRV, "tcp", dns.RcodeSuccess, []string{"7f000001.addr.peerd.:8080"}},
		{"web.service.peerd.", dns.TypeAAAA, "udp", dns.RcodeSuccess, nil},
		{"billing.virtual.b.peerd.", dns.TypeTXT, "udp", dns.RcodeSuccess, nil},
		{"nope.virtual.b.peerd.", dns.TypeA, "udp", dns.RcodeNameError, nil},
		{"billing.service.c.peer.peerd.", dns.TypeA, "udp", dns.RcodeNameError, nil},
		{"n1.node.peerd.", dns.TypeA, "udp", dns.RcodeSuccess, []string{"127.0.0.1"}},
		{"N1.Node.Peerd.", dns.TypeAAAA, "tcp", dns.RcodeSuccess, nil},
		{"b1.node.peerd.", dns.TypeA, "udp", dns.RcodeNameError, nil}, // imported nodes are not this cluster's
		{"nope.node.peerd.", dns.TypeA, "udp", dns.RcodeNameError, nil},
		{"a.b.c.d.e.peerd.", dns.TypeA, "udp", dns.RcodeNameError, nil},
		{"peerd.", dns.TypeA, "udp", dns.RcodeSuccess, nil},
	} {
		resp := query(t, s.Addr(), tc.net, tc.name, tc.qtype)
		got := answers(resp)
		if resp.Rcode != tc.rcode || strings.Join(got, ",") != strings.Join(tc.want, ",") {
			t.Errorf("%s %s: got %s %v, want %s %v", tc.name, dns.TypeToString[tc.qtype],
				dns.RcodeToString[resp.Rcode], got, dns.RcodeToString[tc.rcode], tc.want)
		}
		if len(resp.Answer) == 0 && (len(resp.Ns) != 1 || resp.Ns[0].Header().Rrtype != dns.TypeSOA) {
			t.Errorf("%s: no answer and no SOA: %v", tc.name, resp.Ns)
		}
		if !resp.Authoritative {
			t.Errorf("%s: not authoritative", tc.name)
		}
	}
}

// TestSRVCarriesTargetAddresses checks the additional section of SRV
// answers: each target's address once, so a client needs no second query.
func TestSRVCarriesTargetAddresses(t *testing.T) {
	s := startServer(t, testStore(t), nil)
	for _, tc := range []struct {
		name string
		want []string
	}{
		{"billing.service.b.peer.peerd.", []string{"0a000005.addr.peerd. A 10.0.0.5"}},
		{"web.service.peerd.", []string{"7f000001.addr.peerd. A 127.0.0.1"}},
	} {
		resp := query(t, s.Addr(), "udp", tc.name, dns.TypeSRV)
		var got []string
		named := map[string]bool{}
		for _, rr := range resp.Extra {
			named[rr.Header().Name] = true
			switch r := rr.(type) {
			case *dns.A:
				got = append(got, r.Hdr.Name+" A "+r.A.String())
			case *dns.AAAA:
				got = append(got, r.Hdr.Name+" AAAA "+r.AAAA.String())
			}
		}
		if strings.Join(got, ",") != strings.Join(tc.want, ",") {
			t.Errorf("%s SRV: got additional %v, want %v", tc.name, got, tc.want)
		}
		for _, rr := range resp.Answer {
			srv, ok := rr.(*dns.SRV)
			if !ok {
				continue
			}
			if !named[srv.Target] {
				t.Errorf("%s SRV: target %s has no additional record", tc.name, srv.Target)
			}
		}
	}
	// Asked for A, the answer has no additional section.
	if resp := query(t, s.Addr(), "udp", "web.service.peerd.", dns.TypeA); len(resp.Extra) != 0 {
		t.Errorf("web.service.peerd. A: got additional %v, want none", resp.Extra)
	}
}

// upstream is a fake recursor: example.com. A answers 192.0.2.1; big.example.
// TXT answers more than fits a 512-byte UDP message.
type upstream struct {
	addr    string
	tcpHits atomic.Int64
}

func startUpstream(t *testing.T) *upstream {
	t.Helper()
	u := &upstream{}
	h := dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		if w.RemoteAddr().Network() == "tcp" {
			u.tcpHits.Add(1)
		}
		q := r.Question[0]
		switch {
		case q.Name == "example.com." && q.Qtype == dns.TypeA:
			rr, _ := dns.NewRR("example.com. 60 IN A 192.0.2.1")
			m.Answer = append(m.Answer, rr)
		case q.Name == "big.example." && q.Qtype == dns.TypeTXT:
			for i := range 20 {
				m.Answer = append(m.Answer, &dns.TXT{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: 0},
					Txt: []string{strings.Repeat(string(rune('a'+i)), 100)}})
			}
		default:
			m.Rcode = dns.RcodeNameError
		}
		if w.RemoteAddr().Network() == "udp" {
			size := dns.MinMsgSize
			if o := r.IsEdns0(); o != nil {
				size = int(o.UDPSize())
			}
			m.Truncate(size) // as a real recursor does
		}
		_ = w.WriteMsg(m)
	})
	pc, ln, err := listenBoth(sockets.Direct{}, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u.addr = ln.Addr().String()
	for _, srv := range []*dns.Server{{PacketConn: pc, Handler: h}, {Listener: ln, Handler: h}} {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		go func() { _ = srv.ActivateAndServe() }()
		<-started
		t.Cleanup(func() { _ = srv.Shutdown() })
	}
	return u
}

func TestForwardsOtherNames(t *testing.T) {
	u := startUpstream(t)
	dead, err := net.ListenPacket("udp", "127.0.0.1:0") // never answers
	if err != nil {
		t.Fatal(err)
	}
	defer dead.Close()
	s := startServer(t, testStore(t), func(c *Config) {
		c.Recursors = []string{dead.LocalAddr().String(), u.addr}
		c.RecursorTimeout = 300 * time.Millisecond
	})
	resp := query(t, s.Addr(), "udp", "example.com.", dns.TypeA)
	if got := answers(resp); resp.Rcode != dns.RcodeSuccess || len(got) != 1 || got[0] != "192.0.2.1" {
		t.Fatalf("got %s %v, want 192.0.2.1 from the second recursor", dns.RcodeToString[resp.Rcode], got)
	}
	if resp := query(t, s.Addr(), "udp", "missing.example.", dns.TypeA); resp.Rcode != dns.RcodeNameError {
		t.Fatalf("got %s, want the recursor's NXDOMAIN", dns.RcodeToString[resp.Rcode])
	}

	// The answer does not fit UDP: peerd retries over TCP, and hands the
	// whole answer to a TCP client.
	resp = query(t, s.Addr(), "tcp", "big.example.", dns.TypeTXT)
	if len(resp.Answer) != 20 || resp.Truncated {
		t.Fatalf("got %d records (truncated %t), want 20", len(resp.Answer), resp.Truncated)
	}
	if u.tcpHits.Load() == 0 {
		t.Fatal("the recursor was never asked over TCP")
	}
	// A UDP client gets it truncated, and knows to retry.
	resp = query(t, s.Addr(), "udp", "big.example.", dns.TypeTXT)
	if !resp.Truncated {
		t.Fatalf("a UDP answer of %d records is not truncated", len(resp.Answer))
	}
}

func TestServfailWithoutRecursors(t *testing.T) {
	s := startServer(t, testStore(t), nil)
	if resp := query(t, s.Addr(), "udp", "example.com.", dns.TypeA); resp.Rcode != dns.RcodeServerFailure {
		t.Fatalf("got %s, want SERVFAIL", dns.RcodeToString[resp.Rcode])
	}
	dead, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer dead.Close()
	s2 := startServer(t, testStore(t), func(c *Config) {
		c.Recursors, c.RecursorTimeout = []string{dead.LocalAddr().String()}, 200*time.Millisecond
	})
	start := time.Now()
	if resp := query(t, s2.Addr(), "udp", "example.com.", dns.TypeA); resp.Rcode != dns.RcodeServerFailure {
		t.Fatalf("got %s, want SERVFAIL", dns.RcodeToString[resp.Rcode])
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("SERVFAIL took %s, want about the recursor timeout", d)
	}
}

func TestConfigValidation(t *testing.T) {
	for _, d := range []string{".", "a..b", "bad domain", ""} {
		if _, err := ParseDomain(d); err == nil && d != "" {
			t.Errorf("domain %q accepted", d)
		}
	}
	if d, err := ParseDomain("Consul"); err != nil || d != "consul." {
		t.Errorf("got %q, %v", d, err)
	}
	for in, want := range map[string]string{"1.1.1.1": "1.1.1.1:53", "127.0.0.1:5353": "127.0.0.1:5353", "::1": "[::1]:53", "[::1]:54": "[::1]:54"} {
		if got, err := ParseRecursor(in); err != nil || got != want {
			t.Errorf("recursor %q: got %q, %v, want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"dns.google", "1.1.1.1:0", "1.1.1.1:x", ""} {
		if _, err := ParseRecursor(bad); err == nil {
			t.Errorf("recursor %q accepted", bad)
		}
	}
	if _, err := New(Config{Addr: "127.0.0.1:0"}); err == nil {
		t.Error("a server without a view was accepted")
	}
}

func TestDropsResponsesAndRefusesOddQueries(t *testing.T) {
	s, err := New(Config{View: func() *state.Store { return testStore(t) }})
	if err != nil {
		t.Fatal(err)
	}
	m := new(dns.Msg)
	m.SetQuestion("billing.virtual.b.peerd.", dns.TypeA)
	m.Response = true
	if resp := s.Handle(context.Background(), m, false); resp != nil {
		t.Fatalf("answered a response: %v", resp)
	}
	m = new(dns.Msg)
	m.Id = 7
	if resp := s.Handle(context.Background(), m, false); resp == nil || resp.Rcode != dns.RcodeFormatError || resp.Id != 7 {
		t.Fatalf("no question: got %v, want FORMERR", resp)
	}
	m.SetQuestion("billing.virtual.b.peerd.", dns.TypeA)
	m.Opcode = dns.OpcodeUpdate
	if resp := s.Handle(context.Background(), m, false); resp == nil || resp.Rcode != dns.RcodeNotImplemented {
		t.Fatalf("update: got %v, want NOTIMP", resp)
	}
}
