package configentry

import (
	"fmt"
	"net/http"
	"regexp"
	"sort"
	"strings"
	"unicode/utf8"

	"github.com/peerd/peerd/internal/decode"
)

// Consul's limits on Meta.
const (
	metaMaxKeyPairs    = 64
	metaKeyMaxLength   = 128
	metaValueMaxLength = 512
)

// MaxServiceNameLength bounds a service name on every path that takes one:
// config entries, agent registrations and upstreams (agent/local), and
// services imported from a peer (peering). Consul sets no limit; a name ends
// up in DNS names (<svc>.service.<peer>.peer.<domain>), SNI and SPIFFE IDs,
// and 253 is the most a DNS name may hold. It lives here, the lowest
// catalog package, so config entries can apply it too.
const MaxServiceNameLength = 253

// maxDatacenterLength bounds a datacenter name.
const maxDatacenterLength = 256

var (
	// validPeerName is Consul's rule for peer names (agent/rpc/peering).
	validPeerName = regexp.MustCompile(`^[a-z0-9]([a-z0-9\-]{0,61}[a-z0-9])?$`)
	// validServiceSubset is Consul's rule for resolver subset names, which
	// appear as DNS labels in SNI.
	validServiceSubset = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]*[a-z0-9])?$`)
	// validServiceName accepts the characters Consul's DNS and SNI handling
	// tolerate.
	validServiceName = regexp.MustCompile(`^[A-Za-z0-9_.\-]+$`)
	// validTenancyName is Consul Enterprise's rule for namespace and
	// partition names.
	validTenancyName = regexp.MustCompile(`^[a-zA-Z0-9]([a-zA-Z0-9\-]{0,62}[a-zA-Z0-9])?$`)
	// validDatacenter is Consul's rule for datacenter names.
	validDatacenter = regexp.MustCompile(`^[a-zA-Z0-9_\-]+$`)
)

const (
	peerNameRule   = PeerNameRule
	subsetNameRule = "must be 63 characters or less, begin or end with lower case alphanumeric characters, and contain lower case alphanumeric characters or '-' in between"
)

// Valid protocols for service-defaults and proxy-defaults.
var validProtocols = []string{"tcp", "http", "http2", "grpc"}

// L7Protocol reports whether a service protocol is HTTP-based (http, http2,
// grpc): the protocols on which routers and splitters may act and that the
// terminator serves at L7. Anything else is carried as TCP.
func L7Protocol(p string) bool {
	return p == "http" || p == "http2" || p == "grpc"
}

func errf(path, format string, args ...any) error {
	return &decode.Error{Path: path, Msg: fmt.Sprintf(format, args...)}
}

// field joins a path and a field name.
func field(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

// index appends a list index to a path.
func index(path string, i int) string { return fmt.Sprintf("%s[%d]", path, i) }

// key appends a map key to a path.
func key(path, k string) string { return fmt.Sprintf("%s[%q]", path, short(k)) }

// short shortens s for use in a path or message.
func short(s string) string {
	const max = 64
	if utf8.RuneCountInString(s) <= max {
		return s
	}
	return string([]rune(s)[:max]) + "..."
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// validateMeta applies Consul's limits on entry metadata.
func validateMeta(path string, meta map[string]string) error {
	if len(meta) > metaMaxKeyPairs {
		return errf(path, "at most %d keys may be set, got %d; remove %d", metaMaxKeyPairs, len(meta), len(meta)-metaMaxKeyPairs)
	}
	for _, k := range sortedKeys(meta) {
		if len(k) > metaKeyMaxLength {
			return errf(key(path, k), "key is %d bytes long; the limit is %d", len(k), metaKeyMaxLength)
		}
		if v := meta[k]; len(v) > metaValueMaxLength {
			return errf(key(path, k), "value is %d bytes long; the limit is %d", len(v), metaValueMaxLength)
		}
	}
	return nil
}

// PeerNameRule is Consul's peer-name rule in words, for error messages.
const PeerNameRule = "a valid peering name must consist of lower case alphanumeric characters or '-', " +
	"and must start and end with an alphanumeric character (at most 63 characters)"

// ValidPeerName reports whether name is a valid peer name: a lowercase DNS
// label, Consul's rule. The peering API and config entries share it.
func ValidPeerName(name string) bool { return validPeerName.MatchString(name) }

// ValidServiceNameChars reports whether name uses only the characters a
// service name may have: letters, digits, '-', '_' and '.'.
func ValidServiceNameChars(name string) bool { return validServiceName.MatchString(name) }

// validateServiceName checks a service name. An empty name is the caller's
// business. allowWildcard permits exactly "*".
func validateServiceName(path, name string, allowWildcard bool) error {
	switch {
	case name == WildcardSpecifier && allowWildcard:
		return nil
	case name == WildcardSpecifier:
		return errf(path, "must be the name of a service, not a wildcard")
	case strings.Contains(name, WildcardSpecifier):
		return errf(path, "wildcard character '*' cannot be used with partial values; use exactly \"*\" or a service name")
	case len(name) > MaxServiceNameLength:
		return errf(path, "name is %d bytes long; the limit is %d", len(name), MaxServiceNameLength)
	case !validServiceName.MatchString(name):
		return errf(path, "%q is not a valid service name: use letters, digits, '-', '_' and '.'", short(name))
	}
	return nil
}

// validatePeerName checks a peer name with Consul's rule and wording.
func validatePeerName(path, name string) error {
	if name == WildcardSpecifier {
		return errf(path, "cannot use wildcard '*' in peer; name one peer per entry")
	}
	if !validPeerName.MatchString(name) {
		return errf(path, "%q is not a valid peer name: %s", short(name), peerNameRule)
	}
	return nil
}

// validateTenancy checks a namespace or partition name, which may be empty.
func validateTenancy(path, name string, allowWildcard bool) error {
	switch {
	case name == "":
		return nil
	case name == WildcardSpecifier && allowWildcard:
		return nil
	case strings.Contains(name, WildcardSpecifier):
		return errf(path, "cannot use wildcard '*' here")
	case !validTenancyName.MatchString(name):
		return errf(path, "%q is not a valid name: use at most 64 letters, digits and '-', starting and ending with a letter or digit", short(name))
	}
	return nil
}

// validateDatacenter checks a datacenter name.
func validateDatacenter(path, name string) error {
	if len(name) > maxDatacenterLength || !validDatacenter.MatchString(name) {
		return errf(path, "%q is not a valid datacenter name: use letters, digits, '-' and '_'", short(name))
	}
	return nil
}

// validateSamenessGroup checks a sameness group name, which may be empty.
func validateSamenessGroup(path, name string) error {
	switch {
	case name == "":
		return nil
	case strings.Contains(name, WildcardSpecifier):
		return errf(path, "cannot use wildcard '*' in sameness group")
	case !validTenancyName.MatchString(name):
		return errf(path, "%q is not a valid sameness group name: use at most 64 letters, digits and '-', starting and ending with a letter or digit", short(name))
	}
	return nil
}

// validateSubsetName checks a resolver subset name with Consul's rule.
func validateSubsetName(path, name string) error {
	if name == "" {
		return errf(path, "subset name must not be empty")
	}
	if len(name) > 63 || !validServiceSubset.MatchString(name) {
		return errf(path, "subset name %q is invalid: %s", short(name), subsetNameRule)
	}
	return nil
}

// validateEntryTenancy checks an entry's own Partition and Namespace.
func validateEntryTenancy(partition, namespace string, allowWildcardNamespace bool) error {
	if err := validateTenancy("Partition", partition, false); err != nil {
		return err
	}
	return validateTenancy("Namespace", namespace, allowWildcardNamespace)
}

func isValidHTTPMethod(m string) bool {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodConnect, http.MethodOptions, http.MethodTrace:
		return true
	}
	return false
}

// validateMethods checks an HTTP method list the way Consul does.
func validateMethods(path string, methods []string) error {
	seen := make(map[string]bool, len(methods))
	for i, m := range methods {
		if !isValidHTTPMethod(m) {
			return errf(index(path, i), "invalid method %q; use one of GET, HEAD, POST, PUT, PATCH, DELETE, CONNECT, OPTIONS or TRACE", short(m))
		}
		if seen[m] {
			return errf(index(path, i), "method %q is listed more than once", m)
		}
		seen[m] = true
	}
	return nil
}

// validateRegex checks that a regular expression compiles. peerd's L7 proxy
// matches with Go's RE2-compatible regexp package.
func validateRegex(path, re string) error {
	if re == "" {
		return nil
	}
	if _, err := regexp.Compile(re); err != nil {
		return errf(path, "invalid regular expression: %v", err)
	}
	return nil
}

func validProtocol(p string) bool {
	for _, v := range validProtocols {
		if p == v {
			return true
		}
	}
	return false
}

func validatePort(path string, port int) error {
	if port < 0 || port > 65535 {
		return errf(path, "port %d is out of range; use 1 to 65535", port)
	}
	return nil
}

// validatePathMatch checks an HTTP path match (routers and L7 intentions):
// PathExact and PathPrefix start with '/', PathRegex compiles, and at most
// one of the three is set. hint is appended to the at-most-one message.
func validatePathMatch(path, exact, prefix, regex, hint string) error {
	set := 0
	for _, p := range []struct{ name, v string }{{"PathExact", exact}, {"PathPrefix", prefix}} {
		if p.v == "" {
			continue
		}
		set++
		if !strings.HasPrefix(p.v, "/") {
			return errf(field(path, p.name), "doesn't start with '/': %q", short(p.v))
		}
	}
	if regex != "" {
		set++
		if err := validateRegex(field(path, "PathRegex"), regex); err != nil {
			return err
		}
	}
	if set > 1 {
		return errf(path, "should only contain at most one of PathExact, PathPrefix, or PathRegex%s", hint)
	}
	return nil
}
