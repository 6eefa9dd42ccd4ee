package catalog

import (
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/peerd/peerd/catalog/pbcatalog"
	"github.com/peerd/peerd/catalog/state"
	"github.com/peerd/peerd/internal/identity"
	"github.com/peerd/peerd/internal/nodetls"
	"github.com/peerd/peerd/internal/testutil"
)

// testPKI is a cluster CA that issues node certificates.
type testPKI struct {
	root identity.Root
	td   spiffeid.TrustDomain
}

func newTestPKI(t *testing.T) *testPKI {
	t.Helper()
	td, err := identity.TrustDomain(uuid.NewString())
	if err != nil {
		t.Fatal(err)
	}
	root, err := identity.CA{}.NewRoot(td)
	if err != nil {
		t.Fatal(err)
	}
	return &testPKI{root: root, td: td}
}

// issue signs a node certificate for role and node (datacenter dc1).
func (p *testPKI) issue(t *testing.T, role, node string) (certPEM, keyPEM string) {
	t.Helper()
	id, err := identity.Agent{TrustDomain: p.td, Role: role, Datacenter: "dc1", Node: node}.ID()
	if err != nil {
		t.Fatal(err)
	}
	key, keyPEM, err := identity.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	cert, err := identity.CA{}.SignLeaf(p.root, key.Public(), identity.LeafRequest{ID: id, Server: true, Client: true, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	return cert, keyPEM
}

// source is a node's TLS source reporting to refusals.
func (p *testPKI) source(t *testing.T, role, node string, refusals *RefusalCounter) *nodetls.Source {
	t.Helper()
	cert, key := p.issue(t, role, node)
	s, err := nodetls.New(nodetls.Config{CertPEM: cert, KeyPEM: key, RootPEMs: []string{p.root.CertPEM}, Refused: refusals.Refused})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// attackerTLS is what an attacker dials with: it presents the certificate
// (none when certPEM is empty) and trusts anything.
func attackerTLS(t *testing.T, certPEM, keyPEM string) *tls.Config {
	t.Helper()
	cfg := &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13} //nolint:gosec // the attacker's side
	if certPEM != "" {
		pair, err := tls.X509KeyPair([]byte(certPEM), []byte(keyPEM))
		if err != nil {
			t.Fatal(err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg
}

// tlsNode is a test node with TLS, its refusal counter and its WARN log.
type tlsNode struct {
	*testNode
	src      *nodetls.Source
	refusals *RefusalCounter
	logs     *testutil.SyncBuffer
}

func startTLSNode(t *testing.T, pki *testPKI, name string, expect int, join ...string) *tlsNode {
	t.Helper()
	role := identity.RoleServer
	if expect < 0 {
		role = identity.RoleClient
	}
	n := &tlsNode{refusals: NewRefusalCounter(), logs: &testutil.SyncBuffer{}}
	n.src = pki.source(t, role, name, n.refusals)
	n.testNode = startNodeWith(t, name, expect, func(c *Config) {
		c.TLS, c.Refusals = n.src, n.refusals
		c.Logger = slog.New(slog.NewTextHandler(n.logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}, join...)
	return n
}

func (n *tlsNode) refused(listener, reason string) float64 {
	var m dto.Metric
	if err := n.refusals.vec.WithLabelValues(listener, reason).Write(&m); err != nil {
		return -1
	}
	return m.GetCounter().GetValue()
}

// waitRefused waits for the count of listener/reason to pass before, and
// for a WARN line naming the listener.
func (n *tlsNode) waitRefused(t *testing.T, listener, reason string, before float64) {
	t.Helper()
	waitFor(t, 5*time.Second, "refusal "+listener+"/"+reason+" counted on "+n.cfg.NodeName, func() bool {
		return n.refused(listener, reason) > before
	})
	if logs := n.logs.String(); !strings.Contains(logs, "level=WARN") || !strings.Contains(logs, "listener="+listener) {
		t.Fatalf("no WARN line for the %s refusal in the log:\n%s", listener, logs)
	}
}

// attackStream is a raft stream layer an attacker dials with: plain TCP,
// or TLS with cfg.
type attackStream struct {
	ln  net.Listener
	cfg *tls.Config
}

func (a *attackStream) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	conn, err := net.DialTimeout("tcp", string(addr), timeout)
	if err != nil || a.cfg == nil {
		return conn, err
	}
	tc := tls.Client(conn, a.cfg)
	_ = tc.SetDeadline(time.Now().Add(timeout))
	if err := tc.Handshake(); err != nil {
		_ = conn.Close()
		return nil, err
	}
	_ = tc.SetDeadline(time.Time{})
	return tc, nil
}
func (a *attackStream) Accept() (net.Conn, error) { return a.ln.Accept() }
func (a *attackStream) Close() error              { return a.ln.Close() }
func (a *attackStream) Addr() net.Addr            { return a.ln.Addr() }

// raftTransport is a raft transport dialing out through stream.
func raftTransport(t *testing.T, stream func(net.Listener) raft.StreamLayer) *raft.NetworkTransport {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tr := raft.NewNetworkTransport(stream(ln), 1, 2*time.Second, io.Discard)
	t.Cleanup(func() { _ = tr.Close() })
	return tr
}

// fakeLeader sends an AppendEntries and a RequestVote of a far later term to
// target's raft port and returns the errors.
func fakeLeader(tr *raft.NetworkTransport, target *tlsNode) (appendErr, voteErr error) {
	term := target.raft.CurrentTerm() + 100
	id, addr := raft.ServerID(target.cfg.NodeName), raft.ServerAddress(target.LocalMember().Meta.RaftAddr)
	hdr := raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte("evil"), Addr: []byte(tr.LocalAddr())}
	var ae raft.AppendEntriesResponse
	appendErr = tr.AppendEntries(id, addr, &raft.AppendEntriesRequest{RPCHeader: hdr, Term: term,
		Entries:           []*raft.Log{{Index: 1 << 20, Term: term, Type: raft.LogCommand, Data: []byte(`{"Type":"meta-set","MetaSet":{"Key":"evil","Value":"1"}}`)}},
		LeaderCommitIndex: 1 << 20}, &ae)
	var rv raft.RequestVoteResponse
	voteErr = tr.RequestVote(id, addr, &raft.RequestVoteRequest{RPCHeader: hdr, Term: term, LastLogIndex: 1 << 20, LastLogTerm: term}, &rv)
	return appendErr, voteErr
}

// applyOver sends one Apply to n's internal gRPC port with creds.
func applyOver(t *testing.T, n *tlsNode, creds credentials.TransportCredentials, cmd *Command, forwarded bool) (*pbcatalog.ApplyResponse, error) {
	t.Helper()
	conn, err := grpc.NewClient(n.addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	data, err := cmd.Encode()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	return pbcatalog.NewCatalogServiceClient(conn).Apply(ctx, &pbcatalog.ApplyRequest{Command: data, Forwarded: forwarded})
}

func metaCmd(key string) *Command {
	return &Command{Type: CmdMetaSet, MetaSet: &state.MetaSetRequest{Key: key, Value: "evil"}}
}

// TestTLSCluster forms a cluster of 3 servers and a client over mutual TLS,
// writes from the client and a follower, and then plays every attack on
// raft and the internal gRPC port against it: each must be refused, logged
// and counted, and change nothing.
func TestTLSCluster(t *testing.T) {
	pki := newTestPKI(t)
	s1 := startTLSNode(t, pki, "s1", 3)
	s2 := startTLSNode(t, pki, "s2", 3, s1.GossipAddr())
	s3 := startTLSNode(t, pki, "s3", 3, s1.GossipAddr())
	servers := []*tlsNode{s1, s2, s3}
	waitLeader(t, s1.testNode, s2.testNode, s3.testNode)
	c1 := startTLSNode(t, pki, "c1", -1, s1.GossipAddr())
	var leader, follower *tlsNode
	waitFor(t, 10*time.Second, "3 voters and a leader", func() bool {
		leader, follower = nil, nil
		for _, s := range servers {
			if s.IsLeader() {
				leader = s
			} else {
				follower = s
			}
		}
		if leader == nil {
			return false
		}
		peers, err := leader.Peers()
		return err == nil && len(peers) == 3
	})

	t.Run("writes commit", func(t *testing.T) {
		apply(t, c1.Cluster, &Command{Type: CmdRegister, Register: &state.RegisterRequest{
			Node: &state.Node{Node: "c1", Address: "127.0.0.1"}, Service: &state.Service{ID: "from-client", Service: "from-client", Port: 80}}})
		registerService(t, follower.Cluster, "from-follower")
		for _, s := range servers {
			waitFor(t, 5*time.Second, "both writes on "+s.cfg.NodeName, func() bool {
				return hasService(s.Store(), "from-client") && hasService(s.Store(), "from-follower")
			})
		}
		waitFor(t, 5*time.Second, "both writes in the client's mirror", func() bool {
			return hasService(c1.View(), "from-client") && hasService(c1.View(), "from-follower")
		})
	})

	// The raft attacks target the leader: a fake leader's term must not
	// make it step down.
	raftAttack := func(t *testing.T, reason string, stream func(net.Listener) raft.StreamLayer) {
		t.Helper()
		before := leader.refused(ListenerRaft, reason)
		term := leader.raft.CurrentTerm()
		appendErr, voteErr := fakeLeader(raftTransport(t, stream), leader)
		if appendErr == nil || voteErr == nil {
			t.Fatalf("got AppendEntries error %v, RequestVote error %v: want both refused", appendErr, voteErr)
		}
		leader.waitRefused(t, ListenerRaft, reason, before)
		if got := leader.raft.CurrentTerm(); got != term || !leader.IsLeader() {
			t.Fatalf("after the attack: term %d (was %d), leader %v: want both unchanged", got, term, leader.IsLeader())
		}
		if got := leader.Store().Meta("evil"); got != "" {
			t.Fatalf("the fake leader's entry was applied: meta evil=%q", got)
		}
	}
	t.Run("plaintext raft", func(t *testing.T) {
		raftAttack(t, ReasonHandshake, func(ln net.Listener) raft.StreamLayer { return &attackStream{ln: ln} })
	})
	t.Run("client certificate on raft", func(t *testing.T) {
		// The client node's own certificate, through the real stream layer.
		raftAttack(t, nodetls.ReasonRole, func(ln net.Listener) raft.StreamLayer {
			return newTLSStreamLayer(ln, ln.Addr(), c1.src, func(net.Addr, error) {})
		})
	})
	t.Run("other CA on raft", func(t *testing.T) {
		cert, key := newTestPKI(t).issue(t, identity.RoleServer, "s9")
		raftAttack(t, nodetls.ReasonUntrusted, func(ln net.Listener) raft.StreamLayer {
			return &attackStream{ln: ln, cfg: attackerTLS(t, cert, key)}
		})
	})
	t.Run("certificate-less TLS on raft", func(t *testing.T) {
		raftAttack(t, nodetls.ReasonNoCertificate, func(ln net.Listener) raft.StreamLayer {
			return &attackStream{ln: ln, cfg: attackerTLS(t, "", "")}
		})
	})

	// The gRPC attacks target a follower, which would forward to the leader.
	grpcAttack := func(t *testing.T, reason string, creds credentials.TransportCredentials, key string) {
		t.Helper()
		before := follower.refused(ListenerGRPC, reason)
		if _, err := applyOver(t, follower, creds, metaCmd(key), false); err == nil {
			t.Fatal("the Apply succeeded, want it refused at the handshake")
		} else if code := status.Code(err); code != codes.Unavailable {
			t.Fatalf("got %v, want Unavailable (no connection)", err)
		}
		follower.waitRefused(t, ListenerGRPC, reason, before)
		if got := leader.Store().Meta(key); got != "" {
			t.Fatalf("the refused write committed: meta %s=%q", key, got)
		}
	}
	t.Run("plaintext gRPC Apply", func(t *testing.T) {
		grpcAttack(t, ReasonHandshake, insecure.NewCredentials(), "plaintext")
	})
	t.Run("certificate-less gRPC Apply", func(t *testing.T) {
		grpcAttack(t, nodetls.ReasonNoCertificate, credentials.NewTLS(attackerTLS(t, "", "")), "no-cert")
	})
	t.Run("other CA on gRPC", func(t *testing.T) {
		cert, key := newTestPKI(t).issue(t, identity.RoleServer, "s9")
		grpcAttack(t, nodetls.ReasonUntrusted, credentials.NewTLS(attackerTLS(t, cert, key)), "other-ca")
	})

	// A client certificate is admitted, and may apply only its own writes.
	clientCreds := grpcDialCredentials(c1.src)
	denied := func(t *testing.T, cmd *Command, forwarded bool, wantInMsg string) {
		t.Helper()
		before := follower.refused(ListenerGRPC, ReasonPermission)
		_, err := applyOver(t, follower, clientCreds, cmd, forwarded)
		if status.Code(err) != codes.PermissionDenied {
			t.Fatalf("got %v, want PermissionDenied", err)
		}
		msg := status.Convert(err).Message()
		if !strings.Contains(msg, wantInMsg) || !strings.Contains(msg, "agent/client/dc/dc1/node/c1") {
			t.Fatalf("got message %q, want it to name %q and the caller", msg, wantInMsg)
		}
		follower.waitRefused(t, ListenerGRPC, ReasonPermission, before)
		if !strings.Contains(follower.logs.String(), "permission denied") {
			t.Fatalf("no permission-denied WARN line in the log:\n%s", follower.logs.String())
		}
	}
	t.Run("client applies cluster meta", func(t *testing.T) {
		denied(t, metaCmd("from-client"), false, string(CmdMetaSet))
		if got := leader.Store().Meta("from-client"); got != "" {
			t.Fatalf("the refused write committed: meta from-client=%q", got)
		}
	})
	t.Run("client applies CA roots", func(t *testing.T) {
		denied(t, &Command{Type: CmdCARoots, CARoots: &state.CARootsRequest{Roots: []*state.CARoot{{ID: "evil", Active: true}}}}, false, string(CmdCARoots))
	})
	t.Run("client registers another node", func(t *testing.T) {
		denied(t, &Command{Type: CmdRegister, Register: reg("s2", "hijack")}, false, string(CmdRegister))
		if hasService(leader.Store(), "hijack") {
			t.Fatal("the refused registration committed")
		}
	})
	t.Run("client relays as a server", func(t *testing.T) {
		denied(t, &Command{Type: CmdRegister, Register: reg("c1", "relayed")}, true, "forwarded")
	})
	t.Run("client registers its own node", func(t *testing.T) {
		res, err := applyOver(t, follower, clientCreds, &Command{Type: CmdRegister, Register: reg("c1", "own")}, false)
		if err != nil || res.GetError() != "" {
			t.Fatalf("got %v (%q), want the registration committed", err, res.GetError())
		}
		waitFor(t, 5*time.Second, "own on the leader", func() bool { return hasService(leader.Store(), "own") })
	})
	t.Run("server forwards anything", func(t *testing.T) {
		res, err := applyOver(t, follower, grpcDialCredentials(leader.src), metaCmd("from-server"), false)
		if err != nil || res.GetError() != "" {
			t.Fatalf("got %v (%q), want the write committed", err, res.GetError())
		}
		waitFor(t, 5*time.Second, "the server's write", func() bool { return leader.Store().Meta("from-server") == "evil" })
	})
	t.Run("client calls the servers' raft RPCs", func(t *testing.T) {
		conn, err := grpc.NewClient(follower.addr, grpc.WithTransportCredentials(clientCreds))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		cc := pbcatalog.NewCatalogServiceClient(conn)
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		before := follower.refused(ListenerGRPC, ReasonPermission)
		if _, err := cc.RaftStats(ctx, &pbcatalog.RaftStatsRequest{}); status.Code(err) != codes.PermissionDenied {
			t.Fatalf("RaftStats from a client: got %v, want PermissionDenied", err)
		}
		if _, err := cc.RemovePeer(ctx, &pbcatalog.RemovePeerRequest{Id: leader.cfg.NodeName, Forwarded: true}); status.Code(err) != codes.PermissionDenied {
			t.Fatalf("relayed RemovePeer from a client: got %v, want PermissionDenied", err)
		}
		if got := follower.refused(ListenerGRPC, ReasonPermission); got != before+2 {
			t.Fatalf("got %v permission refusals, want %v", got, before+2)
		}
		if peers, err := leader.Peers(); err != nil || len(peers) != 3 {
			t.Fatalf("got voters %v (%v), want all 3 still", peers, err)
		}
		// A server may ask.
		sconn, err := grpc.NewClient(follower.addr, grpc.WithTransportCredentials(grpcDialCredentials(leader.src)))
		if err != nil {
			t.Fatal(err)
		}
		defer sconn.Close()
		if _, err := pbcatalog.NewCatalogServiceClient(sconn).RaftStats(ctx, &pbcatalog.RaftStatsRequest{}); err != nil {
			t.Fatalf("RaftStats from a server: %v", err)
		}
	})
	t.Run("Apply without a peer identity", func(t *testing.T) {
		// The credentials make this impossible; the handler checks anyway.
		before := follower.refused(ListenerGRPC, ReasonPermission)
		data, _ := metaCmd("no-peer").Encode()
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		_, err := (&catalogServer{c: follower.Cluster}).Apply(ctx, &pbcatalog.ApplyRequest{Command: data, Forwarded: true})
		if status.Code(err) != codes.PermissionDenied {
			t.Fatalf("got %v, want PermissionDenied", err)
		}
		if got := follower.refused(ListenerGRPC, ReasonPermission); got != before+1 {
			t.Fatalf("got %v permission refusals, want %v", got, before+1)
		}
	})
	t.Run("counter exported", func(t *testing.T) {
		mfs, err := registryOf(t, follower.Collector()).Gather()
		if err != nil {
			t.Fatal(err)
		}
		var series int
		for _, mf := range mfs {
			if mf.GetName() == "peerd_security_refusals_total" {
				series = len(mf.GetMetric())
			}
		}
		if series == 0 {
			t.Fatal("peerd_security_refusals_total is not in the cluster's Collector")
		}
	})
}

func registryOf(t *testing.T, c prometheus.Collector) *prometheus.Registry {
	t.Helper()
	r := prometheus.NewPedanticRegistry()
	if err := r.Register(c); err != nil {
		t.Fatal(err)
	}
	return r
}

func TestValidateTLS(t *testing.T) {
	pki := newTestPKI(t)
	refusals := NewRefusalCounter()
	server := pki.source(t, identity.RoleServer, "s1", refusals)
	tests := []struct {
		name    string
		edit    func(*Config)
		wantErr string
	}{
		{"server with its certificate", func(*Config) {}, ""},
		{"client with a server certificate", func(c *Config) { c.Server, c.BootstrapExpect = false, 0 }, "is a server's, but this node is a client"},
		{"another node's certificate", func(c *Config) { c.NodeName = "s2" }, `names node "s1", but this node is "s2"`},
		{"another datacenter's certificate", func(c *Config) { c.Datacenter = "dc2" }, `for datacenter "dc1", but this node is in "dc2"`},
		{"no refusal counter", func(c *Config) { c.Refusals = nil }, "TLS needs a refusal counter"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := DevConfig()
			c.NodeName, c.NodeID = "s1", uuid.NewString()
			c.TLS, c.Refusals = server, refusals
			tt.edit(&c)
			err := c.Validate()
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("got %v, want %q", err, tt.wantErr)
			}
		})
	}
}

// TestRaftProbeChecksTheNode: before the leader adds a gossip member to
// raft, it checks the member's raft port presents a server certificate
// naming that member, so a member cannot borrow another server's address.
func TestRaftProbeChecksTheNode(t *testing.T) {
	pki := newTestPKI(t)
	s1 := startTLSNode(t, pki, "s1", 1)
	addr := s1.LocalMember().Meta.RaftAddr
	if !s1.reachable(Member{Name: "s1", Meta: NodeMeta{RaftAddr: addr}}) {
		t.Fatal("the server's own name was refused")
	}
	before := s1.refused("raft", "node-mismatch")
	if s1.reachable(Member{Name: "s4", Meta: NodeMeta{RaftAddr: addr}}) {
		t.Fatal("a member named s4 at s1's raft address was accepted")
	}
	if s1.refused("raft", "node-mismatch") <= before {
		t.Fatal("the mismatch is not counted")
	}
}
