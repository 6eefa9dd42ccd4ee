package jointoken

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"strings"
	"testing"
	"time"
)

var now = time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)

func caCert(t *testing.T) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: now, NotAfter: now.Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func newToken(t *testing.T, role string) Token {
	t.Helper()
	tok, err := New(role, "dc1", Pin(caCert(t)), []string{"10.0.0.1:8503", "[fd00::1]:8503"}, "", now, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestRoundTrip(t *testing.T) {
	tok := newToken(t, RoleServer)
	s := tok.String()
	if !strings.HasPrefix(s, Prefix) || len(s) > MaxLen {
		t.Fatalf("encoded %q", s)
	}
	got, err := Parse("  " + s + "\n")
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != tok.ID || got.Secret != tok.Secret || got.Role != tok.Role || !got.Expires.Equal(tok.Expires) || got.CAPin != tok.CAPin {
		t.Fatalf("round trip: %+v != %+v", got, tok)
	}
	if strings.Contains(tok.Record("", now).SecretHash, tok.Secret) {
		t.Fatal("record holds the secret")
	}
}

func TestCheck(t *testing.T) {
	tok := newToken(t, RoleClient)
	rec := tok.Record("ci", now)
	if err := Check(tok, &rec, RoleClient, now.Add(time.Minute)); err != nil {
		t.Fatalf("valid token refused: %v", err)
	}
	wrong := tok
	wrong.Secret = newToken(t, RoleClient).Secret
	revoked := rec
	revoked.RevokedAt = now
	for _, c := range []struct {
		name string
		tok  Token
		rec  *Record
		role string
		at   time.Time
		want error
	}{
		{"unknown", tok, nil, RoleClient, now, ErrUnknown},
		{"wrong secret", wrong, &rec, RoleClient, now, ErrWrongSecret},
		{"revoked", tok, &revoked, RoleClient, now, ErrRevoked},
		{"expired", tok, &rec, RoleClient, now.Add(2 * time.Hour), ErrExpired},
		{"a client token used to join as a server", tok, &rec, RoleServer, now, ErrWrongRole},
	} {
		if err := Check(c.tok, c.rec, c.role, c.at); !errors.Is(err, c.want) {
			t.Errorf("%s: got %v, want %v", c.name, err, c.want)
		} else if strings.Contains(err.Error(), tok.Secret) {
			t.Errorf("%s: the error shows the secret", c.name)
		}
	}
}

func TestParseRefuses(t *testing.T) {
	tok := newToken(t, RoleServer)
	bad := func(mod func(*Token)) string { c := tok; mod(&c); return c.String() }
	for name, s := range map[string]string{
		"empty":          "",
		"no prefix":      strings.TrimPrefix(tok.String(), Prefix),
		"not base64":     Prefix + "!!!",
		"not JSON":       Prefix + "aGVsbG8",
		"too long":       Prefix + strings.Repeat("A", MaxLen),
		"bad role":       bad(func(c *Token) { c.Role = "admin" }),
		"bad pin":        bad(func(c *Token) { c.CAPin = "md5:00" }),
		"no servers":     bad(func(c *Token) { c.Servers = nil }),
		"bad server":     bad(func(c *Token) { c.Servers = []string{"10.0.0.1"} }),
		"bad gossip key": bad(func(c *Token) { c.GossipKey = "c2hvcnQ=" }),
		"short secret":   bad(func(c *Token) { c.Secret = "abc" }),
		"unknown field":  Prefix + "eyJ4IjoxfQ",
	} {
		if _, err := Parse(s); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: got %v, want ErrMalformed", name, err)
		}
	}
}

func TestPinnedRoot(t *testing.T) {
	a, b := caCert(t), caCert(t)
	if got, err := PinnedRoot(Pin(a), []*x509.Certificate{b, a}); err != nil || got != a {
		t.Fatalf("pinned root not found: %v", err)
	}
	if _, err := PinnedRoot(Pin(a), []*x509.Certificate{b}); !errors.Is(err, ErrPin) {
		t.Fatalf("a rogue CA matched the pin: %v", err)
	}
}

func FuzzParse(f *testing.F) {
	f.Add(Prefix + "eyJ4IjoxfQ")
	f.Add("")
	tok, err := New(RoleClient, "dc1", "sha256:"+strings.Repeat("ab", 32), []string{"127.0.0.1:8503"}, "", now, time.Hour)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(tok.String())
	f.Fuzz(func(t *testing.T, s string) {
		got, err := Parse(s)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error does not wrap ErrMalformed: %v", err)
			}
			return
		}
		if err := got.Validate(); err != nil {
			t.Fatalf("Parse returned an invalid token: %v", err)
		}
		again, err := Parse(got.String())
		if err != nil || again.ID != got.ID || again.Secret != got.Secret {
			t.Fatalf("re-encoding does not round-trip: %v", err)
		}
	})
}
