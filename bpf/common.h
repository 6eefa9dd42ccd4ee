/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Shared definitions of peerd's eBPF programs. Addresses are 16 bytes in
 * network byte order (IPv4 as ::ffff:a.b.c.d); ports are host byte order. */
#ifndef __PEERD_COMMON_H__
#define __PEERD_COMMON_H__

#include "headers/peerd_uapi.h"
#include "headers/bpf_helpers.h"
#include "headers/bpf_endian.h"

#define AF_INET 2
#define AF_INET6 10
#define SK_PASS 1
#define TC_ACT_UNSPEC (-1)
#define ETH_HLEN 14
#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD

#define READ_ONCE(x) (*(volatile typeof(x) *)&(x))

/* addr_v4mapped writes the IPv4 address ip4 (network order) as ::ffff:ip4. */
static __always_inline void addr_v4mapped(__u32 *dst, __u32 ip4)
{
	dst[0] = 0;
	dst[1] = 0;
	dst[2] = bpf_htonl(0x0000ffff);
	dst[3] = ip4;
}

static __always_inline int addr_is_v4mapped(const __u32 *a)
{
	return a[0] == 0 && a[1] == 0 && a[2] == bpf_htonl(0x0000ffff);
}

/* addr_is_loopback: 127.0.0.0/8 (v4-mapped) or ::1. */
static __always_inline int addr_is_loopback(const __u32 *a)
{
	if (addr_is_v4mapped(a))
		return (bpf_ntohl(a[3]) >> 24) == 127;
	return a[0] == 0 && a[1] == 0 && a[2] == 0 && a[3] == bpf_htonl(1);
}

/* tuple is one TCP connection as seen by one of its sockets: src is the
 * local end. netns_cookie (bpf_get_netns_cookie of the socket) tells apart
 * the identical loopback tuples of two network namespaces. */
struct tuple {
	__u32 src[4];
	__u32 dst[4];
	__u16 sport;
	__u16 dport;
	__u32 pad;
	__u64 netns_cookie;
};

/* sock_ops_tuple fills t's addresses and ports from a sock_ops context
 * (IPv4 and IPv6 sockets); the caller sets netns_cookie (netns.h). */
static __always_inline int sock_ops_tuple(struct bpf_sock_ops *ops, struct tuple *t)
{
	__u32 family = ops->family;

	if (family == AF_INET) {
		addr_v4mapped(t->src, ops->local_ip4);
		addr_v4mapped(t->dst, ops->remote_ip4);
	} else if (family == AF_INET6) {
		t->src[0] = ops->local_ip6[0];
		t->src[1] = ops->local_ip6[1];
		t->src[2] = ops->local_ip6[2];
		t->src[3] = ops->local_ip6[3];
		t->dst[0] = ops->remote_ip6[0];
		t->dst[1] = ops->remote_ip6[1];
		t->dst[2] = ops->remote_ip6[2];
		t->dst[3] = ops->remote_ip6[3];
	} else {
		return -1;
	}
	/* local_port is host order; remote_port holds the network-order port
	 * in its upper 16 bits on little-endian (read it as 32 bits). */
	t->sport = (__u16)ops->local_port;
	t->dport = (__u16)bpf_ntohl(READ_ONCE(ops->remote_port));
	return 0;
}

static __always_inline void stat_inc(void *map, __u32 idx, __u64 n)
{
	__u64 *v = bpf_map_lookup_elem(map, &idx);
	if (v)
		*v += n;
}

#endif /* __PEERD_COMMON_H__ */
