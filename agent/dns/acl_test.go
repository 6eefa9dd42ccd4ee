package dns

import (
	"errors"
	"sync/atomic"
	"testing"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/peerd/peerd/catalog/state"
	"github.com/peerd/peerd/internal/acl"
)

// enforcer is a DNS token with rules, under default deny.
func enforcer(t *testing.T, rules string) acl.Enforcer {
	t.Helper()
	p, err := acl.ParseRules(rules)
	if err != nil {
		t.Fatal(err)
	}
	return acl.Enforcer{Authorizer: acl.Chain(acl.NewPolicyAuthorizer(p), acl.DenyAll()), AccessorID: "dns"}
}

// DNS hides what its token may not read: a service without service:read,
// a node without node:read, an instance on such a node are not found, as
// if they did not exist; the token is resolved again on every query.
func TestDNSHidesWhatTheTokenMayNotRead(t *testing.T) {
	st := testStore(t)
	if err := st.RegisterBatch(3, []*state.RegisterRequest{
		{Node: &state.Node{Node: "n2", Address: "127.0.0.2"}, Service: &state.Service{ID: "web-2", Service: "web", Port: 8080}},
	}); err != nil {
		t.Fatal(err)
	}
	var tok atomic.Pointer[acl.Enforcer]
	set := func(rules string) { e := enforcer(t, rules); tok.Store(&e) }
	set(`service "web" { policy = "read" }` + "\n" + `node "n1" { policy = "read" }`)
	reg := prometheus.NewRegistry()
	s := startServer(t, st, func(c *Config) {
		c.Authorizer = func() (acl.Enforcer, error) { return *tok.Load(), nil }
		c.Registerer = reg
	})
	tests := []struct {
		name  string
		qtype uint16
		rcode int
		want  []string
	}{
		{"web.service.peerd.", dns.TypeA, dns.RcodeSuccess, []string{"127.0.0.1"}}, // n2's instance dropped
		{"n1.node.peerd.", dns.TypeA, dns.RcodeSuccess, []string{"127.0.0.1"}},
		{"n2.node.peerd.", dns.TypeA, dns.RcodeNameError, nil},
		{"billing.virtual.b.peerd.", dns.TypeA, dns.RcodeNameError, nil},
		{"billing.service.b.peer.peerd.", dns.TypeA, dns.RcodeNameError, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := query(t, s.Addr(), "udp", tt.name, tt.qtype)
			if got := answers(resp); resp.Rcode != tt.rcode || !equal(got, tt.want) {
				t.Errorf("got %s %v, want %s %v", dns.RcodeToString[resp.Rcode], got, dns.RcodeToString[tt.rcode], tt.want)
			}
		})
	}
	if got := counter(t, reg, "peerd_dns_acl_hidden_total", "service"); got < 2 {
		t.Errorf("peerd_dns_acl_hidden_total{kind=service} = %v, want >= 2", got)
	}
	// The token changes (PUT /v1/agent/token/dns): the next query uses it.
	set(`service_prefix "" { policy = "read" }` + "\n" + `node_prefix "" { policy = "read" }`)
	if resp := query(t, s.Addr(), "udp", "billing.virtual.b.peerd.", dns.TypeA); resp.Rcode != dns.RcodeSuccess || len(resp.Answer) != 1 {
		t.Errorf("after the token changed: got %s %v", dns.RcodeToString[resp.Rcode], answers(resp))
	}
	if resp := query(t, s.Addr(), "udp", "web.service.peerd.", dns.TypeA); len(resp.Answer) != 2 {
		t.Errorf("both web instances after the token changed: got %v", answers(resp))
	}
}

// A DNS token that cannot be resolved answers SERVFAIL, not everything.
func TestDNSTokenUnresolvable(t *testing.T) {
	s := startServer(t, testStore(t), func(c *Config) {
		c.Authorizer = func() (acl.Enforcer, error) { return acl.Enforcer{}, errors.New("ACL not found") }
	})
	if resp := query(t, s.Addr(), "udp", "web.service.peerd.", dns.TypeA); resp.Rcode != dns.RcodeServerFailure || len(resp.Answer) != 0 {
		t.Errorf("got %s %v, want SERVFAIL and no answer", dns.RcodeToString[resp.Rcode], answers(resp))
	}
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// counter reads the value of name{kind} from reg.
func counter(t *testing.T, reg *prometheus.Registry, name, kind string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "kind" && l.GetValue() == kind {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}
