package httpapi

import (
	"errors"
	"net/http"
	"strings"

	"github.com/peerd/peerd/internal/acl"
)

// ACLResolver resolves request tokens (agent/aclresolve.Resolver is the one
// the agent wires in).
type ACLResolver interface {
	// Enabled reports whether ACLs are on.
	Enabled() bool
	// Enforcer resolves a token's secret ("" = the anonymous token). An
	// unknown or expired secret is an error matching ErrACLNotFound.
	Enforcer(secret string) (acl.Enforcer, error)
}

// ErrACLNotFound is a token the cluster does not know (or no longer
// knows); it answers 403 "ACL not found", as Consul does.
var ErrACLNotFound = errors.New("ACL not found")

// requestToken returns the token a request carries, in Consul's order of
// precedence: X-Consul-Token, then Authorization: Bearer, then ?token=.
func requestToken(r *http.Request) string {
	if t := r.Header.Get("X-Consul-Token"); t != "" {
		return t
	}
	if auth := r.Header.Get("Authorization"); auth != "" {
		if scheme, t, ok := strings.Cut(auth, " "); ok && strings.EqualFold(scheme, "Bearer") {
			return strings.TrimSpace(t)
		}
	}
	return r.URL.Query().Get("token")
}

// authorize resolves the request's token. With ACLs off every request is
// allowed everything. A request without a token has the agent's default
// token (Config.Tokens), else the anonymous one; the agent recovery token
// is decided here, without asking a server.
func (s *Server) authorize(r *http.Request) (acl.Enforcer, error) {
	if s.acl == nil || !s.acl.Enabled() {
		return acl.Enforcer{Authorizer: acl.Management()}, nil
	}
	secret := requestToken(r)
	if s.aclTokens.isRecovery(secret) {
		return recoveryEnforcer(s.nodeName())
	}
	if secret == "" {
		secret = s.aclTokens.Default()
	}
	e, err := s.acl.Enforcer(secret)
	if err != nil {
		if errors.Is(err, ErrACLNotFound) {
			return acl.Enforcer{}, &httpError{code: http.StatusForbidden, msg: ErrACLNotFound.Error()}
		}
		return acl.Enforcer{}, err
	}
	return e, nil
}
