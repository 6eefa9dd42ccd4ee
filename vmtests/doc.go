// Package vmtests runs tests in QEMU (TCG) guests on Debian kernels, as
// make vmtest and make vmtest-systemd do.
//
// Two kinds of guest:
//   - the kernel matrix (Matrix, cmd/vmmatrix, cmd/vmexec): an initramfs
//     with vminit as PID 1 (cmd/vminit), the kernel's modules and a test
//     binary; vminit runs it and prints its exit code (VMEXIT=).
//   - the systemd guest (EnsureRootfs, TestSystemdInstall): a Debian
//     bookworm root file system built with mmdebstrap as an ext4 image;
//     vminit mounts it (GuestConfig.SwitchRoot) and hands PID 1 to
//     systemd, which boots into RootfsTarget and runs the test from a
//     second drive (cmd/vmsystemd for the install test); that prints the
//     exit code itself.
//
// Kernels and root file systems are cached in .vmcache/ (DefaultCache).
// Every step is bounded in time, and a run that fails says why: no QEMU,
// a kernel that does not boot, a panic, a timeout (with the console's
// tail). Tools missing on the host are named with their Debian package.
// Only host tools and QEMU are used: nothing here imports the dataplane.
package vmtests
