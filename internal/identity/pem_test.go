package identity

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"strings"
	"sync"
	"testing"
)

// rsaKey is generated once: RSA key generation is slow under -race.
var rsaKey = sync.OnceValue(func() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
})

func pkcs8PEM(t *testing.T, key any) string {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
}

func TestNewKeyParseKeyPEM(t *testing.T) {
	signer, keyPEM, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	k, ok := signer.(*ecdsa.PrivateKey)
	if !ok || k.Curve != elliptic.P256() {
		t.Fatalf("got %T, want *ecdsa.PrivateKey on P-256", signer)
	}
	if !strings.HasPrefix(keyPEM, "-----BEGIN PRIVATE KEY-----\n") {
		t.Errorf("got PEM %q, want a PKCS#8 PRIVATE KEY block", keyPEM[:30])
	}
	back, err := ParseKeyPEM(keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	if !k.Equal(back) {
		t.Error("ParseKeyPEM(NewKey PEM) returned a different key")
	}

	// SEC 1, as Consul's built-in provider writes it.
	sec1, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	back, err = ParseKeyPEM(string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1})))
	if err != nil || !k.Equal(back) {
		t.Errorf("SEC 1 key: got %v, want the same key", err)
	}
}

func TestParseKeyPEMErrors(t *testing.T) {
	_, p256PEM, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	certPEM := encodeCert(selfSigned(t, rsaKey()).Raw)

	tests := []struct {
		name, in string
		want     error
		wantSub  string
	}{
		{"empty", "", ErrInvalidPEM, "no PEM data"},
		{"not PEM", "hello", ErrInvalidPEM, "not PEM"},
		{"truncated", p256PEM[:len(p256PEM)-20], ErrInvalidPEM, "malformed"},
		{"trailing text", p256PEM + "junk", ErrInvalidPEM, "unexpected data"},
		{"two keys", p256PEM + p256PEM, ErrInvalidPEM, "2 PEM blocks"},
		{"certificate", certPEM, ErrInvalidPEM, `"CERTIFICATE"`},
		{"garbage DER", string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1, 2, 3}})), ErrInvalidPEM, "parse"},
		{"RSA PKCS#8", pkcs8PEM(t, rsaKey()), ErrUnsupportedKey, "RSA key"},
		{"RSA PKCS#1", string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rsaKey())})), ErrUnsupportedKey, "RSA"},
		{"Ed25519", pkcs8PEM(t, ed), ErrUnsupportedKey, "Ed25519 key"},
		{"P-384", pkcs8PEM(t, p384), ErrUnsupportedKey, "P-384"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, err := ParseKeyPEM(tt.in)
			if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.wantSub) {
				t.Fatalf("got %v, %v; want error wrapping %v mentioning %q", k, err, tt.want, tt.wantSub)
			}
			if errors.Is(err, ErrUnsupportedKey) && !strings.Contains(err.Error(), "only ECDSA P-256 is supported") {
				t.Errorf("error %q does not name the supported key type", err)
			}
		})
	}
}

func TestParseCertsPEM(t *testing.T) {
	a := encodeCert(selfSigned(t, rsaKey()).Raw)
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	b := encodeCert(selfSigned(t, k).Raw)
	_, keyPEM, _ := NewKey()

	certs, err := ParseCertsPEM("\n" + a + "\n\n" + b + "\n")
	if err != nil {
		t.Fatal(err)
	}
	if len(certs) != 2 {
		t.Fatalf("got %d certificates, want 2", len(certs))
	}
	if _, ok := certs[1].PublicKey.(*ecdsa.PublicKey); !ok {
		t.Errorf("certificate 1: got %T, want the ECDSA one", certs[1].PublicKey)
	}

	errTests := []struct {
		name, in, wantSub string
	}{
		{"empty", "", "no PEM data"},
		{"not PEM", "MIIB...", "not PEM"},
		{"key among certificates", a + keyPEM, `certificate 1: PEM block type "PRIVATE KEY"`},
		{"text between", a + "subject=foo\n" + b, "unexpected data after PEM block 0"},
		{"bad DER", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{0x30, 0}})), "certificate 0"},
	}
	for _, tt := range errTests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseCertsPEM(tt.in)
			if !errors.Is(err, ErrInvalidPEM) || !strings.Contains(err.Error(), tt.wantSub) {
				t.Errorf("got %v, %v; want ErrInvalidPEM mentioning %q", got, err, tt.wantSub)
			}
		})
	}

	if _, err := ParseCertPEM(a + b); !errors.Is(err, ErrInvalidPEM) {
		t.Errorf("ParseCertPEM(two): got %v, want ErrInvalidPEM", err)
	}
	if c, err := ParseCertPEM(b); err != nil || !c.Equal(certs[1]) {
		t.Errorf("ParseCertPEM(one): got %v, want the certificate", err)
	}
}
