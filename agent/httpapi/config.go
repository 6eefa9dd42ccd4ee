package httpapi

import (
	"encoding/json"
	"net/http"
	"strconv"

	"github.com/hashicorp/go-memdb"

	"github.com/peerd/peerd/catalog"
	"github.com/peerd/peerd/catalog/configentry"
	"github.com/peerd/peerd/catalog/state"
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
	if _, err := configentry.New(kind); err != nil {
		return nil, errBadRequest("%v", err)
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
	if _, err := configentry.New(kind); err != nil {
		return nil, errBadRequest("%v", err)
	}
	return s.read(w, r, func(ws memdb.WatchSet, st *state.Store) (uint64, any, error) {
		idx, entries, err := st.ConfigEntries(ws, kind)
		if entries == nil {
			entries = []configentry.Entry{}
		}
		return idx, entries, err
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
	res, err := s.cluster.Apply(r.Context(), &catalog.Command{Type: catalog.CmdConfigDelete, ConfigEntry: &catalog.ConfigEntryRequest{
		Kind: kind, Name: name, CAS: cas, Index: casIndex,
	}})
	if err != nil {
		return nil, err
	}
	return res.OK, nil
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
