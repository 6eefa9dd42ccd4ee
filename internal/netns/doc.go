// Package netns opens Linux network namespaces and creates sockets inside
// them, for the listeners peerd opens in each workload's namespace (the
// ztunnel "in-pod" model: the workload dials 127.0.0.1 in its own
// namespace and reaches peerd, whatever the CNI).
//
// A Handle holds the namespace file open (/proc/<pid>/ns/net or any
// nsfs path), which keeps the namespace alive: Close it once the
// namespace's processes are gone. Its Inode is what `ls -iL
// /proc/<pid>/ns/net` prints; its Cookie is the kernel's 64-bit namespace
// cookie (SO_NETNS_COOKIE, Linux >= 5.14), the number eBPF programs read
// with bpf_get_netns_cookie and never reused while the kernel runs.
//
// Do runs a function with the calling goroutine's work done on an OS
// thread moved into the namespace (setns), then moved back. A thread whose
// return fails is never given back to the Go runtime (the goroutine exits
// locked, so the runtime ends the thread): no other goroutine can run in a
// foreign namespace by accident. Sockets keep the namespace they were
// created in, so a listener created in Do serves that namespace for its
// whole life, from any goroutine. Listen and ListenPacket do that with a
// net.ListenConfig (its Control sets peerd's SO_MARK).
//
// It imports nothing of ours. Linux only; elsewhere Open fails with an
// error saying so.
package netns
