// Package e2e holds the end-to-end tests that run real peerd processes, each
// in a network namespace of its own, wired to per-cluster bridges the tests
// create. Only addresses inside these namespaces are used; every namespace,
// bridge and process is removed when its test ends.
//
// The tests need root (network namespaces, veth pairs, bridges) and skip
// with the reason otherwise. The package has no non-test code: the harness
// is in harness_linux_test.go, so that the fault suite can grow from it.
package e2e
