package peering

import (
	"encoding/base64"
	"errors"
	"reflect"
	"testing"
)

// FuzzDecodeToken checks that DecodeToken never panics, that every error it
// returns is a *TokenError matching ErrInvalidToken, and that whatever it
// accepts encodes and decodes back to an equal token.
func FuzzDecodeToken(f *testing.F) {
	tok := validToken(f)
	valid, err := tok.Encode()
	if err != nil {
		f.Fatal(err)
	}
	raw, _ := base64.StdEncoding.DecodeString(valid)
	minimal := &Token{
		ServerAddresses:     []string{"[::1]:8502"},
		PeerID:              "3c1a1f8e-5d2b-4f3a-9a1b-7c6d5e4f3a2b",
		EstablishmentSecret: "9f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a",
		Remote:              TokenRemote{Datacenter: "dc1"},
	}
	minimalEnc, err := minimal.Encode()
	if err != nil {
		f.Fatal(err)
	}
	minimalRaw, _ := base64.StdEncoding.DecodeString(minimalEnc)
	for _, s := range []string{
		valid,
		valid + "\n",
		base64.RawURLEncoding.EncodeToString(raw),
		valid[:len(valid)/2],
		valid[:len(valid)/2+1],
		minimalEnc,
		base64.RawStdEncoding.EncodeToString(minimalRaw),
		// Short JSON the fuzzer can mutate field by field.
		base64.StdEncoding.EncodeToString([]byte(`{"ServerAddresses":["a:1"],"PeerID":"3c1a1f8e-5d2b-4f3a-9a1b-7c6d5e4f3a2b","EstablishmentSecret":"9f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a","Remote":{"Datacenter":"d"},"ExpiresAt":"2030-01-01T00:00:00+01:00","ServerName":"server.d.peering.t","TrustDomain":"t"}`)),
		"",
		"!!!!",
		"e30=",
		"bnVsbA==",
		"not a token at all",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tok, err := decodeToken(s, testNow)
		if err != nil {
			var te *TokenError
			if !errors.As(err, &te) || !errors.Is(err, ErrInvalidToken) {
				t.Fatalf("got error %v (%T), want a *TokenError matching ErrInvalidToken", err, err)
			}
			return
		}
		enc, err := tok.Encode()
		if err != nil {
			t.Fatalf("DecodeToken accepted %q but Encode refuses it: %v", s, err)
		}
		again, err := decodeToken(enc, testNow)
		if err != nil {
			t.Fatalf("DecodeToken(Encode()) of %q: %v", s, err)
		}
		if !reflect.DeepEqual(again, tok) {
			t.Fatalf("round trip of %q:\n got %+v\nwant %+v", s, again, tok)
		}
	})
}
