package identity

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
)

// PEM block types.
const (
	pemCertificate  = "CERTIFICATE"
	pemPrivateKey   = "PRIVATE KEY"    // PKCS#8
	pemECPrivateKey = "EC PRIVATE KEY" // SEC 1, as Consul's built-in provider writes it
)

// NewKey generates an ECDSA P-256 key and returns it with its PKCS#8 PEM
// encoding.
func NewKey() (crypto.Signer, string, error) {
	key, keyPEM, err := newKey()
	if err != nil {
		return nil, "", err
	}
	return key, keyPEM, nil
}

func newKey() (*ecdsa.PrivateKey, string, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, "", fmt.Errorf("generate ECDSA P-256 key: %w", err)
	}
	keyPEM, err := encodeKey(key)
	if err != nil {
		return nil, "", err
	}
	return key, keyPEM, nil
}

func encodeKey(key *ecdsa.PrivateKey) (string, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return "", fmt.Errorf("marshal PKCS#8 key: %w", err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: pemPrivateKey, Bytes: der})), nil
}

func encodeCert(der []byte) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: pemCertificate, Bytes: der}))
}

// ParseKeyPEM parses one ECDSA P-256 private key, PEM-encoded as PKCS#8
// ("PRIVATE KEY") or SEC 1 ("EC PRIVATE KEY"). Other key types are rejected
// with an error wrapping ErrUnsupportedKey; anything but exactly one key
// block, with nothing but white space around it, wraps ErrInvalidPEM.
func ParseKeyPEM(keyPEM string) (crypto.Signer, error) {
	blocks, err := decodePEM(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("private key: %w", err)
	}
	if len(blocks) != 1 {
		return nil, fmt.Errorf("private key: %d PEM blocks, want 1: %w", len(blocks), ErrInvalidPEM)
	}
	b := blocks[0]
	var key any
	switch b.Type {
	case pemPrivateKey:
		key, err = x509.ParsePKCS8PrivateKey(b.Bytes)
	case pemECPrivateKey:
		key, err = x509.ParseECPrivateKey(b.Bytes)
	case "RSA PRIVATE KEY":
		return nil, fmt.Errorf("private key: RSA: %w", ErrUnsupportedKey)
	default:
		return nil, fmt.Errorf("private key: PEM block type %q, want %q or %q: %w", b.Type, pemPrivateKey, pemECPrivateKey, ErrInvalidPEM)
	}
	if err != nil {
		return nil, fmt.Errorf("private key: parse %s: %v: %w", b.Type, err, ErrInvalidPEM)
	}
	k, ok := key.(*ecdsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("private key: %s: %w", keyKind(key), ErrUnsupportedKey)
	}
	if err := checkP256(&k.PublicKey); err != nil {
		return nil, fmt.Errorf("private key: %w", err)
	}
	return k, nil
}

// checkP256 checks that pub is an ECDSA P-256 public key.
func checkP256(pub crypto.PublicKey) error {
	k, ok := pub.(*ecdsa.PublicKey)
	if !ok {
		return fmt.Errorf("%s: %w", keyKind(pub), ErrUnsupportedKey)
	}
	if k.Curve != elliptic.P256() {
		return fmt.Errorf("%s: %w", keyKind(pub), ErrUnsupportedKey)
	}
	if _, err := k.ECDH(); err != nil {
		return fmt.Errorf("invalid ECDSA P-256 public key: %v: %w", err, ErrUnsupportedKey)
	}
	return nil
}

// keyKind names the type of a public or private key for error messages.
func keyKind(key any) string {
	switch k := key.(type) {
	case *rsa.PublicKey, *rsa.PrivateKey:
		return "RSA key"
	case ed25519.PublicKey, ed25519.PrivateKey:
		return "Ed25519 key"
	case *ecdsa.PublicKey:
		return "ECDSA " + curveName(k.Curve) + " key"
	case *ecdsa.PrivateKey:
		return "ECDSA " + curveName(k.Curve) + " key"
	case nil:
		return "no key"
	default:
		return fmt.Sprintf("%T key", key)
	}
}

func curveName(c elliptic.Curve) string {
	if c == nil || c.Params() == nil {
		return "unknown-curve"
	}
	return c.Params().Name
}

// ParseCertPEM parses exactly one PEM "CERTIFICATE" block, with nothing but
// white space around it. Errors wrap ErrInvalidPEM.
func ParseCertPEM(certPEM string) (*x509.Certificate, error) {
	certs, err := ParseCertsPEM(certPEM)
	if err != nil {
		return nil, err
	}
	if len(certs) != 1 {
		return nil, fmt.Errorf("certificate: %d PEM blocks, want 1: %w", len(certs), ErrInvalidPEM)
	}
	return certs[0], nil
}

// ParseCertsPEM parses one or more PEM "CERTIFICATE" blocks, separated by
// nothing but white space, in order. Errors wrap ErrInvalidPEM and name the
// block (counting from 0) that failed.
func ParseCertsPEM(certsPEM string) ([]*x509.Certificate, error) {
	blocks, err := decodePEM(certsPEM)
	if err != nil {
		return nil, fmt.Errorf("certificate: %w", err)
	}
	certs := make([]*x509.Certificate, 0, len(blocks))
	for i, b := range blocks {
		if b.Type != pemCertificate {
			return nil, fmt.Errorf("certificate %d: PEM block type %q, want %q: %w", i, b.Type, pemCertificate, ErrInvalidPEM)
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate %d: %v: %w", i, err, ErrInvalidPEM)
		}
		certs = append(certs, c)
	}
	return certs, nil
}

// decodePEM splits s into PEM blocks. Unlike pem.Decode, it rejects text
// before, between or after the blocks, and input with no block at all.
func decodePEM(s string) ([]*pem.Block, error) {
	rest := []byte(s)
	var blocks []*pem.Block
	for {
		rest = bytes.TrimSpace(rest)
		if len(rest) == 0 {
			break
		}
		if !bytes.HasPrefix(rest, []byte("-----BEGIN ")) {
			if len(blocks) == 0 {
				return nil, fmt.Errorf("not PEM: %w", ErrInvalidPEM)
			}
			return nil, fmt.Errorf("unexpected data after PEM block %d: %w", len(blocks)-1, ErrInvalidPEM)
		}
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			return nil, fmt.Errorf("malformed PEM block %d: %w", len(blocks), ErrInvalidPEM)
		}
		if len(b.Headers) != 0 {
			return nil, fmt.Errorf("PEM block %d has headers (encrypted?): %w", len(blocks), ErrInvalidPEM)
		}
		blocks = append(blocks, b)
	}
	if len(blocks) == 0 {
		return nil, fmt.Errorf("no PEM data: %w", ErrInvalidPEM)
	}
	return blocks, nil
}
