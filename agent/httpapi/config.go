package httpapi

import (
	"encoding/json"
	"net/http"
	"strconv"

	"github.com/hashicorp/go-memdb"

	"github.com/peerd/peerd/catalog"
	"github.com/peerd/peerd/catalog/configentry"
	"github.com/peerd/peerd/catalog/state"
	"github.com/peerd/peerd/internal/acl"
)

// configApply is PUT /v1/config: write an entry, with ?cas=N check-and-set.
// It answers true, or false when the check-and-set did not match.
func (s *Server) configApply(w http.ResponseWriter, r *http.Request) (any, error) {
	cas, casIndex, err := casParam(r)
	if err != nil {
		return nil, err
	}
	b, err := readBody(r)
	if err != nil {
		return nil, err
	}
	entry, err := configentry.DecodeJSON(b)
	if err != nil {
		return nil, errBadRequest("%v", err)
	}
	if err := entry.Validate(); err != nil {
		return nil, errBadRequest("invalid %s config entry %q: %v", entry.GetKind(), entry.GetName(), err)
	}
	if err := s.requireConfigEntry(r, entry.GetKind(), entry.GetName(), acl.AccessWrite); err != nil {
		return nil, err
	}
	raw, err := json.Marshal(entry)
	if err != nil {
		return nil, err
	}
	res, err := s.cluster.Apply(r.Context(), &catalog.Command{Type: catalog.CmdConfigSet, ConfigEntry: &catalog.ConfigEntryRequest{
		Kind: entry.GetKind(), Name: entry.GetName(), Entry: raw, CAS: cas, Index: casIndex,
	}})
	if err != nil {
		return nil, err
	}
	return res.OK, nil
}

func (s *Server) configGet(w http.ResponseWriter, r *http.Request) (any, error) {
	kind, name := r.PathValue("kind"), r.PathValue("name")
	if stored, err := checkConfigKind(kind); err != nil {
		return nil, err
	} else if !stored { // configkinds.go
		if _, err := s.authorize(r); err != nil {
			return nil, err
		}
		return nil, errNotFound("Config entry not found for %q / %q (peerd has no %s entries)", kind, name, kind)
	}
	if err := s.requireConfigEntry(r, kind, name, acl.AccessRead); err != nil {
		return nil, err
	}
	return s.read(w, r, func(ws memdb.WatchSet, st *state.Store) (uint64, any, error) {
		idx, e, err := st.ConfigEntry(ws, kind, name)
		if err == nil && e == nil {
			return 0, nil, errNotFound("Config entry not found for %q / %q", kind, name)
		}
		return idx, e, err
	})
}

func (s *Server) configList(w http.ResponseWriter, r *http.Request) (any, error) {
	kind := r.PathValue("kind")
	if stored, err := checkConfigKind(kind); err != nil {
		return nil, err
	} else if !stored {
		return s.configListAbsent(w, r) // configkinds.go
	}
	e, err := s.authorize(r)
	if err != nil {
		return nil, err
	}
	f := &aclFilter{e: e}
	return s.readFiltered(w, r, f, func(ws memdb.WatchSet, st *state.Store) (uint64, any, error) {
		idx, entries, err := st.ConfigEntries(ws, kind)
		out := []configentry.Entry{}
		for _, entry := range entries {
			if configEntryAllowed(e, entry.GetKind(), entry.GetName(), acl.AccessRead) == nil {
				out = append(out, entry)
			} else {
				f.dropped = true
			}
		}
		return idx, out, err
	})
}

// configDelete is DELETE /v1/config/:kind/:name, with ?cas=N. It answers
// true, or false when the check-and-set did not match.
func (s *Server) configDelete(w http.ResponseWriter, r *http.Request) (any, error) {
	kind, name := r.PathValue("kind"), r.PathValue("name")
	if _, err := configentry.New(kind); err != nil {
		return nil, errBadRequest("%v", err)
	}
	cas, casIndex, err := casParam(r)
	if err != nil {
		return nil, err
	}
	if err := s.requireConfigEntry(r, kind, name, acl.AccessWrite); err != nil {
		return nil, err
	}
	res, err := s.cluster.Apply(r.Context(), &catalog.Command{Type: catalog.CmdConfigDelete, ConfigEntry: &catalog.ConfigEntryRequest{
		Kind: kind, Name: name, CAS: cas, Index: casIndex,
	}})
	if err != nil {
		return nil, err
	}
	return res.OK, nil
}

// configEntryAllowed is Consul 1.16's CanRead and CanWrite of each kind:
// the service kinds need service:read|write on the entry's name;
// service-intentions intentions:read|write on the destination;
// proxy-defaults and mesh anyone may read, mesh:write writes them;
// exported-services needs mesh:read|write.
func configEntryAllowed(e acl.Enforcer, kind, name string, a acl.Access) error {
	switch kind {
	case configentry.ServiceDefaults, configentry.ServiceResolver, configentry.ServiceRouter, configentry.ServiceSplitter:
		return e.Require(acl.ResourceService, name, a)
	case configentry.ServiceIntentions:
		return e.Require(acl.ResourceIntention, name, a)
	case configentry.ProxyDefaults, configentry.MeshConfig:
		if a == acl.AccessRead {
			return nil
		}
		return e.Require(acl.ResourceMesh, "", acl.AccessWrite)
	case configentry.ExportedServices:
		return e.Require(acl.ResourceMesh, "", a)
	}
	// A kind added without a rule here: only a management token.
	return e.Require(acl.ResourceACL, "", acl.AccessWrite)
}

func (s *Server) requireConfigEntry(r *http.Request, kind, name string, a acl.Access) error {
	e, err := s.authorize(r)
	if err != nil {
		return err
	}
	return configEntryAllowed(e, kind, name, a)
}

func casParam(r *http.Request) (bool, uint64, error) {
	v, ok := r.URL.Query()["cas"]
	if !ok {
		return false, 0, nil
	}
	n, err := strconv.ParseUint(v[0], 10, 64)
	if err != nil {
		return false, 0, errBadRequest("invalid cas %q: must be the ModifyIndex of the entry you read (0 = create only)", v[0])
	}
	return true, n, nil
}
