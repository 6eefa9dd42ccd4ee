//go:build ignore

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* Layer 4, inbound capture: an sk_lookup program (attached to a network
 * namespace) steers TCP connections addressed to the node gateway's VIPs
 * (inbound_vips, an LPM trie of prefixes; IPv4 as ::ffff:a.b.c.d/96+n) on a
 * port in [port_lo, port_hi] to the gateway's listening socket in
 * inbound_socks (slot 0 takes IPv4, slot 1 IPv6) with bpf_sk_assign. The
 * accepted socket keeps the original destination as its local address.
 * Without a registered listener, or on any error, the normal socket lookup
 * runs (SK_PASS): the program never drops. */
#include "common.h"

char __license[] SEC("license") = "Dual BSD/GPL";

/* struct bpf_sk_lookup, copied verbatim from include/uapi/linux/bpf.h
 * (linux-libc-dev 6.1.192): peerd_uapi.h does not carry it. The verifier
 * rewrites accesses by these offsets, so the layout must not change. */
struct bpf_sk_lookup {
	union {
		__bpf_md_ptr(struct bpf_sock *, sk); /* Selected socket */
		__u64 cookie; /* Non-zero if socket was selected in PROG_TEST_RUN */
	};

	__u32 family;		/* Protocol family (AF_INET, AF_INET6) */
	__u32 protocol;		/* IP protocol (IPPROTO_TCP, IPPROTO_UDP) */
	__u32 remote_ip4;	/* Network byte order */
	__u32 remote_ip6[4];	/* Network byte order */
	__be16 remote_port;	/* Network byte order */
	__u16 :16;		/* Zero padding */
	__u32 local_ip4;	/* Network byte order */
	__u32 local_ip6[4];	/* Network byte order */
	__u32 local_port;	/* Host byte order */
	__u32 ingress_ifindex;		/* The arriving interface. Determined by inet_iif. */
};

#define IPPROTO_TCP 6
#define BPF_F_NO_PREALLOC (1U << 0)

/* Set from Go before load (CollectionSpec.Variables). */
volatile const __u16 port_lo = 0; /* host order, inclusive; 0/0 matches nothing */
volatile const __u16 port_hi = 0;

/* The LPM trie key: prefixlen counts bits of the 16-byte address. */
struct prefix_key {
	__u32 prefixlen;
	__u32 addr[4];
};

enum inbound_slot {
	SLOT_V4 = 0,
	SLOT_V6,
	SLOT_MAX,
};

enum inbound_stat {
	IN_MATCHED = 0,
	IN_ASSIGNED,
	IN_NO_SOCKET,
	IN_ASSIGN_ERR,
	IN_STAT_MAX,
};

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 1024);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct prefix_key);
	__type(value, __u8);
} inbound_vips SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_SOCKMAP);
	__uint(max_entries, SLOT_MAX);
	__type(key, __u32);
	__type(value, __u64); /* 8 bytes so user space can read the cookie */
} inbound_socks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, IN_STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} inbound_stats SEC(".maps");

SEC("sk_lookup")
int inbound_lookup(struct bpf_sk_lookup *ctx)
{
	struct prefix_key k = {};
	struct bpf_sock *sk;
	__u32 port = ctx->local_port;
	__u32 family = ctx->family;
	__u32 slot;
	long err;

	if (ctx->protocol != IPPROTO_TCP)
		return SK_PASS;
	if (port < port_lo || port > port_hi)
		return SK_PASS;
	k.prefixlen = 128;
	if (family == AF_INET) {
		addr_v4mapped(k.addr, ctx->local_ip4);
		slot = SLOT_V4;
	} else if (family == AF_INET6) {
		k.addr[0] = ctx->local_ip6[0];
		k.addr[1] = ctx->local_ip6[1];
		k.addr[2] = ctx->local_ip6[2];
		k.addr[3] = ctx->local_ip6[3];
		slot = SLOT_V6;
	} else {
		return SK_PASS;
	}
	if (!bpf_map_lookup_elem(&inbound_vips, &k))
		return SK_PASS;
	stat_inc(&inbound_stats, IN_MATCHED, 1);
	sk = bpf_map_lookup_elem(&inbound_socks, &slot);
	if (!sk) {
		stat_inc(&inbound_stats, IN_NO_SOCKET, 1);
		return SK_PASS;
	}
	err = bpf_sk_assign(ctx, sk, 0);
	bpf_sk_release(sk);
	if (err)
		stat_inc(&inbound_stats, IN_ASSIGN_ERR, 1);
	else
		stat_inc(&inbound_stats, IN_ASSIGNED, 1);
	return SK_PASS;
}
