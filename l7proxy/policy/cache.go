package policy

import (
	"regexp"
	"sync"
)

// cacheMaxEntries bounds each map of a Cache. Keys come from config entries,
// so the bound is only reached when entries keep changing; the map is then
// emptied and refilled by the requests that follow.
const cacheMaxEntries = 4096

// Cache keeps the regular expressions of service-router matches and the
// subset filters of service-resolvers, compiled once and keyed by their
// source text, so that RouteRequest and Resolve do only evaluation per
// request. A Cache is safe for concurrent use; the zero value is ready to
// use. A nil *Cache compiles on every call and keeps nothing, which is what
// the package-level RouteRequest and Resolve do.
type Cache struct {
	mu      sync.RWMutex
	regexps map[string]regexpResult
	filters map[string]filterResult
}

type regexpResult struct {
	re  *regexp.Regexp
	err error
}

type filterResult struct {
	f   *Filter
	err error
}

// NewCache returns an empty Cache.
func NewCache() *Cache { return &Cache{} }

// fullRegex returns pattern compiled to match whole values, from the cache
// when possible. Failures are cached too.
func (c *Cache) fullRegex(pattern string) (*regexp.Regexp, error) {
	if c == nil {
		return compileFullRegex(pattern)
	}
	c.mu.RLock()
	res, ok := c.regexps[pattern]
	c.mu.RUnlock()
	if ok {
		return res.re, res.err
	}
	re, err := compileFullRegex(pattern)
	c.mu.Lock()
	if c.regexps == nil || len(c.regexps) >= cacheMaxEntries {
		c.regexps = make(map[string]regexpResult)
	}
	c.regexps[pattern] = regexpResult{re, err}
	c.mu.Unlock()
	return re, err
}

// Filter returns the compiled subset filter for expr (see CompileFilter),
// from the cache when possible. Failures are cached too.
func (c *Cache) Filter(expr string) (*Filter, error) {
	if c == nil {
		return CompileFilter(expr)
	}
	c.mu.RLock()
	res, ok := c.filters[expr]
	c.mu.RUnlock()
	if ok {
		return res.f, res.err
	}
	f, err := CompileFilter(expr)
	c.mu.Lock()
	if c.filters == nil || len(c.filters) >= cacheMaxEntries {
		c.filters = make(map[string]filterResult)
	}
	c.filters[expr] = filterResult{f, err}
	c.mu.Unlock()
	return f, err
}

// Len returns the number of regular expressions and filters cached.
func (c *Cache) Len() (regexps, filters int) {
	if c == nil {
		return 0, 0
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.regexps), len(c.filters)
}
