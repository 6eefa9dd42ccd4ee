package peering

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc/codes"

	"github.com/peerd/peerd/catalog/state"
	"github.com/peerd/peerd/peering/pbpeerstream"
)

func TestGenerateTokenAndEstablish(t *testing.T) {
	ctx := testContext(t)
	a := newTestCluster(t, "a", "dc1", nil)
	b := newTestCluster(t, "b", "dc2", nil)

	encoded, err := b.peering.GenerateToken(ctx, GenerateTokenRequest{PeerName: "a", Meta: map[string]string{"env": "prod"}})
	if err != nil {
		t.Fatalf("generate token: %v", err)
	}
	acc := storedPeering(t, b, "a")
	if acc == nil {
		t.Fatal("acceptor peering not stored")
	}
	if acc.State != state.PeeringPending || acc.ShouldDial || acc.Meta["env"] != "prod" {
		t.Errorf("acceptor row: got state %s, dial %v, meta %v; want PENDING, false, env=prod", acc.State, acc.ShouldDial, acc.Meta)
	}
	tok, err := DecodeToken(encoded)
	if err != nil {
		t.Fatalf("decode generated token: %v", err)
	}
	td, _ := b.peering.trustDomain()
	if tok.PeerID != acc.ID || tok.Remote.Datacenter != "dc2" || tok.TrustDomain != td.Name() ||
		tok.ServerName != "server.dc2.peering."+td.Name() || !slices.Equal(tok.ServerAddresses, []string{b.tlsAddr}) ||
		len(tok.ManualServerAddresses) != 0 || tok.ExpiresAt != nil || len(tok.CA) == 0 {
		t.Errorf("token: got %+v", tok)
	}
	if sec := storedSecrets(t, b, acc.ID); sec.EstablishmentSecret != tok.EstablishmentSecret {
		t.Errorf("acceptor establishment secret: got %q, want the token's %q", sec.EstablishmentSecret, tok.EstablishmentSecret)
	}

	if err := a.peering.Establish(ctx, EstablishRequest{PeerName: "b", PeeringToken: encoded, Meta: map[string]string{"team": "x"}}); err != nil {
		t.Fatalf("establish: %v", err)
	}
	dial := storedPeering(t, a, "b")
	if dial == nil {
		t.Fatal("dialer peering not stored")
	}
	if !dial.ShouldDial || dial.PeerID != acc.ID || dial.PeerServerName != tok.ServerName ||
		!slices.Equal(dial.PeerServerAddresses, tok.ServerAddresses) || !slices.Equal(dial.PeerCAPems, tok.CA) ||
		dial.PeerTrustDomain != tok.TrustDomain || dial.Remote.Datacenter != "dc2" || dial.Meta["team"] != "x" || dial.ID == acc.ID {
		t.Errorf("dialer row: got %+v", dial)
	}
	// The dialer's leader may already have opened the stream.
	if dial.State != state.PeeringEstablishing && dial.State != state.PeeringActive {
		t.Errorf("dialer state: got %s, want ESTABLISHING (or ACTIVE once the stream opened)", dial.State)
	}
	dsec := storedSecrets(t, a, dial.ID)
	asec := storedSecrets(t, b, acc.ID)
	if dsec.DialerStreamSecret == "" || (dsec.DialerStreamSecret != asec.PendingStreamSecret && dsec.DialerStreamSecret != asec.ActiveStreamSecret) {
		t.Errorf("stream secret: dialer has %q, acceptor pending %q active %q", dsec.DialerStreamSecret, asec.PendingStreamSecret, asec.ActiveStreamSecret)
	}
	if asec.EstablishmentSecret != "" {
		t.Errorf("acceptor kept the used establishment secret")
	}

	// The same token again, under any name: refused.
	err = a.peering.Establish(ctx, EstablishRequest{PeerName: "b-again", PeeringToken: encoded})
	if !errors.Is(err, ErrTokenUsed) || !strings.Contains(err.Error(), "generate a new peering token") {
		t.Errorf("reused token: got %v, want ErrTokenUsed", err)
	}
	if p := storedPeering(t, a, "b-again"); p != nil {
		t.Errorf("a refused establish stored a peering: %+v", p)
	}
	// Under the name it established: "already peered", the advice once.
	for _, name := range []string{"b", "b-again"} {
		err = a.peering.Establish(ctx, EstablishRequest{PeerName: name, PeeringToken: encoded})
		if !errors.Is(err, ErrTokenUsed) || !strings.HasPrefix(err.Error(), `already peered: peering "b" is `) ||
			strings.Count(err.Error(), "generate a new peering token") != 1 {
			t.Errorf("token reused as %s: got %v, want ErrTokenUsed saying peering b is already peered, advice once", name, err)
		}
	}
}

func TestRegenerateTokenSupersedes(t *testing.T) {
	ctx := testContext(t)
	a := newTestCluster(t, "a", "dc1", nil)
	b := newTestCluster(t, "b", "dc2", nil)
	old, err := b.peering.GenerateToken(ctx, GenerateTokenRequest{PeerName: "a"})
	if err != nil {
		t.Fatal(err)
	}
	id := storedPeering(t, b, "a").ID
	newer, err := b.peering.GenerateToken(ctx, GenerateTokenRequest{PeerName: "a", ServerExternalAddresses: []string{b.tlsAddr}})
	if err != nil {
		t.Fatal(err)
	}
	if got := storedPeering(t, b, "a").ID; got != id {
		t.Errorf("regenerating changed the peering ID from %s to %s", id, got)
	}
	tok, _ := DecodeToken(newer)
	if !slices.Equal(tok.ManualServerAddresses, []string{b.tlsAddr}) || !slices.Equal(tok.ServerAddresses, []string{b.tlsAddr}) {
		t.Errorf("external addresses: got manual %v, server %v", tok.ManualServerAddresses, tok.ServerAddresses)
	}
	if err := a.peering.Establish(ctx, EstablishRequest{PeerName: "b", PeeringToken: old}); !errors.Is(err, ErrTokenUsed) ||
		strings.Count(err.Error(), "generate a new peering token") != 1 || !strings.Contains(err.Error(), "invalid peering establishment secret)") {
		t.Errorf("superseded token: got %v, want ErrTokenUsed with the acceptor's answer and the advice once", err)
	}
	if err := a.peering.Establish(ctx, EstablishRequest{PeerName: "b", PeeringToken: newer}); err != nil {
		t.Fatalf("newer token: %v", err)
	}
	if got := storedPeering(t, a, "b"); got == nil || !slices.Equal(got.ManualServerAddresses, []string{b.tlsAddr}) {
		t.Errorf("dialer manual addresses: got %+v", got)
	}

	// A token generated once the peering is established keeps the stream
	// secrets, so the live stream survives. Wait for the stream to open
	// first: its first Open promotes the pending secret to active.
	deadline := time.Now().Add(10 * time.Second)
	for storedSecrets(t, b, id).ActiveStreamSecret == "" {
		if time.Now().After(deadline) {
			t.Fatal("the stream never opened (no active stream secret)")
		}
		time.Sleep(20 * time.Millisecond)
	}
	before := storedSecrets(t, b, id)
	if _, err := b.peering.GenerateToken(ctx, GenerateTokenRequest{PeerName: "a"}); err != nil {
		t.Fatal(err)
	}
	after := storedSecrets(t, b, id)
	if after.ActiveStreamSecret != before.ActiveStreamSecret {
		t.Errorf("regenerating dropped the stream secrets: before %+v, after %+v", before, after)
	}
	if after.ActiveStreamSecret == "" && after.PendingStreamSecret == "" {
		t.Errorf("no stream secret left after regenerating: %+v", after)
	}
	if after.EstablishmentSecret == "" {
		t.Error("regenerated token has no establishment secret")
	}
}

func TestInvalidPeerNames(t *testing.T) {
	ctx := testContext(t)
	b := newTestCluster(t, "b", "dc2", nil)
	for _, name := range []string{"", "UPPER", "-lead", "trail-", "dot.ted", "under_score", strings.Repeat("x", 64), "spa ce"} {
		t.Run(name, func(t *testing.T) {
			_, err := b.peering.GenerateToken(ctx, GenerateTokenRequest{PeerName: name})
			if !errors.Is(err, ErrInvalidPeerName) {
				t.Errorf("generate: got %v, want ErrInvalidPeerName", err)
			}
			if name != "" && !strings.Contains(err.Error(), "is not a valid peer name") {
				t.Errorf("generate: got %q, want Consul's wording", err)
			}
			if err := b.peering.Establish(ctx, EstablishRequest{PeerName: name, PeeringToken: "x"}); !errors.Is(err, ErrInvalidPeerName) {
				t.Errorf("establish: got %v, want ErrInvalidPeerName", err)
			}
			if _, err := b.peering.Read(ctx, name); !errors.Is(err, ErrInvalidPeerName) {
				t.Errorf("read: got %v, want ErrInvalidPeerName", err)
			}
			if err := b.peering.Delete(ctx, name); !errors.Is(err, ErrInvalidPeerName) {
				t.Errorf("delete: got %v, want ErrInvalidPeerName", err)
			}
		})
	}
	for _, name := range []string{"a", "0", "a-b", strings.Repeat("x", 63)} {
		if err := ValidatePeerName(name); err != nil {
			t.Errorf("ValidatePeerName(%q): %v", name, err)
		}
	}
}

func TestEstablishRefusals(t *testing.T) {
	ctx := testContext(t)
	a := newTestCluster(t, "a", "dc1", nil)
	b := newTestCluster(t, "b", "dc2", nil)

	own, err := b.peering.GenerateToken(ctx, GenerateTokenRequest{PeerName: "self"})
	if err != nil {
		t.Fatal(err)
	}
	err = b.peering.Establish(ctx, EstablishRequest{PeerName: "other", PeeringToken: own})
	if !errors.Is(err, ErrSameCluster) || !strings.Contains(err.Error(), "cannot create a peering within the same cluster") {
		t.Errorf("same cluster: got %v, want ErrSameCluster", err)
	}

	// One role per name: b accepts "a"; establishing under that name fails.
	fromA, err := a.peering.GenerateToken(ctx, GenerateTokenRequest{PeerName: "b"})
	if err != nil {
		t.Fatal(err)
	}
	err = b.peering.Establish(ctx, EstablishRequest{PeerName: "self", PeeringToken: fromA})
	if !errors.Is(err, ErrPeeringConflict) || !strings.Contains(err.Error(), "there is an existing peering expecting to be dialed") {
		t.Errorf("establish over an acceptor: got %v", err)
	}
	// ... and b, having dialed "a2", cannot generate a token for "a2".
	if err := b.peering.Establish(ctx, EstablishRequest{PeerName: "a2", PeeringToken: fromA}); err != nil {
		t.Fatal(err)
	}
	_, err = b.peering.GenerateToken(ctx, GenerateTokenRequest{PeerName: "a2"})
	if !errors.Is(err, ErrPeeringConflict) || !strings.Contains(err.Error(), "there is already an established peering with this name") {
		t.Errorf("token for a dialer: got %v", err)
	}
}

func TestEstablishBadTokens(t *testing.T) {
	ctx := testContext(t)
	// a's clock runs two hours ahead: b's one-hour tokens are expired there.
	a := newTestCluster(t, "a", "dc1", func(c *Config) { c.Now = func() time.Time { return time.Now().Add(2 * time.Hour) } })
	b := newTestCluster(t, "b", "dc2", nil)
	good, err := b.peering.GenerateToken(ctx, GenerateTokenRequest{PeerName: "a"})
	if err != nil {
		t.Fatal(err)
	}
	// tamper re-encodes the good token after f changed it, bypassing
	// Encode's validation.
	tamper := func(f func(*Token)) string {
		tok, err := DecodeToken(good)
		if err != nil {
			t.Fatal(err)
		}
		f(tok)
		raw, _ := json.Marshal(tok)
		return base64.StdEncoding.EncodeToString(raw)
	}
	tests := []struct{ name, token string }{
		{"empty", ""},
		{"not base64", "this is not a token!"},
		{"truncated", good[:len(good)/2]},
		{"unknown field", "eyJmb28iOiAiYmFyIn0="},
		{"server name of another datacenter", tamper(func(tok *Token) { tok.ServerName = strings.Replace(tok.ServerName, "dc2", "dc9", 1) })},
		{"no addresses", tamper(func(tok *Token) { tok.ServerAddresses = nil })},
		{"secret not a UUID", tamper(func(tok *Token) { tok.EstablishmentSecret = "secret" })},
		{"CA not PEM", tamper(func(tok *Token) { tok.CA = []string{"garbage"} })},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := a.peering.Establish(ctx, EstablishRequest{PeerName: "b", PeeringToken: tt.token})
			if !errors.Is(err, ErrInvalidToken) {
				t.Errorf("got %v, want ErrInvalidToken", err)
			}
		})
	}
	if p := storedPeering(t, a, "b"); p != nil {
		t.Errorf("a bad token stored a peering: %+v", p)
	}

	// Well-formed tokens the acceptor refuses.
	refused := []struct {
		name  string
		token string
		want  error
	}{
		{"wrong secret", tamper(func(tok *Token) { tok.EstablishmentSecret = uuid.NewString() }), ErrTokenUsed},
		{"unknown peer ID", tamper(func(tok *Token) { tok.PeerID = uuid.NewString() }), ErrTokenUsed},
		{"wrong CA", tamper(func(tok *Token) { _, tok.CA, _ = a.peering.activeRoot() }), ErrPeerUnreachable},
	}
	for _, tt := range refused {
		t.Run(tt.name, func(t *testing.T) {
			err := a.peering.Establish(ctx, EstablishRequest{PeerName: "b", PeeringToken: tt.token})
			if !errors.Is(err, tt.want) {
				t.Errorf("got %v, want %v", err, tt.want)
			}
		})
	}
	if p := storedPeering(t, a, "b"); p != nil {
		t.Errorf("a refused token stored a peering: %+v", p)
	}

	expiring, err := b.peering.GenerateToken(ctx, GenerateTokenRequest{PeerName: "a", ExpiresIn: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	tok, _ := DecodeToken(expiring)
	if tok.ExpiresAt == nil || time.Until(*tok.ExpiresAt) < 59*time.Minute {
		t.Errorf("expires at: got %v, want in an hour", tok.ExpiresAt)
	}
	err = a.peering.Establish(ctx, EstablishRequest{PeerName: "b", PeeringToken: expiring})
	if !errors.Is(err, ErrTokenExpired) || !strings.Contains(err.Error(), "generate a new peering token") {
		t.Errorf("expired token: got %v, want ErrTokenExpired", err)
	}
}

func TestEstablishUnreachable(t *testing.T) {
	ctx := testContext(t)
	a := newTestCluster(t, "a", "dc1", nil)
	b := newTestCluster(t, "b", "dc2", nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	tok, err := b.peering.GenerateToken(ctx, GenerateTokenRequest{PeerName: "a", ServerExternalAddresses: []string{dead}})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err = a.peering.Establish(ctx, EstablishRequest{PeerName: "b", PeeringToken: tok})
	if !errors.Is(err, ErrPeerUnreachable) || !strings.Contains(err.Error(), dead) {
		t.Errorf("got %v, want ErrPeerUnreachable naming %s", err, dead)
	}
	if d := time.Since(start); d > exchangeTimeout+time.Second {
		t.Errorf("took %s", d)
	}
	if p := storedPeering(t, a, "b"); p != nil {
		t.Errorf("an unreachable peer left a peering: %+v", p)
	}
}

// TestEstablishedPeeringGoesActive checks what Read reports once the
// dialer's leader has opened the stream: ACTIVE on both sides, with
// heartbeats.
func TestEstablishedPeeringGoesActive(t *testing.T) {
	ctx := testContext(t)
	a, b := establishedPair(t)
	deadline := time.Now().Add(15 * time.Second)
	for {
		da, errA := a.peering.Read(ctx, "b")
		db, errB := b.peering.Read(ctx, "a")
		if errA != nil || errB != nil {
			t.Fatalf("read: %v, %v", errA, errB)
		}
		if da.State == state.PeeringActive && db.State == state.PeeringActive &&
			!da.StreamStatus.LastHeartbeat.IsZero() && !db.StreamStatus.LastHeartbeat.IsZero() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not ACTIVE on both sides after 15 s: dialer %s %+v, acceptor %s %+v", da.State, da.StreamStatus, db.State, db.StreamStatus)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestExchangeSecret(t *testing.T) {
	a := newTestCluster(t, "a", "dc1", nil)
	id, secret := acceptorPeering(t, a, "b")
	client := streamClient(t, a)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	tests := []struct {
		name     string
		peerID   string
		secret   string
		wantCode codes.Code
		wantMsg  string
	}{
		{"wrong secret", id, uuid.NewString(), codes.PermissionDenied, "generate a new peering token"},
		{"unknown peer ID", uuid.NewString(), secret, codes.NotFound, "no peering"},
		{"missing secret", id, "", codes.InvalidArgument, "required"},
		{"valid", id, secret, codes.OK, ""},
		{"replayed", id, secret, codes.PermissionDenied, "generate a new peering token"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := client.ExchangeSecret(ctx, &pbpeerstream.ExchangeSecretRequest{PeerId: tt.peerID, EstablishmentSecret: tt.secret})
			if got := statusCode(err); got != tt.wantCode {
				t.Fatalf("got %v (%v), want %v", got, err, tt.wantCode)
			}
			if err != nil && !strings.Contains(err.Error(), tt.wantMsg) {
				t.Fatalf("got %q, want it to mention %q", err, tt.wantMsg)
			}
			if err == nil && resp.GetStreamSecret() == "" {
				t.Fatal("got an empty stream secret")
			}
		})
	}
	sec, err := a.cluster.Store().PeeringSecrets(id)
	if err != nil || sec.PendingStreamSecret == "" || sec.EstablishmentSecret != "" {
		t.Fatalf("secrets after exchange: got %+v, %v; want a pending stream secret and no establishment secret", sec, err)
	}
}
