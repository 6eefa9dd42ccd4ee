package agent

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/peerd/peerd/agent/admission/pbadmission"
	"github.com/peerd/peerd/catalog"
	"github.com/peerd/peerd/catalog/pbcatalog"
	"github.com/peerd/peerd/catalog/state"
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

// TestRevokedClientIsCutOff: once a client node is revoked, its writes,
// its renewals and its mirror stream are refused on connections it already
// had open, and each refusal is counted.
func TestRevokedClientIsCutOff(t *testing.T) {
	if testing.Short() {
		t.Skip("four agents in one process: skipped with -short")
	}
	c := startPeeringCluster(t, "v", "dc1")
	client := c.client
	ctx := context.Background()
	reg := func(id string) error {
		_, err := client.Cluster().Apply(ctx, &catalog.Command{Type: catalog.CmdRegister, Register: &state.RegisterRequest{
			Node:    &state.Node{ID: client.cfg.NodeID, Node: client.cfg.NodeName, Address: "127.0.0.1"},
			Service: &state.Service{ID: id, Service: id, Port: 1},
		}})
		return err
	}
	if err := reg("before"); err != nil {
		t.Fatalf("the admitted client cannot write: %v", err)
	}
	eventually(t, 10*time.Second, "the client's mirror is synced", func() error {
		if !client.Cluster().ViewSynced() {
			return fmt.Errorf("not synced")
		}
		return nil
	})

	code, body, err := httpDo("POST", "http://"+c.servers[0].HTTPAddr()+"/v1/operator/revoke-node/"+client.cfg.NodeName, nil)
	if err != nil || code != 200 {
		t.Fatalf("revoke: %d %s %v", code, body, err)
	}
	eventually(t, 10*time.Second, "the revoked client's write is refused", func() error {
		err := reg("after")
		if err == nil {
			return fmt.Errorf("still accepted")
		}
		if !strings.Contains(err.Error(), "revoked") {
			return fmt.Errorf("refused for another reason: %v", err)
		}
		return nil
	})
	conn, err := client.Cluster().LeaderConn()
	if err != nil {
		t.Fatal(err)
	}
	key, _, _ := identity.NewKey()
	der, _ := x509.MarshalPKIXPublicKey(key.Public())
	_, err = pbadmission.NewAdmissionServiceClient(conn).Renew(ctx, &pbadmission.RenewRequest{
		PublicKeyPem: string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})),
	})
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("a revoked node renewed: %v", err)
	}
	var total float64
	eventually(t, 10*time.Second, "the refusals are counted on the servers", func() error {
		total = 0
		for _, s := range c.servers {
			total += metricValue(scrape(t, s), `peerd_security_refusals_total{listener="grpc",reason="revoked-node"}`)
		}
		if total < 2 {
			return fmt.Errorf("%v counted", total)
		}
		return nil
	})
	// The servers still serve each other.
	if _, err := c.servers[1].Cluster().Apply(ctx, &catalog.Command{Type: catalog.CmdRegister, Register: &state.RegisterRequest{
		Node: &state.Node{ID: "6a0c1c7e-0000-4000-8000-000000000009", Node: "ext", Address: "127.0.0.9"},
	}}); err != nil {
		t.Fatalf("a server's write after the revocation: %v", err)
	}
}

// TestTrustedClusterCARotation rotates the CA of a cluster set up with join
// tokens while a client keeps writing: every node's certificate is renewed
// under the new root, and no write fails.
func TestTrustedClusterCARotation(t *testing.T) {
	if testing.Short() {
		t.Skip("four agents in one process: skipped with -short")
	}
	c := startPeeringCluster(t, "rot", "dc1")
	ctx := context.Background()
	stop := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		var n int
		for {
			select {
			case <-stop:
				done <- nil
				return
			default:
			}
			n++
			_, err := c.client.Cluster().Apply(ctx, &catalog.Command{Type: catalog.CmdRegister, Register: &state.RegisterRequest{
				Node:    &state.Node{ID: c.client.cfg.NodeID, Node: c.client.cfg.NodeName, Address: "127.0.0.1"},
				Service: &state.Service{ID: fmt.Sprintf("w-%d", n), Service: "w", Port: 1},
			}})
			if err != nil {
				done <- fmt.Errorf("write %d during the rotation: %w", n, err)
				return
			}
		}
	}()
	code, body, err := httpDo("POST", "http://"+c.servers[0].HTTPAddr()+"/v1/connect/ca/rotate", nil)
	if err != nil || code != 200 {
		t.Fatalf("rotate: %d %s %v", code, body, err)
	}
	var active string
	eventually(t, 10*time.Second, "the new active root", func() error {
		_, roots, err := c.servers[0].Cluster().Store().CARoots(nil)
		if err != nil || len(roots) < 2 {
			return fmt.Errorf("roots %d, %v", len(roots), err)
		}
		active = roots[0].CertPEM
		return nil
	})
	nodes := append([]*Agent{c.client}, c.servers...)
	eventually(t, 20*time.Second, "every node certificate renewed under the new root", func() error {
		for _, a := range nodes {
			if !rootSigned(a.trust.source.Leaf(), active) {
				return fmt.Errorf("%s still holds a certificate of the old root", a.cfg.NodeName)
			}
		}
		return nil
	})
	close(stop)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
