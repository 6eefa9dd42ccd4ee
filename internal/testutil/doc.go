// Package testutil holds the helpers peerd's tests share: skips that name
// what is missing, waits that say what they waited for, and the child
// cgroups and network namespaces of the privileged tests.
//
// Contract:
//   - Only tests import it (internal/depcheck refuses it in production
//     code), and it imports nothing of ours but internal/netutil, for
//     ErrNotSupported.
//   - Every helper takes the test's testing.TB, marks itself t.Helper(),
//     and undoes what it created with t.Cleanup.
//   - A skip gives its reason: RequireRoot, RequireBPF, SkipOnOldKernel
//     (kernel and feature), SkipIfNotSupported (the error, which must wrap
//     ErrNotSupported with the feature's name: a bare sentinel fails the
//     test).
//   - Privileged helpers keep the project's rules: a cgroup is always a new
//     child of the cgroup v2 root, never the root; a network namespace is
//     always a new one, so traffic stays on the machine.
//
// The Linux-only helpers (cgroups, namespaces, bpffs) sit in *_linux.go;
// SkipOnOldKernel skips elsewhere.
package testutil
