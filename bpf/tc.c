//go:build ignore

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* Layer 3, TC: per-peer byte and packet counters on the node's interfaces.
 * peer_addrs maps a remote address (16 bytes, IPv4 as ::ffff:a.b.c.d) to a
 * peer id; ingress counts by source address, egress by destination. The
 * programs never change a packet's fate (TC_ACT_UNSPEC = TCX_NEXT). */
#include "common.h"

char __license[] SEC("license") = "Dual BSD/GPL";

struct peer_addr {
	__u32 addr[4];
};

struct peer_counters {
	__u64 rx_bytes;
	__u64 rx_packets;
	__u64 tx_bytes;
	__u64 tx_packets;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, struct peer_addr);
	__type(value, __u32);
} peer_addrs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, struct peer_counters);
} peer_stats SEC(".maps");

static __always_inline void count(struct __sk_buff *skb, int ingress)
{
	struct peer_addr a = {};
	struct peer_counters *c, zero = {};
	__u32 *peer, off;
	__u32 proto = skb->protocol;
	__u64 len = skb->len;

	if (proto == bpf_htons(ETH_P_IP)) {
		/* saddr at 12, daddr at 16 of the IPv4 header */
		off = ETH_HLEN + (ingress ? 12 : 16);
		a.addr[2] = bpf_htonl(0x0000ffff);
		if (bpf_skb_load_bytes(skb, off, &a.addr[3], 4))
			return;
	} else if (proto == bpf_htons(ETH_P_IPV6)) {
		/* saddr at 8, daddr at 24 of the IPv6 header */
		off = ETH_HLEN + (ingress ? 8 : 24);
		if (bpf_skb_load_bytes(skb, off, &a.addr, 16))
			return;
	} else {
		return;
	}
	peer = bpf_map_lookup_elem(&peer_addrs, &a);
	if (!peer)
		return;
	c = bpf_map_lookup_elem(&peer_stats, peer);
	if (!c) {
		bpf_map_update_elem(&peer_stats, peer, &zero, BPF_NOEXIST);
		c = bpf_map_lookup_elem(&peer_stats, peer);
		if (!c)
			return;
	}
	if (ingress) {
		c->rx_bytes += len;
		c->rx_packets++;
	} else {
		c->tx_bytes += len;
		c->tx_packets++;
	}
}

SEC("tc")
int tc_ingress(struct __sk_buff *skb)
{
	count(skb, 1);
	return TC_ACT_UNSPEC;
}

SEC("tc")
int tc_egress(struct __sk_buff *skb)
{
	count(skb, 0);
	return TC_ACT_UNSPEC;
}
