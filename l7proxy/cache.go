package l7proxy

import (
	"sync"
	"time"

	"github.com/peerd/peerd/catalog/configentry"
	"github.com/peerd/peerd/catalog/state"
	"github.com/peerd/peerd/l7proxy/policy"
)

// viewCacheTTL is how long the request path reuses what it read from the
// catalog (config entries, endpoints). Changes reach requests within this
// time, on top of replication; it keeps memdb reads off the per-request
// path under load.
const viewCacheTTL = 50 * time.Millisecond

// viewCache memoizes catalog reads of the request path for viewCacheTTL.
// It is keyed by the store too, so a replaced view (a client node's mirror)
// is never served from another store's entries.
type viewCache struct {
	mu      sync.Mutex
	store   *state.Store
	entries map[[2]string]cachedEntry
	dests   map[destKey]cachedDest
}

type cachedEntry struct {
	e  configentry.Entry
	at time.Time
}

type destKey struct {
	target policy.Target
	hop    bool
}

type cachedDest struct {
	ch      choice
	lb      string
	timeout time.Duration
	err     error
	at      time.Time
}

// reset empties the cache when the store changed identity.
func (c *viewCache) reset(st *state.Store) {
	if c.store != st {
		c.store = st
		c.entries = map[[2]string]cachedEntry{}
		c.dests = map[destKey]cachedDest{}
	}
}

// lookup returns a policy.Lookup over st that caches each entry briefly.
func (c *viewCache) lookup(st *state.Store) policy.Lookup {
	return func(kind, name string) configentry.Entry {
		now := time.Now()
		key := [2]string{kind, name}
		c.mu.Lock()
		c.reset(st)
		if ce, ok := c.entries[key]; ok && now.Sub(ce.at) < viewCacheTTL {
			c.mu.Unlock()
			return ce.e
		}
		c.mu.Unlock()
		_, e, err := st.ConfigEntry(nil, kind, name)
		if err != nil {
			return nil
		}
		c.mu.Lock()
		c.reset(st)
		c.entries[key] = cachedEntry{e: e, at: now}
		c.mu.Unlock()
		return e
	}
}

// destination returns a cached destination, or computes and caches it.
func (c *viewCache) destination(st *state.Store, key destKey, compute func() (choice, string, time.Duration, error)) (choice, string, time.Duration, error) {
	now := time.Now()
	c.mu.Lock()
	c.reset(st)
	if d, ok := c.dests[key]; ok && now.Sub(d.at) < viewCacheTTL {
		c.mu.Unlock()
		return d.ch, d.lb, d.timeout, d.err
	}
	c.mu.Unlock()
	ch, lb, timeout, err := compute()
	c.mu.Lock()
	c.reset(st)
	if len(c.dests) > 4096 {
		c.dests = map[destKey]cachedDest{}
	}
	c.dests[key] = cachedDest{ch: ch, lb: lb, timeout: timeout, err: err, at: now}
	c.mu.Unlock()
	return ch, lb, timeout, err
}
