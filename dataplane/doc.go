// Package dataplane loads, attaches and pins peerd's eBPF programs (package
// bpf) and keeps their maps in sync with what the agent tells it. Four
// layers, each feature-probed and loaded on its own; a layer the kernel
// cannot run is switched off with the reason in Status, and the terminator
// works with none of them:
//
//  1. Capture: cgroup/connect4+6 rewrite connections to virtual IPs
//     (SetVIP) to the terminator's outbound listener, in the caller's
//     network namespace; the terminator asks OriginalDestination (or
//     Origin) for where the accepted connection was going.
//  2. Fast path: sockops + sk_msg splice the plaintext loopback legs
//     between workloads and the terminator through a SOCKHASH.
//  3. TC: per-peer byte and packet counters on the node's interfaces,
//     attached with TCX (kernel >= 6.6) or clsact + a netlink BPF filter.
//  4. Inbound: an sk_lookup program attached to a network namespace hands
//     TCP connections to the gateway's VIP prefixes and port range to the
//     gateway's listener (SetInboundListener) with bpf_sk_assign; the
//     accepted connection's local address is the original destination.
//
// # Workload network namespaces
//
// A workload in its own network namespace (a container, a pod) has its
// own loopback, so the terminator opens its outbound listener at the same
// address inside each workload namespace (the agent's workload manager
// does), and the capture rewrite target stays the same. The original
// destination (Origin, with its NetnsCookie) and the fast path's SOCKHASH
// are keyed by tuple and network namespace cookie. A captured connect
// from a namespace other than the dataplane's (the one Start ran in) is
// rewritten only once SetWorkloadNetns has marked it ready; before, it is
// refused with EPERM and the namespace announced to ReadNetnsEvent, at
// most about once a second per namespace. DeleteWorkloadNetns and
// WorkloadNetns complete the set, which is pinned like the other maps.
//
// # Unreachable routes
//
// With Config.UnreachablePrefixes (the virtual IP ranges), Start installs
// an unreachable route per range in its network namespace (protocol 0x70)
// before the capture programs attach, after refusing ranges that overlap
// an address or route of the namespace's interfaces; traffic to a virtual
// IP that is not captured fails at once instead of leaving the node. Close
// leaves the routes; the Cleanup method removes them; Status shows them in
// the capture layer's Routes.
//
// # Lifecycle
//
// New(cfg) validates the configuration and allocates nothing in the
// kernel; Start probes, loads, attaches and pins the requested layers (a
// layer that cannot load is off, not an error); Close(ctx) releases the
// process's handles but leaves the pins (and so the attachments) in place,
// and is idempotent; Cleanup(ctx), instead of Close, also removes the pins
// and detaches what they held. The dataplane runs no goroutine, so neither
// has anything to wait for. Everything is pinned under Config.PinDir: a
// new dataplane started with the same directory re-opens the maps and
// updates the links in place, so a daemon restart drops no connection.
//
// # Platforms
//
// The dataplane is Linux's: its code sits in *_linux.go files. Elsewhere
// (peerctl is built for macOS and Windows, and the tree must vet there) the
// package keeps its API: New, Cleanup, CgroupID and the methods of
// Dataplane return an error that matches ErrNotSupported (Close has nothing
// to release).
//
// # Errors
//
// ErrNotSupported (internal/netutil's, re-exported) means the kernel or
// the platform lacks what was asked: a layer whose feature probe fails is
// off with an error in LayerStatus.Err that matches it, and so matches
// cilium/ebpf's ErrNotSupported too. ErrLayerOff is returned by the methods
// of a layer that is not loaded; ErrRootCgroup and ErrMPTCPListener refuse
// a configuration or a listener.
package dataplane
