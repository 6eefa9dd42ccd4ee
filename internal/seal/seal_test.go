package seal

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

func newKey(t testing.TB) *Key {
	t.Helper()
	k, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestEntries(t *testing.T) {
	k := newKey(t)
	plain := []byte(`{"Type":"ca-roots-set","KeyPEM":"-----BEGIN EC PRIVATE KEY-----"}`)
	sealed := k.Seal(plain)
	if bytes.Contains(sealed, []byte("PRIVATE KEY")) || !Sealed(sealed) {
		t.Fatal("the sealed entry shows its plaintext")
	}
	got, err := k.Open(sealed)
	if err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("open: %q, %v", got, err)
	}
	if got, err := k.Open(plain); err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("a plaintext entry (written before sealing) is not passed through: %v", err)
	}
	if _, err := newKey(t).Open(sealed); !errors.Is(err, ErrOpen) {
		t.Fatalf("another cluster's key opened it: %v", err)
	}
	var none *Key
	if _, err := none.Open(sealed); !errors.Is(err, ErrOpen) {
		t.Fatalf("no key opened it: %v", err)
	}
	flipped := bytes.Clone(sealed)
	flipped[len(flipped)-1] ^= 1
	if _, err := k.Open(flipped); !errors.Is(err, ErrOpen) {
		t.Fatalf("a corrupted entry opened: %v", err)
	}
}

func TestStreams(t *testing.T) {
	k := newKey(t)
	plain := strings.Repeat(`{"CARoot":{"KeyPEM":"secret"}}`+"\n", 10000)
	var buf bytes.Buffer
	w, err := k.SealWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(w, plain); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(buf.Bytes(), []byte("secret")) {
		t.Fatal("the sealed stream shows its plaintext")
	}
	r, err := k.OpenReader(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(r)
	if err != nil || string(got) != plain {
		t.Fatalf("open stream: %d bytes, %v", len(got), err)
	}
	if r, err := k.OpenReader(strings.NewReader(plain)); err != nil {
		t.Fatal(err)
	} else if got, _ := io.ReadAll(r); string(got) != plain {
		t.Fatal("a plaintext stream is not passed through")
	}
	if _, err := newKey(t).OpenReader(bytes.NewReader(buf.Bytes())); !errors.Is(err, ErrOpen) {
		t.Fatalf("another key opened the stream: %v", err)
	}
}

func TestKeyRoundTrip(t *testing.T) {
	k := newKey(t)
	back, err := Parse(k.String())
	if err != nil {
		t.Fatal(err)
	}
	if got, err := back.Open(k.Seal([]byte("x"))); err != nil || string(got) != "x" {
		t.Fatalf("parsed key does not open: %v", err)
	}
	for _, bad := range []string{"", "!!", "e30=", k.String()[:20]} {
		if _, err := Parse(bad); err == nil {
			t.Errorf("Parse(%q) succeeded", bad)
		}
	}
}

func FuzzOpen(f *testing.F) {
	k, err := NewKey()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(k.Seal([]byte(`{"Type":"register"}`)))
	f.Add([]byte(`{"Type":"register"}`))
	f.Add(append(append([]byte{}, entryMagic...), 1, 2, 3, 4))
	f.Fuzz(func(t *testing.T, data []byte) {
		plain, err := k.Open(data)
		if err != nil {
			if !errors.Is(err, ErrOpen) {
				t.Fatalf("error does not wrap ErrOpen: %v", err)
			}
			return
		}
		if Sealed(data) && bytes.Equal(plain, data) {
			t.Fatal("a sealed entry came back unopened")
		}
	})
}
