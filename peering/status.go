package peering

import (
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/peerd/peerd/catalog/state"
)

// Status is a snapshot of one peering's stream, as the leader that owns the
// stream sees it.
type Status struct {
	// Connected is true while a stream is open.
	Connected bool
	// LastHeartbeat, LastReceive and LastSend are zero until they happen.
	LastHeartbeat time.Time
	LastReceive   time.Time
	LastSend      time.Time
	// LastError is the most recent stream error; LastErrorAt when it
	// happened.
	LastError   string
	LastErrorAt time.Time
	// ImportedServices and ExportedServices are sorted service names.
	ImportedServices []string
	ExportedServices []string
	// ReplicationLag is the delay of the last applied update, from the
	// response's arrival (its first chunk) to its local raft commit.
	ReplicationLag time.Duration
	// Reconnects counts streams opened after the first.
	Reconnects int
	// QuotaRefusals counts the peer's responses refused for a quota, by
	// quota (services, instances, in_flight_bytes, messages_per_second);
	// ImportRefusals the imports refused as invalid, by reason. LastRefusal
	// is the latest refusal's message, LastRefusalAt when it happened.
	QuotaRefusals  map[string]uint64
	ImportRefusals map[string]uint64
	LastRefusal    string
	LastRefusalAt  time.Time
}

// Healthy reports whether the stream is up and heard from within timeout.
func (s Status) Healthy(now time.Time, timeout time.Duration) bool {
	if !s.Connected {
		return false
	}
	last := s.LastHeartbeat
	if s.LastReceive.After(last) {
		last = s.LastReceive
	}
	return !last.IsZero() && now.Sub(last) <= timeout
}

// State derives the state users see from the stored state and the stream:
// a stored ACTIVE or ESTABLISHING peering is ACTIVE while its stream is
// healthy, and FAILING once it has been connected but is no longer (an
// ESTABLISHING peering never connected stays ESTABLISHING).
func (s Status) State(stored string, now time.Time, timeout time.Duration) string {
	switch stored {
	case state.PeeringActive, state.PeeringEstablishing:
		if s.Healthy(now, timeout) {
			return state.PeeringActive
		}
		if stored == state.PeeringEstablishing && s.LastReceive.IsZero() {
			return state.PeeringEstablishing
		}
		return state.PeeringFailing
	}
	return stored
}

// tracker keeps the live status of every peering's stream by peering ID.
// It is safe for concurrent use.
type tracker struct {
	mu   sync.Mutex
	now  func() time.Time
	byID map[string]*Status
}

func newTracker(now func() time.Time) *tracker {
	if now == nil {
		now = time.Now
	}
	return &tracker{now: now, byID: map[string]*Status{}}
}

func (t *tracker) update(id string, f func(s *Status)) {
	t.mu.Lock()
	defer t.mu.Unlock()
	s, ok := t.byID[id]
	if !ok {
		s = &Status{}
		t.byID[id] = s
	}
	f(s)
}

// get returns a copy of the status (zero if unknown).
func (t *tracker) get(id string) Status {
	t.mu.Lock()
	defer t.mu.Unlock()
	s, ok := t.byID[id]
	if !ok {
		return Status{}
	}
	cp := *s
	cp.ImportedServices = slices.Clone(s.ImportedServices)
	cp.ExportedServices = slices.Clone(s.ExportedServices)
	cp.QuotaRefusals = maps.Clone(s.QuotaRefusals)
	cp.ImportRefusals = maps.Clone(s.ImportRefusals)
	return cp
}

func (t *tracker) connected(id string) {
	now := t.now()
	t.update(id, func(s *Status) {
		if !s.LastReceive.IsZero() || !s.LastSend.IsZero() {
			s.Reconnects++
		}
		s.Connected = true
		s.LastHeartbeat = now // the open counts as contact
	})
}

func (t *tracker) disconnected(id string, err error) {
	now := t.now()
	t.update(id, func(s *Status) {
		s.Connected = false
		if err != nil {
			s.LastError, s.LastErrorAt = err.Error(), now
		}
	})
}

func (t *tracker) failed(id string, err error) {
	now := t.now()
	t.update(id, func(s *Status) { s.LastError, s.LastErrorAt = err.Error(), now })
}

func (t *tracker) heartbeat(id string) {
	now := t.now()
	t.update(id, func(s *Status) { s.LastHeartbeat, s.LastReceive = now, now })
}

func (t *tracker) received(id string) {
	now := t.now()
	t.update(id, func(s *Status) { s.LastReceive = now })
}

func (t *tracker) sent(id string) {
	now := t.now()
	t.update(id, func(s *Status) { s.LastSend = now })
}

func (t *tracker) setImported(id string, names []string) {
	sorted := slices.Sorted(slices.Values(names))
	t.update(id, func(s *Status) { s.ImportedServices = sorted })
}

func (t *tracker) setExported(id string, names []string) {
	sorted := slices.Sorted(slices.Values(names))
	t.update(id, func(s *Status) { s.ExportedServices = sorted })
}

func (t *tracker) lag(id string, d time.Duration) {
	t.update(id, func(s *Status) { s.ReplicationLag = d })
}

func (t *tracker) forget(id string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.byID, id)
}
