package httpapi

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/peerd/peerd/agent/admission"
	"github.com/peerd/peerd/catalog"
	"github.com/peerd/peerd/catalog/state"
	"github.com/peerd/peerd/internal/acl"
	"github.com/peerd/peerd/internal/decode"
	"github.com/peerd/peerd/internal/jointoken"
)

// JoinTokens is admission's side of /v1/operator/join-token*: servers with
// cluster trust make, list and revoke join tokens.
type JoinTokens interface {
	CreateToken(ctx context.Context, role string, ttl time.Duration, description string) (string, state.JoinToken, error)
	Tokens() ([]state.JoinToken, error)
	Revoke(ctx context.Context, id string) error
}

type joinTokenCreateRequest struct {
	Role        string
	TTL         decode.Duration
	Description string
}

// joinTokenJSON is one join token as the API shows it; Token (the secret)
// only in the answer to its creation.
type joinTokenJSON struct {
	ID          string
	Token       string `json:",omitempty"`
	Role        string
	Description string `json:",omitempty"`
	Status      string
	CreatedAt   time.Time
	ExpiresAt   time.Time
	RevokedAt   *time.Time `json:",omitempty"`
	Uses        int
	CreateIndex uint64
	ModifyIndex uint64
}

func joinTokenOut(t state.JoinToken, now time.Time) joinTokenJSON {
	out := joinTokenJSON{ID: t.ID, Role: t.Role, Description: t.Description, CreatedAt: t.CreatedAt, ExpiresAt: t.ExpiresAt,
		Uses: t.Uses, CreateIndex: t.CreateIndex, ModifyIndex: t.ModifyIndex, Status: "valid"}
	switch {
	case !t.RevokedAt.IsZero():
		r := t.RevokedAt
		out.RevokedAt, out.Status = &r, "revoked"
	case !now.Before(t.ExpiresAt):
		out.Status = "expired"
	}
	return out
}

// requireJoinToken is the permission to make a join token of role: a
// client's admits a node (operator:write); a server's admits a node that
// will hold the raft state, the CA key and the secrets with it, so it takes
// what a snapshot takes: a management token (acl:write).
func (s *Server) requireJoinToken(r *http.Request, role string) error {
	if role == jointoken.RoleClient {
		_, err := s.require(r, acl.ResourceOperator, "", acl.AccessWrite)
		return err
	}
	return s.requireManagement(r)
}

func (s *Server) joinTokens() (JoinTokens, error) {
	if s.tokens == nil {
		return nil, &httpError{code: http.StatusNotImplemented,
			msg: "join tokens are made by servers with cluster trust (-internal-tls): send this to a server's HTTP API"}
	}
	return s.tokens, nil
}

// joinTokenCreate is POST /v1/operator/join-token (peerd's): a join token
// for a new node of the given role. The answer is the only time the token
// is shown.
func (s *Server) joinTokenCreate(w http.ResponseWriter, r *http.Request) (any, error) {
	var req joinTokenCreateRequest
	if err := decodeBody(r, &req); err != nil {
		return nil, err
	}
	if err := s.requireJoinToken(r, req.Role); err != nil {
		return nil, err
	}
	jt, err := s.joinTokens()
	if err != nil {
		return nil, err
	}
	tok, rec, err := jt.CreateToken(r.Context(), req.Role, time.Duration(req.TTL), req.Description)
	if err != nil {
		return nil, errBadRequest("%v", err)
	}
	out := joinTokenOut(rec, time.Now())
	out.Token = tok
	return out, nil
}

// joinTokenList is GET /v1/operator/join-tokens: every token's record,
// without secrets (the servers keep none).
func (s *Server) joinTokenList(w http.ResponseWriter, r *http.Request) (any, error) {
	if _, err := s.require(r, acl.ResourceOperator, "", acl.AccessRead); err != nil {
		return nil, err
	}
	jt, err := s.joinTokens()
	if err != nil {
		return nil, err
	}
	list, err := jt.Tokens()
	if err != nil {
		return nil, err
	}
	out := []joinTokenJSON{}
	now := time.Now()
	for _, t := range list {
		out = append(out, joinTokenOut(t, now))
	}
	return out, nil
}

// joinTokenRevoke is DELETE /v1/operator/join-token/{id}: the token admits
// no node any more.
func (s *Server) joinTokenRevoke(w http.ResponseWriter, r *http.Request) (any, error) {
	if _, err := s.require(r, acl.ResourceOperator, "", acl.AccessWrite); err != nil {
		return nil, err
	}
	jt, err := s.joinTokens()
	if err != nil {
		return nil, err
	}
	id := r.PathValue("id")
	if err := jt.Revoke(r.Context(), id); err != nil {
		if errors.Is(err, admission.ErrNoToken) {
			return nil, errNotFound("%v", err)
		}
		return nil, err
	}
	return true, nil
}

// nodeRevoke is POST /v1/operator/revoke-node/{node} (peerd's): every
// certificate of the node signed so far stops working on raft, the
// internal port and the node hop; its open streams end. Servers only.
func (s *Server) nodeRevoke(w http.ResponseWriter, r *http.Request) (any, error) {
	if _, err := s.require(r, acl.ResourceOperator, "", acl.AccessWrite); err != nil {
		return nil, err
	}
	node := r.PathValue("node")
	at, err := s.cluster.RevokeNode(r.Context(), node, time.Now())
	if errors.Is(err, catalog.ErrNotServer) {
		return nil, errBadRequest("%v: send it to a server's HTTP API", err)
	}
	if err != nil {
		return nil, err
	}
	return map[string]any{"Node": node, "RevokedAt": at}, nil
}
