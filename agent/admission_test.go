package agent

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/peerd/peerd/agent/admission"
	"github.com/peerd/peerd/agent/admission/pbadmission"
	"github.com/peerd/peerd/catalog"
	"github.com/peerd/peerd/internal/identity"
	"github.com/peerd/peerd/internal/jointoken"
)

// trustedAgent is testAgent with cluster trust: the first server makes the
// CA; every other node is admitted with token.
func trustedAgent(t *testing.T, name string, server bool, token string, join ...string) (*Agent, error) {
	t.Helper()
	return trustedAgentWith(t, name, server, token, nil, join...)
}

func trustedAgentWith(t *testing.T, name string, server bool, token string, mod func(*Config), join ...string) (*Agent, error) {
	t.Helper()
	expect := 0
	if server && token == "" {
		expect = 1
	}
	cfg := testAgentConfig(t, name, server, expect, join...)
	cfg.InternalTLS, cfg.JoinToken = true, token
	if token != "" {
		cfg.Encrypt = "" // the token carries it
	}
	if mod != nil {
		mod(&cfg)
	}
	a, err := startAgent(cfg)
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { _ = a.Close(context.Background()) })
	return a, nil
}

type createdToken struct {
	ID, Token, Role, Status string
}

func createJoinToken(t *testing.T, a *Agent, role, ttl string) createdToken {
	t.Helper()
	var tok createdToken
	eventually(t, 10*time.Second, "create a "+role+" join token", func() error {
		code, body, err := httpDo("POST", "http://"+a.HTTPAddr()+"/v1/operator/join-token", map[string]string{"Role": role, "TTL": ttl})
		if err != nil {
			return err
		}
		if code != http.StatusOK {
			return &httpStatusError{code, string(body)}
		}
		return json.Unmarshal(body, &tok)
	})
	return tok
}

type httpStatusError struct {
	code int
	body string
}

func (e *httpStatusError) Error() string { return http.StatusText(e.code) + ": " + e.body }

func TestAdmissionWithJoinTokens(t *testing.T) {
	s1, err := trustedAgent(t, "s1", true, "")
	if err != nil {
		t.Fatal(err)
	}
	tok := createJoinToken(t, s1, "client", "1h")
	if !strings.HasPrefix(tok.Token, jointoken.Prefix) || tok.Status != "valid" {
		t.Fatalf("created %+v", tok)
	}

	c1, err := trustedAgent(t, "c1", false, tok.Token)
	if err != nil {
		t.Fatalf("a client with a valid token: %v", err)
	}
	self := c1.trust.source.Self()
	if self.Role != identity.RoleClient || self.Node != "c1" {
		t.Fatalf("client certificate names %s", self)
	}
	if s1.trust.source.Self().TrustDomain != self.TrustDomain {
		t.Fatalf("client of trust domain %s, server of %s", self.TrustDomain, s1.trust.source.Self().TrustDomain)
	}
	st, err := os.Stat(admission.Path(trustDir(&c1.cfg)))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("node identity file: %v, %v", st, err)
	}
	// The join token's gossip addresses were enough to join.
	eventually(t, 10*time.Second, "c1 in s1's members", func() error {
		for _, m := range s1.Cluster().Members() {
			if m.Name == "c1" && m.Status == catalog.StatusAlive {
				return nil
			}
		}
		return os.ErrNotExist
	})

	t.Run("a client token does not admit a server", func(t *testing.T) {
		_, err := trustedAgent(t, "s2", true, tok.Token)
		t.Log(err)
		if err == nil || !strings.Contains(err.Error(), "grants the client role") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("the server refuses a wrong role or secret itself", func(t *testing.T) {
		fresh, err := jointoken.Parse(createJoinToken(t, s1, "client", "1h").Token)
		if err != nil {
			t.Fatal(err)
		}
		conn, err := grpc.NewClient(s1.grpcTLSLn.Addr().String(), grpc.WithTransportCredentials(
			credentials.NewTLS(&tls.Config{InsecureSkipVerify: true})))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		key, _, _ := identity.NewKey()
		der, _ := x509.MarshalPKIXPublicKey(key.Public())
		pub := string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
		c := pbadmission.NewAdmissionServiceClient(conn)
		_, err = c.Join(context.Background(), &pbadmission.JoinRequest{Token: fresh.String(), Node: "x", Role: "server", Datacenter: "dc1", PublicKeyPem: pub})
		if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "grants client") {
			t.Fatalf("a client token asked for a server certificate: %v", err)
		}
		forged := fresh
		forged.Secret = strings.Repeat("A", 43)
		_, err = c.Join(context.Background(), &pbadmission.JoinRequest{Token: forged.String(), Node: "x", Role: "client", Datacenter: "dc1", PublicKeyPem: pub})
		if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "secret") {
			t.Fatalf("a forged secret: %v", err)
		}
		_, err = c.Renew(context.Background(), &pbadmission.RenewRequest{PublicKeyPem: pub})
		if status.Code(err) != codes.PermissionDenied {
			t.Fatalf("a renewal without a node certificate: %v", err)
		}
	})
	t.Run("a revoked token admits no one", func(t *testing.T) {
		code, body, err := httpDo("DELETE", "http://"+s1.HTTPAddr()+"/v1/operator/join-token/"+tok.ID, nil)
		if err != nil || code != http.StatusOK {
			t.Fatalf("revoke: %d %s %v", code, body, err)
		}
		_, err = trustedAgent(t, "c2", false, tok.Token)
		t.Log(err)
		if err == nil || !strings.Contains(err.Error(), "revoked") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("an expired token admits no one", func(t *testing.T) {
		var skew atomic.Int64
		late, err := trustedAgentWith(t, "s9", true, "", func(c *Config) {
			c.Admission = func(ac *admission.Config) {
				ac.Now = func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		short := createJoinToken(t, late, "client", "1m")
		skew.Store(int64(2 * time.Minute))
		if _, err := trustedAgent(t, "c3", false, short.Token); err == nil || !strings.Contains(err.Error(), "expired") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("a token pinned to another CA is not sent to this cluster", func(t *testing.T) {
		other, err := trustedAgent(t, "o1", true, "")
		if err != nil {
			t.Fatal(err)
		}
		foreign := createJoinToken(t, other, "client", "1h")
		parsed, err := jointoken.Parse(foreign.Token)
		if err != nil {
			t.Fatal(err)
		}
		// The token names s1's address: s1 cannot show the pinned CA.
		good, _ := jointoken.Parse(createJoinToken(t, s1, "client", "1h").Token)
		parsed.Servers = good.Servers
		_, err = trustedAgent(t, "c4", false, parsed.String())
		t.Log(err)
		if err == nil || !strings.Contains(err.Error(), "pin") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("the list shows records, never secrets", func(t *testing.T) {
		code, body, err := httpDo("GET", "http://"+s1.HTTPAddr()+"/v1/operator/join-tokens", nil)
		if err != nil || code != http.StatusOK {
			t.Fatalf("list: %d %s %v", code, body, err)
		}
		if strings.Contains(string(body), tok.Token) || strings.Contains(string(body), "SecretHash") {
			t.Fatalf("the list shows a secret: %s", body)
		}
		if !strings.Contains(string(body), `"revoked"`) {
			t.Fatalf("the revoked token is not listed as revoked: %s", body)
		}
	})
	t.Run("a restarted client keeps its certificate without a token", func(t *testing.T) {
		m, ok, err := admission.Load(trustDir(&c1.cfg))
		if err != nil || !ok || m.Seed != nil {
			t.Fatalf("load: %v %v (a client must never hold the CA seed)", ok, err)
		}
	})
}

// TestTrustBootstrapStatefulSet starts servers as a Kubernetes StatefulSet
// does: all at once, all with the same flags (-bootstrap-expect 3, the
// trust bootstrap file, the server token file). Only the server the
// bootstrap names starts the cluster; the others are admitted with the
// token and become voters; a client joins with the client token.
func TestTrustBootstrapStatefulSet(t *testing.T) {
	if testing.Short() {
		t.Skip("four agents in one process: skipped with -short")
	}
	dir := t.TempDir()
	first := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	b, serverTok, clientTok, err := admission.NewBootstrap("p-0", "dc1", []string{first}, testGossipKey, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	bootFile := filepath.Join(dir, "bootstrap.json")
	if err := b.Save(bootFile); err != nil {
		t.Fatal(err)
	}
	write := func(name, tok string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(tok+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	serverFile, clientFile := write("server.token", serverTok), write("client.token", clientTok)
	pod := func(name string, server bool, tokenFile string) <-chan *Agent {
		ch := make(chan *Agent, 1)
		go func() {
			a, err := trustedAgentWith(t, name, server, "", func(c *Config) {
				c.Encrypt, c.BootstrapExpect = "", 0
				if server {
					c.BootstrapExpect, c.TrustBootstrap = 3, bootFile
				}
				c.JoinTokenFile = tokenFile
				if name == "p-0" {
					c.GRPCTLSAddr = first
				}
			})
			if err != nil {
				t.Errorf("start %s: %v", name, err)
			}
			ch <- a
		}()
		return ch
	}
	starts := []<-chan *Agent{pod("p-1", true, serverFile), pod("p-2", true, serverFile), pod("p-0", true, serverFile)}
	var servers []*Agent
	for _, ch := range starts {
		if a := <-ch; a != nil {
			servers = append(servers, a)
		}
	}
	if len(servers) != 3 {
		t.Fatalf("%d servers started", len(servers))
	}
	client := <-pod("c-0", false, clientFile)
	if client == nil {
		t.Fatal("the client did not start")
	}
	eventually(t, 30*time.Second, "three voters", func() error {
		for _, s := range servers {
			if s.cfg.NodeName != "p-0" {
				continue
			}
			peers, err := s.Cluster().Peers()
			if err != nil || len(peers) != 3 {
				return fmt.Errorf("raft peers %v, %v", peers, err)
			}
		}
		return nil
	})
	for _, s := range servers {
		if s.trust.source.Self().TrustDomain.Name() != b.Seed.Root.TrustDomain {
			t.Fatalf("%s is of trust domain %s, want the bootstrap's %s", s.cfg.NodeName, s.trust.source.Self().TrustDomain, b.Seed.Root.TrustDomain)
		}
	}
}
