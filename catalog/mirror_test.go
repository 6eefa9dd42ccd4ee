package catalog

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/hashicorp/go-memdb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/peerd/peerd/catalog/configentry"
	"github.com/peerd/peerd/catalog/pbcatalog"
	"github.com/peerd/peerd/catalog/state"
	"github.com/peerd/peerd/internal/testutil"
)

// testNode is a cluster member with the internal gRPC server an agent runs
// for it.
type testNode struct {
	*Cluster
	t    *testing.T
	addr string
	grpc *grpc.Server
}

// startNode starts a server (expect > 0: bootstrap with that many servers)
// or, with expect < 0, a client, joined to join when given.
func startNode(t *testing.T, name string, expect int, join ...string) *testNode {
	t.Helper()
	return startNodeWith(t, name, expect, nil, join...)
}

// startNodeWith is startNode with mod applied to the configuration first.
func startNodeWith(t *testing.T, name string, expect int, mod func(*Config), join ...string) *testNode {
	t.Helper()
	cfg := DevConfig()
	cfg.Server, cfg.BootstrapExpect = expect >= 0, max(expect, 0)
	cfg.NodeName, cfg.NodeID = name, uuid.NewString()
	cfg.RetryJoin, cfg.RetryJoinInterval = join, 100*time.Millisecond
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg.GRPCAddr = ln.Addr().String()
	if mod != nil {
		mod(&cfg)
	}
	c, err := newStarted(cfg)
	if err != nil {
		_ = ln.Close()
		t.Fatal(err)
	}
	n := &testNode{Cluster: c, t: t, addr: cfg.GRPCAddr}
	n.serve(ln)
	t.Cleanup(n.stop)
	return n
}

func (n *testNode) serve(ln net.Listener) {
	n.grpc = grpc.NewServer(n.GRPCServerOptions()...)
	n.RegisterGRPC(n.grpc)
	g := n.grpc
	go func() { _ = g.Serve(ln) }()
}

// stop shuts the member down without leaving, as a crash would.
func (n *testNode) stop() {
	_ = n.Close(context.Background())
	n.grpc.Stop()
}

// restartGRPC stops the node's gRPC server, breaking every stream it
// serves, calls during, and serves again on the same address.
func (n *testNode) restartGRPC(during func()) {
	n.t.Helper()
	n.grpc.Stop()
	during()
	ln, err := net.Listen("tcp", n.addr)
	if err != nil {
		n.t.Fatalf("listen again on %s: %v", n.addr, err)
	}
	n.serve(ln)
}

// waitFor is testutil.WaitFor under the name this package's tests use.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	testutil.WaitFor(t, timeout, what, cond)
}

func waitLeader(t *testing.T, nodes ...*testNode) {
	t.Helper()
	waitFor(t, 10*time.Second, "a leader elected", func() bool {
		for _, n := range nodes {
			if n.IsLeader() {
				return true
			}
		}
		return false
	})
}

func hasService(s *state.Store, name string) bool {
	_, svcs, err := s.Services(nil, "")
	_, ok := svcs[name]
	return err == nil && ok
}

func apply(t *testing.T, c *Cluster, cmd *Command) {
	t.Helper()
	if _, err := c.Apply(context.Background(), cmd); err != nil {
		t.Fatalf("apply %s: %v", cmd.Type, err)
	}
}

func TestViewFollowsServer(t *testing.T) {
	s := startNode(t, "s1", 1)
	waitLeader(t, s)
	cl := startNode(t, "c1", -1, s.GossipAddr())
	if cl.Store() != nil {
		t.Fatal("a client's Store() is not nil")
	}
	if s.View() != s.Store() || !s.ViewSynced() {
		t.Fatal("a server's View() is not its synced Store()")
	}
	// Usable at once, synced or not.
	if _, _, err := cl.View().Services(nil, ""); err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	registerService(t, s.Cluster, "web")
	waitFor(t, 5*time.Second, "web in the client's view", func() bool { return hasService(cl.View(), "web") })
	t.Logf("web reached the client's view %s after its registration", time.Since(start).Round(time.Millisecond))
	select {
	case <-cl.ViewSyncedCh():
	default:
		t.Fatal("the view holds a state but ViewSyncedCh is open")
	}

	ws := memdb.NewWatchSet()
	if _, insts, err := cl.View().ServiceNodes(ws, "", "api"); err != nil || len(insts) != 0 {
		t.Fatalf("got %v, %v for api before its registration, want none", insts, err)
	}
	registerService(t, s.Cluster, "api")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := ws.WatchCtx(ctx); err != nil {
		t.Fatal("a watch set on the client's view did not fire on the next change")
	}
	if _, insts, _ := cl.View().ServiceNodes(nil, "", "api"); len(insts) != 1 {
		t.Fatalf("got %d instances of api after the watch fired, want 1", len(insts))
	}
	waitFor(t, 5*time.Second, "the view at the server's index", func() bool {
		return cl.View().LastIndex() == s.Store().LastIndex()
	})
}

const (
	testKeyPEM      = "CA-PRIVATE-KEY-MATERIAL"
	testEstablish   = "ESTABLISHMENT-SECRET-VALUE"
	testStream      = "ACTIVE-STREAM-SECRET-VALUE"
	testPendingNext = "PENDING-STREAM-SECRET-VALUE"
)

// writeSecretState writes a CA root (with its key), a peering with secrets,
// a trust bundle, a meta value and a config entry.
func writeSecretState(t *testing.T, c *Cluster) {
	t.Helper()
	apply(t, c, &Command{Type: CmdCARoots, CARoots: &state.CARootsRequest{Roots: []*state.CARoot{
		{ID: "root-1", CertPEM: "CERT", KeyPEM: testKeyPEM, TrustDomain: "td.consul", Active: true},
	}}})
	apply(t, c, &Command{Type: CmdPeeringWrite, Peering: &state.PeeringWriteRequest{
		Peering: &state.Peering{ID: "peering-uuid", Name: "peer1", State: state.PeeringPending},
		Secrets: &state.PeeringSecrets{EstablishmentSecret: testEstablish, ActiveStreamSecret: testStream},
	}})
	apply(t, c, &Command{Type: CmdTrustBundle, TrustBundle: &state.PeeringTrustBundle{PeerName: "peer1", TrustDomain: "other.consul", RootPEMs: []string{"PEER-ROOT"}}})
	apply(t, c, &Command{Type: CmdMetaSet, MetaSet: &state.MetaSetRequest{Key: "cluster-id", Value: "cid"}})
	apply(t, c, &Command{Type: CmdConfigSet, ConfigEntry: &ConfigEntryRequest{
		Kind: configentry.ServiceDefaults, Name: "web", Entry: []byte(`{"Kind":"service-defaults","Name":"web","Protocol":"http"}`),
	}})
}

func TestViewHasNoSecrets(t *testing.T) {
	s := startNode(t, "s1", 1)
	waitLeader(t, s)
	cl := startNode(t, "c1", -1, s.GossipAddr())
	writeSecretState(t, s.Cluster)

	v := cl.View()
	waitFor(t, 5*time.Second, "the whole state in the client's view", func() bool {
		_, e, _ := v.ConfigEntry(nil, configentry.ServiceDefaults, "web")
		return e != nil
	})
	_, roots, err := v.CARoots(nil)
	if err != nil || len(roots) != 1 {
		t.Fatalf("got CA roots %v, %v in the view, want 1", roots, err)
	}
	if roots[0].KeyPEM != "" || roots[0].CertPEM != "CERT" {
		t.Errorf("got the view's root with key %q and cert %q, want no key and cert CERT", roots[0].KeyPEM, roots[0].CertPEM)
	}
	if sec, err := v.PeeringSecrets("peering-uuid"); sec != nil || err != nil {
		t.Errorf("got peering secrets %+v, %v in the view, want none", sec, err)
	}
	if _, p, _ := v.Peering(nil, "peer1"); p == nil || p.ID != "peering-uuid" {
		t.Errorf("got peering %+v in the view, want peer1", p)
	}
	if _, b, _ := v.TrustBundle(nil, "peer1"); b == nil || b.TrustDomain != "other.consul" {
		t.Errorf("got trust bundle %+v in the view, want peer1's", b)
	}
	if got := v.Meta("cluster-id"); got != "cid" {
		t.Errorf("got cluster-id %q in the view, want cid", got)
	}
	// Stripping must not touch the server's rows.
	if _, roots, _ := s.Store().CARoots(nil); roots[0].KeyPEM != testKeyPEM {
		t.Errorf("the server's root lost its key: %q", roots[0].KeyPEM)
	}
	if sec, _ := s.Store().PeeringSecrets("peering-uuid"); sec == nil || sec.ActiveStreamSecret != testStream {
		t.Errorf("the server's peering secrets changed: %+v", sec)
	}
}

// watchStream opens Watch on n directly and delivers each complete state,
// decompressed.
func watchStream(t *testing.T, n *testNode) <-chan []byte {
	t.Helper()
	conn, err := grpc.NewClient(n.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() { cancel(); _ = conn.Close() })
	stream, err := pbcatalog.NewCatalogServiceClient(conn).Watch(ctx, &pbcatalog.WatchRequest{})
	if err != nil {
		t.Fatal(err)
	}
	out := make(chan []byte, 100)
	go func() {
		defer close(out)
		var buf bytes.Buffer
		for {
			msg, err := stream.Recv()
			if err != nil {
				return
			}
			buf.Write(msg.GetData())
			if !msg.GetLast() {
				continue
			}
			zr, err := gzip.NewReader(&buf)
			if err != nil {
				return
			}
			state, err := io.ReadAll(zr)
			if err != nil {
				return
			}
			buf.Reset()
			out <- state
		}
	}()
	return out
}

func nextState(t *testing.T, states <-chan []byte, within time.Duration) []byte {
	t.Helper()
	select {
	case st, ok := <-states:
		if !ok {
			t.Fatal("the watch stream ended")
		}
		return st
	case <-time.After(within):
		t.Fatalf("no state within %s", within)
		return nil
	}
}

func TestWatchSendsNoSecrets(t *testing.T) {
	s := startNode(t, "s1", 1)
	waitLeader(t, s)
	// The leader registers itself; have that done before the quiet period
	// below.
	waitFor(t, 5*time.Second, "s1 in the catalog", func() bool {
		_, n, _ := s.Store().Node(nil, "", "s1")
		return n != nil
	})
	writeSecretState(t, s.Cluster)
	states := watchStream(t, s)
	st := nextState(t, states, 5*time.Second)
	for _, secret := range []string{testKeyPEM, testEstablish, testStream, `"Secrets"`, "peering-secrets"} {
		if bytes.Contains(st, []byte(secret)) {
			t.Errorf("the state on the wire holds %s", secret)
		}
	}
	for _, want := range []string{"CERT", "peering-uuid", "PEER-ROOT", "cluster-id", "service-defaults"} {
		if !bytes.Contains(st, []byte(want)) {
			t.Errorf("the state on the wire lacks %s", want)
		}
	}

	// A write that changes only the secrets changes nothing mirrored: no
	// state is sent.
	apply(t, s.Cluster, &Command{Type: CmdPeeringSecrets, PeeringSecrets: &state.PeeringSecretsRequest{
		Op: state.SecretsExchange, PeeringID: "peering-uuid", Presented: testEstablish, New: testPendingNext, Now: time.Now().UnixNano(),
	}})
	select {
	case st := <-states:
		t.Fatalf("a secrets-only write sent a state (%d bytes)", len(st))
	case <-time.After(300 * time.Millisecond):
	}
	registerService(t, s.Cluster, "web")
	st = nextState(t, states, 5*time.Second)
	if bytes.Contains(st, []byte(testPendingNext)) || !bytes.Contains(st, []byte(`"web"`)) {
		t.Fatal("the state after a registration lacks it or holds the new secret")
	}
}

func TestWatchCoalesces(t *testing.T) {
	s := startNode(t, "s1", 1)
	waitLeader(t, s)
	states := watchStream(t, s)
	nextState(t, states, 5*time.Second)

	// A steady trickle of writes for about 600 ms.
	const writes = 40
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range writes {
			if _, err := s.Apply(context.Background(), &Command{Type: CmdRegister, Register: reg("ext", fmt.Sprintf("svc-%02d", i))}); err != nil {
				t.Error(err)
				return
			}
			time.Sleep(15 * time.Millisecond)
		}
	}()
	last := fmt.Sprintf(`"svc-%02d"`, writes-1)
	var at []time.Time
	for {
		st := nextState(t, states, 5*time.Second)
		at = append(at, time.Now())
		if bytes.Contains(st, []byte(last)) {
			break
		}
	}
	<-done
	elapsed := at[len(at)-1].Sub(at[0])
	// At most one state per mirrorInterval, give or take delivery jitter.
	if limit := int(elapsed/mirrorInterval) + 2; len(at) > limit {
		t.Fatalf("got %d states in %s, want at most %d", len(at), elapsed, limit)
	}
	if len(at) < 3 {
		t.Fatalf("got %d states for writes spread over %s, want changes to flow while they go on", len(at), elapsed)
	}
	t.Logf("%d writes arrived as %d states over %s", writes, len(at), elapsed.Round(time.Millisecond))
}

func TestViewResyncsAfterStreamBreaks(t *testing.T) {
	s := startNode(t, "s1", 1)
	waitLeader(t, s)
	cl := startNode(t, "c1", -1, s.GossipAddr())
	registerService(t, s.Cluster, "before")
	waitFor(t, 5*time.Second, "before in the client's view", func() bool { return hasService(cl.View(), "before") })
	streams := cl.view.streams.Load()

	ws := memdb.NewWatchSet()
	if _, _, err := cl.View().ServiceNodes(ws, "", "during"); err != nil {
		t.Fatal(err)
	}
	s.restartGRPC(func() {
		registerService(t, s.Cluster, "during")
		// The view keeps its last state while the stream is down.
		time.Sleep(50 * time.Millisecond)
		if !hasService(cl.View(), "before") || hasService(cl.View(), "during") {
			t.Error("the view changed while its stream was down")
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := ws.WatchCtx(ctx); err != nil {
		t.Fatal("the view's watch set did not fire after the stream came back")
	}
	waitFor(t, 5*time.Second, "during in the client's view", func() bool { return hasService(cl.View(), "during") })
	if got := cl.view.streams.Load(); got <= streams {
		t.Fatalf("got %d streams opened, want more than %d", got, streams)
	}
}

func TestViewResyncsAfterServerLoss(t *testing.T) {
	s1 := startNode(t, "s1", 3)
	s2 := startNode(t, "s2", 3, s1.GossipAddr())
	s3 := startNode(t, "s3", 3, s1.GossipAddr())
	servers := []*testNode{s1, s2, s3}
	waitLeader(t, servers...)
	cl := startNode(t, "c1", -1, s1.GossipAddr())
	registerService(t, s1.Cluster, "before")
	waitFor(t, 10*time.Second, "before in the client's view", func() bool { return hasService(cl.View(), "before") })

	var source string
	waitFor(t, 5*time.Second, "a stream source", func() bool {
		if p := cl.view.source.Load(); p != nil {
			source = *p
		}
		return source != ""
	})
	var rest []*testNode
	for _, n := range servers {
		if n.cfg.NodeName == source {
			n.stop()
		} else {
			rest = append(rest, n)
		}
	}
	if len(rest) != 2 {
		t.Fatalf("the client streams from %q, not one of the servers", source)
	}
	registerService(t, rest[0].Cluster, "after")
	waitFor(t, 10*time.Second, "after in the client's view", func() bool { return hasService(cl.View(), "after") })
	if p := cl.view.source.Load(); p != nil && *p == source {
		t.Fatalf("the client still streams from %s, which is down", source)
	}
}

func TestBackoff(t *testing.T) {
	b := backoff{min: mirrorBackoffMin, max: mirrorBackoffMax}
	want := mirrorBackoffMin
	for range 10 {
		d := b.next()
		if d < want/2 || d >= want {
			t.Fatalf("got a wait of %s, want one in [%s, %s)", d, want/2, want)
		}
		want = min(want*2, mirrorBackoffMax)
	}
	b.reset()
	if d := b.next(); d >= mirrorBackoffMin {
		t.Fatalf("got %s after a reset, want under %s", d, mirrorBackoffMin)
	}
}

// A server that drops out of the gossip pool while its gRPC stream still
// works (as behind a half-open connection) is left for another.
func TestViewLeavesServerGoneFromPool(t *testing.T) {
	s1 := startNode(t, "s1", 3)
	s2 := startNode(t, "s2", 3, s1.GossipAddr())
	s3 := startNode(t, "s3", 3, s1.GossipAddr())
	servers := []*testNode{s1, s2, s3}
	waitLeader(t, servers...)
	cl := startNode(t, "c1", -1, s1.GossipAddr())
	waitFor(t, 10*time.Second, "the client's view synced", cl.ViewSynced)

	var source string
	waitFor(t, 5*time.Second, "a stream source", func() bool {
		if p := cl.view.source.Load(); p != nil {
			source = *p
		}
		return source != ""
	})
	for _, n := range servers {
		if n.cfg.NodeName == source {
			if err := n.ml.Shutdown(); err != nil {
				t.Fatal(err)
			}
		}
	}
	waitFor(t, 10*time.Second, "a stream from another server", func() bool {
		p := cl.view.source.Load()
		return p != nil && *p != source
	})
	// Write through the leader: a follower does not forward to a leader it
	// no longer sees in the pool, and the source may be the leader.
	var leader *testNode
	waitFor(t, 10*time.Second, "a leader", func() bool {
		for _, n := range servers {
			if n.IsLeader() {
				leader = n
				return true
			}
		}
		return false
	})
	registerService(t, leader.Cluster, "after")
	waitFor(t, 10*time.Second, "after in the client's view", func() bool { return hasService(cl.View(), "after") })
}

// A state holding what servers never send is refused, and the view keeps
// what it had.
func TestViewRefusesSecrets(t *testing.T) {
	tests := []struct {
		name  string
		write func(s *state.Store) error
	}{
		{"peering secrets", func(s *state.Store) error {
			return s.PeeringWrite(2, &state.PeeringWriteRequest{
				Peering: &state.Peering{ID: "peering-uuid", Name: "peer1", State: state.PeeringPending},
				Secrets: &state.PeeringSecrets{EstablishmentSecret: testEstablish},
			})
		}},
		{"CA private key", func(s *state.Store) error {
			return s.CARootsSet(2, &state.CARootsRequest{Roots: []*state.CARoot{{ID: "r", CertPEM: "CERT", KeyPEM: testKeyPEM, Active: true}}})
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := newMirrorView()
			if err != nil {
				t.Fatal(err)
			}
			src := newTestStore(t)
			if err := src.Register(1, reg("n1", "web")); err != nil {
				t.Fatal(err)
			}
			if err := v.apply(rawState(t, src)); err != nil {
				t.Fatalf("apply a clean state: %v", err)
			}
			if err := tt.write(src); err != nil {
				t.Fatal(err)
			}
			if err := v.apply(rawState(t, src)); err == nil || !strings.Contains(err.Error(), "refuse state") {
				t.Fatalf("got %v applying a state with secrets, want it refused", err)
			}
			if !hasService(v.store, "web") || v.store.LastIndex() != 1 {
				t.Fatal("the view lost its state to a refused one")
			}
		})
	}
}

// rawState encodes all of s, secrets included, as a server must not.
func rawState(t *testing.T, s *state.Store) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if err := s.Snapshot().Write(zw); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}
