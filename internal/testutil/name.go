package testutil

import (
	"crypto/rand"
	"encoding/hex"
)

// UniqueName returns prefix followed by 12 random hex digits: names of
// cgroups, pin directories and namespaces that concurrent test runs do not
// share.
func UniqueName(prefix string) string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return prefix + hex.EncodeToString(b)
}
