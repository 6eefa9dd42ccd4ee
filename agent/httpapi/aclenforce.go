package httpapi

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/peerd/peerd/catalog/state"
	"github.com/peerd/peerd/internal/acl"
)

// Enforcement: every endpoint asks for Consul's permission (README, "ACL
// enforcement"): one of the require helpers below at the top of the
// handler, or an aclFilter for lists that drop what the token may not see.
// A refusal is a 403 with the PermissionDeniedError's text; handleLimit
// logs and counts it (peerd_acl_denials_total{route}) in one place.

// filteredHeader is set when a list or read dropped something the token
// may not see, as Consul does.
const filteredHeader = "X-Consul-Results-Filtered-By-ACLs"

// enforceMetrics are the enforcement's counters.
type enforceMetrics struct {
	denials  *prometheus.CounterVec
	filtered *prometheus.CounterVec
}

func newEnforceMetrics(reg prometheus.Registerer) (enforceMetrics, error) {
	m := enforceMetrics{
		denials: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "peerd_acl_denials_total",
			Help: "HTTP API requests refused by ACLs (403), by route.",
		}, []string{"route"}),
		filtered: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "peerd_acl_filtered_total",
			Help: "HTTP API answers from which ACLs dropped something the token may not see, by route.",
		}, []string{"route"}),
	}
	for _, c := range []prometheus.Collector{m.denials, m.filtered} {
		if err := reg.Register(c); err != nil {
			return enforceMetrics{}, fmt.Errorf("register ACL metrics: %w", err)
		}
	}
	return m, nil
}

// isACLRefusal reports whether err is ACLs refusing a request: a missing
// permission or a token the cluster does not know.
func isACLRefusal(err error) bool {
	if errors.Is(err, acl.ErrPermissionDenied) {
		return true
	}
	var he *httpError
	return errors.As(err, &he) && he.code == http.StatusForbidden && he.msg == ErrACLNotFound.Error()
}

// refused logs and counts an ACL refusal. The message names the accessor
// and the permission, never the secret.
func (s *Server) refused(route string, r *http.Request, err error) {
	s.enforcem.denials.WithLabelValues(route).Inc()
	s.log.Info("ACL refused a request", "route", route, "method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr, "err", err)
}

// nodeName is this agent's node, the segment of the agent:* rules.
func (s *Server) nodeName() string { return s.local.Node().Node }

// require resolves r's token and checks one permission.
func (s *Server) require(r *http.Request, res acl.Resource, segment string, a acl.Access) (acl.Enforcer, error) {
	e, err := s.authorize(r)
	if err != nil {
		return e, err
	}
	return e, e.Require(res, segment, a)
}

// requireAgent checks agent:read or agent:write on this node.
func (s *Server) requireAgent(r *http.Request, a acl.Access) error {
	_, err := s.require(r, acl.ResourceAgent, s.nodeName(), a)
	return err
}

// requireManagement is Consul's rule for snapshots: a management token,
// which the rules spell acl = "write" (a token that may write ACLs may
// make itself a management token).
func (s *Server) requireManagement(r *http.Request) error {
	_, err := s.require(r, acl.ResourceACL, "", acl.AccessWrite)
	return err
}

// aclFilter drops what a token may not read from a list and remembers
// that it did, for filteredHeader. A blocking query's function starts it
// over (reset) on every pass.
type aclFilter struct {
	e       acl.Enforcer
	dropped bool
}

func (s *Server) filter(r *http.Request) (*aclFilter, error) {
	e, err := s.authorize(r)
	if err != nil {
		return nil, err
	}
	return &aclFilter{e: e}, nil
}

func (f *aclFilter) reset() { f.dropped = false }

func (f *aclFilter) allow(res acl.Resource, name string) bool {
	if f.e.Allowed(res, name, acl.AccessRead) {
		return true
	}
	f.dropped = true
	return false
}

func (f *aclFilter) service(name string) bool { return f.allow(acl.ResourceService, name) }
func (f *aclFilter) node(name string) bool    { return f.allow(acl.ResourceNode, name) }

// instance is Consul's rule for a service instance: service:read on the
// service and node:read on its node.
func (f *aclFilter) instance(n *state.Node, svc *state.Service) bool {
	ok := f.service(svc.Service)
	if n != nil {
		ok = f.node(n.Node) && ok
	}
	return ok
}

// check is Consul's rule for a health check: node:read on its node and,
// for a service's check, service:read on the service.
func (f *aclFilter) check(c *state.HealthCheck) bool {
	ok := f.node(c.Node)
	if c.ServiceName != "" {
		ok = f.service(c.ServiceName) && ok
	}
	return ok
}

// filterDone sets filteredHeader when something was dropped, and counts it. As
// Consul does, the header is withheld from requests without a token, so an
// anonymous caller does not learn that hidden things exist.
func (s *Server) filterDone(w http.ResponseWriter, r *http.Request, f *aclFilter) {
	if f == nil || !f.dropped {
		return
	}
	s.enforcem.filtered.WithLabelValues(r.Pattern).Inc()
	if requestToken(r) != "" {
		w.Header().Set(filteredHeader, "true")
	}
}

// requireAgentRead wraps h (the /metrics handler) in agent:read on this
// node.
func (s *Server) requireAgentRead(route string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := s.requireAgent(r, acl.AccessRead); err != nil {
			if isACLRefusal(err) {
				s.refused(route, r, err)
			}
			s.writeError(w, r, err)
			return
		}
		h.ServeHTTP(w, r)
	})
}
