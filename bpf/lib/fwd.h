/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Forwarding of a translated packet: bpf_fib_lookup from the ingress
 * interface, new Ethernet addresses, and the hook's way out (XDP_TX or
 * bpf_redirect; TC: bpf_redirect_peer into a veth peer's namespace where
 * veerd flagged the egress (veer_egress), else bpf_redirect, or
 * bpf_redirect_neigh when the kernel has no neighbour entry yet). Whatever the FIB cannot forward goes to the stack,
 * already rewritten. Counts the reason of every verdict it returns.
 * A fresh next-hop cache entry (lib/fib_cache.h) replaces the lookup: same
 * MACs, same way out; every SUCCESS of the lookup refreshes the entry.
 */
#ifndef VEER_LIB_FWD_H
#define VEER_LIB_FWD_H

#include "lib/common.h"
#include "lib/fib_cache.h"
#include "lib/parse.h"
#include "lib/stats.h"

/* Reads the rewritten headers, so call it before helpers that invalidate
 * packet pointers (TC's checksum helpers).
 * tot_len: a non-zero tot_len makes the kernel check it against the route's
 * MTU. Right for an XDP frame (one packet); wrong for a TC skb, which may be
 * a GSO/GRO aggregate of up to 64 kB: every one of those would come back
 * FRAG_NEEDED. With tot_len 0 the skb variant checks the skb itself
 * (is_skb_forwardable, GSO-aware). */
VEER_INLINE void veer_fib_params(const struct veer_pkt *pkt, const enum veer_hook hook,
				 const struct veer_hdrs *h, struct bpf_fib_lookup *p)
{
	__builtin_memset(p, 0, sizeof(*p));
	p->l4_protocol = h->proto;
	p->sport = h->ports->src;
	p->dport = h->ports->dst;
	p->ifindex = pkt->ifindex;
	if (h->family == VEER_AF_INET) {
		struct iphdr *ip = h->ip4;

		p->family = AF_INET;
		p->tos = ip->tos;
		if (hook == VEER_HOOK_XDP)
			p->tot_len = bpf_ntohs(ip->tot_len);
		p->ipv4_src = ip->saddr;
		p->ipv4_dst = ip->daddr;
	} else {
		struct ipv6hdr *ip6 = h->ip6;

		p->family = AF_INET6;
		/* traffic class + flow label: the first word without the version */
		p->flowinfo = *(__be32 *)ip6 & bpf_htonl(0x0FFFFFFF);
		if (hook == VEER_HOOK_XDP)
			p->tot_len = sizeof(*ip6) + bpf_ntohs(ip6->payload_len);
		__builtin_memcpy(p->ipv6_src, &ip6->saddr, sizeof(p->ipv6_src));
		__builtin_memcpy(p->ipv6_dst, &ip6->daddr, sizeof(p->ipv6_dst));
	}
}

/* The way out of a SUCCESS: new Ethernet addresses, then XDP_TX back out of
 * the ingress interface or a redirect. egress_flags: VEER_EGRESS_F_* of
 * egress_ifindex; only the TC hook acts on them (XDP stores 0 anyway). */
VEER_INLINE int veer_send(struct veer_pkt *pkt, const enum veer_hook hook, const __u8 *dmac,
			  const __u8 *smac, __u32 egress_ifindex, __u8 egress_flags, __u32 fwd_reason)
{
	struct ethhdr *eth;

	/* TC: the checksum helpers moved the packet pointers; find the
	 * Ethernet header again (always there: parsing saw it). */
	veer_pkt_reload(pkt, hook);
	eth = pkt->data;
	if ((void *)(eth + 1) > pkt->data_end)
		return veer_end(hook, VEER_R_DROP_STATE_MISSING);
	__builtin_memcpy(eth->h_dest, dmac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, smac, ETH_ALEN);

	veer_count_reason(fwd_reason);
	if (hook == VEER_HOOK_XDP && egress_ifindex == pkt->ifindex)
		return XDP_TX;
	/* The hook is a constant after inlining: XDP never sees this helper
	 * (the verifier allows it in TC programs only). */
	if (hook == VEER_HOOK_TC && (egress_flags & VEER_EGRESS_F_PEER))
		return bpf_redirect_peer(egress_ifindex, 0);
	return bpf_redirect(egress_ifindex, 0);
}

/* fwd_reason: VEER_R_FWD_TO_BACKEND or VEER_R_FWD_TO_CLIENT. cache_key: the
 * packet's next-hop cache entry, refreshed on SUCCESS (now: this packet's
 * clock reading). */
VEER_INLINE int veer_forward(struct veer_pkt *pkt, const enum veer_hook hook,
			     struct bpf_fib_lookup *p, __u32 fwd_reason,
			     const struct veer_fib_cache_key *cache_key, __u64 now)
{
	long rc = bpf_fib_lookup(pkt->ctx, p, sizeof(*p), 0);
	__u8 egress_flags;

	switch (rc) {
	case BPF_FIB_LKUP_RET_SUCCESS:
		break;
	case BPF_FIB_LKUP_RET_BLACKHOLE:
	case BPF_FIB_LKUP_RET_UNREACHABLE:
	case BPF_FIB_LKUP_RET_PROHIBIT:
		return veer_end(hook, VEER_R_DROP_FIB_UNREACHABLE);
	case BPF_FIB_LKUP_RET_NO_NEIGH:
		if (hook == VEER_HOOK_TC) {
			/* The kernel resolves the neighbour (the FIB left the
			 * next hop in ipv4_dst/ipv6_dst) and queues the packet
			 * meanwhile. */
			struct bpf_redir_neigh nh = {};

			if (p->family == AF_INET) {
				nh.nh_family = AF_INET;
				nh.ipv4_nh = p->ipv4_dst;
			} else {
				nh.nh_family = AF_INET6;
				__builtin_memcpy(nh.ipv6_nh, p->ipv6_dst, sizeof(nh.ipv6_nh));
			}
			veer_count_reason(fwd_reason);
			return bpf_redirect_neigh(p->ifindex, &nh, sizeof(nh), 0);
		}
		/* XDP cannot wait for ARP/ND: the stack forwards this one and
		 * resolves the neighbour for the next. */
		return veer_end(hook, VEER_R_PASS_FIB_TO_STACK);
	default:
		/* NOT_FWDED (local destination), FWD_DISABLED, FRAG_NEEDED,
		 * UNSUPP_LWT, NO_SRC_ADDR, errors: the stack knows better. */
		return veer_end(hook, VEER_R_PASS_FIB_TO_STACK);
	}

	egress_flags = hook == VEER_HOOK_TC ? veer_egress_flags(p->ifindex) : 0;
	veer_fib_cache_store(cache_key, p, egress_flags, now);
	return veer_send(pkt, hook, p->dmac, p->smac, p->ifindex, egress_flags, fwd_reason);
}

/* A fresh cache entry stands for a SUCCESS of the lookup. */
VEER_INLINE int veer_forward_cached(struct veer_pkt *pkt, const enum veer_hook hook,
				    const struct veer_fib_cache_entry *e, __u32 fwd_reason)
{
	return veer_send(pkt, hook, e->dmac, e->smac, e->egress_ifindex, e->egress_flags, fwd_reason);
}

#endif /* VEER_LIB_FWD_H */
