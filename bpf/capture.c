//go:build ignore

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* Layer 1, transparent capture: cgroup/connect4 and cgroup/connect6 rewrite
 * connections to a virtual IP:port to the terminator's outbound listener and
 * remember the original destination by socket cookie; the capture sockops
 * program moves that record to a map keyed by the connection's 4-tuple once
 * the client side is established, which is what the terminator can look up
 * from its accepted socket (remote = client, local = listener), with the
 * connection's network namespace cookie.
 *
 * Workloads in their own network namespace (containers, pods): the
 * terminator opens its listener at the same address inside each workload
 * namespace, so the rewrite target does not change, but a connect from a
 * namespace other than the daemon's (host_netns) is rewritten only once
 * that namespace is in workload_netns (its listeners are up). Before, the
 * connect is refused (EPERM) and the namespace announced on netns_events,
 * at most once per ANNOUNCE_NS per namespace, for the manager to open the
 * listeners there. Without netns_aware (kernels before 5.15) there is no
 * namespace check: every connect is treated as the host's, as before. */
#include "common.h"
#include "netns.h"

char __license[] SEC("license") = "Dual BSD/GPL";

/* Set from Go before load (CollectionSpec.Variables). */
volatile const __u32 listener_v4 = 0;     /* network order; 0 = no IPv4 listener */
volatile const __u32 listener_v6[4] = {}; /* network order; all 0 = no IPv6 listener */
volatile const __u16 listener_port = 0;   /* host order */
volatile const __u32 own_mark = 0;        /* SO_MARK of the terminator's sockets; 0 = none */
volatile const __u64 daemon_cgid = 0;     /* cgroup id of the daemon; 0 = none */
volatile const __u64 host_netns = 0;      /* netns cookie of the daemon's namespace */

/* How often a namespace that is not ready is announced again. */
#define ANNOUNCE_NS 1000000000ULL

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
	CAP_NETNS_NOT_READY,
	CAP_NETNS_REWRITE,
	CAP_NETNS_EVENT_DROP,
	CAP_STAT_MAX,
};

/* One netns_events record: a captured connect came from a namespace that
 * is not in workload_netns. */
struct netns_event {
	__u64 netns_cookie;
	__u64 cgroup_id;
	__u32 pid; /* tgid */
	__u32 pad;
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

/* Workload namespaces whose listeners are up: netns cookie -> flags. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, __u32);
} workload_netns SEC(".maps");

/* When each not-ready namespace was last announced (bpf_ktime_get_ns). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, __u64);
} netns_announced SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 64 * 1024);
} netns_events SEC(".maps");

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

/* announce tells user space that namespace ns is not ready, unless it did
 * less than ANNOUNCE_NS ago. */
static __always_inline void announce(__u64 ns)
{
	struct netns_event ev = {};
	__u64 now = bpf_ktime_get_ns();
	__u64 *last = bpf_map_lookup_elem(&netns_announced, &ns);

	if (last && now - *last < ANNOUNCE_NS)
		return;
	ev.netns_cookie = ns;
	ev.cgroup_id = bpf_get_current_cgroup_id();
	ev.pid = bpf_get_current_pid_tgid() >> 32;
	if (bpf_ringbuf_output(&netns_events, &ev, sizeof(ev), 0)) {
		stat_inc(&cap_stats, CAP_NETNS_EVENT_DROP, 1);
		return;
	}
	bpf_map_update_elem(&netns_announced, &ns, &now, BPF_ANY);
}

enum { PASS = 0, REWRITE = 1, REFUSE = 2 };

/* capture looks dst:port up and, on a hit, records the original destination
 * under the socket cookie. It returns REWRITE when the caller should
 * rewrite, REFUSE when the connect comes from a workload namespace whose
 * listeners are not up yet, PASS otherwise. */
static __always_inline int capture(struct bpf_sock_addr *ctx, const __u32 *dst, __u16 port)
{
	struct vip_key k = {};
	struct vip_val *v;
	struct orig_dst o = {};
	__u64 cookie, ns;
	int other_ns;

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
			return PASS;
	}
	ns = sk_netns(ctx);
	other_ns = netns_aware && ns != host_netns;
	if (other_ns && !bpf_map_lookup_elem(&workload_netns, &ns)) {
		/* 127.0.0.1 there is not the terminator's: refuse rather
		 * than send the workload to whatever listens there. */
		stat_inc(&cap_stats, CAP_NETNS_NOT_READY, 1);
		announce(ns);
		return REFUSE;
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
		return PASS;
	}
	if (other_ns)
		stat_inc(&cap_stats, CAP_NETNS_REWRITE, 1);
	return REWRITE;
}

SEC("cgroup/connect4")
int capture_connect4(struct bpf_sock_addr *ctx)
{
	__u32 dst[4];
	__u16 port;
	int verdict;

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
	verdict = capture(ctx, dst, port);
	if (verdict == REFUSE)
		return 0; /* EPERM */
	if (verdict != REWRITE)
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
	int mapped, is_listener, verdict;

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
	if (own_socket(ctx))
		return 1;
	verdict = capture(ctx, dst, port);
	if (verdict == REFUSE)
		return 0; /* EPERM */
	if (verdict != REWRITE)
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
	t.netns_cookie = sk_netns(ops);
	if (sock_ops_tuple(ops, &t) == 0) {
		/* Keyed with the namespace too: the terminator's listener in
		 * every workload namespace sees the same loopback tuples.
		 * Written before the client's ACK leaves, so before the
		 * terminator's accept() returns. */
		if (bpf_map_update_elem(&orig_tuple, &t, o, BPF_ANY))
			stat_inc(&cap_stats, CAP_MAP_ERR, 1);
		else
			stat_inc(&cap_stats, CAP_HANDOVER, 1);
	}
	bpf_map_delete_elem(&orig_cookie, &cookie);
	return 1;
}
