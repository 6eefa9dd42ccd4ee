package httpapi

import (
	"net/http"

	"github.com/hashicorp/go-memdb"

	"github.com/peerd/peerd/catalog/configentry"
	"github.com/peerd/peerd/catalog/state"
)

// consulOnlyKinds are the config entry kinds Consul has and peerd does
// not (gateways, API gateway routes and certificates, sameness groups, JWT
// providers, rate limits). Reads of them answer as Consul does when there
// is no entry of the kind: an empty list, or 404 for one entry. Writes are
// refused (400) by the decoder, naming the kinds peerd has.
var consulOnlyKinds = map[string]bool{
	"ingress-gateway": true, "terminating-gateway": true, "api-gateway": true, "bound-api-gateway": true,
	"http-route": true, "tcp-route": true, "inline-certificate": true, "file-system-certificate": true,
	"sameness-group": true, "jwt-provider": true, "control-plane-request-limit": true, "rate-limit": true,
}

// checkConfigKind reports whether peerd stores kind; a kind neither peerd
// nor Consul has is Consul's 400, with peerd's list of kinds.
func checkConfigKind(kind string) (stored bool, err error) {
	if consulOnlyKinds[kind] {
		return false, nil
	}
	if _, err := configentry.New(kind); err != nil {
		return false, errBadRequest("invalid config entry kind: %s (%v)", kind, err)
	}
	return true, nil
}

// configListAbsent is GET /v1/config/:kind for a Consul kind peerd does
// not have: 200 [] at the config table's index, after resolving the token
// (an unknown token is refused, as everywhere).
func (s *Server) configListAbsent(w http.ResponseWriter, r *http.Request) (any, error) {
	if _, err := s.authorize(r); err != nil {
		return nil, err
	}
	return s.read(w, r, func(ws memdb.WatchSet, st *state.Store) (uint64, any, error) {
		idx, _, err := st.ConfigEntries(ws, configentry.ServiceDefaults)
		return idx, []configentry.Entry{}, err
	})
}
