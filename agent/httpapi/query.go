package httpapi

import (
	"context"
	"math/rand/v2"
	"net/http"
	"strconv"
	"time"

	"github.com/hashicorp/go-memdb"

	"github.com/peerd/peerd/catalog/state"
	"github.com/peerd/peerd/internal/decode"
)

// Blocking query limits, as Consul's.
const (
	defaultWait = 5 * time.Minute
	maxWait     = 10 * time.Minute
)

// relayedHeader marks a read relayed from another node, so it is never relayed
// twice.
const relayedHeader = "X-Peerd-Relayed"

// queryOptions are the read options every catalog read accepts.
type queryOptions struct {
	minIndex uint64
	wait     time.Duration
	stale    bool
	peer     string
}

func parseQuery(r *http.Request) (queryOptions, error) {
	q := r.URL.Query()
	var o queryOptions
	if v := q.Get("index"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return o, errBadRequest("invalid index %q: must be a whole number (the X-Consul-Index of a previous answer)", v)
		}
		o.minIndex = n
	}
	o.wait = defaultWait
	if v := q.Get("wait"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			return o, errBadRequest("invalid wait %q: use a duration such as \"30s\" or \"5m\"", v)
		}
		o.wait = min(d, maxWait)
	}
	_, o.stale = q["stale"]
	o.peer = q.Get("peer")
	if _, ok := q["consistent"]; ok && o.stale {
		return o, errBadRequest("stale and consistent are mutually exclusive: pick one")
	}
	return o, nil
}

// queryFn runs a read against the store, adding what it read to ws, and
// returns the index of the data it read plus the value to answer with.
type queryFn func(ws memdb.WatchSet, store *state.Store) (uint64, any, error)

// read serves a catalog read: locally when this server may answer (it is the
// leader, the caller asked for ?stale, or the request was already relayed),
// otherwise relayed to a server that can. It implements blocking queries:
// with ?index=N, it waits until the data's index passes N or ?wait runs out.
func (s *Server) read(w http.ResponseWriter, r *http.Request, fn queryFn) (any, error) {
	opts, err := parseQuery(r)
	if err != nil {
		return nil, err
	}
	// Consul filters every catalog and health read with ?filter; answering
	// unfiltered data instead would be silently wrong.
	if err := rejectFilter(r); err != nil {
		return nil, err
	}
	store := s.cluster.Store()
	relayed := r.Header.Get(relayedHeader) != ""
	if store == nil || (!s.cluster.IsLeader() && !opts.stale && !relayed) {
		return nil, s.relay(w, r, opts.stale)
	}
	return s.blockingQuery(w, r, opts, store, fn)
}

// readFiltered is read for a list that f filters: f starts over on every
// pass of a blocking query, and the answer says whether it dropped
// something (filterDone).
func (s *Server) readFiltered(w http.ResponseWriter, r *http.Request, f *aclFilter, fn queryFn) (any, error) {
	out, err := s.read(w, r, func(ws memdb.WatchSet, st *state.Store) (uint64, any, error) {
		f.reset()
		return fn(ws, st)
	})
	if err == nil && out != nil {
		s.filterDone(w, r, f)
	}
	return out, err
}

func (s *Server) blockingQuery(w http.ResponseWriter, r *http.Request, opts queryOptions, store *state.Store, fn queryFn) (any, error) {
	ctx := r.Context()
	var timeout <-chan time.Time
	if opts.minIndex > 0 {
		// Jitter spreads the wake-ups of many clients, as Consul does.
		wait := opts.wait + time.Duration(rand.Int64N(int64(opts.wait/16)+1))
		t := time.NewTimer(wait)
		defer t.Stop()
		timeout = t.C
	}
	for {
		ws := memdb.NewWatchSet()
		idx, out, err := fn(ws, store)
		if err != nil {
			return nil, err
		}
		// An index of 0 would make clients spin; Consul answers at least 1.
		idx = max(idx, 1)
		if opts.minIndex == 0 || idx > opts.minIndex {
			s.setMeta(w, idx)
			return out, nil
		}
		wctx, cancel := context.WithCancel(ctx)
		stop := make(chan struct{})
		go func() {
			select {
			case <-timeout:
				cancel()
			case <-stop:
			}
		}()
		err = ws.WatchCtx(wctx)
		close(stop)
		timedOut := wctx.Err() != nil && ctx.Err() == nil
		cancel()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if timedOut || err != nil {
			idx, out, err := fn(nil, store)
			if err != nil {
				return nil, err
			}
			s.setMeta(w, max(idx, 1))
			return out, nil
		}
	}
}

func (s *Server) setMeta(w http.ResponseWriter, idx uint64) {
	h := w.Header()
	h.Set("X-Consul-Index", strconv.FormatUint(idx, 10))
	known := s.cluster.Leader() != ""
	h.Set("X-Consul-KnownLeader", strconv.FormatBool(known))
	h.Set("X-Consul-LastContact", "0")
}

// decodeBody strictly decodes a JSON request body into v, naming the field
// that was wrong.
func decodeBody(r *http.Request, v any) error {
	b, err := readBody(r)
	if err != nil {
		return err
	}
	if err := decode.JSON(b, v); err != nil {
		return errBadRequest("invalid request body: %v", err)
	}
	return nil
}
