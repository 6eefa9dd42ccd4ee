package peering

import (
	"context"
	"crypto/x509"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"

	"github.com/peerd/peerd/catalog"
	"github.com/peerd/peerd/catalog/state"
	"github.com/peerd/peerd/internal/identity"
	"github.com/peerd/peerd/peering/pbpeerstream"
)

// streamClientAs is a PeerStreamService client of acc that presents the
// peering certificate of cluster who (nil: no client certificate).
func streamClientAs(t testing.TB, acc, who *testCluster) pbpeerstream.PeerStreamServiceClient {
	t.Helper()
	cfg, err := dialTLSConfig(caPEMs(t, acc), serverName(t, acc))
	if err != nil {
		t.Fatal(err)
	}
	if who != nil {
		cfg.GetClientCertificate = who.peering.clientCertificate
	}
	conn, err := grpc.NewClient(acc.tlsAddr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return pbpeerstream.NewPeerStreamServiceClient(conn)
}

// openWith opens a stream with Open{peerID, secret} and returns the
// acceptor's refusal, or nil once it answered with a message.
func openWith(t testing.TB, client pbpeerstream.PeerStreamServiceClient, peerID, secret string) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stream, err := client.StreamResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&pbpeerstream.ReplicationMessage{Payload: &pbpeerstream.ReplicationMessage_Open{Open: &pbpeerstream.Open{PeerId: peerID, StreamSecretId: secret}}}); err != nil {
		t.Fatal(err)
	}
	_, err = stream.Recv()
	return err
}

func refusals(t testing.TB, c *testCluster, call, reason string) float64 {
	t.Helper()
	return counterValue(t, c.peering.metrics.refusals.WithLabelValues(call, reason))
}

// activePair establishes a (dialer, dc1) with b (acceptor, dc2) through
// the real token path and waits until the first stream promoted the
// secret. It returns b's peering ID for a and a's for b.
func activePair(t *testing.T, a, b *testCluster) (accID, dialID string) {
	t.Helper()
	ctx := testContext(t)
	tok, err := b.peering.GenerateToken(ctx, GenerateTokenRequest{PeerName: "a"})
	if err != nil {
		t.Fatalf("generate token: %v", err)
	}
	if err := a.peering.Establish(ctx, EstablishRequest{PeerName: "b", PeeringToken: tok}); err != nil {
		t.Fatalf("establish: %v", err)
	}
	accID, dialID = storedPeering(t, b, "a").ID, storedPeering(t, a, "b").ID
	waitFor(t, 10*time.Second, "the stream to open and promote its secret", func() bool {
		return storedSecrets(t, b, accID).ActiveStreamSecret != "" && userState(b, "a") == "ACTIVE" && userState(a, "b") == "ACTIVE"
	})
	return accID, dialID
}

func TestStreamSecretRotationOnDemand(t *testing.T) {
	a, b := twoClusters(t, nil, nil)
	accID, dialID := activePair(t, a, b)
	ctx := testContext(t)
	old := storedSecrets(t, b, accID).ActiveStreamSecret
	reconnects := b.peering.tracker.get(accID).Reconnects

	if err := a.peering.RotateStreamSecret(ctx, "b"); !errors.Is(err, ErrPeeringConflict) {
		t.Fatalf("rotate on the dialer: got %v, want ErrPeeringConflict (the acceptor owns the secrets)", err)
	}
	if err := b.peering.RotateStreamSecret(ctx, "nope"); !errors.Is(err, ErrPeeringNotFound) {
		t.Fatalf("rotate an unknown peering: got %v, want ErrPeeringNotFound", err)
	}
	if err := b.peering.RotateStreamSecret(ctx, "a"); err != nil {
		t.Fatalf("rotate: %v", err)
	}
	waitFor(t, 10*time.Second, "the dialer to take the new secret and the acceptor to promote it", func() bool {
		sec := storedSecrets(t, b, accID)
		return sec.ActiveStreamSecret != old && sec.PendingStreamSecret == "" &&
			storedSecrets(t, a, dialID).DialerStreamSecret == sec.ActiveStreamSecret
	})
	if got := b.peering.tracker.get(accID).Reconnects; got != reconnects {
		t.Fatalf("reconnects after the rotation: got %d, want %d (the open stream is kept)", got, reconnects)
	}
	if got := counterValue(t, b.peering.metrics.rotations.WithLabelValues("a", "promoted")); got != 1 {
		t.Fatalf("promoted rotations: got %v, want 1", got)
	}
	if got := counterValue(t, a.peering.metrics.rotations.WithLabelValues("b", "stored")); got != 1 {
		t.Fatalf("stored rotations on the dialer: got %v, want 1", got)
	}

	// The old secret is dead, even with the dialer's own certificate.
	before := refusals(t, b, callStream, reasonInvalidSecret)
	if err := openWith(t, streamClientAs(t, b, a), accID, old); statusCode(err) != codes.PermissionDenied {
		t.Fatalf("open with the old secret: got %v, want PermissionDenied", err)
	}
	if got := refusals(t, b, callStream, reasonInvalidSecret); got != before+1 {
		t.Fatalf("invalid secret refusals: got %v, want %v", got, before+1)
	}

	// A reconnect uses the new secret.
	b.peering.streams.get(accID).fail(errors.New("test: drop the stream"))
	waitFor(t, 15*time.Second, "the dialer to reconnect with the new secret", func() bool {
		return b.peering.tracker.get(accID).Reconnects > reconnects && userState(b, "a") == "ACTIVE" && userState(a, "b") == "ACTIVE"
	})
}

func TestStreamSecretRotationScheduled(t *testing.T) {
	a := newTestCluster(t, "a", "dc1", nil)
	b := newTestCluster(t, "b", "dc2", func(c *Config) { c.StreamSecretRotation = 300 * time.Millisecond })
	accID, dialID := activePair(t, a, b)
	first := storedSecrets(t, b, accID).ActiveStreamSecret
	waitFor(t, 15*time.Second, "two scheduled rotations", func() bool {
		return counterValue(t, b.peering.metrics.rotations.WithLabelValues("a", "promoted")) >= 2
	})
	waitFor(t, 10*time.Second, "the dialer to hold the active secret", func() bool {
		sec := storedSecrets(t, b, accID)
		return sec.ActiveStreamSecret != first && storedSecrets(t, a, dialID).DialerStreamSecret == sec.ActiveStreamSecret
	})
	if got := b.peering.tracker.get(accID).Reconnects; got != 0 {
		t.Fatalf("reconnects: got %d, want 0 (rotations keep the stream)", got)
	}
	if s := userState(b, "a"); s != "ACTIVE" {
		t.Fatalf("acceptor state: got %s, want ACTIVE", s)
	}
}

// TestStreamSecretRotationWhileDisconnected rotates while no stream is
// open, which is what a leader change half-way through a rotation leaves:
// the state in raft alone must finish it.
func TestStreamSecretRotationWhileDisconnected(t *testing.T) {
	a, b := twoClusters(t, nil, nil)
	accID, dialID := activePair(t, a, b)
	ctx := testContext(t)
	waitFor(t, 10*time.Second, "the dialer's row to settle", func() bool {
		p := storedPeering(t, a, "b")
		return p.PeerTrustDomain != "" && len(p.PeerServerAddresses) > 0
	})
	setAddrs := func(addrs []string) {
		_, row, _ := a.cluster.Store().Peering(nil, "b")
		cp := *row
		cp.ManualServerAddresses, cp.PeerServerAddresses = addrs, addrs
		apply(t, a, &catalog.Command{Type: catalog.CmdPeeringWrite, Peering: &state.PeeringWriteRequest{Peering: &cp}})
	}
	disconnect := func() {
		setAddrs([]string{"127.0.0.1:1"})
		waitFor(t, 10*time.Second, "no stream", func() bool { return b.peering.streams.get(accID) == nil && a.peering.streams.get(dialID) == nil })
	}
	reconnect := func() {
		setAddrs([]string{b.tlsAddr})
		waitFor(t, 15*time.Second, "the stream back", func() bool { return userState(b, "a") == "ACTIVE" && userState(a, "b") == "ACTIVE" })
	}

	// 1. The acceptor's leader wrote the pending secret and lost the
	// stream before offering it: the next stream is offered it.
	disconnect()
	old := storedSecrets(t, b, accID).ActiveStreamSecret
	if err := b.peering.RotateStreamSecret(ctx, "a"); err != nil {
		t.Fatalf("rotate: %v", err)
	}
	pending := storedSecrets(t, b, accID).PendingStreamSecret
	reconnect()
	waitFor(t, 10*time.Second, "the pending secret promoted after the reconnect", func() bool {
		sec := storedSecrets(t, b, accID)
		return sec.ActiveStreamSecret == pending && sec.PendingStreamSecret == "" && storedSecrets(t, a, dialID).DialerStreamSecret == pending
	})
	if err := openWith(t, streamClientAs(t, b, a), accID, old); statusCode(err) != codes.PermissionDenied {
		t.Fatalf("open with the old secret: got %v, want PermissionDenied", err)
	}

	// 2. The dialer stored the new secret and its leader went before it
	// confirmed it: its next stream opens with it, which promotes it.
	disconnect()
	if err := b.peering.RotateStreamSecret(ctx, "a"); err != nil {
		t.Fatalf("rotate: %v", err)
	}
	pending = storedSecrets(t, b, accID).PendingStreamSecret
	apply(t, a, &catalog.Command{Type: catalog.CmdPeeringSecrets, PeeringSecrets: &state.PeeringSecretsRequest{
		Op: state.SecretsStore, PeeringID: dialID, New: pending,
	}})
	reconnect()
	waitFor(t, 10*time.Second, "the stored secret promoted by the open", func() bool {
		sec := storedSecrets(t, b, accID)
		return sec.ActiveStreamSecret == pending && sec.PendingStreamSecret == ""
	})
}

// TestRotationNeedsACapableDialer: a dialer that did not announce it takes
// rotated secrets (a Consul dialer, with no client certificate either)
// keeps Consul's semantics: an unbound secret, and no in-band rotation.
func TestRotationNeedsACapableDialer(t *testing.T) {
	b := newTestCluster(t, "b", "dc2", func(c *Config) { c.StreamSecretRotation = -1 })
	id, secret := acceptorPeering(t, b, "consul")
	client := streamClient(t, b)
	ctx := testContext(t)
	resp, err := client.ExchangeSecret(ctx, &pbpeerstream.ExchangeSecretRequest{PeerId: id, EstablishmentSecret: secret})
	if err != nil {
		t.Fatal(err)
	}
	stream, err := client.StreamResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&pbpeerstream.ReplicationMessage{Payload: &pbpeerstream.ReplicationMessage_Open{Open: &pbpeerstream.Open{
		PeerId: id, StreamSecretId: resp.GetStreamSecret(),
	}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatalf("open an unbound stream: %v", err)
	}
	if sec := storedSecrets(t, b, id); sec.ActiveIdentity != nil {
		t.Fatalf("binding without a client certificate: got %+v, want none", sec.ActiveIdentity)
	}
	if err := b.peering.RotateStreamSecret(ctx, "consul"); !errors.Is(err, ErrPeeringConflict) || !strings.Contains(err.Error(), "does not take rotated secrets") {
		t.Fatalf("rotate over a Consul-like stream: got %v, want a conflict saying why", err)
	}
	// The schedule passes it over, however old its secret.
	b.peering.rotateDue(ctx, time.Nanosecond)
	if sec := storedSecrets(t, b, id); sec.PendingStreamSecret != "" || sec.ActiveStreamSecret != resp.GetStreamSecret() {
		t.Fatalf("secrets after the schedule ran: got %+v, want the first secret active and nothing pending", sec)
	}
}

func TestStreamBoundToDialerIdentity(t *testing.T) {
	a, b := twoClusters(t, nil, nil)
	c := newTestCluster(t, "c", "dc3", nil)
	accID, dialID := activePair(t, a, b)
	aTD, err := a.peering.trustDomain()
	if err != nil {
		t.Fatal(err)
	}
	sec := storedSecrets(t, b, accID)
	if sec.ActiveIdentity == nil || sec.ActiveIdentity.TrustDomain != aTD.Name() || len(sec.ActiveIdentity.RootPEMs) != 1 {
		t.Fatalf("bound identity: got %+v, want trust domain %s and its root pinned", sec.ActiveIdentity, aTD.Name())
	}
	stolen := storedSecrets(t, a, dialID).DialerStreamSecret

	tests := []struct {
		name string
		who  *testCluster
	}{
		{"no client certificate", nil},
		{"another cluster's certificate", c},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := refusals(t, b, callStream, reasonIdentity)
			err := openWith(t, streamClientAs(t, b, tt.who), accID, stolen)
			if statusCode(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "bound to the peer's TLS identity") {
				t.Fatalf("open with the stolen secret: got %v, want PermissionDenied naming the binding", err)
			}
			if got := refusals(t, b, callStream, reasonIdentity); got != before+1 {
				t.Fatalf("identity refusals: got %v, want %v", got, before+1)
			}
		})
	}
	if s := userState(b, "a"); s != "ACTIVE" {
		t.Fatalf("the real dialer's peering: got %s, want ACTIVE", s)
	}
	info, err := b.peering.Read(testContext(t), "a")
	if err != nil || info.StreamSecret == nil || info.StreamSecret.BoundTrustDomain != aTD.Name() || info.StreamSecret.ActiveSince.IsZero() {
		t.Fatalf("stream secret status: got %+v, %v; want bound to %s with an activation time", info.StreamSecret, err, aTD.Name())
	}

	// The dialer's CA rotates: its new certificate chains to the pinned
	// root through the cross-signed one, and the stream reopens.
	if _, err := a.peering.RotateCA(testContext(t)); err != nil {
		t.Fatalf("rotate the dialer's CA: %v", err)
	}
	reconnects := b.peering.tracker.get(accID).Reconnects
	b.peering.streams.get(accID).fail(errors.New("test: drop the stream"))
	waitFor(t, 15*time.Second, "the stream back after the dialer's CA rotation", func() bool {
		return b.peering.tracker.get(accID).Reconnects > reconnects && userState(b, "a") == "ACTIVE"
	})

	// A certificate claiming the acceptor's own trust domain is no binding.
	id, secret := acceptorPeering(t, b, "x")
	ctx := testContext(t)
	_, err = streamClientAs(t, b, b).ExchangeSecret(ctx, &pbpeerstream.ExchangeSecretRequest{PeerId: id, EstablishmentSecret: secret})
	if statusCode(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "this cluster's trust domain") {
		t.Fatalf("exchange with the acceptor's own certificate: got %v, want InvalidArgument", err)
	}
}

func TestWrongSecretsCostNoRaftWrite(t *testing.T) {
	a := newTestCluster(t, "a", "dc1", func(c *Config) { c.SecretAttemptRate, c.SecretAttemptBurst = 1e-6, 5 })
	st := a.cluster.Store()
	client := streamClient(t, a)
	ctx := testContext(t)

	id, secret := acceptorPeering(t, a, "b")
	idx := st.PeeringIndex()
	for i := range 5 {
		_, err := client.ExchangeSecret(ctx, &pbpeerstream.ExchangeSecretRequest{PeerId: id, EstablishmentSecret: uuid.NewString()})
		if statusCode(err) != codes.PermissionDenied {
			t.Fatalf("wrong secret %d: got %v, want PermissionDenied", i, err)
		}
	}
	if got := st.PeeringIndex(); got != idx {
		t.Fatalf("peering index after 5 wrong secrets: got %d, want %d (no raft write)", got, idx)
	}
	for _, s := range []string{uuid.NewString(), secret} {
		_, err := client.ExchangeSecret(ctx, &pbpeerstream.ExchangeSecretRequest{PeerId: id, EstablishmentSecret: s})
		if statusCode(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "too many attempts") {
			t.Fatalf("attempt past the burst: got %v, want ResourceExhausted", err)
		}
	}
	if got := st.PeeringIndex(); got != idx {
		t.Fatalf("peering index after rate-limited attempts: got %d, want %d", got, idx)
	}
	if got := refusals(t, a, callExchange, reasonInvalidSecret); got != 5 {
		t.Fatalf("invalid secret refusals: got %v, want 5", got)
	}
	if got := refusals(t, a, callExchange, reasonRateLimited); got != 2 {
		t.Fatalf("rate-limited refusals: got %v, want 2", got)
	}

	// Another peering's budget is its own; its wrong stream secrets cost
	// no write either, and are limited too.
	id2, secret2 := acceptorPeering(t, a, "c")
	resp, err := client.ExchangeSecret(ctx, &pbpeerstream.ExchangeSecretRequest{PeerId: id2, EstablishmentSecret: secret2})
	if err != nil {
		t.Fatalf("exchange for another peering: %v", err)
	}
	idx = st.PeeringIndex()
	for i := range 5 {
		if err := openWith(t, client, id2, uuid.NewString()); statusCode(err) != codes.PermissionDenied {
			t.Fatalf("wrong stream secret %d: got %v, want PermissionDenied", i, err)
		}
	}
	if got := st.PeeringIndex(); got != idx {
		t.Fatalf("peering index after 5 wrong stream secrets: got %d, want %d", got, idx)
	}
	if err := openWith(t, client, id2, resp.GetStreamSecret()); statusCode(err) != codes.ResourceExhausted {
		t.Fatalf("open past the refusal budget: got %v, want ResourceExhausted", err)
	}
}

func TestAttemptLimiter(t *testing.T) {
	now := time.Unix(1000, 0)
	l := newAttemptLimiter(1, 2, 3, func() time.Time { return now })
	for i, want := range []bool{true, true, false} {
		if got := l.allow("p"); got != want {
			t.Fatalf("attempt %d: got %v, want %v", i, got, want)
		}
	}
	if !l.exhausted("p") || l.exhausted("q") {
		t.Fatal("exhausted: want p exhausted, q not")
	}
	now = now.Add(time.Second)
	if !l.allow("p") || l.allow("p") {
		t.Fatal("after 1 s at 1/s: want exactly one more attempt")
	}
	// The map stays bounded; the emptiest, most recently used bucket is
	// kept over idle full ones.
	for _, k := range []string{"q", "r", "s", "t", "u"} {
		l.allow(k)
		now = now.Add(10 * time.Millisecond)
		if n := l.size(); n > 3 {
			t.Fatalf("limiter holds %d keys, want at most 3", n)
		}
	}
}

// FuzzBindingChains feeds arbitrary certificate chains (a peer's client
// certificates) to the exchange's identity check and the stream's binding
// check: neither may panic, and whatever the exchange accepts, the stream
// check accepts for the same chain.
func FuzzBindingChains(f *testing.F) {
	td := spiffeid.RequireTrustDomainFromString("fuzz.peerd")
	caCfg := identity.CA{}
	root, err := caCfg.NewRoot(td)
	if err != nil {
		f.Fatal(err)
	}
	key, _, err := identity.NewKey()
	if err != nil {
		f.Fatal(err)
	}
	leafPEM, err := caCfg.SignLeaf(root, key.Public(), identity.LeafRequest{DNSNames: []string{identity.ServerName("dc9", td)}, Server: true, Client: true})
	if err != nil {
		f.Fatal(err)
	}
	leaf, _ := identity.ParseCertPEM(leafPEM)
	rc, _ := identity.ParseCertPEM(root.CertPEM)
	if id, err := exchangeIdentity([]*x509.Certificate{leaf, rc}, "own.peerd"); err != nil || id == nil || id.TrustDomain != td.Name() {
		f.Fatalf("a peering certificate with its root: got %+v, %v; want bound to %s", id, err, td.Name())
	}
	f.Add(leaf.Raw, rc.Raw)
	f.Add(leaf.Raw, leaf.Raw)
	f.Add(rc.Raw, rc.Raw)
	f.Add([]byte{0x30, 0x00}, []byte{})
	f.Fuzz(func(t *testing.T, a, b []byte) {
		var certs []*x509.Certificate
		for _, der := range [][]byte{a, b} {
			if c, err := x509.ParseCertificate(der); err == nil {
				certs = append(certs, c)
			}
		}
		id, err := exchangeIdentity(certs, "own.peerd")
		if err != nil || id == nil {
			_ = verifyBinding(&identityFixture, certs, nil)
			return
		}
		if err := verifyBinding(id, certs, nil); err != nil {
			t.Fatalf("the exchange bound %+v but the same chain fails the stream check: %v", id, err)
		}
	})
}

var identityFixture = state.StreamIdentity{TrustDomain: "fuzz.peerd"}
