// Package bpf holds peerd's eBPF programs: the C sources, the headers they
// build with (headers/, copied with their licenses) and the objects and Go
// bindings bpf2go generates from them with clang, which are committed so a
// build needs no clang. Run `make generate` after editing a .c file;
// `make generate-check` fails when the committed output is stale.
//
// There is one object per dataplane layer, so each can be loaded alone:
//
//   - Capture (capture.c): cgroup/connect4 + cgroup/connect6 rewrite
//     connections to virtual IPs to the terminator's outbound listener;
//     a sockops program hands the original destination over from the
//     socket cookie to the connection's 4-tuple and network namespace
//     cookie. Connects from a namespace other than the daemon's are
//     rewritten only once it is in workload_netns; until then they are
//     refused and the namespace is announced on the netns_events ring
//     buffer.
//   - Fastpath (fastpath.c): sockops + sk_msg splice plaintext loopback
//     legs through a SOCKHASH keyed by 4-tuple and netns cookie.
//   - Tc (tc.c): per-peer byte and packet counters at TC ingress/egress.
//   - Inbound (inbound.c): sk_lookup (attached to a network namespace)
//     assigns TCP connections to the gateway's VIP prefixes and port range
//     to the gateway's listening socket held in a SOCKMAP.
//
// The package only exposes what bpf2go generates; loading, attaching and
// pinning live in package dataplane.
package bpf

// -target bpfel builds the little-endian object only (peerd ships for amd64
// and arm64); -I/usr/include/x86_64-linux-gnu is harmless (the headers in
// headers/ are self-contained) and kept for local experiments with system
// headers. clang 14 (Debian 12) is the pinned compiler.
//go:generate go tool bpf2go -target bpfel -go-package bpf -type vip_key -type vip_val -type orig_dst -type tuple Capture capture.c -- -I/usr/include/x86_64-linux-gnu -O2 -g -Wall -Werror
//go:generate go tool bpf2go -target bpfel -go-package bpf -type tuple Fastpath fastpath.c -- -I/usr/include/x86_64-linux-gnu -O2 -g -Wall -Werror
//go:generate go tool bpf2go -target bpfel -go-package bpf -type peer_addr -type peer_counters Tc tc.c -- -I/usr/include/x86_64-linux-gnu -O2 -g -Wall -Werror
//go:generate go tool bpf2go -target bpfel -go-package bpf -type prefix_key Inbound inbound.c -- -I/usr/include/x86_64-linux-gnu -O2 -g -Wall -Werror
