package identity

import (
	"errors"
	"strings"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

const testClusterID = "5e3a4f0c-8b1d-4c2e-9f7a-0123456789ab"

func testTD(t testing.TB) spiffeid.TrustDomain {
	t.Helper()
	td, err := TrustDomain(testClusterID)
	if err != nil {
		t.Fatalf("TrustDomain(%q): %v", testClusterID, err)
	}
	return td
}

func TestTrustDomain(t *testing.T) {
	tests := []struct {
		name, in, want string // want "" = error
	}{
		{"lowercase", "5e3a4f0c-8b1d-4c2e-9f7a-0123456789ab", "5e3a4f0c-8b1d-4c2e-9f7a-0123456789ab.peerd"},
		{"uppercase is lowercased", "5E3A4F0C-8B1D-4C2E-9F7A-0123456789AB", "5e3a4f0c-8b1d-4c2e-9f7a-0123456789ab.peerd"},
		{"empty", "", ""},
		{"not hex", "5e3a4f0c-8b1d-4c2e-9f7a-0123456789ag", ""},
		{"no hyphens", "5e3a4f0c8b1d4c2e9f7a0123456789ab", ""},
		{"braces", "{5e3a4f0c-8b1d-4c2e-9f7a-0123456789ab}", ""},
		{"too long", "5e3a4f0c-8b1d-4c2e-9f7a-0123456789abc", ""},
		{"hyphen misplaced", "5e3a4f0c8-b1d-4c2e-9f7a-0123456789ab", ""},
		{"a name", "my-cluster", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			td, err := TrustDomain(tt.in)
			if tt.want == "" {
				if !errors.Is(err, ErrInvalidName) {
					t.Fatalf("TrustDomain(%q) = %v, %v; want error wrapping ErrInvalidName", tt.in, td, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("TrustDomain(%q): %v", tt.in, err)
			}
			if got := td.Name(); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestServiceID(t *testing.T) {
	td := testTD(t)
	tests := []struct {
		name             string
		td               spiffeid.TrustDomain
		partition        string
		ns, dc, svc      string
		want, wantErrSub string
	}{
		{name: "plain", td: td, ns: "default", dc: "dc1", svc: "web",
			want: "spiffe://" + td.Name() + "/ns/default/dc/dc1/svc/web"},
		{name: "partition", td: td, partition: "p1", ns: "ns1", dc: "dc-2", svc: "api.v2",
			want: "spiffe://" + td.Name() + "/ap/p1/ns/ns1/dc/dc-2/svc/api.v2"},
		{name: "mixed case kept", td: td, ns: "Default", dc: "DC1", svc: "Web_1",
			want: "spiffe://" + td.Name() + "/ns/Default/dc/DC1/svc/Web_1"},
		{name: "zero trust domain", ns: "default", dc: "dc1", svc: "web", wantErrSub: "trust domain"},
		{name: "empty namespace", td: td, dc: "dc1", svc: "web", wantErrSub: "namespace"},
		{name: "empty datacenter", td: td, ns: "default", svc: "web", wantErrSub: "datacenter"},
		{name: "empty service", td: td, ns: "default", dc: "dc1", wantErrSub: "service"},
		{name: "slash in service", td: td, ns: "default", dc: "dc1", svc: "a/b", wantErrSub: "service"},
		{name: "dot-dot service", td: td, ns: "default", dc: "dc1", svc: "..", wantErrSub: "service"},
		{name: "space in datacenter", td: td, ns: "default", dc: "dc 1", svc: "web", wantErrSub: "datacenter"},
		{name: "bad partition", td: td, partition: "p%1", ns: "default", dc: "dc1", svc: "web", wantErrSub: "partition"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			si := ServiceIdentity{TrustDomain: tt.td, Partition: tt.partition, Namespace: tt.ns, Datacenter: tt.dc, Service: tt.svc}
			id, err := si.ID()
			if tt.wantErrSub != "" {
				if !errors.Is(err, ErrInvalidName) || !strings.Contains(err.Error(), tt.wantErrSub) {
					t.Fatalf("got %v, %v; want ErrInvalidName mentioning %q", id, err, tt.wantErrSub)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := id.String(); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
			back, err := ParseServiceID(id)
			if err != nil {
				t.Fatalf("ParseServiceID(%q): %v", id, err)
			}
			if back != si {
				t.Errorf("round trip: got %+v, want %+v", back, si)
			}
			if tt.partition == "" {
				id2, err := ServiceID(tt.td, tt.ns, tt.dc, tt.svc)
				if err != nil || id2 != id {
					t.Errorf("ServiceID: got %v, %v; want %v", id2, err, id)
				}
			}
		})
	}
}

func TestParseServiceID(t *testing.T) {
	tests := []struct {
		in   string
		want ServiceIdentity // zero TrustDomain = want error
	}{
		{"spiffe://td.peerd/ns/default/dc/dc1/svc/web",
			ServiceIdentity{TrustDomain: spiffeid.RequireTrustDomainFromString("td.peerd"), Namespace: "default", Datacenter: "dc1", Service: "web"}},
		{"spiffe://abc.consul/ap/part/ns/ns1/dc/east/svc/db",
			ServiceIdentity{TrustDomain: spiffeid.RequireTrustDomainFromString("abc.consul"), Partition: "part", Namespace: "ns1", Datacenter: "east", Service: "db"}},
		{"spiffe://abc.consul/ap/default/ns/default/dc/east/svc/db",
			ServiceIdentity{TrustDomain: spiffeid.RequireTrustDomainFromString("abc.consul"), Partition: "default", Namespace: "default", Datacenter: "east", Service: "db"}},
		{"spiffe://td.peerd", ServiceIdentity{}},
		{"spiffe://td.peerd/gateway/mesh/dc/dc1", ServiceIdentity{}},
		{"spiffe://td.peerd/agent/server/dc/dc1", ServiceIdentity{}},
		{"spiffe://td.peerd/ns/default/dc/dc1/svc", ServiceIdentity{}},
		{"spiffe://td.peerd/ns/default/dc/dc1/svc/web/extra", ServiceIdentity{}},
		{"spiffe://td.peerd/ns/default/dc/dc1/svc/web/x/y", ServiceIdentity{}},
		{"spiffe://td.peerd/ns/default/dx/dc1/svc/web", ServiceIdentity{}},
		{"spiffe://td.peerd/NS/default/dc/dc1/svc/web", ServiceIdentity{}},
		{"spiffe://td.peerd/ap/p/ns/default/dc/dc1/service/web", ServiceIdentity{}},
		{"spiffe://td.peerd/xp/p/ns/default/dc/dc1/svc/web", ServiceIdentity{}},
		{"spiffe://td.peerd/svc/web/dc/dc1/ns/default", ServiceIdentity{}},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			id := spiffeid.RequireFromString(tt.in)
			got, err := ParseServiceID(id)
			if tt.want.TrustDomain.IsZero() {
				if !errors.Is(err, ErrNotServiceID) {
					t.Fatalf("got %+v, %v; want ErrNotServiceID", got, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
			back, err := got.ID()
			if err != nil || back.String() != tt.in {
				t.Errorf("ID(): got %q, %v; want %q", back, err, tt.in)
			}
		})
	}
	if _, err := ParseServiceID(spiffeid.ID{}); !errors.Is(err, ErrNotServiceID) {
		t.Errorf("zero ID: got %v, want ErrNotServiceID", err)
	}
}

func TestGatewayID(t *testing.T) {
	td := testTD(t)
	id, err := GatewayID(td, "dc1")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := id.String(), "spiffe://"+td.Name()+"/gateway/mesh/dc/dc1"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if _, err := ParseServiceID(id); !errors.Is(err, ErrNotServiceID) {
		t.Errorf("ParseServiceID(gateway): got %v, want ErrNotServiceID", err)
	}
	if dc, err := ParseGatewayID(id); err != nil || dc != "dc1" {
		t.Errorf("ParseGatewayID(%s) = %q, %v; want dc1", id, dc, err)
	}
	web, _ := ServiceID(td, "default", "dc1", "web")
	for _, bad := range []spiffeid.ID{{}, web, td.ID(), spiffeid.RequireFromSegments(td, "gateway", "mesh", "dc"),
		spiffeid.RequireFromSegments(td, "gateway", "terminating", "dc", "dc1"), spiffeid.RequireFromSegments(td, "gateway", "mesh", "dc", "dc1", "x")} {
		if dc, err := ParseGatewayID(bad); !errors.Is(err, ErrNotGatewayID) {
			t.Errorf("ParseGatewayID(%q) = %q, %v; want ErrNotGatewayID", bad, dc, err)
		}
	}
	for _, tt := range []struct {
		name string
		td   spiffeid.TrustDomain
		dc   string
	}{
		{"zero trust domain", spiffeid.TrustDomain{}, "dc1"},
		{"empty datacenter", td, ""},
		{"slash", td, "dc/1"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if id, err := GatewayID(tt.td, tt.dc); !errors.Is(err, ErrInvalidName) {
				t.Errorf("got %v, %v; want ErrInvalidName", id, err)
			}
		})
	}
}

func TestTLSNames(t *testing.T) {
	td := testTD(t)
	tests := []struct {
		name, got, want string
	}{
		{"server name", ServerName("dc1", td), "server.dc1.peering." + td.Name()},
		{"peered SNI", PeeredSNI("web", "ns1", "part1", "west", td), "web.ns1.part1.west.external." + td.Name()},
		{"peered SNI defaults", PeeredSNI("web", "", "", "west", td), "web.default.default.west.external." + td.Name()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.got != tt.want {
				t.Errorf("got %q, want %q", tt.got, tt.want)
			}
			if err := ValidateDNSName(tt.got); err != nil {
				t.Errorf("ValidateDNSName(%q): %v", tt.got, err)
			}
		})
	}
}

func TestValidateDNSName(t *testing.T) {
	tests := []struct {
		in string
		ok bool
	}{
		{"server.dc1.peering.x.peerd", true},
		{"Web_1.default.default.west.external.x.peerd", true},
		{"a", true},
		{strings.Repeat("a", 63) + ".b", true},
		{"", false},
		{"a..b", false},
		{".a", false},
		{"a.", false},
		{"-a.b", false},
		{"a-.b", false},
		{"*.b", false},
		{"a b", false},
		{"a/b", false},
		{strings.Repeat("a", 64) + ".b", false},
		{strings.Repeat("abcdefg.", 32) + "h", false}, // 257 characters
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			err := ValidateDNSName(tt.in)
			if tt.ok && err != nil {
				t.Errorf("got %v, want nil", err)
			}
			if !tt.ok && !errors.Is(err, ErrInvalidName) {
				t.Errorf("got %v, want ErrInvalidName", err)
			}
		})
	}
}
