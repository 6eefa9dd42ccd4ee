package policy

import (
	"fmt"
	"net/http"
	"regexp"
	"strings"
)

// compileFullRegex compiles re so that it must match a whole value, as
// Envoy's safe_regex matchers do.
func compileFullRegex(re string) (*regexp.Regexp, error) {
	return regexp.Compile(`^(?:` + re + `)$`)
}

// requestPath is the path requests are matched on: the URL path without the
// query string, "/" when empty.
func requestPath(r *http.Request) string {
	if r == nil || r.URL == nil {
		return "/"
	}
	if r.URL.Path == "" {
		return "/"
	}
	return r.URL.Path
}

// requestMethod is the request's method, "GET" when empty (as net/http reads
// an empty method).
func requestMethod(r *http.Request) string {
	if r == nil || r.Method == "" {
		return http.MethodGet
	}
	return r.Method
}

// headerValue returns the value of the named header as Envoy matches it: all
// values joined with ",". The pseudo-headers ":authority" (also "Host"),
// ":method", ":path" and ":scheme" are answered from the request. ok is false
// when the header is absent.
func headerValue(r *http.Request, name string) (value string, ok bool) {
	if r == nil {
		return "", false
	}
	if len(name) == 0 || (name[0] != ':' && len(name) != len("host")) {
		return joinedValues(r.Header.Values(name))
	}
	switch {
	case asciiEqualFold(name, "host"), asciiEqualFold(name, ":authority"):
		if r.Host != "" {
			return r.Host, true
		}
		if r.URL != nil && r.URL.Host != "" {
			return r.URL.Host, true
		}
		return "", false
	case asciiEqualFold(name, ":method"):
		return requestMethod(r), true
	case asciiEqualFold(name, ":path"):
		if r.URL == nil {
			return "/", true
		}
		return r.URL.RequestURI(), true
	case asciiEqualFold(name, ":scheme"):
		if r.TLS != nil {
			return "https", true
		}
		return "http", true
	}
	return joinedValues(r.Header.Values(name))
}

// joinedValues joins a header's values with ",", as Envoy matches them.
func joinedValues(vals []string) (string, bool) {
	switch len(vals) {
	case 0:
		return "", false
	case 1:
		return vals[0], true
	}
	return strings.Join(vals, ","), true
}

// pathMatcher matches a request path exactly, by prefix or by regular
// expression. The zero value matches every path.
type pathMatcher struct {
	exact, prefix   string
	re              *regexp.Regexp
	caseInsensitive bool
}

func (m pathMatcher) match(path string) bool {
	switch {
	case m.exact != "":
		if m.caseInsensitive {
			return asciiEqualFold(path, m.exact)
		}
		return path == m.exact
	case m.prefix != "":
		if m.caseInsensitive {
			return hasPrefixFold(path, m.prefix)
		}
		return strings.HasPrefix(path, m.prefix)
	case m.re != nil:
		return m.re.MatchString(path)
	}
	return true
}

// describe names the path match for reasons and errors.
func (m pathMatcher) describe() string {
	switch {
	case m.exact != "":
		return fmt.Sprintf("PathExact %q", m.exact)
	case m.prefix != "":
		return fmt.Sprintf("PathPrefix %q", m.prefix)
	case m.re != nil:
		return "PathRegex"
	}
	return "any path"
}

// headerOp is the kind of a header match.
type headerOp uint8

const (
	opPresent headerOp = iota
	opExact
	opPrefix
	opSuffix
	opContains
	opRegex
)

// headerMatcher is one compiled header (or query parameter) match.
type headerMatcher struct {
	name       string
	op         headerOp
	present    bool // for opPresent: true = must be present, false = must be absent
	value      string
	re         *regexp.Regexp
	invert     bool
	ignoreCase bool
}

// matchValue applies the matcher to a value that may be absent, with Envoy's
// semantics: an absent value matches only a presence test, and inverting a
// value test does not make an absent value match.
func (m *headerMatcher) matchValue(v string, ok bool) bool {
	if !ok {
		if m.op != opPresent {
			return false
		}
		return m.present == m.invert
	}
	var res bool
	switch m.op {
	case opPresent:
		res = m.present
	case opExact:
		if m.ignoreCase {
			res = asciiEqualFold(v, m.value)
		} else {
			res = v == m.value
		}
	case opPrefix:
		if m.ignoreCase {
			res = hasPrefixFold(v, m.value)
		} else {
			res = strings.HasPrefix(v, m.value)
		}
	case opSuffix:
		if m.ignoreCase {
			res = hasSuffixFold(v, m.value)
		} else {
			res = strings.HasSuffix(v, m.value)
		}
	case opContains:
		if m.ignoreCase {
			res = containsFold(v, m.value)
		} else {
			res = strings.Contains(v, m.value)
		}
	case opRegex:
		res = m.re.MatchString(v)
	}
	return res != m.invert
}

// asciiEqualFold reports whether a and b are equal ignoring ASCII case, as
// Envoy's ignore_case and case_sensitive=false compare.
func asciiEqualFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		if lowerASCII(a[i]) != lowerASCII(b[i]) {
			return false
		}
	}
	return true
}

func lowerASCII(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + ('a' - 'A')
	}
	return c
}

func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && asciiEqualFold(s[:len(prefix)], prefix)
}

func hasSuffixFold(s, suffix string) bool {
	return len(s) >= len(suffix) && asciiEqualFold(s[len(s)-len(suffix):], suffix)
}

func containsFold(s, substr string) bool {
	for i := 0; i+len(substr) <= len(s); i++ {
		if asciiEqualFold(s[i:i+len(substr)], substr) {
			return true
		}
	}
	return false
}

// methodsMatch reports whether method is in methods; an empty list matches
// every method. The request's method is compared case-sensitively (RFC 9110)
// with the upper-cased configured methods.
func methodsMatch(methods []string, method string) bool {
	if len(methods) == 0 {
		return true
	}
	for _, m := range methods {
		// ToUpper returns an upper-case string as is, without allocating.
		if strings.ToUpper(m) == method {
			return true
		}
	}
	return false
}

func upperAll(in []string) []string {
	if len(in) == 0 {
		return nil
	}
	out := make([]string, len(in))
	for i, m := range in {
		out[i] = strings.ToUpper(m)
	}
	return out
}
