/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Incremental Internet checksum updates (RFC 1624: HC' = ~(~HC + ~m + m')).
 * A "diff" accumulates ~m + m' over every changed field in 32-bit ones'
 * complement arithmetic; it is applied once per checksum. All values are raw
 * header words as they sit in memory (network order): a ones' complement sum
 * is byte-order neutral as long as data and checksum use the same order.
 * Fields must sit at even offsets of the checksummed data (addresses, ports,
 * the TTL/protocol word all do).
 *
 * Also the hook-specific commit of an L4 diff: XDP frames carry complete
 * checksums, so XDP writes the field; a TC skb may be CHECKSUM_PARTIAL
 * (veth with TX offload) or CHECKSUM_COMPLETE, which only the kernel's
 * bpf_l4_csum_replace handles right.
 */
#ifndef VEER_LIB_CSUM_H
#define VEER_LIB_CSUM_H

#include "lib/common.h"

VEER_INLINE __u32 veer_csum_add(__u32 sum, __u32 v)
{
	sum += v;
	return sum + (sum < v); /* end-around carry */
}

VEER_INLINE __u32 veer_csum_diff32(__u32 diff, __u32 from, __u32 to)
{
	return veer_csum_add(veer_csum_add(diff, ~from), to);
}

VEER_INLINE __u32 veer_csum_diff16(__u32 diff, __u16 from, __u16 to)
{
	return veer_csum_add(veer_csum_add(diff, (__u16)~from), to);
}

VEER_INLINE __u32 veer_csum_diff_addr(__u32 diff, const __u32 *from, const __u32 *to, __u8 family)
{
	diff = veer_csum_diff32(diff, from[0], to[0]);
	if (family == VEER_AF_INET6) {
		diff = veer_csum_diff32(diff, from[1], to[1]);
		diff = veer_csum_diff32(diff, from[2], to[2]);
		diff = veer_csum_diff32(diff, from[3], to[3]);
	}
	return diff;
}

/* Folds a 32-bit sum to 16 bits and complements it. */
VEER_INLINE __u16 veer_csum_fold(__u32 sum)
{
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)~sum;
}

/* The checksum field after adding diff to the data it covers. */
VEER_INLINE __u16 veer_csum_apply(__u16 check, __u32 diff)
{
	return veer_csum_fold(veer_csum_add(diff, (__u16)~check));
}

/* What the rewrite changed under the L4 checksum. */
struct veer_l4_diff {
	__u32 pseudo;   /* address change: in the pseudo-header, not in the L4 bytes */
	__u32 port;     /* port change: in the L4 bytes themselves */
	__u32 ip6_hdr;  /* IPv6 only: net change of the IPv6 header bytes (address
			 * and hop limit), for skb->csum of a CHECKSUM_COMPLETE skb */
	__u8 is_udp;
	__u8 is_v4;
};

/* Applies the diff to the TCP/UDP checksum field (check, at check_off).
 * UDP over IPv4 with checksum 0 means "none" and stays 0; a UDP checksum that
 * computes to 0 is sent as 0xffff (RFC 768).
 * TC: the helpers invalidate packet pointers; the caller reloads them
 * (veer_pkt_reload) before touching the packet again. */
VEER_INLINE void veer_l4_csum_commit(struct veer_pkt *pkt, const enum veer_hook hook,
				     __sum16 *check, __u32 check_off, const struct veer_l4_diff *d)
{
	if (hook == VEER_HOOK_XDP) {
		__u16 old = *check, new;

		if (d->is_udp && d->is_v4 && old == 0)
			return;
		new = veer_csum_apply(old, veer_csum_add(d->pseudo, d->port));
		if (d->is_udp && new == 0)
			new = 0xffff;
		*check = new;
	} else {
		struct __sk_buff *skb = pkt->ctx;
		/* BPF_F_MARK_MANGLED_0: leave a 0 UDP checksum alone, write a
		 * computed 0 as 0xffff. Size 0 in the flags: "to" is a
		 * precomputed diff. Two calls, because for CHECKSUM_PARTIAL the
		 * kernel must apply the pseudo-header part only. */
		__u64 udp = d->is_udp ? BPF_F_MARK_MANGLED_0 : 0;

		bpf_l4_csum_replace(skb, check_off, 0, d->pseudo, BPF_F_PSEUDO_HDR | udp);
		bpf_l4_csum_replace(skb, check_off, 0, d->port, udp);
		/* With BPF_F_PSEUDO_HDR the helper also takes the L4 checksum
		 * change out of skb->csum of a CHECKSUM_COMPLETE skb. Right for
		 * IPv4, whose header checksum absorbs the address change; wrong
		 * for IPv6, where the address change itself is in skb->csum
		 * (fixed in 6.16 only behind a new BPF_F_IPV6 flag that 6.1
		 * rejects). Put the IPv6 header change back; the helper does
		 * nothing unless the skb is CHECKSUM_COMPLETE. */
		if (!d->is_v4)
			bpf_csum_update(skb, d->ip6_hdr);
	}
}

#endif /* VEER_LIB_CSUM_H */
