package admission

import (
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"fmt"

	"github.com/peerd/peerd/catalog/state"
	"github.com/peerd/peerd/internal/jointoken"
)

// PublicKeyPEM is a node's public key as Join and Renew send it: one PKIX
// "PUBLIC KEY" block.
func PublicKeyPEM(pub crypto.PublicKey) (string, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", fmt.Errorf("encode public key: %w", err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})), nil
}

// parsePublicKey reads what PublicKeyPEM wrote: exactly one PUBLIC KEY
// block (a certificate, or anything more, is refused).
func parsePublicKey(pemText string) (any, error) {
	b, rest := pem.Decode([]byte(pemText))
	if b == nil || b.Type != "PUBLIC KEY" {
		return nil, fmt.Errorf("public_key_pem: want one PEM block of type %q", "PUBLIC KEY")
	}
	if next, _ := pem.Decode(rest); next != nil {
		return nil, fmt.Errorf("public_key_pem: want one PEM block of type %q, got more", "PUBLIC KEY")
	}
	pub, err := x509.ParsePKIXPublicKey(b.Bytes)
	if err != nil {
		return nil, fmt.Errorf("public key: %w", err)
	}
	return pub, nil
}

// row is the raft row of a join token's record.
func row(r jointoken.Record) state.JoinToken {
	return state.JoinToken{ID: r.ID, SecretHash: r.SecretHash, Role: r.Role, Description: r.Description,
		CreatedAt: r.CreatedAt, ExpiresAt: r.ExpiresAt, RevokedAt: r.RevokedAt}
}
