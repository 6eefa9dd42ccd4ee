package policy

import (
	"net/http"
	"sort"

	"github.com/peerd/peerd/catalog/configentry"
)

// ApplyHeaderModifiers applies m to h in the order the modifiers of a Route
// are meant to be applied: Remove, then Set, then Add (append). Header names
// are canonicalized by http.Header. A nil m changes nothing. Note that
// net/http keeps the Host header in Request.Host, not in Request.Header.
func ApplyHeaderModifiers(h http.Header, m *configentry.HTTPHeaderModifiers) {
	if m == nil || h == nil {
		return
	}
	for _, k := range m.Remove {
		h.Del(k)
	}
	for k, v := range m.Set {
		h.Set(k, v)
	}
	for k, v := range m.Add {
		h.Add(k, v)
	}
}

// headerEffect is what a modifier does to one header.
type headerEffect struct {
	remove       bool
	set, add     string
	hasSet, hasA bool
}

// composeHeaders returns one modifier equivalent to applying first and then
// second, each the way Envoy applies one level of Consul's configuration
// (Remove, then Add, then Set, so that Set wins over Add of the same header).
// The result is meant for ApplyHeaderModifiers (Remove, Set, Add). Two Add
// values of the same header are joined with "," (the same field, per RFC 9110,
// except for Set-Cookie). Inputs are never modified; nil is returned when
// both are empty, and an input is returned as is when it alone has effects
// and is already in that form.
func composeHeaders(first, second *configentry.HTTPHeaderModifiers) *configentry.HTTPHeaderModifiers {
	if isZeroHeaders(first) && isZeroHeaders(second) {
		return nil
	}
	if isZeroHeaders(first) && canonicalHeaders(second) {
		return second
	}
	if isZeroHeaders(second) && canonicalHeaders(first) {
		return first
	}
	effects := make(map[string]*headerEffect)
	get := func(k string) *headerEffect {
		k = http.CanonicalHeaderKey(k)
		e := effects[k]
		if e == nil {
			e = &headerEffect{}
			effects[k] = e
		}
		return e
	}
	for _, m := range []*configentry.HTTPHeaderModifiers{first, second} {
		if m == nil {
			continue
		}
		// One level: its Remove, then its Add, then its Set.
		for _, k := range m.Remove {
			e := get(k)
			*e = headerEffect{remove: true}
		}
		for k, v := range m.Add {
			if _, overridden := lookupFold(m.Set, k); overridden {
				continue
			}
			e := get(k)
			if e.hasA {
				e.add += "," + v
			} else {
				e.add, e.hasA = v, true
			}
		}
		for k, v := range m.Set {
			e := get(k)
			e.set, e.hasSet = v, true
			e.add, e.hasA = "", false
		}
	}
	out := &configentry.HTTPHeaderModifiers{}
	for k, e := range effects {
		if e.remove {
			out.Remove = append(out.Remove, k)
		}
		if e.hasSet {
			if out.Set == nil {
				out.Set = make(map[string]string)
			}
			out.Set[k] = e.set
		}
		if e.hasA {
			if out.Add == nil {
				out.Add = make(map[string]string)
			}
			out.Add[k] = e.add
		}
	}
	sort.Strings(out.Remove)
	return out
}

// lookupFold finds k in m, comparing header names canonically.
func lookupFold(m map[string]string, k string) (string, bool) {
	if v, ok := m[k]; ok {
		return v, true
	}
	ck := http.CanonicalHeaderKey(k)
	for mk, v := range m {
		if http.CanonicalHeaderKey(mk) == ck {
			return v, true
		}
	}
	return "", false
}

// canonicalHeaders reports whether applying m as Remove, Set, Add gives the
// same result as Envoy's Remove, Add, Set: no header is both added and set.
func canonicalHeaders(m *configentry.HTTPHeaderModifiers) bool {
	for k := range m.Add {
		if _, ok := lookupFold(m.Set, k); ok {
			return false
		}
	}
	return true
}

func isZeroHeaders(m *configentry.HTTPHeaderModifiers) bool {
	return m == nil || (len(m.Add) == 0 && len(m.Set) == 0 && len(m.Remove) == 0)
}
