// Package weborigin parses what a browser says about where a request comes
// from and where it goes: Origin headers (scheme://host[:port]) and Host
// headers, and checks the names operators allow. It is pure (no I/O) and a
// leaf: it imports nothing of ours. Errors say what is wrong with the value
// and what shape is wanted.
package weborigin

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strings"
)

// Parse checks an origin (scheme://host[:port], as a browser's
// Origin header has it) and returns it normalised: lowercase, without the
// scheme's default port. "null" (a sandboxed or file: page) is no origin
// that can be allowed.
func Parse(origin string) (string, error) {
	if origin == "null" {
		return "", errors.New(`origin "null" (a sandboxed page or a file) cannot be allowed`)
	}
	u, err := url.Parse(origin)
	if err != nil {
		return "", fmt.Errorf("origin %q does not parse: %w", origin, err)
	}
	scheme := strings.ToLower(u.Scheme)
	if scheme != "http" && scheme != "https" {
		return "", fmt.Errorf("origin %q: want http:// or https://", origin)
	}
	if u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" {
		return "", fmt.Errorf("origin %q: want scheme://host[:port] only, no user, path or query", origin)
	}
	host, ok := SplitHost(u.Host)
	if !ok || host == "" {
		return "", fmt.Errorf("origin %q: no valid host", origin)
	}
	port := u.Port()
	if (scheme == "http" && port == "80") || (scheme == "https" && port == "443") {
		port = ""
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		if ip.Zone() != "" {
			return "", fmt.Errorf("origin %q: an address with a zone is no origin", origin)
		}
		host = ip.String() // one spelling of each address
		if ip.Is6() {
			host = "[" + host + "]"
		}
	} else if err := ValidateHost(host); err != nil {
		return "", fmt.Errorf("origin %q: %w", origin, err)
	} else {
		host = Canonical(host)
	}
	out := scheme + "://" + host
	if port != "" {
		out += ":" + port
	}
	return out, nil
}

// ValidateHost checks a name for an allow-list of Host names: a host
// name without port or scheme (IP addresses pass without being listed).
func ValidateHost(name string) error {
	if name == "" || len(name) > 253 {
		return fmt.Errorf("host %q: want a DNS name of 1 to 253 characters", name)
	}
	if strings.ContainsAny(name, ":/[]@ *") {
		return fmt.Errorf("host %q: want a bare name such as consul.example.com: no scheme, port or wildcard", name)
	}
	for _, label := range strings.Split(strings.TrimSuffix(name, "."), ".") {
		if label == "" || len(label) > 63 {
			return fmt.Errorf("host %q: empty or overlong label", name)
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return fmt.Errorf("host %q: invalid character %q", name, c)
			}
		}
	}
	return nil
}

// SplitHost returns the host of a Host header value (host, host:port,
// [v6] or [v6]:port); ok is false when it is malformed.
func SplitHost(hostport string) (host string, ok bool) {
	if hostport == "" {
		return "", true
	}
	if strings.ContainsAny(hostport, " \t/\\@?#%") {
		return "", false
	}
	if h, port, err := net.SplitHostPort(hostport); err == nil {
		if port == "" || strings.Trim(port, "0123456789") != "" || strings.Contains(h, ":") && !strings.HasPrefix(hostport, "[") {
			return "", false
		}
		return h, h != ""
	}
	if strings.HasPrefix(hostport, "[") && strings.HasSuffix(hostport, "]") {
		return hostport[1 : len(hostport)-1], true
	}
	if strings.ContainsAny(hostport, "[]:") {
		return "", false
	}
	return hostport, true
}

// Canonical lowercases a name and drops one trailing dot.
func Canonical(h string) string {
	return strings.TrimSuffix(strings.ToLower(h), ".")
}
