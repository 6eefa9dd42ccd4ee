//go:build ignore

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* Layer 1, transparent capture: cgroup/connect4 and cgroup/connect6 rewrite
 * connections to a virtual IP:port to the terminator's outbound listener and
 * remember the original destination by socket cookie; the capture sockops
 * program moves that record to a map keyed by the connection's 4-tuple once
 * the client side is established, which is what the terminator can look up
 * from its accepted socket (remote = client, local = listener). */
#include "common.h"

char __license[] SEC("license") = "Dual BSD/GPL";

/* Set from Go before load (CollectionSpec.Variables). */
volatile const __u32 listener_v4 = 0;     /* network order; 0 = no IPv4 listener */
volatile const __u32 listener_v6[4] = {}; /* network order; all 0 = no IPv6 listener */
volatile const __u16 listener_port = 0;   /* host order */
volatile const __u32 own_mark = 0;        /* SO_MARK of the terminator's sockets; 0 = none */
volatile const __u64 daemon_cgid = 0;     /* cgroup id of the daemon; 0 = none */

struct vip_key {
	__u32 addr[4];
	__u16 port; /* 0 matches every port of addr */
	__u16 pad;
};

struct vip_val {
	__u32 peer_id;
	__u32 service_id;
};

struct orig_dst {
	__u32 addr[4];
	__u16 port;
	__u16 pad;
	__u32 peer_id;
	__u32 service_id;
	__u32 pad2;
	__u64 cgroup_id;
};

enum capture_stat {
	CAP_CONNECT = 0,
	CAP_REWRITE,
	CAP_SKIP_MARK,
	CAP_SKIP_CGROUP,
	CAP_SKIP_LISTENER,
	CAP_MAP_ERR,
	CAP_HANDOVER,
	CAP_STAT_MAX,
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct vip_key);
	__type(value, struct vip_val);
} vips SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct orig_dst);
} orig_cookie SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct tuple);
	__type(value, struct orig_dst);
} orig_tuple SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, CAP_STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} cap_stats SEC(".maps");

/* own_socket reports whether the connecting socket is the daemon's own. */
static __always_inline int own_socket(struct bpf_sock_addr *ctx)
{
	struct bpf_sock *sk = ctx->sk;

	if (own_mark && sk && sk->mark == own_mark) {
		stat_inc(&cap_stats, CAP_SKIP_MARK, 1);
		return 1;
	}
	if (daemon_cgid && bpf_get_current_cgroup_id() == daemon_cgid) {
		stat_inc(&cap_stats, CAP_SKIP_CGROUP, 1);
		return 1;
	}
	return 0;
}

/* capture looks dst:port up and, on a hit, records the original destination
 * under the socket cookie. It returns 1 when the caller should rewrite. */
static __always_inline int capture(void *ctx, const __u32 *dst, __u16 port)
{
	struct vip_key k = {};
	struct vip_val *v;
	struct orig_dst o = {};
	__u64 cookie;

	k.addr[0] = dst[0];
	k.addr[1] = dst[1];
	k.addr[2] = dst[2];
	k.addr[3] = dst[3];
	k.port = port;
	v = bpf_map_lookup_elem(&vips, &k);
	if (!v) {
		k.port = 0;
		v = bpf_map_lookup_elem(&vips, &k);
		if (!v)
			return 0;
	}
	o.addr[0] = dst[0];
	o.addr[1] = dst[1];
	o.addr[2] = dst[2];
	o.addr[3] = dst[3];
	o.port = port;
	o.peer_id = v->peer_id;
	o.service_id = v->service_id;
	o.cgroup_id = bpf_get_current_cgroup_id();
	cookie = bpf_get_socket_cookie(ctx);
	if (bpf_map_update_elem(&orig_cookie, &cookie, &o, BPF_ANY)) {
		/* Without the record the terminator could not route the
		 * connection: leave it alone rather than capture it blind. */
		stat_inc(&cap_stats, CAP_MAP_ERR, 1);
		return 0;
	}
	return 1;
}

SEC("cgroup/connect4")
int capture_connect4(struct bpf_sock_addr *ctx)
{
	__u32 dst[4];
	__u16 port;

	if (ctx->protocol != 6 /* IPPROTO_TCP */)
		return 1;
	stat_inc(&cap_stats, CAP_CONNECT, 1);
	port = bpf_ntohs((__u16)ctx->user_port);
	if (listener_v4 && ctx->user_ip4 == listener_v4 && port == listener_port) {
		stat_inc(&cap_stats, CAP_SKIP_LISTENER, 1);
		return 1;
	}
	if (!listener_v4 || own_socket(ctx))
		return 1;
	addr_v4mapped(dst, ctx->user_ip4);
	if (!capture(ctx, dst, port))
		return 1;
	ctx->user_ip4 = listener_v4;
	ctx->user_port = bpf_htons(listener_port);
	stat_inc(&cap_stats, CAP_REWRITE, 1);
	return 1;
}

SEC("cgroup/connect6")
int capture_connect6(struct bpf_sock_addr *ctx)
{
	__u32 dst[4];
	__u16 port;
	int mapped, is_listener;

	if (ctx->protocol != 6 /* IPPROTO_TCP */)
		return 1;
	stat_inc(&cap_stats, CAP_CONNECT, 1);
	dst[0] = ctx->user_ip6[0];
	dst[1] = ctx->user_ip6[1];
	dst[2] = ctx->user_ip6[2];
	dst[3] = ctx->user_ip6[3];
	port = bpf_ntohs((__u16)ctx->user_port);
	mapped = addr_is_v4mapped(dst);
	if (mapped)
		is_listener = listener_v4 && dst[3] == listener_v4;
	else
		is_listener = dst[0] == listener_v6[0] && dst[1] == listener_v6[1] &&
			      dst[2] == listener_v6[2] && dst[3] == listener_v6[3];
	if (is_listener && port == listener_port) {
		stat_inc(&cap_stats, CAP_SKIP_LISTENER, 1);
		return 1;
	}
	if (mapped && !listener_v4)
		return 1;
	if (!mapped && !(listener_v6[0] | listener_v6[1] | listener_v6[2] | listener_v6[3]))
		return 1;
	if (own_socket(ctx) || !capture(ctx, dst, port))
		return 1;
	if (mapped) {
		/* A dual-stack socket dialing ::ffff:VIP goes to ::ffff:listener. */
		ctx->user_ip6[3] = listener_v4;
	} else {
		ctx->user_ip6[0] = listener_v6[0];
		ctx->user_ip6[1] = listener_v6[1];
		ctx->user_ip6[2] = listener_v6[2];
		ctx->user_ip6[3] = listener_v6[3];
	}
	ctx->user_port = bpf_htons(listener_port);
	stat_inc(&cap_stats, CAP_REWRITE, 1);
	return 1;
}

SEC("sockops")
int capture_sockops(struct bpf_sock_ops *ops)
{
	struct orig_dst *o;
	struct tuple t = {};
	__u64 cookie;

	if (ops->op != BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB)
		return 1;
	cookie = bpf_get_socket_cookie(ops);
	o = bpf_map_lookup_elem(&orig_cookie, &cookie);
	if (!o)
		return 1;
	if (sock_ops_tuple(ops, &t) == 0) {
		/* Written before the client's ACK leaves, so before the
		 * terminator's accept() returns. */
		if (bpf_map_update_elem(&orig_tuple, &t, o, BPF_ANY))
			stat_inc(&cap_stats, CAP_MAP_ERR, 1);
		else
			stat_inc(&cap_stats, CAP_HANDOVER, 1);
	}
	bpf_map_delete_elem(&orig_cookie, &cookie);
	return 1;
}
