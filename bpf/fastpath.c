//go:build ignore

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* Layer 2, local fast path: sockops inserts established plaintext loopback
 * legs whose local or remote port is a fast-path port (the terminator's
 * plaintext listeners) into a SOCKHASH keyed by the socket's own 4-tuple
 * and network namespace cookie (a workload's namespace has its own
 * loopback, with the same addresses as every other's);
 * sk_msg redirects every sendmsg to the peer socket's ingress queue. Ports
 * listed in tls_ports never enter the map (kTLS/ULP sockets cannot, and
 * encrypted legs gain nothing). */
#include "common.h"
#include "netns.h"

char __license[] SEC("license") = "Dual BSD/GPL";

enum fastpath_stat {
	FP_INSERT = 0,
	FP_INSERT_ERR,
	FP_SKIP_TLS,
	FP_MSG,
	FP_REDIRECT,
	FP_MISS,
	FP_BYTES,
	FP_STAT_MAX,
};

struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, 65536);
	__type(key, struct tuple);
	__type(value, __u64); /* 8 bytes so user space can read the cookie */
} sock_pairs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u16);
	__type(value, __u8);
} fp_ports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u16);
	__type(value, __u8);
} tls_ports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, FP_STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} fp_stats SEC(".maps");

SEC("sockops")
int fastpath_sockops(struct bpf_sock_ops *ops)
{
	struct tuple t = {};
	__u32 op = ops->op;

	if (op != BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB && op != BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB)
		return 1;
	if (sock_ops_tuple(ops, &t))
		return 1;
	t.netns_cookie = sk_netns(ops);
	if (!addr_is_loopback(t.src) || !addr_is_loopback(t.dst))
		return 1;
	if (bpf_map_lookup_elem(&tls_ports, &t.sport) || bpf_map_lookup_elem(&tls_ports, &t.dport)) {
		stat_inc(&fp_stats, FP_SKIP_TLS, 1);
		return 1;
	}
	if (!bpf_map_lookup_elem(&fp_ports, &t.sport) && !bpf_map_lookup_elem(&fp_ports, &t.dport))
		return 1;
	if (bpf_sock_hash_update(ops, &sock_pairs, &t, BPF_NOEXIST))
		stat_inc(&fp_stats, FP_INSERT_ERR, 1);
	else
		stat_inc(&fp_stats, FP_INSERT, 1);
	return 1;
}

SEC("sk_msg")
int fastpath_skmsg(struct sk_msg_md *msg)
{
	struct tuple peer = {};
	__u32 family = msg->family;
	__u64 size = msg->size;

	stat_inc(&fp_stats, FP_MSG, 1);
	/* The peer socket's own tuple: its src is our remote end. */
	if (family == AF_INET) {
		addr_v4mapped(peer.src, msg->remote_ip4);
		addr_v4mapped(peer.dst, msg->local_ip4);
	} else if (family == AF_INET6) {
		peer.src[0] = msg->remote_ip6[0];
		peer.src[1] = msg->remote_ip6[1];
		peer.src[2] = msg->remote_ip6[2];
		peer.src[3] = msg->remote_ip6[3];
		peer.dst[0] = msg->local_ip6[0];
		peer.dst[1] = msg->local_ip6[1];
		peer.dst[2] = msg->local_ip6[2];
		peer.dst[3] = msg->local_ip6[3];
	} else {
		return SK_PASS;
	}
	peer.sport = (__u16)bpf_ntohl(READ_ONCE(msg->remote_port));
	peer.dport = (__u16)msg->local_port;
	/* Both legs live in the same namespace: look the peer up there. */
	peer.netns_cookie = sk_netns(msg);
	if (bpf_msg_redirect_hash(msg, &sock_pairs, &peer, BPF_F_INGRESS) == SK_PASS) {
		stat_inc(&fp_stats, FP_REDIRECT, 1);
		stat_inc(&fp_stats, FP_BYTES, size);
	} else {
		stat_inc(&fp_stats, FP_MISS, 1);
	}
	/* A miss returns SK_DROP from the helper; never drop: fall back to
	 * the normal loopback path. */
	return SK_PASS;
}
