package agent

import (
	"context"
	"crypto/x509"
	"fmt"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/peerd/peerd/catalog/pbcatalog"
	"github.com/peerd/peerd/internal/identity"
	"github.com/peerd/peerd/peering/pbpeering"
)

// TestTrustedClusterRefusesOutsiders: in a cluster set up with join tokens,
// a plaintext caller gets nothing from a server's internal port, and an
// admitted client node gets leaves only for what runs on it. Each refusal
// is counted in peerd_security_refusals_total.
func TestTrustedClusterRefusesOutsiders(t *testing.T) {
	if testing.Short() {
		t.Skip("four agents in one process: skipped with -short")
	}
	c := startPeeringCluster(t, "t", "dc1")
	server := c.servers[0]
	refusals := func(listener, reason string) float64 {
		return metricValue(scrape(t, server), fmt.Sprintf(`peerd_security_refusals_total{listener=%q,reason=%q}`, listener, reason))
	}

	t.Run("a plaintext Apply", func(t *testing.T) {
		before := refusals("grpc", "handshake")
		conn, err := grpc.NewClient(server.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		cmd := []byte(`{"Type":"meta-set","MetaSet":{"Key":"cluster-id","Value":"x"}}`)
		if _, err := pbcatalog.NewCatalogServiceClient(conn).Apply(ctx, &pbcatalog.ApplyRequest{Command: cmd}); err == nil {
			t.Fatal("a plaintext Apply was answered")
		}
		eventually(t, 5*time.Second, "the refusal is counted", func() error {
			if got := refusals("grpc", "handshake"); got <= before {
				return fmt.Errorf("count %v, was %v", got, before)
			}
			return nil
		})
	})

	t.Run("a client node asks for a leaf of a service it does not run", func(t *testing.T) {
		before := refusals("sign-leaf", "service-not-on-node")
		src := c.client.trust.source
		conn, err := grpc.NewClient(server.GRPCAddr(), grpc.WithTransportCredentials(credentials.NewTLS(src.ClientConfig("grpc", identity.RoleServer))))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		key, _, _ := identity.NewKey()
		der, _ := x509.MarshalPKIXPublicKey(key.Public())
		td := src.Self().TrustDomain
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err = pbpeering.NewPeeringServiceClient(conn).SignLeaf(ctx, &pbpeering.SignLeafRequest{
			PublicKey: der, SpiffeId: "spiffe://" + td.Name() + "/ns/default/dc/dc1/svc/payments", Server: true, Client: true,
		})
		if status.Code(err) != codes.PermissionDenied {
			t.Fatalf("got %v, want PermissionDenied", err)
		}
		if got := refusals("sign-leaf", "service-not-on-node"); got <= before {
			t.Fatalf("not counted: %v", got)
		}
	})
}
