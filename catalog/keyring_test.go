package catalog

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The keyring file: written 0600 from EncryptKey when absent, read (and
// preferred over EncryptKey) when present, and a damaged one refused with
// what to do.
func TestKeyringFile(t *testing.T) {
	first := bytes.Repeat([]byte{1}, 32)
	rotated := bytes.Repeat([]byte{2}, 16)
	open := func(dir string, key []byte) (*keyring, error) {
		cfg := DefaultConfig()
		cfg.NodeName, cfg.NodeID, cfg.DataDir, cfg.EncryptKey = "n1", "00000000-0000-0000-0000-000000000001", dir, key
		c, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		return c.openKeyring()
	}

	dir := t.TempDir()
	k, err := open(dir, first)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, KeyringFile)
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("keyring file: %v, mode %v; want 0600", err, fi.Mode().Perm())
	}
	if got := k.ring.GetPrimaryKey(); !bytes.Equal(got, first) {
		t.Fatalf("primary key: got %x, want the -encrypt key", got)
	}

	// A rotation saved: a restart with the old -encrypt keeps the file's keys.
	if err := k.ring.AddKey(rotated); err != nil {
		t.Fatal(err)
	}
	if err := k.ring.UseKey(rotated); err != nil {
		t.Fatal(err)
	}
	if err := k.ring.RemoveKey(first); err != nil {
		t.Fatal(err)
	}
	if err := k.save(); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	var keys []string
	if err := json.Unmarshal(b, &keys); err != nil || len(keys) != 1 || keys[0] != base64.StdEncoding.EncodeToString(rotated) {
		t.Fatalf("keyring file after rotation: got %s (%v)", b, err)
	}
	k, err = open(dir, first)
	if err != nil {
		t.Fatal(err)
	}
	if got := k.ring.GetKeys(); len(got) != 1 || !bytes.Equal(got[0], rotated) {
		t.Fatalf("after restart: got %d keys, primary %x; want only the rotated key", len(got), got[0])
	}

	// No key and no file: no keyring, nothing written.
	plain := t.TempDir()
	if k, err := open(plain, nil); err != nil || k.ring != nil {
		t.Fatalf("no key: got %v, %v; want no keyring", k.ring, err)
	}
	if _, err := os.Stat(filepath.Join(plain, KeyringFile)); !os.IsNotExist(err) {
		t.Fatalf("no key: a keyring file was written (%v)", err)
	}

	for _, tt := range []struct{ name, body, want string }{
		{"not JSON", "{", "not a JSON list of base64 keys"},
		{"empty", "[]", "holds no key"},
		{"short key", `["` + base64.StdEncoding.EncodeToString([]byte("short")) + `"]`, "key 1: key size must be 16, 24 or 32 bytes"},
		{"not base64", `["***"]`, "key 1: illegal base64"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, KeyringFile), []byte(tt.body), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := open(dir, first)
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "delete it") {
				t.Fatalf("got %v, want an error containing %q and saying to delete the file", err, tt.want)
			}
		})
	}
}
