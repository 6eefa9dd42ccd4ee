package state

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestJoinTokens(t *testing.T) {
	s, err := NewStore()
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC)
	tok := &JoinToken{ID: "0123456789abcdef", SecretHash: "feedface", Role: "client", CreatedAt: at, ExpiresAt: at.Add(time.Hour)}
	if err := s.JoinTokenApply(10, &JoinTokenRequest{Token: tok}); err != nil {
		t.Fatal(err)
	}
	revoked := *tok
	revoked.RevokedAt = at.Add(time.Minute)
	if err := s.JoinTokenApply(11, &JoinTokenRequest{Token: &revoked}); err != nil {
		t.Fatal(err)
	}
	// A later write (a use counted) cannot undo the revocation.
	used := *tok
	used.Uses = 1
	if err := s.JoinTokenApply(12, &JoinTokenRequest{Token: &used}); err != nil {
		t.Fatal(err)
	}
	got := s.JoinToken(tok.ID)
	if got == nil || got.RevokedAt.IsZero() || got.CreateIndex != 10 || got.ModifyIndex != 12 {
		t.Fatalf("record: %+v", got)
	}
	other := *tok
	other.SecretHash = "other"
	if err := s.JoinTokenApply(13, &JoinTokenRequest{Token: &other}); err == nil {
		t.Fatal("a write replaced a token's secret")
	}

	var snap, mirror bytes.Buffer
	if err := s.Snapshot().Write(&snap); err != nil {
		t.Fatal(err)
	}
	if _, err := s.WriteMirror(&mirror, nil); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(snap.String(), "feedface") {
		t.Fatal("the snapshot lacks the join token")
	}
	if strings.Contains(mirror.String(), "feedface") || strings.Contains(mirror.String(), tok.ID) {
		t.Fatal("the mirror a client node gets holds a join token")
	}
	restored, _ := NewStore()
	if err := restored.Restore(&snap); err != nil {
		t.Fatal(err)
	}
	if r := restored.JoinToken(tok.ID); r == nil || r.RevokedAt.IsZero() {
		t.Fatalf("restored: %+v", r)
	}

	if err := s.JoinTokenApply(14, &JoinTokenRequest{Delete: tok.ID}); err != nil {
		t.Fatal(err)
	}
	if _, list, _ := s.JoinTokens(nil); len(list) != 0 {
		t.Fatalf("after delete: %+v", list)
	}
}

// TestRestoreRefusesIncompleteRecords: a snapshot or mirror record missing
// the part its table's index reads is an error, not a panic (found by
// catalog's FuzzMirrorApply).
func TestRestoreRefusesIncompleteRecords(t *testing.T) {
	s, err := NewStore()
	if err != nil {
		t.Fatal(err)
	}
	for _, rec := range []string{`{"Node":{}}`, `{"Service":{"Node":"n"}}`, `{"Check":{"Node":"n"}}`} {
		if err := s.Restore(strings.NewReader(rec + "\n")); err == nil || !strings.Contains(err.Error(), "without") {
			t.Errorf("%s: got %v", rec, err)
		}
	}
}
