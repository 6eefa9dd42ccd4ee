/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Network namespace cookies, for the programs whose keys carry them
 * (capture, fast path). */
#ifndef __PEERD_NETNS_H__
#define __PEERD_NETNS_H__

#include "common.h"

/* netns_aware is set from Go (CollectionSpec.Variables) when the kernel has
 * bpf_get_netns_cookie in sock_ops and sk_msg (5.15). Read-only: on older
 * kernels the verifier prunes the call as dead code, and keys carry 0. */
volatile const __u8 netns_aware = 0;

/* sk_netns is the netns cookie of ctx's socket, 0 without netns_aware. */
static __always_inline __u64 sk_netns(void *ctx)
{
	if (!netns_aware)
		return 0;
	return bpf_get_netns_cookie(ctx);
}

#endif /* __PEERD_NETNS_H__ */
