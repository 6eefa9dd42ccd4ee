package nodetls

import (
	"crypto/tls"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/peerd/peerd/internal/identity"
)

const clusterID = "6f1c2a8e-1111-4a4a-9b9b-0123456789ab"

func newRoot(t *testing.T, id string) identity.Root {
	t.Helper()
	td, err := identity.TrustDomain(id)
	if err != nil {
		t.Fatal(err)
	}
	r, err := identity.CA{}.NewRoot(td)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// issue signs a certificate for a (any SPIFFE ID when id is set) with root.
func issue(t *testing.T, root identity.Root, a identity.Agent, id spiffeid.ID) (certPEM, keyPEM string) {
	t.Helper()
	if id.IsZero() {
		var err error
		if id, err = a.ID(); err != nil {
			t.Fatal(err)
		}
	}
	key, keyPEM, err := identity.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	cert, err := identity.CA{}.SignLeaf(root, key.Public(), identity.LeafRequest{ID: id, Server: true, Client: true, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	return cert, keyPEM
}

type recorder struct {
	mu      sync.Mutex
	reasons []string
}

func (r *recorder) refused(listener, reason string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.reasons = append(r.reasons, listener+"/"+reason)
}

func (r *recorder) last() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.reasons) == 0 {
		return ""
	}
	return r.reasons[len(r.reasons)-1]
}

func agent(t *testing.T, root identity.Root, role, node string) identity.Agent {
	t.Helper()
	td, err := spiffeid.TrustDomainFromString(root.TrustDomain)
	if err != nil {
		t.Fatal(err)
	}
	return identity.Agent{TrustDomain: td, Role: role, Datacenter: "dc1", Node: node}
}

func source(t *testing.T, root identity.Root, a identity.Agent, rec *recorder, roots ...string) *Source {
	t.Helper()
	cert, key := issue(t, root, a, spiffeid.ID{})
	if len(roots) == 0 {
		roots = []string{root.CertPEM}
	}
	s, err := New(Config{CertPEM: cert, KeyPEM: key, RootPEMs: roots, Refused: rec.refused})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// handshake runs one TLS handshake over loopback and returns the server's
// view of the client and the two sides' errors.
func handshake(t *testing.T, server, client *tls.Config) (peer identity.Agent, serverErr, clientErr error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			serverErr = err
			return
		}
		defer c.Close()
		tc := tls.Server(c, server)
		_ = tc.SetDeadline(time.Now().Add(5 * time.Second))
		if serverErr = tc.Handshake(); serverErr == nil {
			peer, serverErr = PeerAgent(tc.ConnectionState())
			// TLS 1.3: the client learns of a refused certificate on its
			// first read; write so a successful handshake reads cleanly.
			_, _ = tc.Write([]byte("x"))
		}
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	tc := tls.Client(c, client)
	_ = tc.SetDeadline(time.Now().Add(5 * time.Second))
	if clientErr = tc.Handshake(); clientErr == nil {
		_, clientErr = tc.Read(make([]byte, 1))
	}
	<-done
	return peer, serverErr, clientErr
}

func TestMutualAgents(t *testing.T) {
	root := newRoot(t, clusterID)
	rec := &recorder{}
	srv := source(t, root, agent(t, root, identity.RoleServer, "s1"), rec)
	cli := source(t, root, agent(t, root, identity.RoleClient, "c1"), rec)

	peer, serr, cerr := handshake(t, srv.ServerConfig("grpc", identity.RoleServer, identity.RoleClient), cli.ClientConfig("grpc", identity.RoleServer))
	if serr != nil || cerr != nil {
		t.Fatalf("client to server: %v / %v", serr, cerr)
	}
	if peer != cli.Self() {
		t.Fatalf("server saw %s, want %s", peer, cli.Self())
	}
	if rec.last() != "" {
		t.Fatalf("refusal recorded for an admitted client: %s", rec.last())
	}
}

func TestRefusals(t *testing.T) {
	root := newRoot(t, clusterID)
	other := newRoot(t, "0d6c6b34-2222-4b4b-8c8c-ba9876543210")
	rec := &recorder{}
	srv := source(t, root, agent(t, root, identity.RoleServer, "s1"), rec)
	raftOnly := srv.ServerConfig("raft", identity.RoleServer)

	svcID := spiffeid.RequireFromString("spiffe://" + root.TrustDomain + "/ns/default/dc/dc1/svc/web")
	svcCert, svcKey := issue(t, root, identity.Agent{}, svcID)
	svcPair, err := tls.X509KeyPair([]byte(svcCert), []byte(svcKey))
	if err != nil {
		t.Fatal(err)
	}
	otherDC := agent(t, root, identity.RoleServer, "x1")
	otherDC.Datacenter = "dc9"
	odCert, odKey := issue(t, root, otherDC, spiffeid.ID{})
	odPair, err := tls.X509KeyPair([]byte(odCert), []byte(odKey))
	if err != nil {
		t.Fatal(err)
	}
	foreign := source(t, other, agent(t, other, identity.RoleServer, "s1"), &recorder{})
	fCert, fKey := issue(t, other, agent(t, other, identity.RoleServer, "s1"), spiffeid.ID{})
	fPair, err := tls.X509KeyPair([]byte(fCert), []byte(fKey))
	if err != nil {
		t.Fatal(err)
	}

	cases := []struct {
		name   string
		client *tls.Config
		reason string
	}{
		{"a client certificate acting as a server", source(t, root, agent(t, root, identity.RoleClient, "c1"), rec).ClientConfig("raft", identity.RoleServer), ReasonRole},
		{"another cluster's CA", &tls.Config{InsecureSkipVerify: true, Certificates: []tls.Certificate{fPair}}, ReasonUntrusted},
		{"no certificate", &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13}, ReasonNoCertificate},
		{"a service leaf, not a node certificate", &tls.Config{InsecureSkipVerify: true, Certificates: []tls.Certificate{svcPair}}, ReasonNotAgent},
		{"an agent of another datacenter", &tls.Config{InsecureSkipVerify: true, Certificates: []tls.Certificate{odPair}}, ReasonForeignCluster},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, serr, cerr := handshake(t, raftOnly, c.client)
			if !errors.Is(serr, ErrRefused) && !strings.Contains(errString(serr), "certificate") {
				t.Fatalf("server accepted: %v", serr)
			}
			if cerr == nil {
				t.Fatal("client handshake succeeded")
			}
			if got := rec.last(); got != "raft/"+c.reason {
				t.Fatalf("recorded %q, want raft/%s", got, c.reason)
			}
		})
	}

	t.Run("a server that is not of this cluster, dialed by a node", func(t *testing.T) {
		crec := &recorder{}
		cli := source(t, root, agent(t, root, identity.RoleClient, "c1"), crec)
		_, _, cerr := handshake(t, foreign.ServerConfig("raft", identity.RoleServer, identity.RoleClient), cli.ClientConfig("grpc", identity.RoleServer))
		if cerr == nil || crec.last() != "grpc/"+ReasonUntrusted {
			t.Fatalf("dialer accepted a rogue server: %v (%s)", cerr, crec.last())
		}
	})
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// TestRotationOverlap: a certificate of the previous root is accepted while
// the roots list it, refused once they no longer do.
func TestRotationOverlap(t *testing.T) {
	oldRoot := newRoot(t, clusterID)
	td, _ := identity.TrustDomain(clusterID)
	newR, err := identity.CA{}.NewRoot(td)
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	srv := source(t, newR, agent(t, newR, identity.RoleServer, "s1"), rec, oldRoot.CertPEM, newR.CertPEM)
	stale := source(t, oldRoot, agent(t, oldRoot, identity.RoleServer, "s2"), &recorder{}, oldRoot.CertPEM, newR.CertPEM)

	if _, serr, cerr := handshake(t, srv.ServerConfig("raft", identity.RoleServer), stale.ClientConfig("raft", identity.RoleServer)); serr != nil || cerr != nil {
		t.Fatalf("during the overlap: %v / %v", serr, cerr)
	}
	cert, key := issue(t, newR, srv.Self(), spiffeid.ID{})
	if err := srv.Update(cert, key, []string{newR.CertPEM}); err != nil {
		t.Fatal(err)
	}
	if _, _, cerr := handshake(t, srv.ServerConfig("raft", identity.RoleServer), stale.ClientConfig("raft", identity.RoleServer)); cerr == nil {
		t.Fatal("a certificate of the dropped root was accepted after the overlap")
	}
	if rec.last() != "raft/"+ReasonUntrusted {
		t.Fatalf("recorded %q", rec.last())
	}
}

func TestUpdateRefusesAnotherNode(t *testing.T) {
	root := newRoot(t, clusterID)
	s := source(t, root, agent(t, root, identity.RoleServer, "s1"), &recorder{})
	cert, key := issue(t, root, agent(t, root, identity.RoleServer, "s2"), spiffeid.ID{})
	if err := s.Update(cert, key, []string{root.CertPEM}); err == nil {
		t.Fatal("Update took a certificate for another node")
	}
	if s.Self().Node != "s1" {
		t.Fatalf("material changed: %s", s.Self())
	}
}
