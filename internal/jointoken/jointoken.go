// Package jointoken is the join credential an operator hands a new node:
// one string that admits the node to a cluster in one role, pins the
// cluster's CA so the node cannot be fooled by a rogue server, says where
// the servers are, and may carry the gossip key, so one token sets up a
// node (kubeadm's join token with CA pinning is the model).
//
// The string is "peerd-join-v1." followed by the unpadded base64url of a
// JSON object. It holds a secret: treat the whole string as a password.
// What the servers keep is a Record: the token's public ID, a SHA-256 of
// its secret, its role and lifetime, never the secret.
//
// The package is a leaf: it imports nothing of peerd's.
package jointoken

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"regexp"
	"strings"
	"time"
)

// Prefix starts every join token.
const Prefix = "peerd-join-v1."

// MaxLen bounds a token's length: a token is pasted by people and passed in
// flags; anything longer is not one of ours.
const MaxLen = 4096

// Roles a token may grant.
const (
	RoleServer = "server"
	RoleClient = "client"
)

// MaxServers bounds the server addresses a token lists.
const MaxServers = 16

// Errors. Every refusal wraps one of them.
var (
	// ErrMalformed is a string that is not a join token.
	ErrMalformed = errors.New("malformed join token")
	// ErrExpired is a token past its expiry.
	ErrExpired = errors.New("join token expired")
	// ErrRevoked is a token the operator revoked.
	ErrRevoked = errors.New("join token revoked")
	// ErrUnknown is a token no server knows (never issued here, or deleted).
	ErrUnknown = errors.New("join token unknown to this cluster")
	// ErrWrongSecret is a known token ID with the wrong secret.
	ErrWrongSecret = errors.New("join token secret does not match")
	// ErrWrongRole is a token used for a role it does not grant.
	ErrWrongRole = errors.New("join token does not grant this role")
	// ErrPin is a server whose CA does not match the token's pin.
	ErrPin = errors.New("server CA does not match the join token's pin")
)

// Token is a join credential, decoded.
type Token struct {
	// ID is public: it names the token in lists and logs.
	ID string `json:"id"`
	// Secret proves possession; never logged.
	Secret string `json:"secret"`
	// Role is RoleServer or RoleClient.
	Role string `json:"role"`
	// Datacenter is the cluster's datacenter.
	Datacenter string `json:"dc"`
	// CAPin is "sha256:<hex>" of the cluster root's SubjectPublicKeyInfo.
	CAPin string `json:"ca_pin"`
	// Servers are host:port addresses of servers' admission (TLS gRPC)
	// listeners.
	Servers []string `json:"servers"`
	// GossipKey is the base64 gossip key, if the token carries it.
	GossipKey string `json:"gossip_key,omitempty"`
	// Expires is when the token stops admitting nodes.
	Expires time.Time `json:"expires"`
}

// Record is what the servers keep of a token.
type Record struct {
	ID          string
	SecretHash  string
	Role        string
	Description string
	CreatedAt   time.Time
	ExpiresAt   time.Time
	// RevokedAt is set once the operator revokes the token.
	RevokedAt time.Time
}

var (
	idPattern     = regexp.MustCompile(`^[0-9a-f]{16}$`)
	secretPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{43}$`)
	pinPattern    = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)
	dcPattern     = regexp.MustCompile(`^[a-zA-Z0-9_-]{1,63}$`)
)

// New makes a token for role, valid for ttl from now.
func New(role, datacenter, caPin string, servers []string, gossipKey string, now time.Time, ttl time.Duration) (Token, error) {
	id := make([]byte, 8)
	secret := make([]byte, 32)
	if _, err := rand.Read(id); err != nil {
		return Token{}, fmt.Errorf("join token ID: %w", err)
	}
	if _, err := rand.Read(secret); err != nil {
		return Token{}, fmt.Errorf("join token secret: %w", err)
	}
	if ttl <= 0 {
		return Token{}, fmt.Errorf("join token TTL %v: must be positive", ttl)
	}
	t := Token{
		ID: hex.EncodeToString(id), Secret: base64.RawURLEncoding.EncodeToString(secret),
		Role: role, Datacenter: datacenter, CAPin: caPin, Servers: servers, GossipKey: gossipKey,
		Expires: now.Add(ttl).UTC().Truncate(time.Second),
	}
	if err := t.Validate(); err != nil {
		return Token{}, err
	}
	return t, nil
}

// Validate checks every field's form.
func (t Token) Validate() error {
	var errs []error
	if !idPattern.MatchString(t.ID) {
		errs = append(errs, errors.New("id: want 16 lowercase hex digits"))
	}
	if !secretPattern.MatchString(t.Secret) {
		errs = append(errs, errors.New("secret: want 32 bytes of unpadded base64url"))
	}
	if t.Role != RoleServer && t.Role != RoleClient {
		errs = append(errs, fmt.Errorf("role %q: want %q or %q", t.Role, RoleServer, RoleClient))
	}
	if !dcPattern.MatchString(t.Datacenter) {
		errs = append(errs, fmt.Errorf("datacenter %q: want 1 to 63 letters, digits, '-' and '_'", t.Datacenter))
	}
	if !pinPattern.MatchString(t.CAPin) {
		errs = append(errs, errors.New(`ca_pin: want "sha256:" and 64 lowercase hex digits`))
	}
	if len(t.Servers) == 0 || len(t.Servers) > MaxServers {
		errs = append(errs, fmt.Errorf("servers: %d listed, want 1 to %d", len(t.Servers), MaxServers))
	}
	for _, s := range t.Servers {
		host, port, err := net.SplitHostPort(s)
		if err != nil || host == "" || port == "" || port == "0" {
			errs = append(errs, fmt.Errorf("server %q: want host:port", s))
		}
	}
	if t.GossipKey != "" {
		k, err := base64.StdEncoding.DecodeString(t.GossipKey)
		if err != nil || (len(k) != 16 && len(k) != 24 && len(k) != 32) {
			errs = append(errs, errors.New("gossip_key: want the base64 of 16, 24 or 32 bytes"))
		}
	}
	if t.Expires.IsZero() {
		errs = append(errs, errors.New("expires: missing"))
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %w", ErrMalformed, errors.Join(errs...))
	}
	return nil
}

// String encodes the token. It is the secret: never log it.
func (t Token) String() string {
	b, _ := json.Marshal(t) // only strings, a slice and a time: cannot fail
	return Prefix + base64.RawURLEncoding.EncodeToString(b)
}

// Parse decodes and validates a token string.
func Parse(s string) (Token, error) {
	s = strings.TrimSpace(s)
	if len(s) > MaxLen {
		return Token{}, fmt.Errorf("%w: %d bytes, longer than any join token (%d)", ErrMalformed, len(s), MaxLen)
	}
	body, ok := strings.CutPrefix(s, Prefix)
	if !ok {
		return Token{}, fmt.Errorf("%w: does not start with %q (create one with `peerd join-token create`)", ErrMalformed, Prefix)
	}
	raw, err := base64.RawURLEncoding.DecodeString(body)
	if err != nil {
		return Token{}, fmt.Errorf("%w: not base64url: %v (was it cut when pasted?)", ErrMalformed, err)
	}
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.DisallowUnknownFields()
	var t Token
	if err := dec.Decode(&t); err != nil {
		return Token{}, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if dec.More() {
		return Token{}, fmt.Errorf("%w: trailing data", ErrMalformed)
	}
	if err := t.Validate(); err != nil {
		return Token{}, err
	}
	return t, nil
}

// Record is what the servers keep of t.
func (t Token) Record(description string, now time.Time) Record {
	return Record{ID: t.ID, SecretHash: HashSecret(t.Secret), Role: t.Role, Description: description,
		CreatedAt: now.UTC().Truncate(time.Second), ExpiresAt: t.Expires}
}

// HashSecret is the SHA-256, hex, of a token secret.
func HashSecret(secret string) string {
	h := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(h[:])
}

// Check decides whether a presented token (already parsed) admits a node in
// role, given the server's record of it (nil when the server knows none).
// The secret is compared in constant time.
func Check(t Token, rec *Record, role string, now time.Time) error {
	if rec == nil {
		return fmt.Errorf("%w: token %s (create a new one with `peerd join-token create`)", ErrUnknown, t.ID)
	}
	if subtle.ConstantTimeCompare([]byte(HashSecret(t.Secret)), []byte(rec.SecretHash)) != 1 {
		return fmt.Errorf("%w: token %s", ErrWrongSecret, t.ID)
	}
	if !rec.RevokedAt.IsZero() {
		return fmt.Errorf("%w: token %s was revoked at %s", ErrRevoked, t.ID, rec.RevokedAt.Format(time.RFC3339))
	}
	if !now.Before(rec.ExpiresAt) {
		return fmt.Errorf("%w: token %s expired at %s (create a new one)", ErrExpired, t.ID, rec.ExpiresAt.Format(time.RFC3339))
	}
	if rec.Role != role {
		return fmt.Errorf("%w: token %s grants %s, the node asked to join as %s", ErrWrongRole, t.ID, rec.Role, role)
	}
	return nil
}

// Pin is the pin of a CA certificate: "sha256:" and the hex SHA-256 of its
// SubjectPublicKeyInfo (as kubeadm's discovery-token-ca-cert-hash).
func Pin(ca *x509.Certificate) string {
	h := sha256.Sum256(ca.RawSubjectPublicKeyInfo)
	return "sha256:" + hex.EncodeToString(h[:])
}

// PinnedRoot returns the CA certificate among certs whose pin is pin, or
// ErrPin if none is.
func PinnedRoot(pin string, certs []*x509.Certificate) (*x509.Certificate, error) {
	for _, c := range certs {
		if c.IsCA && subtle.ConstantTimeCompare([]byte(Pin(c)), []byte(pin)) == 1 {
			return c, nil
		}
	}
	return nil, fmt.Errorf("%w: none of the %d certificates the server showed has pin %s", ErrPin, len(certs), pin)
}
