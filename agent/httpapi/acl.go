package httpapi

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/hashicorp/go-memdb"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/peerd/peerd/catalog"
	"github.com/peerd/peerd/catalog/state"
	"github.com/peerd/peerd/internal/acl"
	"github.com/peerd/peerd/internal/decode"
)

// The ACL system's endpoints (/v1/acl/*), in Consul's shapes and status
// codes. Every one is served by the leader: a follower or a client node
// relays the request (its token included) there, so the token is
// resolved, and the write checked, against the authoritative state. Reads
// with ?stale are answered by any server.
//
// Permissions: acl:read for reads, acl:write for writes, any valid token
// for /v1/acl/token/self, none for the bootstrap. A SecretID is shown only
// to a token with acl:write (else "<hidden>", as Consul) and never logged.

// hiddenSecret stands for a SecretID the caller may not see.
const hiddenSecret = "<hidden>"

// aclMetrics counts the ACL endpoints' refusals by reason: denied
// (permission), token (unknown token), bootstrap (done already), invalid
// (a write the ACL system refuses), disabled (ACLs off).
type aclMetrics struct {
	refused *prometheus.CounterVec
}

func (s *Server) initACL() error {
	s.aclm = &aclMetrics{refused: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "peerd_acl_api_refusals_total",
		Help: "Requests to the /v1/acl endpoints refused, by route and reason (denied, token, bootstrap, invalid, disabled).",
	}, []string{"route", "reason"})}
	if err := s.registry.Register(s.aclm.refused); err != nil {
		return fmt.Errorf("register acl metrics: %w", err)
	}
	return nil
}

// aclRoutes registers the /v1/acl endpoints.
func (s *Server) aclRoutes() {
	for _, rt := range []struct {
		pattern string
		ep      endpoint
	}{
		{"PUT /v1/acl/bootstrap", s.aclBootstrap},
		{"PUT /v1/acl/token", s.aclTokenCreate},
		{"GET /v1/acl/token/self", s.aclTokenSelf},
		{"GET /v1/acl/token/{id}", s.aclTokenRead},
		{"PUT /v1/acl/token/{id}", s.aclTokenUpdate},
		{"DELETE /v1/acl/token/{id}", s.aclTokenDelete},
		{"PUT /v1/acl/token/{id}/clone", s.aclTokenClone},
		{"GET /v1/acl/tokens", s.aclTokenList},
		{"PUT /v1/acl/policy", s.aclPolicyCreate},
		{"GET /v1/acl/policy/{id}", s.aclPolicyRead(false)},
		{"GET /v1/acl/policy/name/{name}", s.aclPolicyRead(true)},
		{"PUT /v1/acl/policy/{id}", s.aclPolicyUpdate},
		{"DELETE /v1/acl/policy/{id}", s.aclPolicyDelete},
		{"GET /v1/acl/policies", s.aclPolicyList},
		{"PUT /v1/acl/role", s.aclRoleCreate},
		{"GET /v1/acl/role/{id}", s.aclRoleRead(false)},
		{"GET /v1/acl/role/name/{name}", s.aclRoleRead(true)},
		{"PUT /v1/acl/role/{id}", s.aclRoleUpdate},
		{"DELETE /v1/acl/role/{id}", s.aclRoleDelete},
		{"GET /v1/acl/roles", s.aclRoleList},
	} {
		s.handle(rt.pattern, s.aclRefusals(rt.pattern, rt.ep))
	}
}

// aclRefusals counts and logs ep's refusals. The log names the route, the
// status and the reason; never a token.
func (s *Server) aclRefusals(route string, ep endpoint) endpoint {
	return func(w http.ResponseWriter, r *http.Request) (any, error) {
		out, err := ep(w, r)
		if err == nil {
			return out, nil
		}
		reason := ""
		var he *httpError
		switch {
		case errors.Is(err, acl.ErrPermissionDenied):
			reason = "denied"
		case errors.As(err, &he) && he.reason != "":
			reason = he.reason
		}
		if reason != "" {
			s.aclm.refused.WithLabelValues(route, reason).Inc()
			s.log.Info("refused an ACL request", "route", route, "reason", reason, "err", err)
		}
		return nil, err
	}
}

func aclError(code int, reason, format string, a ...any) error {
	return &httpError{code: code, msg: fmt.Sprintf(format, a...), reason: reason}
}

// aclOn refuses every ACL endpoint while ACLs are off, as Consul does.
func (s *Server) aclOn() error {
	if s.acl == nil || !s.acl.Enabled() {
		return aclError(http.StatusUnauthorized, "disabled", "ACL support disabled")
	}
	return nil
}

// aclRelay relays r to the leader unless this node serves it: it is the
// leader, or r was relayed to it by a server (the leader moved meanwhile:
// a write is then forwarded by Apply), or r is a ?stale read and this node
// is a server. It reports whether it relayed (the answer is written).
//
// Only the relay itself can say a request was relayed: the header alone
// comes from anyone, and a follower that served writes on it would
// authorize them against its own, possibly lagging, state.
func (s *Server) aclRelay(w http.ResponseWriter, r *http.Request, stale bool) (bool, error) {
	relayed := r.Header.Get(relayedHeader) != "" && r.RemoteAddr == relayRemoteAddr
	if s.cluster.IsLeader() || (s.cluster.Store() != nil && (stale || relayed)) {
		return false, nil
	}
	return true, s.relay(w, r, stale)
}

// aclAuthorize resolves r's token and requires acl:<a> of it.
func (s *Server) aclAuthorize(r *http.Request, a acl.Access) (acl.Enforcer, error) {
	e, err := s.authorize(r)
	if err != nil {
		return acl.Enforcer{}, s.tokenRefusal(err)
	}
	if err := e.Require(acl.ResourceACL, "", a); err != nil {
		return acl.Enforcer{}, err
	}
	return e, nil
}

// tokenRefusal tags authorize's "ACL not found" as a token refusal.
func (s *Server) tokenRefusal(err error) error {
	var he *httpError
	if errors.As(err, &he) && he.msg == ErrACLNotFound.Error() {
		return aclError(he.code, "token", "%s", he.msg)
	}
	return err
}

// aclStore is the state this node serves ACL requests from: the leader's
// (or a server's, for ?stale) raft state.
func (s *Server) aclStore() (*state.Store, error) {
	st := s.cluster.Store()
	if st == nil {
		return nil, errors.New("acl: this node holds no raft state (a client node relays ACL requests)")
	}
	return st, nil
}

// aclApply applies an ACL write and maps the state's refusals (which
// cross raft as text) onto Consul's codes.
func (s *Server) aclApply(r *http.Request, req *state.ACLRequest) error {
	_, err := s.cluster.Apply(r.Context(), &catalog.Command{Type: catalog.CmdACL, ACL: req})
	var ae *catalog.ApplyError
	if !errors.As(err, &ae) {
		return err
	}
	switch {
	case strings.HasPrefix(ae.Msg, state.ErrACLBootstrapDone.Error()):
		return aclError(http.StatusForbidden, "bootstrap", "%s", ae.Msg)
	case strings.HasPrefix(ae.Msg, state.ErrACLNotFound.Error()):
		return aclError(http.StatusNotFound, "invalid", "%s", ae.Msg)
	case strings.HasPrefix(ae.Msg, state.ErrACLInvalid.Error()):
		return aclError(http.StatusBadRequest, "invalid", "%s", strings.TrimPrefix(ae.Msg, state.ErrACLInvalid.Error()+": "))
	}
	return err
}

func badACL(format string, a ...any) error {
	return aclError(http.StatusBadRequest, "invalid", format, a...)
}

// decodeOptional decodes a body that may be empty (bootstrap, clone).
func decodeOptional(r *http.Request, v any) error {
	b, err := readOptionalBody(r)
	if err != nil || len(b) == 0 {
		return err
	}
	if err := decode.JSON(b, v); err != nil {
		return badACL("invalid request body: %v", err)
	}
	return nil
}

func readOptionalBody(r *http.Request) ([]byte, error) {
	if r.Body == nil {
		return nil, nil
	}
	b, err := io.ReadAll(r.Body)
	if err != nil {
		return nil, err // MaxBytesError maps to 413
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return nil, nil
	}
	return b, nil
}

// ---- bootstrap ----

type aclBootstrapBody struct {
	// BootstrapSecret is the SecretID to give the token ("" = a new one).
	BootstrapSecret string
}

// aclBootstrap is PUT /v1/acl/bootstrap: the first management token,
// once. A second bootstrap is 403 "ACL bootstrap no longer allowed (reset
// index: N)" unless the operator wrote N to <data-dir>/acl-bootstrap-reset
// on the leader (Consul's reset); the file is removed once used.
func (s *Server) aclBootstrap(w http.ResponseWriter, r *http.Request) (any, error) {
	if err := s.aclOn(); err != nil {
		return nil, err
	}
	if relayed, err := s.aclRelay(w, r, false); relayed {
		return nil, err
	}
	var body aclBootstrapBody
	if err := decodeOptional(r, &body); err != nil {
		return nil, err
	}
	if body.BootstrapSecret != "" {
		if err := state.ValidSecret("BootstrapSecret", body.BootstrapSecret); err != nil {
			return nil, badACL("%v", strings.TrimPrefix(err.Error(), state.ErrACLInvalid.Error()+": "))
		}
	}
	reset, err := s.readBootstrapReset()
	if err != nil {
		return nil, err
	}
	tok, err := s.cluster.ACLBootstrap(r.Context(), body.BootstrapSecret, reset)
	if err != nil {
		var ae *catalog.ApplyError
		if errors.As(err, &ae) && strings.HasPrefix(ae.Msg, state.ErrACLBootstrapDone.Error()) {
			return nil, aclError(http.StatusForbidden, "bootstrap", "%s", ae.Msg)
		}
		if errors.As(err, &ae) {
			return nil, badACL("%s", ae.Msg)
		}
		return nil, err
	}
	if reset != 0 {
		if err := os.Remove(s.aclResetFile); err != nil && !os.IsNotExist(err) {
			s.log.Warn("remove the ACL bootstrap reset file after its use", "path", s.aclResetFile, "err", err)
		}
	}
	s.log.Info("ACL system bootstrapped", "accessor", tok.AccessorID, "reset_index", reset)
	return s.tokenOut(r.Context(), tok.AccessorID, true)
}

// readBootstrapReset reads the reset index an operator wrote to allow
// another bootstrap; 0 = none.
func (s *Server) readBootstrapReset() (uint64, error) {
	if s.aclResetFile == "" {
		return 0, nil
	}
	b, err := os.ReadFile(s.aclResetFile)
	if os.IsNotExist(err) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read the ACL bootstrap reset file: %w", err)
	}
	n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	if err != nil || n == 0 {
		return 0, badACL("the ACL bootstrap reset file %s holds %q: write the reset index the last refusal named", s.aclResetFile, strings.TrimSpace(string(b)))
	}
	return n, nil
}

// ---- tokens ----

// aclTokenBody is a token as Consul's client sends it; fields peerd has no
// use for (auth methods, templated policies, namespaces) must be empty.
type aclTokenBody struct {
	AccessorID          string
	SecretID            string
	Description         string
	Policies            []state.ACLLink
	Roles               []state.ACLLink
	ServiceIdentities   []*state.ACLServiceIdentity
	NodeIdentities      []*state.ACLNodeIdentity
	TemplatedPolicies   []any
	Local               bool
	AuthMethod          string
	ExpirationTTL       decode.DurationNanos
	ExpirationTime      *time.Time
	CreateTime          time.Time
	Hash                []byte
	CreateIndex         uint64
	ModifyIndex         uint64
	Name                string
	Namespace           string
	Partition           string
	AuthMethodNamespace string
}

// tokenJSON is a token as Consul answers it.
type tokenJSON struct {
	CreateIndex       uint64
	ModifyIndex       uint64
	AccessorID        string
	SecretID          string
	Description       string
	Policies          []state.ACLLink             `json:",omitempty"`
	Roles             []state.ACLLink             `json:",omitempty"`
	ServiceIdentities []*state.ACLServiceIdentity `json:",omitempty"`
	NodeIdentities    []*state.ACLNodeIdentity    `json:",omitempty"`
	Local             bool
	ExpirationTTL     time.Duration `json:",omitempty"`
	ExpirationTime    *time.Time    `json:",omitempty"`
	CreateTime        time.Time
	Hash              []byte `json:",omitempty"`
}

func tokenView(t *state.ACLToken, secret bool) tokenJSON {
	out := tokenJSON{CreateIndex: t.CreateIndex, ModifyIndex: t.ModifyIndex, AccessorID: t.AccessorID, SecretID: t.SecretID,
		Description: t.Description, Policies: t.Policies, Roles: t.Roles, ServiceIdentities: t.ServiceIdentities,
		NodeIdentities: t.NodeIdentities, Local: t.Local, ExpirationTTL: t.ExpirationTTL, ExpirationTime: t.ExpirationTime,
		CreateTime: t.CreateTime, Hash: t.Hash}
	if !secret {
		out.SecretID = hiddenSecret
	}
	return out
}

// tokenOut answers with a token just written. Apply returns once the
// entry is applied on the leader, which is normally this node; when the
// leadership moved meanwhile this server may lag a moment, so the read
// waits (a few seconds at most) for the token to show.
func (s *Server) tokenOut(ctx context.Context, accessor string, secret bool) (any, error) {
	st, err := s.aclStore()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	for {
		ws := memdb.NewWatchSet()
		_, t, err := st.ACLToken(ws, accessor)
		if err != nil {
			return nil, err
		}
		if t != nil {
			return tokenView(t, secret), nil
		}
		if err := ws.WatchCtx(ctx); err != nil {
			return nil, fmt.Errorf("read the token just written: %w", err)
		}
	}
}

func (b *aclTokenBody) unsupported() error {
	switch {
	case len(b.TemplatedPolicies) > 0:
		return badACL("templated policies are not supported: link policies, roles or identities")
	case b.AuthMethod != "" || b.AuthMethodNamespace != "":
		return badACL("auth methods are not supported: tokens are made through /v1/acl/token")
	}
	return defaultTenancy(b.Namespace, b.Partition)
}

func defaultTenancy(ns, partition string) error {
	if (ns != "" && ns != "default") || (partition != "" && partition != "default") {
		return badACL("namespaces and partitions are not supported: peerd has the default ones only")
	}
	return nil
}

// aclTokenCreate is PUT /v1/acl/token.
func (s *Server) aclTokenCreate(w http.ResponseWriter, r *http.Request) (any, error) {
	if err := s.aclOn(); err != nil {
		return nil, err
	}
	if relayed, err := s.aclRelay(w, r, false); relayed {
		return nil, err
	}
	if _, err := s.aclAuthorize(r, acl.AccessWrite); err != nil {
		return nil, err
	}
	var body aclTokenBody
	if err := decodeBody(r, &body); err != nil {
		return nil, tagInvalid(err)
	}
	tok, err := newTokenFromBody(&body, time.Now())
	if err != nil {
		return nil, err
	}
	if err := s.aclApply(r, &state.ACLRequest{Token: &state.ACLTokenRequest{Create: true, Token: tok}}); err != nil {
		return nil, err
	}
	return s.tokenOut(r.Context(), tok.AccessorID, true)
}

// tagInvalid counts a bad request body as an invalid ACL write.
func tagInvalid(err error) error {
	var he *httpError
	if errors.As(err, &he) && he.code == http.StatusBadRequest {
		return badACL("%s", he.msg)
	}
	return err
}

// newTokenFromBody validates a create request and builds the token, with
// new IDs where none were given and the expiry computed from now.
func newTokenFromBody(b *aclTokenBody, now time.Time) (*state.ACLToken, error) {
	if err := b.unsupported(); err != nil {
		return nil, err
	}
	t := &state.ACLToken{AccessorID: b.AccessorID, SecretID: b.SecretID, Description: b.Description,
		Policies: b.Policies, Roles: b.Roles, ServiceIdentities: b.ServiceIdentities, NodeIdentities: b.NodeIdentities,
		Local: b.Local, CreateTime: now.UTC()}
	if t.AccessorID == "" {
		t.AccessorID = uuid.NewString()
	} else if err := state.ValidUUID("AccessorID", t.AccessorID); err != nil {
		return nil, badACL("Invalid Token: %v", strings.TrimPrefix(err.Error(), state.ErrACLInvalid.Error()+": "))
	}
	if t.SecretID == "" {
		t.SecretID = uuid.NewString()
	} else if err := state.ValidSecret("SecretID", t.SecretID); err != nil {
		return nil, badACL("Invalid Token: %v", strings.TrimPrefix(err.Error(), state.ErrACLInvalid.Error()+": "))
	}
	ttl := b.ExpirationTTL.D()
	switch {
	case ttl != 0 && b.ExpirationTime != nil:
		return nil, badACL("Invalid Token: Expiration TTL and Expiration Time cannot both be set")
	case ttl < 0:
		return nil, badACL("Invalid Token: Expiration TTL should be > 0")
	case ttl != 0:
		if ttl < state.ACLMinExpirationTTL || ttl > state.ACLMaxExpirationTTL {
			return nil, badACL("Invalid Token: Expiration TTL %s is not between %s and %s", ttl, state.ACLMinExpirationTTL, state.ACLMaxExpirationTTL)
		}
		exp := now.Add(ttl).UTC()
		t.ExpirationTime, t.ExpirationTTL = &exp, ttl
	case b.ExpirationTime != nil:
		d := b.ExpirationTime.Sub(now)
		if d < state.ACLMinExpirationTTL || d > state.ACLMaxExpirationTTL {
			return nil, badACL("Invalid Token: ExpirationTime must be between %s and %s from now", state.ACLMinExpirationTTL, state.ACLMaxExpirationTTL)
		}
		exp := b.ExpirationTime.UTC()
		t.ExpirationTime, t.ExpirationTTL = &exp, d.Round(time.Second)
	}
	return t, nil
}

// aclTokenSelf is GET /v1/acl/token/self: the caller's own token, secret
// included (the caller holds it). Any valid token may read itself.
func (s *Server) aclTokenSelf(w http.ResponseWriter, r *http.Request) (any, error) {
	if err := s.aclOn(); err != nil {
		return nil, err
	}
	if relayed, err := s.aclRelay(w, r, false); relayed {
		return nil, err
	}
	if _, err := s.authorize(r); err != nil {
		return nil, s.tokenRefusal(err)
	}
	st, err := s.aclStore()
	if err != nil {
		return nil, err
	}
	secret := requestToken(r)
	if secret == "" {
		secret = state.ACLAnonymousSecret
	}
	idx, t, err := st.ACLTokenBySecret(nil, secret)
	if err != nil {
		return nil, err
	}
	if t == nil || t.Expired(time.Now()) {
		return nil, aclError(http.StatusForbidden, "token", "%s", ErrACLNotFound)
	}
	s.setMeta(w, max(idx, 1))
	return tokenView(t, true), nil
}

// aclReadQuery serves an ACL read: relayed to the leader unless ?stale,
// then authorized (acl:read) and answered as a blocking query. fn gets
// whether the caller may see secrets (acl:write).
func (s *Server) aclReadQuery(w http.ResponseWriter, r *http.Request, fn func(ws memdb.WatchSet, st *state.Store, secrets bool) (uint64, any, error)) (any, error) {
	if err := s.aclOn(); err != nil {
		return nil, err
	}
	opts, err := parseQuery(r)
	if err != nil {
		return nil, err
	}
	if err := rejectFilter(r); err != nil {
		return nil, err
	}
	if relayed, err := s.aclRelay(w, r, opts.stale); relayed {
		return nil, err
	}
	e, err := s.aclAuthorize(r, acl.AccessRead)
	if err != nil {
		return nil, err
	}
	secrets := e.Allowed(acl.ResourceACL, "", acl.AccessWrite)
	st, err := s.aclStore()
	if err != nil {
		return nil, err
	}
	return s.blockingQuery(w, r, opts, st, func(ws memdb.WatchSet, st *state.Store) (uint64, any, error) {
		return fn(ws, st, secrets)
	})
}

// aclTokenRead is GET /v1/acl/token/{id}; an unknown accessor is 403 "ACL
// not found", as in Consul.
func (s *Server) aclTokenRead(w http.ResponseWriter, r *http.Request) (any, error) {
	id := r.PathValue("id")
	return s.aclReadQuery(w, r, func(ws memdb.WatchSet, st *state.Store, secrets bool) (uint64, any, error) {
		idx, t, err := st.ACLToken(ws, id)
		if err != nil {
			return 0, nil, err
		}
		if t == nil {
			return 0, nil, aclError(http.StatusForbidden, "token", "%s", ErrACLNotFound)
		}
		return idx, tokenView(t, secrets), nil
	})
}

// tokenListEntry is Consul's ACLTokenListEntry.
type tokenListEntry struct {
	CreateIndex       uint64
	ModifyIndex       uint64
	AccessorID        string
	SecretID          string
	Description       string
	Policies          []state.ACLLink             `json:",omitempty"`
	Roles             []state.ACLLink             `json:",omitempty"`
	ServiceIdentities []*state.ACLServiceIdentity `json:",omitempty"`
	NodeIdentities    []*state.ACLNodeIdentity    `json:",omitempty"`
	Local             bool
	ExpirationTime    *time.Time `json:",omitempty"`
	CreateTime        time.Time
	Hash              []byte
	Legacy            bool
}

// aclTokenList is GET /v1/acl/tokens, with Consul's ?policy= ?role=
// ?servicename= and ?authmethod= filters (peerd has no auth methods: that
// filter matches nothing).
func (s *Server) aclTokenList(w http.ResponseWriter, r *http.Request) (any, error) {
	q := r.URL.Query()
	f := state.ACLTokenFilter{Policy: q.Get("policy"), Role: q.Get("role")}
	svc, method := q.Get("servicename"), q.Get("authmethod")
	return s.aclReadQuery(w, r, func(ws memdb.WatchSet, st *state.Store, secrets bool) (uint64, any, error) {
		idx, list, err := st.ACLTokens(ws, f)
		if err != nil {
			return 0, nil, err
		}
		out := []tokenListEntry{}
		if method != "" {
			return idx, out, nil
		}
		for _, t := range list {
			if svc != "" && !hasServiceIdentity(t, svc) {
				continue
			}
			v := tokenView(t, secrets)
			out = append(out, tokenListEntry{CreateIndex: v.CreateIndex, ModifyIndex: v.ModifyIndex, AccessorID: v.AccessorID,
				SecretID: v.SecretID, Description: v.Description, Policies: v.Policies, Roles: v.Roles,
				ServiceIdentities: v.ServiceIdentities, NodeIdentities: v.NodeIdentities, Local: v.Local,
				ExpirationTime: v.ExpirationTime, CreateTime: v.CreateTime, Hash: v.Hash})
		}
		return idx, out, nil
	})
}

func hasServiceIdentity(t *state.ACLToken, svc string) bool {
	for _, si := range t.ServiceIdentities {
		if si != nil && si.ServiceName == svc {
			return true
		}
	}
	return false
}

// aclTokenUpdate is PUT /v1/acl/token/{id}: the token's description,
// links and identities are replaced; its secret, locality and expiry
// stay (another SecretID is refused).
func (s *Server) aclTokenUpdate(w http.ResponseWriter, r *http.Request) (any, error) {
	if err := s.aclOn(); err != nil {
		return nil, err
	}
	if relayed, err := s.aclRelay(w, r, false); relayed {
		return nil, err
	}
	if _, err := s.aclAuthorize(r, acl.AccessWrite); err != nil {
		return nil, err
	}
	id := r.PathValue("id")
	var body aclTokenBody
	if err := decodeBody(r, &body); err != nil {
		return nil, tagInvalid(err)
	}
	if err := body.unsupported(); err != nil {
		return nil, err
	}
	if body.AccessorID != "" && !strings.EqualFold(body.AccessorID, id) {
		return nil, badACL("Token Accessor ID in URL and payload do not match")
	}
	if err := state.ValidUUID("AccessorID", id); err != nil {
		return nil, badACL("%s", strings.TrimPrefix(err.Error(), state.ErrACLInvalid.Error()+": "))
	}
	t := &state.ACLToken{AccessorID: strings.ToLower(id), SecretID: body.SecretID, Description: body.Description,
		Policies: body.Policies, Roles: body.Roles, ServiceIdentities: body.ServiceIdentities, NodeIdentities: body.NodeIdentities,
		Local: body.Local, ExpirationTime: body.ExpirationTime, ExpirationTTL: body.ExpirationTTL.D()}
	st, err := s.aclStore()
	if err != nil {
		return nil, err
	}
	if _, old, err := st.ACLToken(nil, id); err != nil {
		return nil, err
	} else if old != nil {
		t.AccessorID = old.AccessorID
		// Consul's client sends back what it read: an unchanged expiry
		// or locality is not a change.
		if body.ExpirationTime == nil {
			t.ExpirationTime = old.ExpirationTime
		}
		if body.ExpirationTTL == 0 {
			t.ExpirationTTL = old.ExpirationTTL
		}
	}
	if err := s.aclApply(r, &state.ACLRequest{Token: &state.ACLTokenRequest{Token: t}}); err != nil {
		return nil, err
	}
	return s.tokenOut(r.Context(), t.AccessorID, true)
}

// aclTokenClone is PUT /v1/acl/token/{id}/clone: a new token (new
// AccessorID and SecretID) with the same links, identities, locality and
// expiry; the body's Description, when given, replaces the original's.
func (s *Server) aclTokenClone(w http.ResponseWriter, r *http.Request) (any, error) {
	if err := s.aclOn(); err != nil {
		return nil, err
	}
	if relayed, err := s.aclRelay(w, r, false); relayed {
		return nil, err
	}
	if _, err := s.aclAuthorize(r, acl.AccessWrite); err != nil {
		return nil, err
	}
	var body struct{ Description string }
	if err := decodeOptional(r, &body); err != nil {
		return nil, err
	}
	st, err := s.aclStore()
	if err != nil {
		return nil, err
	}
	_, src, err := st.ACLToken(nil, r.PathValue("id"))
	if err != nil {
		return nil, err
	}
	if src == nil || src.Expired(time.Now()) {
		return nil, aclError(http.StatusForbidden, "token", "%s", ErrACLNotFound)
	}
	if src.AccessorID == state.ACLAnonymousTokenID {
		return nil, badACL("Cannot clone the anonymous token")
	}
	t := &state.ACLToken{AccessorID: uuid.NewString(), SecretID: uuid.NewString(), Description: src.Description,
		Policies: src.Policies, Roles: src.Roles, ServiceIdentities: src.ServiceIdentities, NodeIdentities: src.NodeIdentities,
		Local: src.Local, ExpirationTime: src.ExpirationTime, ExpirationTTL: src.ExpirationTTL, CreateTime: time.Now().UTC()}
	if body.Description != "" {
		t.Description = body.Description
	}
	if t.ExpirationTime != nil {
		// Bounds are for new lifetimes; a clone keeps the original's end.
		t.ExpirationTTL = 0
	}
	if err := s.aclApply(r, &state.ACLRequest{Token: &state.ACLTokenRequest{Create: true, Token: t}}); err != nil {
		return nil, err
	}
	return s.tokenOut(r.Context(), t.AccessorID, true)
}

// aclTokenDelete is DELETE /v1/acl/token/{id}: true, also for a token that
// is not there. The anonymous token and the caller's own are refused.
func (s *Server) aclTokenDelete(w http.ResponseWriter, r *http.Request) (any, error) {
	if err := s.aclOn(); err != nil {
		return nil, err
	}
	if relayed, err := s.aclRelay(w, r, false); relayed {
		return nil, err
	}
	e, err := s.aclAuthorize(r, acl.AccessWrite)
	if err != nil {
		return nil, err
	}
	id := r.PathValue("id")
	if e.AccessorID != "" && strings.EqualFold(e.AccessorID, id) {
		return nil, badACL("Deletion of the request's authorization token is not permitted")
	}
	if err := s.aclApply(r, &state.ACLRequest{DeleteToken: id}); err != nil {
		return nil, err
	}
	return true, nil
}
