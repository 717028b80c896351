/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * What every stage of the data plane shares: the includes, the per-packet
 * context (struct veer_pkt) and the hook (XDP or TC) it runs in.
 *
 * Every function of bpf/lib is static __always_inline and takes the hook as
 * a compile-time constant, so each entry point gets its own straight copy of
 * the logic with the other hook's branches folded away: the shared code is
 * written once, the verifier sees no BPF-to-BPF calls (which would need
 * packet pointers to cross a call boundary).
 */
#ifndef VEER_LIB_COMMON_H
#define VEER_LIB_COMMON_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "veer/abi.h"
#include "veer/hash.h"

#ifndef __always_inline
#define __always_inline inline __attribute__((always_inline))
#endif
#define VEER_INLINE static __always_inline

/* <linux/socket.h> is not usable from BPF; the FIB helpers want these. */
#ifndef AF_INET
#define AF_INET 2
#endif
#ifndef AF_INET6
#define AF_INET6 10
#endif

enum veer_hook {
	VEER_HOOK_XDP = 0,
	VEER_HOOK_TC = 1,
};

/* "Keep going": a stage returns either this or the enum veer_reason that ends
 * the packet's journey. */
#define VEER_CONTINUE (-1)

struct veer_pkt {
	void *ctx;       /* struct xdp_md * or struct __sk_buff * */
	void *data;      /* first byte of the Ethernet header */
	void *data_end;  /* end of the directly readable bytes */
	__u32 len;       /* whole frame length: what bytes_* count, and the limit
			  * IP length fields are checked against (for a
			  * non-linear skb it exceeds data_end - data) */
	__u32 ifindex;   /* ingress interface: where the FIB lookup starts */
};

/* Verdict codes of the hook. */
VEER_INLINE int veer_act_pass(const enum veer_hook hook)
{
	return hook == VEER_HOOK_XDP ? XDP_PASS : TC_ACT_OK;
}

VEER_INLINE int veer_act_drop(const enum veer_hook hook)
{
	return hook == VEER_HOOK_XDP ? XDP_DROP : TC_ACT_SHOT;
}

/* Helpers that may move or resize skb data (bpf_l4_csum_replace,
 * bpf_skb_pull_data) invalidate every packet pointer the verifier knows of;
 * this re-reads them from the context. XDP helpers used here never do. */
VEER_INLINE void veer_pkt_reload(struct veer_pkt *pkt, const enum veer_hook hook)
{
	if (hook == VEER_HOOK_TC) {
		struct __sk_buff *skb = pkt->ctx;

		pkt->data = (void *)(long)skb->data;
		pkt->data_end = (void *)(long)skb->data_end;
	}
}

#endif /* VEER_LIB_COMMON_H */
