package agent

import (
	"errors"

	"github.com/peerd/peerd/agent/aclresolve"
	"github.com/peerd/peerd/agent/httpapi"
	"github.com/peerd/peerd/internal/acl"
)

// aclAdapter gives the HTTP API the resolver: aclresolve does not import
// httpapi, so its ErrTokenNotFound becomes httpapi.ErrACLNotFound here.
type aclAdapter struct{ r *aclresolve.Resolver }

var _ httpapi.ACLResolver = aclAdapter{}

func (a aclAdapter) Enabled() bool { return a.r.Enabled() }

func (a aclAdapter) Enforcer(secret string) (acl.Enforcer, error) {
	e, err := a.r.Enforcer(secret)
	if errors.Is(err, aclresolve.ErrTokenNotFound) {
		return acl.Enforcer{}, httpapi.ErrACLNotFound
	}
	return e, err
}
