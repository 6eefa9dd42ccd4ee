package peering

import (
	"context"
	"crypto/x509"
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/peerd/peerd/catalog"
	"github.com/peerd/peerd/internal/ca"
	"github.com/peerd/peerd/internal/identity"
	"github.com/peerd/peerd/peering/pbpeering"
)

// TestSignLeafOnTheInternalPort asks a server's internal gRPC port, as
// anyone on the network can, for the identities the issue lists: each is
// refused (PermissionDenied), and a ten-year leaf comes back capped at the
// configured leaf TTL. A client node forwarding the same request gets the
// refusal as ca.ErrRefused.
func TestSignLeafOnTheInternalPort(t *testing.T) {
	ctx := testContext(t)
	s := newTestCluster(t, "s", "dc1", func(c *Config) { c.LeafTTL = 2 * time.Hour })
	td, err := s.peering.trustDomain()
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(s.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	client := pbpeering.NewPeeringServiceClient(conn)
	key, _, _ := identity.NewKey()
	der, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		t.Fatal(err)
	}
	web := "spiffe://" + td.Name() + "/ns/default/dc/dc1/svc/web"
	for _, tc := range []struct {
		name string
		req  *pbpeering.SignLeafRequest
	}{
		{"the peering server's name", &pbpeering.SignLeafRequest{DnsNames: []string{identity.ServerName("dc1", td)}}},
		{"a server node identity", &pbpeering.SignLeafRequest{SpiffeId: "spiffe://" + td.Name() + "/agent/server/dc/dc1/node/s"}},
		{"another trust domain", &pbpeering.SignLeafRequest{SpiffeId: "spiffe://other.peerd/ns/default/dc/dc1/svc/web"}},
		{"a wildcard DNS SAN", &pbpeering.SignLeafRequest{SpiffeId: web, DnsNames: []string{"*." + td.Name()}}},
		{"a public DNS name", &pbpeering.SignLeafRequest{SpiffeId: web, DnsNames: []string{"bank.example.com"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.req.PublicKey, tc.req.Server, tc.req.Client = der, true, true
			resp, err := client.SignLeaf(ctx, tc.req)
			if statusCode(err) != codes.PermissionDenied {
				t.Fatalf("got %v, %v; want PermissionDenied", resp, err)
			}
		})
	}
	resp, err := client.SignLeaf(ctx, &pbpeering.SignLeafRequest{PublicKey: der, SpiffeId: web, TtlSeconds: 10 * 365 * 24 * 3600, Server: true})
	if err != nil {
		t.Fatal(err)
	}
	certs, err := identity.ParseCertsPEM(resp.GetChainPem())
	if err != nil {
		t.Fatal(err)
	}
	if life := certs[0].NotAfter.Sub(certs[0].NotBefore); life > 2*time.Hour+time.Minute {
		t.Errorf("a ten-year request got a leaf of %v, want at most the 2h leaf TTL", life)
	}

	cc := catalog.DefaultConfig()
	cc.NodeName, cc.NodeID, cc.Datacenter = "s-client", uuid.NewString(), "dc1"
	cc.Timing = catalog.FastTiming()
	member, err := catalog.New(cc)
	if err != nil {
		t.Fatal(err)
	}
	if err := member.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = member.Close(context.Background()) })
	if _, err := member.Join(s.cluster.GossipAddr()); err != nil {
		t.Fatal(err)
	}
	pc := DefaultConfig()
	pc.Cluster = member
	p, err := New(pc)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the client sees the server", func() bool { return len(member.Servers()) > 0 })
	gw, _ := identity.GatewayID(td, "dc1")
	if _, err := p.SignLeaf(ctx, LeafRequest{PublicKey: key.Public(), ID: gw, DNSNames: []string{"*." + td.Name()}, Server: true}); !errors.Is(err, ca.ErrRefused) {
		t.Errorf("forwarded refused request: got %v, want ca.ErrRefused", err)
	}
	if _, err := p.SignLeaf(ctx, LeafRequest{PublicKey: key.Public(), ID: gw, Server: true, Client: true}); err != nil {
		t.Errorf("forwarded gateway leaf: %v", err)
	}
}
