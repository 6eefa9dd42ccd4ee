package state

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/go-memdb"
)

// JoinToken is the servers' record of a join credential (the admission of
// new nodes): its public ID, the SHA-256 of its secret, never the secret,
// the role it grants and its lifetime. Clients never see these rows (the
// mirror leaves them out); snapshots hold them.
type JoinToken struct {
	ID          string
	SecretHash  string
	Role        string
	Description string `json:",omitempty"`
	CreatedAt   time.Time
	ExpiresAt   time.Time
	// RevokedAt is set once the operator revokes the token; the row stays
	// so that a later use is refused as revoked, not as unknown.
	RevokedAt time.Time `json:",omitzero"`
	// Uses counts the nodes the token admitted.
	Uses        int `json:",omitempty"`
	CreateIndex uint64
	ModifyIndex uint64
}

// JoinTokenRequest writes (creates, revokes, counts a use of) or deletes a
// join token record.
type JoinTokenRequest struct {
	Token  *JoinToken `json:",omitempty"`
	Delete string     `json:",omitempty"`
}

const tableJoinTokens = "join-tokens"

func joinTokenTables() map[string]*memdb.TableSchema {
	id := index(func(o any) []string { return []string{o.(*JoinToken).ID} })
	id.Name, id.Unique = "id", true
	return map[string]*memdb.TableSchema{
		tableJoinTokens: {Name: tableJoinTokens, Indexes: map[string]*memdb.IndexSchema{"id": id}},
	}
}

// JoinTokenApply applies a JoinTokenRequest.
func (s *Store) JoinTokenApply(idx uint64, req *JoinTokenRequest) error {
	tx := s.write()
	defer tx.Abort()
	switch {
	case req.Token != nil && req.Delete == "":
		t := *req.Token
		if t.ID == "" || t.SecretHash == "" {
			return errors.New("join token write: ID and secret hash are required")
		}
		raw, err := tx.First(tableJoinTokens, "id", t.ID)
		if err != nil {
			return fmt.Errorf("look up join token %s: %w", t.ID, err)
		}
		t.CreateIndex = idx
		if raw != nil {
			old := raw.(*JoinToken)
			if old.SecretHash != t.SecretHash || old.Role != t.Role {
				return fmt.Errorf("join token %s exists with another secret or role", t.ID)
			}
			t.CreateIndex = old.CreateIndex
			if !old.RevokedAt.IsZero() {
				t.RevokedAt = old.RevokedAt // a revocation is final
			}
		}
		t.ModifyIndex = idx
		if err := tx.Insert(tableJoinTokens, &t); err != nil {
			return fmt.Errorf("insert join token %s: %w", t.ID, err)
		}
	case req.Token == nil && req.Delete != "":
		if err := deleteRows(tx, idx, tableJoinTokens, "id", req.Delete); err != nil {
			return err
		}
	default:
		return errors.New("join token request: set exactly one of Token and Delete")
	}
	if err := bumpIndex(tx, idx, tableJoinTokens); err != nil {
		return err
	}
	tx.Commit()
	return nil
}

// JoinToken returns the record of one join token, or nil.
func (s *Store) JoinToken(id string) *JoinToken {
	tx := s.read(nil)
	defer tx.Abort()
	raw, err := tx.First(tableJoinTokens, "id", id)
	if err != nil || raw == nil {
		return nil
	}
	cp := *raw.(*JoinToken)
	return &cp
}

// JoinTokens returns every join token record, oldest first.
func (s *Store) JoinTokens(ws memdb.WatchSet) (uint64, []JoinToken, error) {
	tx := s.read(ws)
	defer tx.Abort()
	idx := tablesIndex(tx, ws, tableJoinTokens)
	it, err := tx.Get(tableJoinTokens, "id")
	if err != nil {
		return 0, nil, fmt.Errorf("list join tokens: %w", err)
	}
	if ws != nil {
		ws.Add(it.WatchCh())
	}
	var out []JoinToken
	for raw := it.Next(); raw != nil; raw = it.Next() {
		out = append(out, *raw.(*JoinToken))
	}
	slices.SortFunc(out, func(a, b JoinToken) int {
		if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return idx, out, nil
}
