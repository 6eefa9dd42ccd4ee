package identity

import (
	"errors"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

func TestAgentIDRoundTrip(t *testing.T) {
	td := spiffeid.RequireTrustDomainFromString("0b0e9ba4-3c3a-4f7e-9b59-5d7b3e1d2c11.peerd")
	for _, a := range []Agent{
		{TrustDomain: td, Role: RoleServer, Datacenter: "dc1", Node: "s1"},
		{TrustDomain: td, Role: RoleClient, Datacenter: "eu_west-2", Node: "ip-10-0-0-1.ec2.internal"},
	} {
		id, err := a.ID()
		if err != nil {
			t.Fatalf("%+v: %v", a, err)
		}
		got, err := ParseAgentID(id)
		if err != nil || got != a {
			t.Fatalf("round trip of %s: %+v, %v", id, got, err)
		}
	}
}

func TestAgentIDRefused(t *testing.T) {
	td := spiffeid.RequireTrustDomainFromString("example.peerd")
	for _, a := range []Agent{
		{Role: RoleServer, Datacenter: "dc1", Node: "n"},
		{TrustDomain: td, Role: "voter", Datacenter: "dc1", Node: "n"},
		{TrustDomain: td, Role: RoleClient, Datacenter: "", Node: "n"},
		{TrustDomain: td, Role: RoleClient, Datacenter: "dc1", Node: "a/b"},
	} {
		if _, err := a.ID(); !errors.Is(err, ErrInvalidName) {
			t.Errorf("%+v: got %v, want ErrInvalidName", a, err)
		}
	}
	for _, s := range []string{
		"spiffe://example.peerd/agent/server/dc/dc1",
		"spiffe://example.peerd/agent/admin/dc/dc1/node/n",
		"spiffe://example.peerd/gateway/mesh/dc/dc1",
		"spiffe://example.peerd/ns/default/dc/dc1/svc/web",
		"spiffe://example.peerd/agent/server/dc/dc1/node/n/extra",
	} {
		if _, err := ParseAgentID(spiffeid.RequireFromString(s)); !errors.Is(err, ErrNotAgentID) {
			t.Errorf("%s: got %v, want ErrNotAgentID", s, err)
		}
	}
}
