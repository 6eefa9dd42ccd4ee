package ca

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/peerd/peerd/internal/identity"
)

// TestSignRefuses asks the CA for each identity an attacker on the
// internal port would want; each must be refused with ErrRefused and
// nothing signed.
func TestSignRefuses(t *testing.T) {
	c, _ := bootstrapped(t)
	td, _ := c.TrustDomain()
	base := leafRequest(t, td) // web in dc1
	other := spiffeid.RequireTrustDomainFromString("other.peerd")
	id := func(td spiffeid.TrustDomain, segs ...string) spiffeid.ID {
		return spiffeid.RequireFromSegments(td, segs...)
	}
	gw := id(td, "gateway", "mesh", "dc", "dc1")
	many := make([]string, maxDNSNames+1)
	for i := range many {
		many[i] = identity.PeeredSNI("web", "default", "default", "p"+strings.Repeat("x", i), td)
	}
	for _, tc := range []struct {
		name string
		mod  func(*LeafRequest)
	}{
		{"no SPIFFE ID (the peering server's DNS name alone)", func(r *LeafRequest) {
			r.ID, r.DNSNames = spiffeid.ID{}, []string{identity.ServerName("dc1", td)}
		}},
		{"another trust domain's service", func(r *LeafRequest) { r.ID = id(other, "ns", "default", "dc", "dc1", "svc", "web") }},
		{"another trust domain's gateway", func(r *LeafRequest) { r.ID = id(other, "gateway", "mesh", "dc", "dc1") }},
		{"the trust domain itself", func(r *LeafRequest) { r.ID = td.ID() }},
		{"a server's node identity", func(r *LeafRequest) { r.ID = id(td, "agent", "server", "dc", "dc1", "node", "n1") }},
		{"the peering server as a path", func(r *LeafRequest) { r.ID = id(td, "server.dc1.peering."+td.Name()) }},
		{"a terminating gateway", func(r *LeafRequest) { r.ID = id(td, "gateway", "terminating", "dc", "dc1") }},
		{"a service ID with a trailing segment", func(r *LeafRequest) { r.ID = id(td, "ns", "default", "dc", "dc1", "svc", "web", "x") }},
		{"a wildcard DNS SAN", func(r *LeafRequest) { r.DNSNames = []string{"*." + td.Name()} }},
		{"a wildcard SNI", func(r *LeafRequest) {
			r.DNSNames = []string{"*.default.default.p.external." + td.Name()}
		}},
		{"a public DNS name", func(r *LeafRequest) { r.DNSNames = []string{"www.example.com"} }},
		{"the peering server name on a service", func(r *LeafRequest) { r.DNSNames = []string{identity.ServerName("dc1", td)} }},
		{"another service's SNI", func(r *LeafRequest) {
			r.DNSNames = []string{identity.InternalSNI("db", "default", "dc1", td)}
		}},
		{"another datacenter's SNI", func(r *LeafRequest) {
			r.DNSNames = []string{identity.InternalSNI("web", "default", "dc2", td)}
		}},
		{"another trust domain's SNI", func(r *LeafRequest) {
			r.DNSNames = []string{identity.PeeredSNI("web", "default", "default", "p", other)}
		}},
		{"a DNS SAN on a gateway leaf", func(r *LeafRequest) {
			r.ID, r.DNSNames = gw, []string{identity.InternalSNI("web", "default", "dc1", td)}
		}},
		{"too many DNS SANs", func(r *LeafRequest) { r.DNSNames = many }},
		{"a negative TTL", func(r *LeafRequest) { r.TTL = -time.Second }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := base
			tc.mod(&req)
			leaf, err := c.Sign(context.Background(), req)
			if !errors.Is(err, ErrRefused) {
				t.Fatalf("got %q, %v; want ErrRefused", leaf.ChainPEM, err)
			}
			if leaf.ChainPEM != "" {
				t.Fatalf("a refused request returned a chain")
			}
		})
	}
}

// TestSignAccepts is what the terminator, the gateway and a client node
// ask for: each is signed, with the names asked.
func TestSignAccepts(t *testing.T) {
	c, st := bootstrapped(t)
	td, _ := c.TrustDomain()
	base := leafRequest(t, td)
	gw, _ := identity.GatewayID(td, "dc1")
	partitioned, _ := identity.ServiceIdentity{TrustDomain: td, Partition: "p1", Namespace: "default", Datacenter: "dc1", Service: "web"}.ID()
	for _, tc := range []struct {
		name string
		mod  func(*LeafRequest)
	}{
		{"a service (the terminator's leaves)", func(*LeafRequest) {}},
		{"the mesh gateway (node-to-node hops)", func(r *LeafRequest) { r.ID = gw }},
		{"a service of a partition", func(r *LeafRequest) { r.ID = partitioned }},
		{"a service with its SNIs", func(r *LeafRequest) {
			r.DNSNames = []string{identity.InternalSNI("web", "default", "dc1", td), identity.PeeredSNI("web", "default", "default", "p", td)}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := base
			tc.mod(&req)
			leaf, err := c.Sign(context.Background(), req)
			if err != nil {
				t.Fatal(err)
			}
			if id, err := verify(t, leaf.ChainPEM, st.roots[0].CertPEM); err != nil || id != req.ID {
				t.Fatalf("verify: %v, %v; want %v", id, err, req.ID)
			}
			cert, _ := identity.ParseCertsPEM(leaf.ChainPEM)
			if got := cert[0].DNSNames; strings.Join(got, ",") != strings.Join(req.DNSNames, ",") {
				t.Errorf("DNS SANs %v, want %v", got, req.DNSNames)
			}
		})
	}
}

// TestSignCapsTTL asks for leaves longer than the configured maximum: they
// get the maximum, as does a request without a TTL.
func TestSignCapsTTL(t *testing.T) {
	for _, tc := range []struct {
		name        string
		max, ask    time.Duration
		wantLifeMax time.Duration
	}{
		{"default cap, ten years asked", 0, 10 * 365 * 24 * time.Hour, identity.DefaultLeafTTL},
		{"default cap, none asked", 0, 0, identity.DefaultLeafTTL},
		{"configured cap, more asked", time.Hour, 72 * time.Hour, time.Hour},
		{"configured cap, none asked", time.Hour, 0, time.Hour},
		{"configured cap, less asked", time.Hour, 10 * time.Minute, 10 * time.Minute},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := &memStore{}
			c := newCA(t, Config{Store: st, MaxLeafTTL: tc.max})
			if err := c.Bootstrap(context.Background()); err != nil {
				t.Fatal(err)
			}
			td, _ := c.TrustDomain()
			req := leafRequest(t, td)
			req.TTL = tc.ask
			leaf, err := c.Sign(context.Background(), req)
			if err != nil {
				t.Fatal(err)
			}
			certs, _ := identity.ParseCertsPEM(leaf.ChainPEM)
			// NotBefore is backdated a minute; NotAfter is now + TTL.
			if got := certs[0].NotAfter.Sub(now); got != tc.wantLifeMax {
				t.Errorf("leaf lives %v from now, want %v", got, tc.wantLifeMax)
			}
		})
	}
	if _, err := New(Config{Store: &memStore{}, MaxLeafTTL: -time.Second}); err == nil {
		t.Error("a negative MaxLeafTTL was accepted")
	}
}

// FuzzCheckRequest feeds the request checks arbitrary IDs, DNS names and
// TTLs. Whatever passes must be of the trust domain and of a workload or
// gateway shape, carry only non-wildcard names under the trust domain,
// live at most the cap, and sign into a leaf that verifies.
func FuzzCheckRequest(f *testing.F) {
	c, st := bootstrapped(f)
	td, _ := c.TrustDomain()
	key, _, err := identity.NewKey()
	if err != nil {
		f.Fatal(err)
	}
	web := "spiffe://" + td.Name() + "/ns/default/dc/dc1/svc/web"
	f.Add(web, "web.default.dc1.internal."+td.Name(), int64(0))
	f.Add(web, "web.default.default.p.external."+td.Name(), int64(time.Hour))
	f.Add("spiffe://"+td.Name()+"/gateway/mesh/dc/dc1", "", int64(-1))
	f.Add("spiffe://other.peerd/ns/default/dc/dc1/svc/web", "*."+td.Name(), int64(1<<62))
	f.Add("spiffe://"+td.Name()+"/ap/x/ns/default/dc/dc1/svc/web", "web.default.x.p.external."+td.Name()+",x", int64(1))
	f.Fuzz(func(t *testing.T, rawID, dns string, ttl int64) {
		id, err := spiffeid.FromString(rawID)
		if err != nil {
			return
		}
		var names []string
		if dns != "" {
			names = strings.Split(dns, ",")
		}
		req := LeafRequest{PublicKey: key.Public(), ID: id, DNSNames: names, TTL: time.Duration(ttl), Server: true, Client: true}
		got, err := checkRequest(req, td, identity.DefaultLeafTTL)
		if err != nil {
			if !errors.Is(err, ErrRefused) {
				t.Fatalf("refusal %v does not wrap ErrRefused", err)
			}
			return
		}
		if !got.ID.MemberOf(td) {
			t.Fatalf("accepted %s of another trust domain", got.ID)
		}
		_, svcErr := identity.ParseServiceID(got.ID)
		_, gwErr := identity.ParseGatewayID(got.ID)
		if svcErr != nil && gwErr != nil {
			t.Fatalf("accepted %s, neither a service nor a gateway", got.ID)
		}
		if got.TTL <= 0 || got.TTL > identity.DefaultLeafTTL {
			t.Fatalf("accepted TTL %v (asked %v)", got.TTL, time.Duration(ttl))
		}
		for _, n := range got.DNSNames {
			if strings.Contains(n, "*") || !strings.HasSuffix(n, "."+td.Name()) {
				t.Fatalf("accepted DNS SAN %q", n)
			}
		}
		leaf, err := c.Sign(context.Background(), req)
		if err != nil {
			t.Fatalf("checked request does not sign: %v", err)
		}
		if vid, err := verify(t, leaf.ChainPEM, st.roots[0].CertPEM); err != nil || vid != got.ID {
			t.Fatalf("signed leaf does not verify: %v, %v", vid, err)
		}
	})
}
