package peering

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"maps"
	"math/big"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// testNow is the clock of the table tests: tokens expire relative to it.
var testNow = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

type certOptions struct {
	isCA     bool
	keyUsage x509.KeyUsage
	cn       string
}

// testCert returns a self-signed certificate as PEM.
func testCert(t testing.TB, o certOptions) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: o.cn},
		NotBefore:             testNow.Add(-time.Hour),
		NotAfter:              testNow.Add(365 * 24 * time.Hour),
		BasicConstraintsValid: true,
		IsCA:                  o.isCA,
		KeyUsage:              o.keyUsage,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

func testCA(t testing.TB) string {
	return testCert(t, certOptions{isCA: true, keyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign, cn: "peerd CA"})
}

// validToken returns a token DecodeToken accepts at testNow.
func validToken(t testing.TB) *Token {
	exp := testNow.Add(time.Hour)
	return &Token{
		CA:                    []string{testCA(t), testCA(t)},
		ManualServerAddresses: []string{"lb.example.com:8503"},
		ServerAddresses:       []string{"10.0.0.1:8502", "[::1]:8502", "server-1.dc2.example.com:8502"},
		ServerName:            "server.dc2.peering.1f3b2c4d.peerd",
		PeerID:                "3c1a1f8e-5d2b-4f3a-9a1b-7c6d5e4f3a2b",
		EstablishmentSecret:   "9f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a",
		Remote:                TokenRemote{Partition: "default", Datacenter: "dc2"},
		ExpiresAt:             &exp,
		TrustDomain:           "1f3b2c4d.peerd",
	}
}

// encodeRaw encodes tok without Encode's validation, so tests can build
// tokens Encode would refuse.
func encodeRaw(t testing.TB, tok any) string {
	t.Helper()
	b, err := json.Marshal(tok)
	if err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(b)
}

func TestTokenRoundTrip(t *testing.T) {
	noCA := validToken(t)
	noCA.CA, noCA.ServerName, noCA.ExpiresAt, noCA.TrustDomain = nil, "", nil, ""
	noCA.ManualServerAddresses = nil
	noCA.Remote.Partition = ""
	tests := []struct {
		name string
		tok  *Token
	}{
		{"full", validToken(t)},
		{"minimal", noCA},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := tt.tok.Encode()
			if err != nil {
				t.Fatalf("Encode: %v", err)
			}
			if _, err := base64.StdEncoding.Strict().DecodeString(s); err != nil {
				t.Fatalf("Encode did not produce standard base64: %v", err)
			}
			got, err := decodeToken(s, testNow)
			if err != nil {
				t.Fatalf("decodeToken: %v", err)
			}
			if !reflect.DeepEqual(got, tt.tok) {
				t.Fatalf("round trip:\n got %+v\nwant %+v", got, tt.tok)
			}
		})
	}
}

// The forms a token takes when it is pasted through chat tools, terminals
// and files all decode to the same token.
func TestDecodeTokenPastedForms(t *testing.T) {
	want := validToken(t)
	std, err := want.Encode()
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := base64.StdEncoding.DecodeString(std)
	var wrapped strings.Builder
	for i := 0; i < len(std); i += 76 {
		wrapped.WriteString(std[i:min(i+76, len(std))] + "\r\n")
	}
	tests := []struct {
		name string
		in   string
	}{
		{"standard", std},
		{"trailing newline", std + "\n"},
		{"surrounding spaces and tabs", " \t" + std + " \n"},
		{"wrapped at 76 columns", wrapped.String()},
		{"unpadded", base64.RawStdEncoding.EncodeToString(raw)},
		{"url-safe", base64.URLEncoding.EncodeToString(raw)},
		{"url-safe unpadded", base64.RawURLEncoding.EncodeToString(raw)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := decodeToken(tt.in, testNow)
			if err != nil {
				t.Fatalf("decodeToken: %v", err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("got %+v, want %+v", got, want)
			}
		})
	}
}

// A token in Consul's JSON shape (no peerd fields, nulls for empty lists)
// decodes; ExpiresAt written with an offset decodes to the same instant in UTC.
func TestDecodeTokenJSONShape(t *testing.T) {
	ca := testCA(t)
	consul := map[string]any{
		"CA":                    []string{ca},
		"ManualServerAddresses": nil,
		"ServerAddresses":       []string{"192.0.2.1:8503"},
		"ServerName":            "server.dc1.peering.11111111-2222-3333-4444-555555555555.consul",
		"PeerID":                "3c1a1f8e-5d2b-4f3a-9a1b-7c6d5e4f3a2b",
		"EstablishmentSecret":   "9f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a",
		"Remote":                map[string]string{"Partition": "", "Datacenter": "dc1"},
	}
	got, err := decodeToken(encodeRaw(t, consul), testNow)
	if err != nil {
		t.Fatalf("Consul-shaped token: %v", err)
	}
	if got.Remote.Datacenter != "dc1" || got.ServerName != consul["ServerName"] {
		t.Fatalf("got %+v", got)
	}

	consul["ExpiresAt"] = "2026-03-01T14:30:00+02:00"
	got, err = decodeToken(encodeRaw(t, consul), testNow)
	if err != nil {
		t.Fatal(err)
	}
	if want := time.Date(2026, 3, 1, 12, 30, 0, 0, time.UTC); got.ExpiresAt == nil || !reflect.DeepEqual(*got.ExpiresAt, want) {
		t.Fatalf("ExpiresAt: got %v, want %v in UTC", got.ExpiresAt, want)
	}

	// Encode writes Consul's field names, and peerd's only when set.
	tok := validToken(t)
	tok.ExpiresAt, tok.TrustDomain = nil, ""
	s, err := tok.Encode()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := base64.StdEncoding.DecodeString(s)
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(b, &fields); err != nil {
		t.Fatal(err)
	}
	want := []string{"CA", "EstablishmentSecret", "ManualServerAddresses", "PeerID", "Remote", "ServerAddresses", "ServerName"}
	if got := slices.Sorted(maps.Keys(fields)); !reflect.DeepEqual(got, want) {
		t.Fatalf("JSON keys: got %v, want %v", got, want)
	}
}

func TestDecodeTokenErrors(t *testing.T) {
	valid, err := validToken(t).Encode()
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := base64.StdEncoding.DecodeString(valid)
	nonCA := testCert(t, certOptions{cn: "leaf"})
	noCertSign := testCert(t, certOptions{isCA: true, keyUsage: x509.KeyUsageDigitalSignature, cn: "no-sign"})
	ca := testCA(t)

	// mutate returns the valid token changed by f, encoded without checks.
	mutate := func(f func(*Token)) string {
		tok := validToken(t)
		f(tok)
		return encodeRaw(t, tok)
	}
	// patchJSON returns the valid token's JSON with its fields changed by f.
	patchJSON := func(f func(map[string]any)) string {
		var m map[string]any
		if err := json.Unmarshal(raw, &m); err != nil {
			t.Fatal(err)
		}
		f(m)
		return encodeRaw(t, m)
	}
	cut := len(valid) / 2 &^ 3 // a whole number of base64 quanta
	flipped := []byte(valid)
	flipped[0] ^= 0x01 // 'e' -> 'd': the JSON no longer starts with '{'
	past := testNow.Add(-time.Minute)

	tests := []struct {
		name      string
		in        string
		wantField string // TokenError.Field
		wantText  string // a substring of the message
		expired   bool
	}{
		{"empty", "", "", "empty", false},
		{"only whitespace", " \n\t\r\n", "", "empty", false},
		{"too large", strings.Repeat("A", MaxEncodedTokenSize+4), "", "too large", false},
		{"truncated base64 after one character", valid[:cut+1], "", "not base64: it ends too early", false},
		{"truncated base64 after two characters", valid[:cut+2], "", "truncated", false},
		{"truncated base64", valid[:cut], "", "not JSON: it ends too early", false},
		{"not base64", "!!!" + valid, "", "not base64", false},
		{"bad padding", valid[:len(valid)-4] + "A===", "", "not base64", false},
		{"mixed alphabets", strings.Replace(valid, "A", "-", 1) + "+/", "", "mixes the standard", false},
		{"flipped byte", string(flipped), "", "not a peering token", false},
		{"plain text", base64.StdEncoding.EncodeToString([]byte("hello")), "", "not a peering token", false},
		{"a word that is base64", "garbage", "", "this is not a peering token", false},
		{"JSON with a syntax error", base64.StdEncoding.EncodeToString([]byte(`{"CA":[x]}`)), "", "not JSON", false},
		{"JSON array", base64.StdEncoding.EncodeToString([]byte("[]")), "", "not a token object", false},
		{"data after the object", base64.StdEncoding.EncodeToString(append(append([]byte(nil), raw...), "{}"...)), "", "data after", false},
		{"extra field", patchJSON(func(m map[string]any) { m["Signature"] = "x" }), "", `unknown field "Signature"`, false},
		{"extra field in Remote", patchJSON(func(m map[string]any) { m["Remote"] = map[string]any{"Datacenter": "dc2", "Locality": nil} }), "", `unknown field "Locality"`, false},
		{"wrong type", patchJSON(func(m map[string]any) { m["ServerName"] = 5 }), "ServerName", "got JSON number, want a string", false},
		{"wrong nested type", patchJSON(func(m map[string]any) { m["Remote"] = map[string]any{"Datacenter": true} }), "Remote.Datacenter", "want a string", false},
		{"ExpiresAt not a time", patchJSON(func(m map[string]any) { m["ExpiresAt"] = "tomorrow" }), "ExpiresAt", "RFC 3339", false},
		{"ExpiresAt a number", patchJSON(func(m map[string]any) { m["ExpiresAt"] = 1 }), "ExpiresAt", "RFC 3339", false},

		{"CA not PEM", mutate(func(tok *Token) { tok.CA[0] = "MIIB..." }), "CA[0]", "not PEM", false},
		{"CA empty string", mutate(func(tok *Token) { tok.CA[1] = "" }), "CA[1]", "not PEM", false},
		{"CA text before PEM", mutate(func(tok *Token) { tok.CA[0] = "root:\n" + ca }), "CA[0]", "not PEM", false},
		{"CA PEM of a key", mutate(func(tok *Token) {
			tok.CA[0] = string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1}}))
		}), "CA[0]", `"PRIVATE KEY"`, false},
		{"CA PEM with headers", mutate(func(tok *Token) {
			b, _ := pem.Decode([]byte(ca))
			b.Headers = map[string]string{"Proc-Type": "4,ENCRYPTED"}
			tok.CA[0] = string(pem.EncodeToMemory(b))
		}), "CA[0]", "headers", false},
		{"CA bad DER", mutate(func(tok *Token) {
			tok.CA[0] = string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("not DER")}))
		}), "CA[0]", "not an X.509 certificate", false},
		{"CA two certificates in one entry", mutate(func(tok *Token) { tok.CA[0] = ca + ca }), "CA[0]", "more than one", false},
		{"CA trailing text", mutate(func(tok *Token) { tok.CA[0] = ca + "junk" }), "CA[0]", "trailing data", false},
		{"CA not a CA", mutate(func(tok *Token) { tok.CA[1] = nonCA }), "CA[1]", "not a CA certificate", false},
		{"CA cannot sign", mutate(func(tok *Token) { tok.CA[0] = noCertSign }), "CA[0]", "certSign", false},

		{"no server addresses", mutate(func(tok *Token) { tok.ServerAddresses = nil }), "ServerAddresses", "at least one", false},
		{"only manual addresses", mutate(func(tok *Token) { tok.ServerAddresses = []string{} }), "ServerAddresses", "at least one", false},
		{"address empty", mutate(func(tok *Token) { tok.ServerAddresses[1] = "" }), "ServerAddresses[1]", "empty", false},
		{"address with scheme", mutate(func(tok *Token) { tok.ServerAddresses[0] = "https://10.0.0.1:8502" }), "ServerAddresses[0]", "scheme", false},
		{"address with path", mutate(func(tok *Token) { tok.ServerAddresses[0] = "10.0.0.1:8502/v1" }), "ServerAddresses[0]", "path", false},
		{"address without port", mutate(func(tok *Token) { tok.ServerAddresses[0] = "10.0.0.1" }), "ServerAddresses[0]", "not host:port", false},
		{"address port 0", mutate(func(tok *Token) { tok.ServerAddresses[0] = "10.0.0.1:0" }), "ServerAddresses[0]", "1 to 65535", false},
		{"address port 65536", mutate(func(tok *Token) { tok.ServerAddresses[0] = "10.0.0.1:65536" }), "ServerAddresses[0]", "1 to 65535", false},
		{"address port negative", mutate(func(tok *Token) { tok.ServerAddresses[0] = "10.0.0.1:-1" }), "ServerAddresses[0]", "1 to 65535", false},
		{"address port with leading zero", mutate(func(tok *Token) { tok.ServerAddresses[0] = "10.0.0.1:08502" }), "ServerAddresses[0]", "1 to 65535", false},
		{"address port named", mutate(func(tok *Token) { tok.ServerAddresses[0] = "10.0.0.1:grpc" }), "ServerAddresses[0]", "1 to 65535", false},
		{"address without host", mutate(func(tok *Token) { tok.ServerAddresses[0] = ":8502" }), "ServerAddresses[0]", "missing host", false},
		{"IPv6 without brackets", mutate(func(tok *Token) { tok.ServerAddresses[0] = "::1:8502" }), "ServerAddresses[0]", "brackets", false},
		{"IPv4 in brackets", mutate(func(tok *Token) { tok.ServerAddresses[0] = "[10.0.0.1]:8502" }), "ServerAddresses[0]", `write it "10.0.0.1:8502"`, false},
		{"IPv6 not canonical", mutate(func(tok *Token) { tok.ServerAddresses[0] = "[2001:DB8:0::1]:8502" }), "ServerAddresses[0]", `write it "[2001:db8::1]:8502"`, false},
		{"IPv6 with zone", mutate(func(tok *Token) { tok.ServerAddresses[0] = "[fe80::1%eth0]:8502" }), "ServerAddresses[0]", "zone", false},
		{"IPv4-mapped IPv6", mutate(func(tok *Token) { tok.ServerAddresses[0] = "[::ffff:10.0.0.1]:8502" }), "ServerAddresses[0]", "::ffff:", false},
		{"host name with bad characters", mutate(func(tok *Token) { tok.ServerAddresses[2] = "server 1!:8502" }), "ServerAddresses[2]", "not a valid host name", false},
		{"host name with empty label", mutate(func(tok *Token) { tok.ServerAddresses[2] = "a..b:8502" }), "ServerAddresses[2]", "not a valid host name", false},
		{"mistyped IPv4", mutate(func(tok *Token) { tok.ServerAddresses[0] = "10.0.0.256:8502" }), "ServerAddresses[0]", "neither an IP address nor a host name", false},
		{"brackets around a name", mutate(func(tok *Token) { tok.ServerAddresses[2] = "[example.com]:8502" }), "ServerAddresses[2]", "brackets are for IPv6", false},
		{"manual address bad", mutate(func(tok *Token) { tok.ManualServerAddresses[0] = "lb.example.com" }), "ManualServerAddresses[0]", "not host:port", false},

		{"ServerName missing with CA", mutate(func(tok *Token) { tok.ServerName = "" }), "ServerName", "required with CA", false},
		{"ServerName wrong prefix", mutate(func(tok *Token) { tok.ServerName = "dc2.peering.1f3b2c4d.peerd" }), "ServerName", `start with "server."`, false},
		{"ServerName without peering", mutate(func(tok *Token) { tok.ServerName = "server.dc2.1f3b2c4d.peerd" }), "ServerName", "server.<datacenter>.peering.<trust-domain>", false},
		{"ServerName without trust domain", mutate(func(tok *Token) { tok.ServerName = "server.dc2.peering." }), "ServerName", "trust domain", false},
		{"ServerName other datacenter", mutate(func(tok *Token) { tok.ServerName = "server.dc1.peering.1f3b2c4d.peerd" }), "ServerName", `datacenter "dc1" but Remote.Datacenter is "dc2"`, false},
		{"ServerName other trust domain", mutate(func(tok *Token) { tok.ServerName = "server.dc2.peering.other.peerd" }), "ServerName", `trust domain "other.peerd" but TrustDomain is "1f3b2c4d.peerd"`, false},

		{"PeerID missing", mutate(func(tok *Token) { tok.PeerID = "" }), "PeerID", "missing", false},
		{"PeerID not a UUID", mutate(func(tok *Token) { tok.PeerID = "peer-1" }), "PeerID", "not a UUID", false},
		{"PeerID without dashes", mutate(func(tok *Token) { tok.PeerID = "3c1a1f8e5d2b4f3a9a1b7c6d5e4f3a2b" }), "PeerID", "8-4-4-4-12", false},
		{"PeerID nil UUID", mutate(func(tok *Token) { tok.PeerID = nilUUID }), "PeerID", "nil UUID", false},
		{"secret missing", mutate(func(tok *Token) { tok.EstablishmentSecret = "" }), "EstablishmentSecret", "missing", false},
		{"secret not a UUID", mutate(func(tok *Token) { tok.EstablishmentSecret = "hunter2" }), "EstablishmentSecret", "not a UUID", false},

		{"datacenter missing", mutate(func(tok *Token) { tok.Remote.Datacenter = "" }), "Remote.Datacenter", "missing", false},
		{"datacenter bad", mutate(func(tok *Token) { tok.Remote.Datacenter = "dc 2" }), "Remote.Datacenter", "not a datacenter name", false},
		{"partition bad", mutate(func(tok *Token) { tok.Remote.Partition = "-p" }), "Remote.Partition", "not a partition name", false},
		{"trust domain bad", mutate(func(tok *Token) { tok.TrustDomain = "Upper.peerd" }), "TrustDomain", "not a trust domain", false},

		{"expired", mutate(func(tok *Token) { tok.ExpiresAt = &past }), "ExpiresAt", "generate a new peering token", true},
		{"expires now", mutate(func(tok *Token) { tok.ExpiresAt = &testNow }), "ExpiresAt", "expired at 2026-03-01T12:00:00Z", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok, err := decodeToken(tt.in, testNow)
			if err == nil {
				t.Fatalf("got token %+v, want an error", tok)
			}
			if !errors.Is(err, ErrInvalidToken) {
				t.Errorf("errors.Is(%v, ErrInvalidToken) = false, want true", err)
			}
			if got := errors.Is(err, ErrTokenExpired); got != tt.expired {
				t.Errorf("errors.Is(%v, ErrTokenExpired) = %v, want %v", err, got, tt.expired)
			}
			var te *TokenError
			if !errors.As(err, &te) {
				t.Fatalf("got %T, want *TokenError", err)
			}
			if te.Field != tt.wantField {
				t.Errorf("Field: got %q, want %q (error %q)", te.Field, tt.wantField, err)
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, "peering token: ") {
				t.Errorf("got %q, want the prefix \"peering token: \"", msg)
			}
			if tt.wantField != "" && !strings.HasPrefix(msg, "peering token: "+tt.wantField+": ") {
				t.Errorf("got %q, want it to name %s", msg, tt.wantField)
			}
			if !strings.Contains(msg, tt.wantText) {
				t.Errorf("got %q, want it to contain %q", msg, tt.wantText)
			}
		})
	}
}

func TestAddressForms(t *testing.T) {
	tests := []struct {
		in string
		ok bool
	}{
		{"[::1]:8502", true},
		{"[2001:db8::1]:443", true},
		{"10.0.0.1:8502", true},
		{"localhost:1", true},
		{"server-1.dc2.example.com:65535", true},
		{"node_1.internal:8502", true},
		{"10.0.0.1:", false},
		{"[::1]", false},
		{"[::1]:8502:1", false},
		{"example.com.:8502", false},
		{"-bad.example.com:8502", false},
		{"user@example.com:8502", false},
		{strings.Repeat("a.", 127) + "com:8502", false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			err := validateAddress(tt.in)
			if got := err == nil; got != tt.ok {
				t.Fatalf("validateAddress(%q): got error %v, want ok %v", tt.in, err, tt.ok)
			}
		})
	}
}

func TestEncode(t *testing.T) {
	// Encode refuses what DecodeToken would refuse...
	tok := validToken(t)
	tok.PeerID = ""
	if _, err := tok.Encode(); !errors.Is(err, ErrInvalidToken) || !strings.Contains(err.Error(), "PeerID") {
		t.Fatalf("Encode without PeerID: got %v, want ErrInvalidToken naming PeerID", err)
	}
	// ...except expiry, which depends on when the token is read.
	tok = validToken(t)
	past := time.Now().Add(-time.Hour)
	tok.ExpiresAt = &past
	s, err := tok.Encode()
	if err != nil {
		t.Fatalf("Encode of an expired token: %v", err)
	}
	if _, err := DecodeToken(s); !errors.Is(err, ErrTokenExpired) {
		t.Fatalf("DecodeToken of an expired token: got %v, want ErrTokenExpired", err)
	}
	if err := tok.Validate(); !errors.Is(err, ErrTokenExpired) {
		t.Fatalf("Validate of an expired token: got %v, want ErrTokenExpired", err)
	}
	// A CA bundle that makes the token too large.
	tok = validToken(t)
	for len(strings.Join(tok.CA, "")) < MaxEncodedTokenSize {
		tok.CA = append(tok.CA, tok.CA[0])
	}
	if _, err := tok.Encode(); !errors.Is(err, ErrInvalidToken) || !strings.Contains(err.Error(), "too large") {
		t.Fatalf("Encode of a huge token: got %v, want ErrInvalidToken saying too large", err)
	}
	// ExpiresAt is written in UTC whatever its location.
	tok = validToken(t)
	local := tok.ExpiresAt.In(time.FixedZone("X", 3*3600))
	tok.ExpiresAt = &local
	s, err = tok.Encode()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := base64.StdEncoding.DecodeString(s)
	if !strings.Contains(string(b), `"ExpiresAt":"2026-03-01T13:00:00Z"`) {
		t.Fatalf("got %s, want ExpiresAt in UTC", b)
	}
}

func TestDialAddresses(t *testing.T) {
	tok := validToken(t)
	if got, want := tok.DialAddresses(), tok.ManualServerAddresses; !reflect.DeepEqual(got, want) {
		t.Fatalf("with manual addresses: got %v, want %v", got, want)
	}
	tok.ManualServerAddresses = nil
	if got, want := tok.DialAddresses(), tok.ServerAddresses; !reflect.DeepEqual(got, want) {
		t.Fatalf("without manual addresses: got %v, want %v", got, want)
	}
}
