// Package depcheck holds the test that keeps peerd's imports pointing the way
// DESIGN.md draws them.
//
// The rules are a table in deps_test.go: which of our packages may import
// which of ours, and which packages may import cilium/ebpf,
// golang.org/x/sys/unix and the Consul API client, and that
// internal/testutil serves tests only. They apply to the imports of
// production code (non-_test.go files, built for linux and for darwin, where
// the *_other.go stubs build); tests may import what they need. Change a rule in the table, with the reason, when
// DESIGN.md changes. The package has no code of its own.
package depcheck
