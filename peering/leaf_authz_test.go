package peering

import (
	"errors"
	"testing"

	"github.com/peerd/peerd/catalog"
	"github.com/peerd/peerd/catalog/state"
	"github.com/peerd/peerd/internal/ca"
	"github.com/peerd/peerd/internal/identity"
	"github.com/peerd/peerd/internal/nodetls"
)

// TestLeafAuthorisation: a client node gets leaves only for what it runs.
func TestLeafAuthorisation(t *testing.T) {
	ctx := testContext(t)
	var refusals []string
	s := newTestCluster(t, "s", "dc1", func(c *Config) {
		c.RequireNodeIdentity = true
		c.Refused = func(l, r string) { refusals = append(refusals, l+"/"+r) }
	})
	td, err := s.peering.trustDomain()
	if err != nil {
		t.Fatal(err)
	}
	// c1 runs web and a gateway; c2 runs nothing and no gateway; api runs on s.
	register(t, s, "c1", "127.0.0.2", "web", "web-1", 8080, "passing")
	register(t, s, "s", "127.0.0.1", "api", "api-1", 9090, "passing")
	apply(t, s, &catalog.Command{Type: catalog.CmdRegister, Register: &state.RegisterRequest{
		Node: &state.Node{ID: "9d7f4d0e-0000-4000-8000-000000000002", Node: "c2", Address: "127.0.0.3"},
	}})
	key, _, _ := identity.NewKey()
	svc := func(name string) LeafRequest {
		id, _ := identity.ServiceID(td, "default", "dc1", name)
		return LeafRequest{PublicKey: key.Public(), ID: id, Server: true, Client: true}
	}
	gw, _ := identity.GatewayID(td, "dc1")
	as := func(node, role string) identity.Agent {
		return identity.Agent{TrustDomain: td, Role: role, Datacenter: "dc1", Node: node}
	}
	for _, tc := range []struct {
		name       string
		peer       *identity.Agent
		req        LeafRequest
		ok, client bool
	}{
		{"a client node for its own service", ptr(as("c1", identity.RoleClient)), svc("web"), true, true},
		{"a gateway node for a service elsewhere: server use only", ptr(as("c1", identity.RoleClient)), svc("api"), true, false},
		{"a gateway node for the hop identity", ptr(as("c1", identity.RoleClient)), LeafRequest{PublicKey: key.Public(), ID: gw, Server: true, Client: true}, true, true},
		{"a node without a gateway for a service elsewhere", ptr(as("c2", identity.RoleClient)), svc("web"), false, false},
		{"a node without a gateway for the hop identity", ptr(as("c2", identity.RoleClient)), LeafRequest{PublicKey: key.Public(), ID: gw, Client: true}, false, false},
		{"a gateway node for a service nobody runs", ptr(as("c1", identity.RoleClient)), svc("ghost"), false, false},
		{"a server for anything", ptr(as("s", identity.RoleServer)), svc("ghost"), true, true},
		{"no node identity", nil, svc("web"), false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := ctx
			if tc.peer != nil {
				c = nodetls.WithPeer(ctx, *tc.peer)
			}
			req := tc.req
			n := len(refusals)
			err := s.peering.authorizeLeaf(c, &req)
			if tc.ok != (err == nil) {
				t.Fatalf("authorised: %v, want %v", err, tc.ok)
			}
			if !tc.ok && (!errors.Is(err, ca.ErrRefused) || len(refusals) != n+1) {
				t.Fatalf("refusal not wrapped or not counted: %v (%v)", err, refusals)
			}
			if tc.ok && req.Client != tc.client {
				t.Fatalf("client use %v, want %v", req.Client, tc.client)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }
