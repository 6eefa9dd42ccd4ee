package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/go-memdb"

	"github.com/peerd/peerd/catalog"
	"github.com/peerd/peerd/catalog/configentry"
	"github.com/peerd/peerd/catalog/state"
	"github.com/peerd/peerd/internal/acl"
	"github.com/peerd/peerd/l7proxy/policy"
)

// The /v1/connect/intentions API, as Consul 1.9+ serves it: every intention
// is one source of a service-intentions config entry (the entry's Name is
// the destination), so these endpoints read and rewrite those entries and
// nothing else. Such intentions have no ID, no times and no Meta of their
// own; the ID-based endpoints answer 404 saying so.

// intentionJSON is Consul's api.Intention.
type intentionJSON struct {
	ID                   string `json:",omitempty"`
	Description          string `json:",omitempty"`
	SourceNS             string
	SourceName           string
	DestinationNS        string
	DestinationName      string
	SourcePartition      string                             `json:",omitempty"`
	DestinationPartition string                             `json:",omitempty"`
	SourcePeer           string                             `json:",omitempty"`
	SourceSamenessGroup  string                             `json:",omitempty"`
	SourceType           configentry.IntentionSourceType    `json:",omitempty"`
	Action               configentry.IntentionAction        `json:",omitempty"`
	Permissions          []*configentry.IntentionPermission `json:",omitempty"`
	DefaultAddr          string                             `json:",omitempty"`
	DefaultPort          int                                `json:",omitempty"`
	Meta                 map[string]string                  `json:",omitempty"`
	Precedence           int
	CreatedAt, UpdatedAt time.Time
	Hash                 []byte `json:",omitempty"`
	CreateIndex          uint64
	ModifyIndex          uint64
}

// defaultNS is the namespace Consul reports for intentions without one.
const defaultNS = "default"

// maxIntentionWriteRetries bounds the check-and-set attempts of a write
// that races other writes of the same destination's entry. A write loses
// only to another write that landed, so with fewer concurrent writers of
// one entry than this every write lands.
const maxIntentionWriteRetries = 16

// viewCatchUp bounds how long a write waits for this node's view to show
// the write that beat its check-and-set.
const viewCatchUp = 2 * time.Second

// toIntention is one source of e as an intention.
func toIntention(e *configentry.ServiceIntentionsConfigEntry, src *configentry.SourceIntention) intentionJSON {
	ns := func(s string) string {
		if s == "" {
			return defaultNS
		}
		return s
	}
	return intentionJSON{
		Description: src.Description,
		SourceNS:    ns(src.Namespace), SourceName: src.Name,
		DestinationNS: ns(e.Namespace), DestinationName: e.Name,
		SourcePartition: src.Partition, DestinationPartition: e.Partition,
		SourcePeer: src.Peer, SourceSamenessGroup: src.SamenessGroup,
		SourceType: src.Type, Action: src.Action, Permissions: src.Permissions,
		Precedence:  src.Precedence,
		CreateIndex: e.CreateIndex, ModifyIndex: e.ModifyIndex,
	}
}

// sortIntentions orders intentions as Consul lists them: highest
// precedence first, then by destination and source.
func sortIntentions(out []intentionJSON) {
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Precedence != b.Precedence {
			return a.Precedence > b.Precedence
		}
		if a.DestinationName != b.DestinationName {
			return a.DestinationName < b.DestinationName
		}
		if a.SourceName != b.SourceName {
			return a.SourceName < b.SourceName
		}
		return a.SourcePeer < b.SourcePeer
	})
}

// intentionEntries reads every service-intentions entry.
func intentionEntries(ws memdb.WatchSet, st *state.Store) (uint64, []*configentry.ServiceIntentionsConfigEntry, error) {
	idx, entries, err := st.ConfigEntries(ws, configentry.ServiceIntentions)
	if err != nil {
		return 0, nil, fmt.Errorf("read service-intentions entries: %w", err)
	}
	out := make([]*configentry.ServiceIntentionsConfigEntry, 0, len(entries))
	for _, e := range entries {
		if si, ok := e.(*configentry.ServiceIntentionsConfigEntry); ok {
			out = append(out, si)
		}
	}
	return idx, out, nil
}

// intentionTarget is a parsed source or destination query parameter:
// "name", "namespace/name" or "partition/namespace/name".
type intentionTarget struct{ partition, namespace, name string }

// parseIntentionTarget parses param's value v.
func parseIntentionTarget(param, v string) (intentionTarget, error) {
	if v == "" {
		return intentionTarget{}, errBadRequest("missing %s: name a service, as name, namespace/name or partition/namespace/name", param)
	}
	parts := strings.Split(v, "/")
	for _, p := range parts {
		if p == "" {
			return intentionTarget{}, errBadRequest("invalid %s %q: an empty part between '/'; use name, namespace/name or partition/namespace/name", param, v)
		}
	}
	var t intentionTarget
	switch len(parts) {
	case 1:
		t.name = parts[0]
	case 2:
		t.namespace, t.name = parts[0], parts[1]
	case 3:
		t.partition, t.namespace, t.name = parts[0], parts[1], parts[2]
	default:
		return intentionTarget{}, errBadRequest("invalid %s %q: at most 3 parts (partition/namespace/name)", param, v)
	}
	if t.namespace == defaultNS {
		t.namespace = ""
	}
	if t.partition == defaultNS {
		t.partition = ""
	}
	return t, nil
}

// destination checks that t can be a destination here: peerd keys
// service-intentions entries by service name alone, in the default
// namespace and partition.
func (t intentionTarget) destination() error {
	if t.namespace != "" || t.partition != "" {
		return errBadRequest("invalid destination: peerd has no namespaces or partitions other than %q; name the service alone", defaultNS)
	}
	return nil
}

// sameSource reports whether a and b are the same source of one entry
// (Consul's identity of a source within an entry).
func sameSource(a, b *configentry.SourceIntention) bool {
	return a.Name == b.Name && a.Namespace == b.Namespace && a.Partition == b.Partition &&
		a.Peer == b.Peer && a.SamenessGroup == b.SamenessGroup
}

// decodeIntentionBody decodes an api.Intention body. Unknown fields and
// trailing data are errors.
func decodeIntentionBody(b []byte) (*intentionJSON, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var ixn intentionJSON
	if err := dec.Decode(&ixn); err != nil {
		return nil, fmt.Errorf("invalid intention: %v", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("invalid intention: data after the JSON object; send one object")
	}
	return &ixn, nil
}

// sourceOf turns ixn into the source it writes into its destination's
// entry. Fields a config-entry intention cannot hold are refused with the
// fix, rather than dropped.
func sourceOf(ixn *intentionJSON) (*configentry.SourceIntention, error) {
	switch {
	case ixn.ID != "":
		return nil, errors.New("invalid intention: ID must be empty; peerd's intentions are service-intentions config entries, which have no IDs (as in Consul 1.9+)")
	case len(ixn.Meta) > 0:
		return nil, errors.New("invalid intention: Meta cannot be stored on one intention; put it in the service-intentions entry's Meta (consul config write)")
	case ixn.DefaultAddr != "" || ixn.DefaultPort != 0:
		return nil, errors.New("invalid intention: DefaultAddr and DefaultPort are not supported; omit them")
	}
	src := &configentry.SourceIntention{
		Name: ixn.SourceName, Namespace: ixn.SourceNS, Partition: ixn.SourcePartition, Peer: ixn.SourcePeer,
		SamenessGroup: ixn.SourceSamenessGroup, Action: configentry.IntentionAction(strings.ToLower(string(ixn.Action))),
		Permissions: ixn.Permissions, Type: ixn.SourceType, Description: ixn.Description,
	}
	if src.Namespace == defaultNS {
		src.Namespace = ""
	}
	if src.Partition == defaultNS {
		src.Partition = ""
	}
	if src.Type == "" {
		src.Type = configentry.IntentionSourceConsul
	}
	return src, nil
}

// upsertSource returns a copy of e (a new entry for dst when e is nil)
// with src in place of the source it identifies, or added, normalized and
// validated.
func upsertSource(e *configentry.ServiceIntentionsConfigEntry, dst string, src *configentry.SourceIntention) (*configentry.ServiceIntentionsConfigEntry, error) {
	out, err := copyIntentions(e, dst)
	if err != nil {
		return nil, err
	}
	replaced := false
	for i, s := range out.Sources {
		if s != nil && sameSource(s, src) {
			out.Sources[i], replaced = src, true
		}
	}
	if !replaced {
		out.Sources = append(out.Sources, src)
	}
	out.Normalize()
	if err := out.Validate(); err != nil {
		return nil, fmt.Errorf("invalid intention %s => %s: %v", src.Name, dst, err)
	}
	return out, nil
}

// copyIntentions deep-copies e, or makes an empty entry for dst.
func copyIntentions(e *configentry.ServiceIntentionsConfigEntry, dst string) (*configentry.ServiceIntentionsConfigEntry, error) {
	out := &configentry.ServiceIntentionsConfigEntry{Kind: configentry.ServiceIntentions, Name: dst}
	if e == nil {
		return out, nil
	}
	b, err := json.Marshal(e)
	if err != nil {
		return nil, fmt.Errorf("copy service-intentions entry %q: %w", e.Name, err)
	}
	if err := json.Unmarshal(b, out); err != nil {
		return nil, fmt.Errorf("copy service-intentions entry %q: %w", e.Name, err)
	}
	return out, nil
}

// errNoIntention is the 404 for a missing source => destination pair.
func errNoIntention(src intentionTarget, dst string) error {
	return errNotFound("Intention not found: no intention %s => %s (list them with GET /v1/connect/intentions)", src.name, dst)
}

// intentionsList is GET /v1/connect/intentions: every intention whose
// destination the token may read intentions of.
func (s *Server) intentionsList(w http.ResponseWriter, r *http.Request) (any, error) {
	f, err := s.filter(r)
	if err != nil {
		return nil, err
	}
	return s.readFiltered(w, r, f, func(ws memdb.WatchSet, st *state.Store) (uint64, any, error) {
		idx, entries, err := intentionEntries(ws, st)
		out := []intentionJSON{}
		for _, e := range entries {
			if !f.allow(acl.ResourceIntention, e.Name) {
				continue
			}
			for _, src := range e.Sources {
				if src != nil {
					out = append(out, toIntention(e, src))
				}
			}
		}
		sortIntentions(out)
		return idx, out, err
	})
}

// exactParams parses ?source= and ?destination= of the exact endpoints.
func exactParams(r *http.Request) (intentionTarget, string, error) {
	q := r.URL.Query()
	src, err := parseIntentionTarget("source", q.Get("source"))
	if err != nil {
		return src, "", err
	}
	dst, err := parseIntentionTarget("destination", q.Get("destination"))
	if err != nil {
		return src, "", err
	}
	if err := dst.destination(); err != nil {
		return src, "", err
	}
	return src, dst.name, nil
}

// findSource returns the local source (no peer, no sameness group) of e
// that src names, or nil.
func findSource(e *configentry.ServiceIntentionsConfigEntry, src intentionTarget) *configentry.SourceIntention {
	if e == nil {
		return nil
	}
	want := &configentry.SourceIntention{Name: src.name, Namespace: src.namespace, Partition: src.partition}
	for _, s := range e.Sources {
		if s != nil && sameSource(s, want) {
			return s
		}
	}
	return nil
}

// intentionEntry reads dst's service-intentions entry, nil when none.
func intentionEntry(ws memdb.WatchSet, st *state.Store, dst string) (uint64, *configentry.ServiceIntentionsConfigEntry, error) {
	idx, e, err := st.ConfigEntry(ws, configentry.ServiceIntentions, dst)
	if err != nil {
		return 0, nil, fmt.Errorf("read service-intentions entry %q: %w", dst, err)
	}
	si, _ := e.(*configentry.ServiceIntentionsConfigEntry)
	return idx, si, nil
}

// intentionGetExact is GET /v1/connect/intentions/exact.
func (s *Server) intentionGetExact(w http.ResponseWriter, r *http.Request) (any, error) {
	src, dst, err := exactParams(r)
	if err != nil {
		return nil, err
	}
	if _, err := s.require(r, acl.ResourceIntention, dst, acl.AccessRead); err != nil {
		return nil, err
	}
	return s.read(w, r, func(ws memdb.WatchSet, st *state.Store) (uint64, any, error) {
		idx, e, err := intentionEntry(ws, st, dst)
		if err != nil {
			return 0, nil, err
		}
		found := findSource(e, src)
		if found == nil {
			return 0, nil, errNoIntention(src, dst)
		}
		return idx, toIntention(e, found), nil
	})
}

// intentionPutExact is PUT /v1/connect/intentions/exact: create or replace
// the intention from ?source to ?destination with the body's action or
// permissions. It answers true.
func (s *Server) intentionPutExact(w http.ResponseWriter, r *http.Request) (any, error) {
	src, dst, err := exactParams(r)
	if err != nil {
		return nil, err
	}
	b, err := readBody(r)
	if err != nil {
		return nil, err
	}
	ixn, err := decodeIntentionBody(b)
	if err != nil {
		return nil, errBadRequest("%v", err)
	}
	ixn.SourceName, ixn.SourceNS, ixn.SourcePartition = src.name, src.namespace, src.partition
	ixn.DestinationName, ixn.DestinationNS, ixn.DestinationPartition = dst, "", ""
	source, err := sourceOf(ixn)
	if err != nil {
		return nil, errBadRequest("%v", err)
	}
	if _, err := s.require(r, acl.ResourceIntention, dst, acl.AccessWrite); err != nil {
		return nil, err
	}
	err = s.modifyIntentions(r, dst, func(e *configentry.ServiceIntentionsConfigEntry) (*configentry.ServiceIntentionsConfigEntry, error) {
		return upsertSource(e, dst, source)
	})
	if err != nil {
		return nil, err
	}
	return true, nil
}

// intentionCreate is POST /v1/connect/intentions, the create the consul
// CLI's `intention create` sends: as Consul, it refuses a pair that
// already has an intention. It answers {"ID": ""}: config-entry
// intentions have no IDs.
func (s *Server) intentionCreate(w http.ResponseWriter, r *http.Request) (any, error) {
	b, err := readBody(r)
	if err != nil {
		return nil, err
	}
	ixn, err := decodeIntentionBody(b)
	if err != nil {
		return nil, errBadRequest("%v", err)
	}
	source, err := sourceOf(ixn)
	if err != nil {
		return nil, errBadRequest("%v", err)
	}
	if ixn.DestinationName == "" {
		return nil, errBadRequest("invalid intention: DestinationName is required; name the destination service or \"*\"")
	}
	if (ixn.DestinationNS != "" && ixn.DestinationNS != defaultNS) || (ixn.DestinationPartition != "" && ixn.DestinationPartition != defaultNS) {
		return nil, intentionTarget{namespace: ixn.DestinationNS}.destination()
	}
	dst := ixn.DestinationName
	if _, err := s.require(r, acl.ResourceIntention, dst, acl.AccessWrite); err != nil {
		return nil, err
	}
	err = s.modifyIntentions(r, dst, func(e *configentry.ServiceIntentionsConfigEntry) (*configentry.ServiceIntentionsConfigEntry, error) {
		if e != nil {
			for _, old := range e.Sources {
				if old != nil && sameSource(old, source) {
					return nil, &httpError{code: http.StatusConflict, msg: fmt.Sprintf(
						"duplicate intention found: %s => %s already exists; replace it with PUT /v1/connect/intentions/exact?source=%s&destination=%s, or delete it first",
						source.Name, dst, source.Name, dst)}
				}
			}
		}
		return upsertSource(e, dst, source)
	})
	if err != nil {
		return nil, err
	}
	return map[string]string{"ID": ""}, nil
}

// intentionDeleteExact is DELETE /v1/connect/intentions/exact: remove one
// source from its destination's entry, and the entry with its last
// source. It answers true; a missing intention is a 404.
func (s *Server) intentionDeleteExact(w http.ResponseWriter, r *http.Request) (any, error) {
	src, dst, err := exactParams(r)
	if err != nil {
		return nil, err
	}
	if _, err := s.require(r, acl.ResourceIntention, dst, acl.AccessWrite); err != nil {
		return nil, err
	}
	err = s.modifyIntentions(r, dst, func(e *configentry.ServiceIntentionsConfigEntry) (*configentry.ServiceIntentionsConfigEntry, error) {
		found := findSource(e, src)
		if found == nil {
			return nil, errNoIntention(src, dst)
		}
		out, err := copyIntentions(e, dst)
		if err != nil {
			return nil, err
		}
		kept := out.Sources[:0]
		for _, s := range out.Sources {
			if s != nil && !sameSource(s, found) {
				kept = append(kept, s)
			}
		}
		out.Sources = kept
		return out, nil
	})
	if err != nil {
		return nil, err
	}
	return true, nil
}

// modifyIntentions rewrites dst's service-intentions entry with fn, with a
// check-and-set on the entry's ModifyIndex, retried when another write
// got there first. fn gets the current entry (nil: none) and returns the
// new one; one without sources deletes the entry.
func (s *Server) modifyIntentions(r *http.Request, dst string, fn func(*configentry.ServiceIntentionsConfigEntry) (*configentry.ServiceIntentionsConfigEntry, error)) error {
	for range maxIntentionWriteRetries {
		st := s.cluster.View()
		_, cur, err := intentionEntry(nil, st, dst)
		if err != nil {
			return err
		}
		next, err := fn(cur)
		if err != nil {
			var he *httpError
			if errors.As(err, &he) {
				return err
			}
			return errBadRequest("%v", err)
		}
		var index uint64
		if cur != nil {
			index = cur.ModifyIndex
		}
		cmd := &catalog.Command{Type: catalog.CmdConfigDelete, ConfigEntry: &catalog.ConfigEntryRequest{
			Kind: configentry.ServiceIntentions, Name: dst, CAS: true, Index: index,
		}}
		if len(next.Sources) > 0 {
			raw, err := json.Marshal(next)
			if err != nil {
				return fmt.Errorf("encode service-intentions entry %q: %w", dst, err)
			}
			cmd.Type, cmd.ConfigEntry.Entry = catalog.CmdConfigSet, raw
		}
		res, err := s.cluster.Apply(r.Context(), cmd)
		if err != nil {
			return fmt.Errorf("write service-intentions entry %q: %w", dst, err)
		}
		if res.OK {
			return nil
		}
		// Another write changed the entry since we read it: wait until
		// this node's view has it, then read again.
		if err := s.waitEntryChange(r, dst, index); err != nil {
			return err
		}
	}
	return &httpError{code: http.StatusConflict, msg: fmt.Sprintf(
		"service-intentions entry %q kept changing under %d attempts to write it: try again", dst, maxIntentionWriteRetries)}
}

// waitEntryChange waits, up to viewCatchUp, until this node's view of
// dst's entry is no longer the one at index (0: none) that a
// check-and-set found stale: a follower applies the leader's log a moment
// after it commits. It polls, since the store has no watch per entry.
func (s *Server) waitEntryChange(r *http.Request, dst string, index uint64) error {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	deadline := time.Now().Add(viewCatchUp)
	for time.Now().Before(deadline) {
		_, cur, err := intentionEntry(nil, s.cluster.View(), dst)
		if err != nil {
			return err
		}
		if (cur == nil && index != 0) || (cur != nil && cur.ModifyIndex != index) {
			return nil
		}
		select {
		case <-r.Context().Done():
			return fmt.Errorf("wait for this node to see the new service-intentions entry %q: %w", dst, r.Context().Err())
		case <-t.C:
		}
	}
	return nil
}

// intentionCheck is GET /v1/connect/intentions/check: whether ?source may
// connect to ?destination, decided as the L7 terminator decides a
// connection (policy.Intentions, default deny; a deciding intention with
// L7 permissions denies a connection-level check, as Consul's does).
func (s *Server) intentionCheck(w http.ResponseWriter, r *http.Request) (any, error) {
	q := r.URL.Query()
	if t := q.Get("source-type"); t != "" && t != string(configentry.IntentionSourceConsul) {
		return nil, errBadRequest("invalid source-type %q: only \"consul\" is supported", t)
	}
	src, err := parseIntentionTarget("source", q.Get("source"))
	if err != nil {
		return nil, err
	}
	dst, err := parseIntentionTarget("destination", q.Get("destination"))
	if err != nil {
		return nil, err
	}
	if err := dst.destination(); err != nil {
		return nil, err
	}
	if _, err := s.require(r, acl.ResourceIntention, dst.name, acl.AccessRead); err != nil {
		return nil, err
	}
	return s.read(w, r, func(ws memdb.WatchSet, st *state.Store) (uint64, any, error) {
		idx, entries, err := intentionEntries(ws, st)
		if err != nil {
			return 0, nil, err
		}
		in, err := policy.CompileIntentions(entries)
		if err != nil {
			return 0, nil, fmt.Errorf("compile intentions: %w", err)
		}
		d := in.Authorize(dst.name, policy.Caller{Service: src.name, Namespace: src.namespace}, nil)
		return idx, map[string]bool{"Allowed": d.Allow}, nil
	})
}

// intentionMatch is GET /v1/connect/intentions/match?by=source|destination
// &name=…: per name, the intentions that apply to it, highest precedence
// first. By destination: the entry of that name, then the "*" entry's
// sources; by source: every local source of that name or "*". It needs
// intentions:read on every name.
func (s *Server) intentionMatch(w http.ResponseWriter, r *http.Request) (any, error) {
	q := r.URL.Query()
	by := q.Get("by")
	if by != "source" && by != "destination" {
		return nil, errBadRequest("invalid by %q: use by=source or by=destination", by)
	}
	names := q["name"]
	if len(names) == 0 {
		return nil, errBadRequest("missing name: give at least one name=<service>")
	}
	targets := make([]intentionTarget, len(names))
	for i, n := range names {
		t, err := parseIntentionTarget("name", n)
		if err != nil {
			return nil, err
		}
		if by == "destination" {
			if err := t.destination(); err != nil {
				return nil, err
			}
		}
		targets[i] = t
	}
	e, err := s.authorize(r)
	if err != nil {
		return nil, err
	}
	for _, t := range targets {
		if err := e.Require(acl.ResourceIntention, t.name, acl.AccessRead); err != nil {
			return nil, err
		}
	}
	return s.read(w, r, func(ws memdb.WatchSet, st *state.Store) (uint64, any, error) {
		idx, entries, err := intentionEntries(ws, st)
		if err != nil {
			return 0, nil, err
		}
		out := make(map[string][]intentionJSON, len(names))
		for i, t := range targets {
			out[names[i]] = matchIntentions(entries, by, t)
		}
		return idx, out, nil
	})
}

// matchIntentions are the intentions of entries that apply to t.
func matchIntentions(entries []*configentry.ServiceIntentionsConfigEntry, by string, t intentionTarget) []intentionJSON {
	out := []intentionJSON{}
	for _, e := range entries {
		if by == "destination" && e.Name != t.name && e.Name != configentry.WildcardSpecifier {
			continue
		}
		for _, src := range e.Sources {
			if src == nil {
				continue
			}
			if by == "source" {
				if src.Peer != "" || src.SamenessGroup != "" || (src.Name != t.name && src.Name != configentry.WildcardSpecifier) {
					continue
				}
				if src.Namespace != configentry.WildcardSpecifier && src.Namespace != t.namespace {
					continue
				}
			}
			out = append(out, toIntention(e, src))
		}
	}
	sortIntentions(out)
	return out
}

// intentionByID answers the legacy ID-based endpoints (GET, PUT and DELETE
// /v1/connect/intentions/:id, and PUT with an empty ID, which `consul
// intention create -replace` sends for an intention without one): 404,
// as Consul 1.9+ does for config-entry intentions, naming the exact API.
func (s *Server) intentionByID(w http.ResponseWriter, r *http.Request) (any, error) {
	if _, err := s.authorize(r); err != nil {
		return nil, err
	}
	return nil, errNotFound("Intention not found: peerd's intentions are service-intentions config entries, which have no IDs (as in Consul 1.9+); " +
		"address them by name with /v1/connect/intentions/exact?source=<src>&destination=<dst> (consul intention get|delete SRC DST), or edit the entry with consul config write")
}

// intentionRoutes registers the /v1/connect/intentions API.
func (s *Server) intentionRoutes() {
	s.handle("GET /v1/connect/intentions", s.intentionsList)
	s.handle("POST /v1/connect/intentions", s.intentionCreate)
	s.handle("GET /v1/connect/intentions/exact", s.intentionGetExact)
	s.handle("PUT /v1/connect/intentions/exact", s.intentionPutExact)
	s.handle("DELETE /v1/connect/intentions/exact", s.intentionDeleteExact)
	s.handle("GET /v1/connect/intentions/check", s.intentionCheck)
	s.handle("GET /v1/connect/intentions/match", s.intentionMatch)
	s.handle("GET /v1/connect/intentions/{id}", s.intentionByID)
	s.handle("PUT /v1/connect/intentions/{id}", s.intentionByID)
	s.handle("DELETE /v1/connect/intentions/{id}", s.intentionByID)
	s.handle("PUT /v1/connect/intentions/{$}", s.intentionByID)
}
