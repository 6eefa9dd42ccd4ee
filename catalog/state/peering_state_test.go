package state

import (
	"bytes"
	"errors"
	"testing"
)

func acceptor(name, id string) *Peering {
	return &Peering{ID: id, Name: name, State: PeeringPending}
}

func TestPeeringSecretsLifecycle(t *testing.T) {
	s := newTestStore(t)
	if err := s.PeeringWrite(1, &PeeringWriteRequest{Peering: acceptor("b", "p1"),
		Secrets: &PeeringSecrets{EstablishmentSecret: "est-1"}}); err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		name    string
		req     PeeringSecretsRequest
		wantErr error
	}{
		{"wrong establishment secret", PeeringSecretsRequest{Op: SecretsExchange, PeeringID: "p1", Presented: "nope", New: "s1"}, ErrInvalidSecret},
		{"exchange", PeeringSecretsRequest{Op: SecretsExchange, PeeringID: "p1", Presented: "est-1", New: "s1"}, nil},
		{"replayed establishment secret", PeeringSecretsRequest{Op: SecretsExchange, PeeringID: "p1", Presented: "est-1", New: "s2"}, ErrInvalidSecret},
		{"stream with a wrong secret", PeeringSecretsRequest{Op: SecretsPromote, PeeringID: "p1", Presented: "s2"}, ErrInvalidSecret},
		{"first stream promotes pending", PeeringSecretsRequest{Op: SecretsPromote, PeeringID: "p1", Presented: "s1"}, nil},
		{"reconnect with the active secret", PeeringSecretsRequest{Op: SecretsPromote, PeeringID: "p1", Presented: "s1"}, nil},
		{"unknown peering", PeeringSecretsRequest{Op: SecretsPromote, PeeringID: "p9", Presented: "s1"}, ErrInvalidSecret},
		{"empty secret", PeeringSecretsRequest{Op: SecretsPromote, PeeringID: "p1", Presented: ""}, ErrInvalidSecret},
	}
	for i, tt := range steps {
		t.Run(tt.name, func(t *testing.T) {
			err := s.PeeringSecretsUpdate(uint64(10+i), &tt.req)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("got %v, want %v", err, tt.wantErr)
			}
		})
	}
	sec, _ := s.PeeringSecrets("p1")
	if sec.ActiveStreamSecret != "s1" || sec.PendingStreamSecret != "" || sec.EstablishmentSecret != "" {
		t.Fatalf("got secrets %+v, want only active s1", sec)
	}
	// A new token for the same name keeps the live stream's secret.
	if err := s.PeeringWrite(30, &PeeringWriteRequest{Peering: acceptor("b", "p1"),
		Secrets: &PeeringSecrets{EstablishmentSecret: "est-2", ActiveStreamSecret: sec.ActiveStreamSecret}}); err != nil {
		t.Fatal(err)
	}
	if err := s.PeeringSecretsUpdate(31, &PeeringSecretsRequest{Op: SecretsPromote, PeeringID: "p1", Presented: "s1"}); err != nil {
		t.Fatalf("live stream refused after regenerating a token: %v", err)
	}
}

func TestPeeringTokenExpiry(t *testing.T) {
	s := newTestStore(t)
	if err := s.PeeringWrite(1, &PeeringWriteRequest{Peering: acceptor("b", "p1"),
		Secrets: &PeeringSecrets{EstablishmentSecret: "e", EstablishmentExpiresAt: 100}}); err != nil {
		t.Fatal(err)
	}
	err := s.PeeringSecretsUpdate(2, &PeeringSecretsRequest{Op: SecretsExchange, PeeringID: "p1", Presented: "e", New: "s", Now: 101})
	if !errors.Is(err, ErrInvalidSecret) {
		t.Fatalf("got %v, want an expired token refused", err)
	}
}

func TestPeeringOneRolePerName(t *testing.T) {
	s := newTestStore(t)
	if err := s.PeeringWrite(1, &PeeringWriteRequest{Peering: acceptor("b", "p1")}); err != nil {
		t.Fatal(err)
	}
	dialer := &Peering{ID: "p2", Name: "b", State: PeeringEstablishing, ShouldDial: true}
	if err := s.PeeringWrite(2, &PeeringWriteRequest{Peering: dialer}); !errors.Is(err, ErrPeeringRole) {
		t.Fatalf("got %v, want ErrPeeringRole", err)
	}
	// Once terminated, the name can be reused in either role.
	term := acceptor("b", "p1")
	term.State = PeeringTerminated
	if err := s.PeeringWrite(3, &PeeringWriteRequest{Peering: term}); err != nil {
		t.Fatal(err)
	}
	if err := s.PeeringWrite(4, &PeeringWriteRequest{Peering: dialer}); err != nil {
		t.Fatalf("re-establishing a terminated name: %v", err)
	}
	_, p, _ := s.Peering(nil, "b")
	if p.ID != "p2" || p.CreateIndex != 4 {
		t.Fatalf("got %+v, want the new relationship created at 4", p)
	}
}

func TestPeeringDeleteAndImportedPurge(t *testing.T) {
	s := newTestStore(t)
	if err := s.PeeringWrite(1, &PeeringWriteRequest{Peering: acceptor("b", "p1"), Secrets: &PeeringSecrets{EstablishmentSecret: "e"}}); err != nil {
		t.Fatal(err)
	}
	if err := s.TrustBundleWrite(2, &PeeringTrustBundle{PeerName: "b", TrustDomain: "x.peerd", RootPEMs: []string{"pem"}}); err != nil {
		t.Fatal(err)
	}
	var regs []*RegisterRequest
	for _, n := range []string{"n1", "n2", "n3"} {
		r := reg(n, "web")
		r.PeerName = "b"
		regs = append(regs, r)
	}
	if err := s.RegisterBatch(3, regs); err != nil {
		t.Fatal(err)
	}
	nodes, _ := s.ImportedNodes("b", 2)
	if len(nodes) != 2 {
		t.Fatalf("got %d nodes in the first batch, want 2", len(nodes))
	}
	var dereg []*DeregisterRequest
	for _, n := range nodes {
		dereg = append(dereg, &DeregisterRequest{Node: n, PeerName: "b"})
	}
	if err := s.DeregisterBatch(4, dereg); err != nil {
		t.Fatal(err)
	}
	if rest, _ := s.ImportedNodes("b", 0); len(rest) != 1 {
		t.Fatalf("got %v left, want one node", rest)
	}
	if err := s.PeeringDelete(5, "b"); err != nil {
		t.Fatal(err)
	}
	_, p, _ := s.Peering(nil, "b")
	_, tb, _ := s.TrustBundle(nil, "b")
	sec, _ := s.PeeringSecrets("p1")
	if p != nil || tb != nil || sec != nil {
		t.Fatalf("got peering %v, bundle %v, secrets %v after delete, want none", p, tb, sec)
	}
}

func TestPeeringStateSurvivesSnapshot(t *testing.T) {
	st := newTestStore(t)
	_ = st.PeeringWrite(1, &PeeringWriteRequest{Peering: acceptor("b", "p1"), Secrets: &PeeringSecrets{EstablishmentSecret: "e"}})
	_ = st.TrustBundleWrite(2, &PeeringTrustBundle{PeerName: "b", TrustDomain: "x.peerd"})
	_ = st.MetaSet(3, &MetaSetRequest{Key: "cluster-id", Value: "abc"})
	_ = st.MetaSet(4, &MetaSetRequest{Key: "cluster-id", Value: "other", OnlyIfAbsent: true})
	_ = st.CARootsSet(5, &CARootsRequest{Roots: []*CARoot{{ID: "r1", Active: true}, {ID: "r0"}}})
	var buf bytes.Buffer
	if err := st.Snapshot().Write(&buf); err != nil {
		t.Fatal(err)
	}
	d := newTestStore(t)
	if err := d.Restore(&buf); err != nil {
		t.Fatal(err)
	}
	if _, p, _ := d.Peering(nil, "b"); p == nil || p.ID != "p1" {
		t.Fatalf("got peering %+v after restore", p)
	}
	if sec, _ := d.PeeringSecrets("p1"); sec == nil || sec.EstablishmentSecret != "e" {
		t.Fatalf("got secrets %+v after restore", sec)
	}
	if got := d.Meta("cluster-id"); got != "abc" {
		t.Fatalf("got cluster-id %q, want abc (set once)", got)
	}
	if _, roots, _ := d.CARoots(nil); len(roots) != 2 || !roots[0].Active {
		t.Fatalf("got roots %+v, want two with the active one first", roots)
	}
	if err := d.CARootsSet(6, &CARootsRequest{Roots: []*CARoot{{ID: "a"}, {ID: "b"}}}); err == nil {
		t.Fatal("roots without an active one accepted")
	}
}

func TestPeeringDeletingCannotBeUndone(t *testing.T) {
	s := newTestStore(t)
	p := acceptor("b", "p1")
	if err := s.PeeringWrite(1, &PeeringWriteRequest{Peering: p}); err != nil {
		t.Fatal(err)
	}
	del := *p
	del.State = PeeringDeleting
	if err := s.PeeringWrite(2, &PeeringWriteRequest{Peering: &del}); err != nil {
		t.Fatal(err)
	}
	active := *p
	active.State = PeeringActive
	if err := s.PeeringWrite(3, &PeeringWriteRequest{Peering: &active}); !errors.Is(err, ErrPeeringDeleting) {
		t.Fatalf("got %v, want ErrPeeringDeleting", err)
	}
	if _, got, _ := s.Peering(nil, "b"); got.State != PeeringDeleting {
		t.Fatalf("got state %s, want DELETING kept", got.State)
	}
}

func TestSecretMatches(t *testing.T) {
	tests := []struct {
		name              string
		stored, presented string
		want              bool
	}{
		{"equal", "s3cret", "s3cret", true},
		{"different", "s3cret", "s3cres", false},
		{"prefix", "s3cret", "s3c", false},
		{"longer", "s3cret", "s3cret!", false},
		{"empty stored matches nothing", "", "", false},
		{"empty presented", "s3cret", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := SecretMatches(tt.stored, tt.presented); got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestStreamSecretRotation(t *testing.T) {
	s := newTestStore(t)
	bound := &StreamIdentity{TrustDomain: "dialer.peerd", RootPEMs: []string{"root"}}
	if err := s.PeeringWrite(1, &PeeringWriteRequest{Peering: acceptor("b", "p1"),
		Secrets: &PeeringSecrets{EstablishmentSecret: "est-1"}}); err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		name    string
		req     PeeringSecretsRequest
		wantErr error
	}{
		{"rotate before any stream", PeeringSecretsRequest{Op: SecretsRotate, PeeringID: "p1", New: "r0"}, ErrNoActiveSecret},
		{"exchange binds", PeeringSecretsRequest{Op: SecretsExchange, PeeringID: "p1", Presented: "est-1", New: "s1", Identity: bound}, nil},
		{"first stream promotes", PeeringSecretsRequest{Op: SecretsPromote, PeeringID: "p1", Presented: "s1", Now: 100}, nil},
		{"rotate", PeeringSecretsRequest{Op: SecretsRotate, PeeringID: "p1", New: "s2", Now: 200}, nil},
		{"rotate again keeps the pending one", PeeringSecretsRequest{Op: SecretsRotate, PeeringID: "p1", New: "s3", Now: 300}, nil},
		{"old secret still opens before promotion", PeeringSecretsRequest{Op: SecretsPromote, PeeringID: "p1", Presented: "s1", Now: 350}, nil},
		{"the dialer takes the new one", PeeringSecretsRequest{Op: SecretsPromote, PeeringID: "p1", Presented: "s2", Now: 400}, nil},
		{"the old one is refused", PeeringSecretsRequest{Op: SecretsPromote, PeeringID: "p1", Presented: "s1", Now: 500}, ErrInvalidSecret},
		{"the never-offered one is refused", PeeringSecretsRequest{Op: SecretsPromote, PeeringID: "p1", Presented: "s3", Now: 500}, ErrInvalidSecret},
	}
	for i, tt := range steps {
		t.Run(tt.name, func(t *testing.T) {
			err := s.PeeringSecretsUpdate(uint64(10+i), &tt.req)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("got %v, want %v", err, tt.wantErr)
			}
			if tt.name == "rotate again keeps the pending one" {
				sec, _ := s.PeeringSecrets("p1")
				if sec.PendingStreamSecret != "s2" || !sec.PendingRotated || sec.PendingIdentity == nil || sec.PendingIdentity.TrustDomain != "dialer.peerd" {
					t.Fatalf("got pending %q rotated=%v identity=%+v, want s2, rotated, bound to dialer.peerd", sec.PendingStreamSecret, sec.PendingRotated, sec.PendingIdentity)
				}
			}
		})
	}
	sec, _ := s.PeeringSecrets("p1")
	if sec.ActiveStreamSecret != "s2" || sec.PendingStreamSecret != "" || sec.PendingRotated || sec.ActiveSince != 400 {
		t.Fatalf("got %+v, want active s2 since 400, nothing pending", sec)
	}
	if sec.ActiveIdentity == nil || sec.ActiveIdentity.TrustDomain != "dialer.peerd" {
		t.Fatalf("got active identity %+v, want the exchange's binding kept through the rotation", sec.ActiveIdentity)
	}

	// The dialer's side stores what it was given.
	if err := s.PeeringWrite(40, &PeeringWriteRequest{Peering: &Peering{ID: "d1", Name: "a", State: PeeringActive, ShouldDial: true},
		Secrets: &PeeringSecrets{DialerStreamSecret: "x1"}}); err != nil {
		t.Fatal(err)
	}
	if err := s.PeeringSecretsUpdate(41, &PeeringSecretsRequest{Op: SecretsStore, PeeringID: "d1", New: "x2"}); err != nil {
		t.Fatal(err)
	}
	if d, _ := s.PeeringSecrets("d1"); d.DialerStreamSecret != "x2" {
		t.Fatalf("got dialer secret %q, want x2", d.DialerStreamSecret)
	}
	if got := s.PeeringIndex(); got != 41 {
		t.Fatalf("got peering index %d, want 41", got)
	}
}
