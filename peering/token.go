package peering

import (
	"bytes"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/peerd/peerd/catalog"
)

// Errors of the peering token. Every error DecodeToken, Token.Validate and
// Token.Encode return is a *TokenError that matches ErrInvalidToken; an
// expired token's error matches ErrTokenExpired as well.
var (
	// ErrInvalidToken means the token cannot be used as it is: it is not
	// base64 or not JSON, or a field is missing or malformed. The HTTP API
	// answers 400.
	ErrInvalidToken = errors.New("invalid peering token")
	// ErrTokenExpired means the token's ExpiresAt has passed. It is a
	// client error too (it also matches ErrInvalidToken), but one that only
	// a new token fixes.
	ErrTokenExpired = errors.New("peering token expired: generate a new peering token")
)

// MaxEncodedTokenSize bounds an encoded token (after surrounding whitespace
// is dropped). A token holds a few CA certificates and addresses, a few
// kilobytes; the limit keeps a pasted file or a wrong variable from being
// decoded.
const MaxEncodedTokenSize = 64 << 10

// Token is what the acceptor hands to the dialer, out of band, to establish
// a peering: where to dial, how to verify the acceptor's TLS certificate,
// and a one-time secret to exchange for a stream secret.
//
// The JSON shape of the fields Consul has is Consul's (structs.PeeringToken),
// minus Remote.Locality; ExpiresAt and TrustDomain are peerd's and omitted
// when empty. The token is neither signed nor encrypted: whoever holds it can
// establish the peering once, so it travels like a password.
type Token struct {
	// CA holds the PEM roots of the acceptor's CA, one certificate per
	// string. The dialer verifies the acceptor's servers against them.
	// Optional, as in Consul; without it the dialer cannot use TLS.
	CA []string
	// ManualServerAddresses are the addresses given with
	// -server-external-addresses (load balancers, NAT). When set they are
	// dialed instead of ServerAddresses, and replication of the acceptor's
	// server addresses never overwrites them.
	ManualServerAddresses []string
	// ServerAddresses are the acceptor's servers as host:port. A token
	// generated with manual addresses carries them here too, as Consul's
	// does, so this field is never empty.
	ServerAddresses []string
	// ServerName is the TLS name of the acceptor's servers,
	// "server.<datacenter>.peering.<trust-domain>". Required when CA is set.
	ServerName string
	// PeerID is the acceptor's UUID for this peering; the dialer stores it
	// as the peering's PeerID and presents it in ExchangeSecret and Open.
	PeerID string
	// EstablishmentSecret is the one-time secret the dialer exchanges for a
	// stream secret: a UUID in canonical 8-4-4-4-12 form, filled with
	// random bits (its version bits are not checked: Consul's are random).
	EstablishmentSecret string
	// Remote says where the acceptor lives.
	Remote TokenRemote
	// ExpiresAt, when set, is when the token stops being accepted
	// (-expires-in). DecodeToken refuses an expired token, but the token is
	// unsigned: the acceptor must enforce the expiry of the establishment
	// secret itself when it is exchanged.
	ExpiresAt *time.Time `json:",omitempty"`
	// TrustDomain is the acceptor's trust domain (its SPIFFE IDs and
	// peered SNIs end in it). When set, it is the one ServerName names.
	TrustDomain string `json:",omitempty"`
}

// TokenRemote is the acceptor's location.
type TokenRemote struct {
	// Partition is the acceptor's admin partition; empty means default.
	Partition string
	// Datacenter is the acceptor's datacenter. Required.
	Datacenter string
}

// TokenError is a problem with a peering token. It matches ErrInvalidToken,
// and ErrTokenExpired when Err is ErrTokenExpired.
type TokenError struct {
	// Field is the JSON path of the offending field, for example
	// "ServerAddresses[1]" or "Remote.Datacenter"; empty when the token is
	// not readable at all (not base64, not JSON, too large).
	Field string
	// Reason says what is wrong and, where it helps, how to fix it.
	Reason string
	// Err is the underlying error, if any.
	Err error
}

func (e *TokenError) Error() string {
	if e.Field == "" {
		return "peering token: " + e.Reason
	}
	return "peering token: " + e.Field + ": " + e.Reason
}

// Is reports whether target is ErrInvalidToken; errors.Is follows Unwrap for
// the rest.
func (e *TokenError) Is(target error) bool { return target == ErrInvalidToken }

// Unwrap returns the underlying error.
func (e *TokenError) Unwrap() error { return e.Err }

func tokenErr(field, format string, args ...any) *TokenError {
	return &TokenError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// DialAddresses returns the addresses a dialer should try: the manual ones
// when there are any, else ServerAddresses.
func (t *Token) DialAddresses() []string {
	if len(t.ManualServerAddresses) > 0 {
		return t.ManualServerAddresses
	}
	return t.ServerAddresses
}

// Encode returns the token as base64.StdEncoding(JSON), the form users copy
// and DecodeToken reads; ExpiresAt is written in UTC. It refuses a token
// that DecodeToken would refuse for any reason but expiry, so a bad token is
// caught where it is made.
func (t *Token) Encode() (string, error) {
	if err := t.validate(time.Time{}); err != nil {
		return "", err
	}
	c := *t
	if c.ExpiresAt != nil {
		u := c.ExpiresAt.UTC()
		c.ExpiresAt = &u
	}
	b, err := json.Marshal(&c)
	if err != nil {
		return "", &TokenError{Reason: fmt.Sprintf("cannot encode: %v", err), Err: err}
	}
	s := base64.StdEncoding.EncodeToString(b)
	if len(s) > MaxEncodedTokenSize {
		return "", tokenErr("", "too large: %d bytes encoded, the limit is %d: the CA bundle or address lists are too long", len(s), MaxEncodedTokenSize)
	}
	return s, nil
}

// Validate checks the token as DecodeToken does, expiry included.
func (t *Token) Validate() error {
	return t.validate(time.Now())
}

// DecodeToken reads a token produced by Encode and validates it. All ASCII
// whitespace is dropped first, so a token wrapped over several lines or
// pasted with a trailing newline decodes. Besides standard base64, URL-safe
// and unpadded base64 are accepted, because chat tools and some terminals
// rewrite or strip the '+', '/' and '=' characters of a pasted token.
//
// Errors are *TokenError values matching ErrInvalidToken; an expired token's
// also matches ErrTokenExpired. Their text is meant for the user.
func DecodeToken(s string) (*Token, error) {
	return decodeToken(s, time.Now())
}

func decodeToken(s string, now time.Time) (*Token, error) {
	s = stripSpace(s)
	if s == "" {
		return nil, tokenErr("", "empty: paste the token printed by generate-token")
	}
	if len(s) > MaxEncodedTokenSize {
		return nil, tokenErr("", "too large: %d bytes, the limit is %d: a peering token is a few kilobytes", len(s), MaxEncodedTokenSize)
	}
	raw, err := decodeBase64(s)
	if err != nil {
		return nil, err
	}
	tok, err := unmarshalToken(raw)
	if err != nil {
		return nil, err
	}
	if err := tok.validate(now); err != nil {
		return nil, err
	}
	// Whatever DecodeToken accepts, Encode encodes: the canonical form can
	// be a little longer than the input (fields the input left out, padding).
	if _, err := tok.Encode(); err != nil {
		return nil, err
	}
	return tok, nil
}

const asciiSpace = " \t\r\n\v\f"

// stripSpace removes every ASCII whitespace character; base64 has none.
func stripSpace(s string) string {
	if !strings.ContainsAny(s, asciiSpace) {
		return s
	}
	return strings.Map(func(r rune) rune {
		switch r {
		case ' ', '\t', '\r', '\n', '\v', '\f':
			return -1
		}
		return r
	}, s)
}

// decodeBase64 decodes standard or URL-safe base64, padded or not; padding,
// when present, must be right. Unused trailing bits are ignored (not
// Strict), so a token cut short decodes to JSON that ends too early, which
// says "truncated" rather than pointing at a base64 offset.
func decodeBase64(s string) ([]byte, error) {
	urlSafe := strings.ContainsAny(s, "-_")
	if urlSafe && strings.ContainsAny(s, "+/") {
		return nil, tokenErr("", "not base64: it mixes the standard ('+', '/') and URL-safe ('-', '_') alphabets: paste the whole token, unchanged")
	}
	var enc *base64.Encoding
	switch padded := strings.HasSuffix(s, "="); {
	case urlSafe && padded:
		enc = base64.URLEncoding
	case urlSafe:
		enc = base64.RawURLEncoding
	case padded:
		enc = base64.StdEncoding
	default:
		enc = base64.RawStdEncoding
	}
	b, err := enc.DecodeString(s)
	var corrupt base64.CorruptInputError
	if errors.As(err, &corrupt) && len(s)%4 == 1 && int(corrupt) == len(s)-1 {
		// No base64 text has this length: the last character is alone.
		return nil, &TokenError{Reason: "not base64: it ends too early: the token looks truncated: paste the whole token", Err: err}
	}
	if err != nil {
		return nil, &TokenError{Reason: fmt.Sprintf("not base64: %v: paste the whole token", err), Err: err}
	}
	return b, nil
}

func unmarshalToken(raw []byte) (*Token, error) {
	if t := bytes.TrimLeft(raw, asciiSpace); len(t) > 0 && !bytes.ContainsRune([]byte(`{["`), rune(t[0])) {
		// Many words are valid base64 ("garbage" is): a JSON syntax error
		// about what they decode to would say nothing useful.
		return nil, tokenErr("", "this is not a peering token: it decodes to something other than a token's JSON object: "+
			"paste the whole token that generate-token printed, unchanged")
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	var tok Token
	if err := dec.Decode(&tok); err != nil {
		return nil, jsonError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, tokenErr("", "not JSON: data after the token object: paste the token alone")
	}
	if tok.ExpiresAt != nil {
		// One representation per instant: a decoded token encodes to the
		// same text whatever offset the generator wrote.
		u := tok.ExpiresAt.UTC()
		tok.ExpiresAt = &u
	}
	return &tok, nil
}

// jsonError turns an encoding/json error into a TokenError naming the field.
func jsonError(err error) error {
	var typeErr *json.UnmarshalTypeError
	var syntaxErr *json.SyntaxError
	switch {
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return &TokenError{Reason: "not JSON: it ends too early: the token looks truncated: paste the whole token", Err: err}
	case errors.As(err, &syntaxErr):
		return &TokenError{Reason: fmt.Sprintf("not JSON: %v: paste the whole token", err), Err: err}
	case errors.As(err, &typeErr):
		field := typeErr.Field
		if field == "" {
			return &TokenError{Reason: fmt.Sprintf("not a token object: got JSON %s", typeErr.Value), Err: err}
		}
		return &TokenError{Field: field, Reason: fmt.Sprintf("got JSON %s, want %s", typeErr.Value, jsonKind(typeErr.Type.String())), Err: err}
	}
	if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		return &TokenError{Reason: fmt.Sprintf("unknown field %s: the token was not made by this version of peerd", name), Err: err}
	}
	// The only custom unmarshaler in a Token is ExpiresAt's time.Time.
	var timeErr *time.ParseError
	if errors.As(err, &timeErr) || strings.HasPrefix(err.Error(), "Time.UnmarshalJSON") {
		return &TokenError{Field: "ExpiresAt", Reason: fmt.Sprintf("want an RFC 3339 time such as \"2030-01-02T15:04:05Z\": %v", err), Err: err}
	}
	return &TokenError{Reason: fmt.Sprintf("not JSON: %v", err), Err: err}
}

func jsonKind(goType string) string {
	switch goType {
	case "string":
		return "a string"
	case "[]string":
		return "a list of strings"
	case "time.Time":
		return "an RFC 3339 time"
	}
	return "an object"
}

var (
	// uuidPattern is the canonical textual form of a UUID.
	uuidPattern = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)
	// partitionPattern is Consul Enterprise's rule for partition names.
	partitionPattern = regexp.MustCompile(`^[a-zA-Z0-9]([a-zA-Z0-9-]{0,62}[a-zA-Z0-9])?$`)
	// hostnameLabel is one label of a DNS host name ('_' tolerated, as
	// peerd node names do).
	hostnameLabel = regexp.MustCompile(`^[a-zA-Z0-9_]([a-zA-Z0-9_-]{0,61}[a-zA-Z0-9_])?$`)
	// trustDomainPattern is the SPIFFE rule for a trust domain name.
	trustDomainPattern = regexp.MustCompile(`^[a-z0-9._-]{1,255}$`)
)

const nilUUID = "00000000-0000-0000-0000-000000000000"

// validate checks every field. A zero now skips the expiry check.
func (t *Token) validate(now time.Time) error {
	for i, p := range t.CA {
		if err := validateCAPEM(p); err != nil {
			err.Field = fmt.Sprintf("CA[%d]", i)
			return err
		}
	}
	if len(t.ServerAddresses) == 0 {
		return tokenErr("ServerAddresses", "missing: the token must name at least one server address")
	}
	for i, a := range t.ServerAddresses {
		if err := validateAddress(a); err != nil {
			return tokenErr(fmt.Sprintf("ServerAddresses[%d]", i), "%s", err)
		}
	}
	for i, a := range t.ManualServerAddresses {
		if err := validateAddress(a); err != nil {
			return tokenErr(fmt.Sprintf("ManualServerAddresses[%d]", i), "%s", err)
		}
	}
	if t.Remote.Datacenter == "" {
		return tokenErr("Remote.Datacenter", "missing: the acceptor's datacenter is required")
	}
	if !catalog.ValidDatacenter(t.Remote.Datacenter) {
		return tokenErr("Remote.Datacenter", "%q is not a datacenter name: use at most 63 letters, digits, '-' and '_'", short(t.Remote.Datacenter))
	}
	if t.Remote.Partition != "" && !partitionPattern.MatchString(t.Remote.Partition) {
		return tokenErr("Remote.Partition", "%q is not a partition name: use at most 64 letters, digits and '-', starting and ending with a letter or digit", short(t.Remote.Partition))
	}
	if t.TrustDomain != "" && !trustDomainPattern.MatchString(t.TrustDomain) {
		return tokenErr("TrustDomain", "%q is not a trust domain: use lowercase letters, digits, '.', '-' and '_'", short(t.TrustDomain))
	}
	if t.ServerName == "" {
		if len(t.CA) > 0 {
			return tokenErr("ServerName", "missing: it is required with CA, to verify the acceptor's certificate")
		}
	} else if err := t.validateServerName(); err != nil {
		return err
	}
	if err := validateUUID("PeerID", t.PeerID); err != nil {
		return err
	}
	if err := validateUUID("EstablishmentSecret", t.EstablishmentSecret); err != nil {
		return err
	}
	if t.ExpiresAt != nil {
		if y := t.ExpiresAt.UTC().Year(); y < 1 || y > 9999 {
			return tokenErr("ExpiresAt", "year %d is out of range", y)
		}
	}
	if t.ExpiresAt != nil && !now.IsZero() && !now.Before(*t.ExpiresAt) {
		return &TokenError{
			Field:  "ExpiresAt",
			Reason: fmt.Sprintf("the token expired at %s: generate a new peering token", t.ExpiresAt.UTC().Format(time.RFC3339)),
			Err:    ErrTokenExpired,
		}
	}
	return nil
}

// validateServerName checks "server.<dc>.peering.<trust-domain>" and that it
// agrees with Remote.Datacenter and TrustDomain.
func (t *Token) validateServerName() error {
	const want = `want "server.<datacenter>.peering.<trust-domain>"`
	rest, ok := strings.CutPrefix(t.ServerName, "server.")
	if !ok {
		return tokenErr("ServerName", "%q does not start with \"server.\": %s", short(t.ServerName), want)
	}
	dc, td, ok := strings.Cut(rest, ".peering.")
	if !ok || !catalog.ValidDatacenter(dc) {
		return tokenErr("ServerName", "%q is malformed: %s", short(t.ServerName), want)
	}
	if !trustDomainPattern.MatchString(td) {
		return tokenErr("ServerName", "%q does not end in a trust domain (lowercase letters, digits, '.', '-' and '_'): %s", short(t.ServerName), want)
	}
	if !strings.EqualFold(dc, t.Remote.Datacenter) {
		return tokenErr("ServerName", "%q names datacenter %q but Remote.Datacenter is %q", short(t.ServerName), dc, t.Remote.Datacenter)
	}
	if t.TrustDomain != "" && td != t.TrustDomain {
		return tokenErr("ServerName", "%q names trust domain %q but TrustDomain is %q", short(t.ServerName), td, t.TrustDomain)
	}
	return nil
}

func validateUUID(field, s string) error {
	switch {
	case s == "":
		return tokenErr(field, "missing: want a UUID")
	case !uuidPattern.MatchString(s):
		return tokenErr(field, "%q is not a UUID (want the 8-4-4-4-12 hex form)", short(s))
	case s == nilUUID:
		return tokenErr(field, "is the nil UUID")
	}
	return nil
}

// validateCAPEM checks that p is exactly one PEM certificate, of a CA, with
// nothing around it but ASCII whitespace.
func validateCAPEM(p string) *TokenError {
	const notPEM = "not PEM: want one \"-----BEGIN CERTIFICATE-----\" block"
	p = strings.TrimLeft(p, asciiSpace)
	if !strings.HasPrefix(p, "-----BEGIN ") {
		return tokenErr("", "%s", notPEM)
	}
	block, rest := pem.Decode([]byte(p))
	switch {
	case block == nil:
		return tokenErr("", "%s", notPEM)
	case block.Type != "CERTIFICATE":
		return tokenErr("", "PEM block is %q, want \"CERTIFICATE\"", short(block.Type))
	case len(block.Headers) > 0:
		return tokenErr("", "PEM headers are not allowed in a certificate")
	case strings.Trim(string(rest), asciiSpace) != "":
		return tokenErr("", "holds more than one PEM block or trailing data: put one certificate in each CA entry")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return &TokenError{Reason: fmt.Sprintf("not an X.509 certificate: %v", err), Err: err}
	}
	if !cert.BasicConstraintsValid || !cert.IsCA {
		return tokenErr("", "certificate %q is not a CA certificate (basic constraints CA:TRUE)", short(cert.Subject.String()))
	}
	if cert.KeyUsage != 0 && cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return tokenErr("", "CA certificate %q may not sign certificates (key usage lacks certSign)", short(cert.Subject.String()))
	}
	return nil
}

// validateAddress checks host:port: host a DNS name, an IPv4 address or a
// bracketed IPv6 address without zone; port 1-65535 in decimal without
// leading zeros; nothing else (no scheme, no path).
func validateAddress(a string) error {
	if a == "" {
		return errors.New("empty: want host:port")
	}
	if strings.Contains(a, "://") || strings.ContainsAny(a, "/?#@") {
		return fmt.Errorf("%q is not host:port: drop the scheme and path", short(a))
	}
	host, port, err := net.SplitHostPort(a)
	if err != nil {
		return fmt.Errorf("%q is not host:port (IPv6 goes in brackets: [::1]:8502)", short(a))
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 1 || p > 65535 || strconv.Itoa(p) != port {
		return fmt.Errorf("%q: port %q is not a number from 1 to 65535", short(a), short(port))
	}
	if host == "" {
		return fmt.Errorf("%q: missing host", short(a))
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		if ip.Zone() != "" {
			return fmt.Errorf("%q: an IPv6 zone means nothing to another cluster", short(a))
		}
		if ip.Is4In6() {
			return fmt.Errorf("%q: write the IPv4 address without the ::ffff: prefix", short(a))
		}
		// Brackets around IPv6 only, and the canonical text: one way to
		// write each address.
		if net.JoinHostPort(ip.String(), port) != a {
			return fmt.Errorf("%q: write it %q", short(a), net.JoinHostPort(ip.String(), port))
		}
		return nil
	}
	if strings.HasPrefix(a, "[") {
		return fmt.Errorf("%q: brackets are for IPv6 addresses only", short(a))
	}
	if len(host) > 253 {
		return fmt.Errorf("host name of %d characters is too long", len(host))
	}
	labels := strings.Split(host, ".")
	for _, label := range labels {
		if !hostnameLabel.MatchString(label) {
			return fmt.Errorf("%q: %q is not a valid host name", short(a), short(host))
		}
	}
	if strings.Trim(labels[len(labels)-1], "0123456789") == "" {
		// No top-level domain is numeric: this is a mistyped IPv4 address.
		return fmt.Errorf("%q: %q is neither an IP address nor a host name", short(a), short(host))
	}
	return nil
}

// short truncates s for an error message.
func short(s string) string {
	const limit = 80
	if len(s) <= limit {
		return s
	}
	return s[:limit] + "..."
}
