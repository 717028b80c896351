/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Next-hop cache: what bpf_fib_lookup answered for a destination, kept for
 * one second so that established flows and replies (many packets to the same
 * backend or client) skip the lookup, about half the cost of a forwarded
 * packet.
 *
 * A per-CPU array (no shared cache lines, no locks) of VEER_FIB_CACHE_ENTRIES
 * direct-mapped entries; the index is a hash of (destination, ingress
 * ifindex), and a colliding destination simply overwrites the entry.
 *
 * Freshness: only a SUCCESS of the full lookup is stored, with an expiry of
 * now + VEER_FIB_CACHE_TTL_NS (1 s). Route, neighbour (MAC), MTU and link
 * changes are therefore picked up within one second; until then packets to a
 * cached destination keep the old next hop. NO_NEIGH, unreachable,
 * FRAG_NEEDED, local and every other outcome are never stored: those packets
 * take the full lookup every time, exactly as without the cache.
 *
 * What the cache does NOT see (documented limits of keying on the
 * destination alone): policy routing on source, TOS or ports, and multipath
 * (ECMP) routes, whose next hop the kernel picks per flow: within a second,
 * all packets to one destination that arrive on one interface use the next
 * hop of the packet that filled the entry.
 *
 * The entry type is in abi.h: veerd only pins the map, but the BPF tests and
 * the benchmark read it.
 */
#ifndef VEER_LIB_FIB_CACHE_H
#define VEER_LIB_FIB_CACHE_H

#include "lib/common.h"
#include "lib/parse.h"

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, VEER_FIB_CACHE_ENTRIES);
	__type(key, __u32);
	__type(value, struct veer_fib_cache_entry);
} veer_fib_cache SEC(".maps");

/* ifindex -> VEER_EGRESS_F_* (abi.h): looked up once per full FIB lookup,
 * remembered in the cache entry. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, VEER_EGRESS_MAX);
	__type(key, __u32);
	__type(value, __u32);
} veer_egress SEC(".maps");

VEER_INLINE __u8 veer_egress_flags(__u32 ifindex)
{
	__u32 *flags = bpf_map_lookup_elem(&veer_egress, &ifindex);

	return flags ? (__u8)*flags : 0;
}

/* What an entry must match for a packet, and where it lives. Built from the
 * rewritten headers, before TC's checksum helpers invalidate them. */
struct veer_fib_cache_key {
	__u32 dst[4];
	__u32 ifindex;
	__u32 l3_len;  /* IP header + payload as the header says */
	__u32 index;   /* entry of veer_fib_cache */
	__u8 family;
	__u8 gso;      /* TC: a GSO skb, forwardable whatever its length */
};

VEER_INLINE void veer_fib_cache_key_of(const struct veer_pkt *pkt, const enum veer_hook hook,
				       const struct veer_hdrs *h, struct veer_fib_cache_key *k)
{
	__u32 mix;

	k->ifindex = pkt->ifindex;
	k->family = h->family;
	if (h->family == VEER_AF_INET) {
		k->dst[0] = h->ip4->daddr;
		k->dst[1] = 0;
		k->dst[2] = 0;
		k->dst[3] = 0;
		k->l3_len = bpf_ntohs(h->ip4->tot_len);
	} else {
		__builtin_memcpy(k->dst, &h->ip6->daddr, sizeof(k->dst));
		k->l3_len = sizeof(struct ipv6hdr) + bpf_ntohs(h->ip6->payload_len);
	}
	/* The full TC lookup (tot_len 0) lets a GSO skb through whatever its
	 * length (is_skb_forwardable): so does a hit. */
	k->gso = hook == VEER_HOOK_TC && ((struct __sk_buff *)pkt->ctx)->gso_size != 0;
	/* Multiplicative (Fibonacci) hashing: the top bits of the product
	 * depend on every bit of the mixed words. */
	mix = k->dst[0] ^ k->dst[1] ^ k->dst[2] ^ k->dst[3] ^ k->ifindex;
	k->index = (mix * 0x9E3779B1u) >> (32 - VEER_FIB_CACHE_BITS);
}

/* The fresh entry for this packet, or NULL (then do the full lookup). The
 * pointer stays valid for the rest of the program: per-CPU value, and the
 * program cannot migrate. */
VEER_INLINE const struct veer_fib_cache_entry *veer_fib_cache_find(const struct veer_fib_cache_key *k,
								   __u64 now)
{
	const struct veer_fib_cache_entry *e = bpf_map_lookup_elem(&veer_fib_cache, &k->index);

	if (!e)
		return NULL;
	if (e->family != k->family || e->ingress_ifindex != k->ifindex || e->dst[0] != k->dst[0] ||
	    e->dst[1] != k->dst[1] || e->dst[2] != k->dst[2] || e->dst[3] != k->dst[3])
		return NULL;
	if ((__s64)(now - e->expires_ns) >= 0)
		return NULL;
	/* The full lookup would answer FRAG_NEEDED (XDP: tot_len > route
	 * MTU; TC: longer than the device takes): let it. */
	if (!k->gso && k->l3_len > e->mtu)
		return NULL;
	return e;
}

/* After a SUCCESS of the full lookup (p as the helper left it: smac, dmac,
 * egress ifindex, mtu_result). */
VEER_INLINE void veer_fib_cache_store(const struct veer_fib_cache_key *k, const struct bpf_fib_lookup *p,
				      __u8 egress_flags, __u64 now)
{
	struct veer_fib_cache_entry *e;

	/* Since 5.12 a SUCCESS leaves the MTU in mtu_result (XDP: the route's,
	 * TC with tot_len 0: the device's). A kernel that does not leaves XDP's
	 * tot_len there (a length the FIB approved: still a safe limit) and
	 * TC's 0: nothing to check a hit against, so no entry. */
	if (p->mtu_result == 0)
		return;
	e = bpf_map_lookup_elem(&veer_fib_cache, &k->index);
	if (!e)
		return;
	e->dst[0] = k->dst[0];
	e->dst[1] = k->dst[1];
	e->dst[2] = k->dst[2];
	e->dst[3] = k->dst[3];
	e->ingress_ifindex = k->ifindex;
	e->egress_ifindex = p->ifindex;
	e->mtu = p->mtu_result;
	__builtin_memcpy(e->smac, p->smac, ETH_ALEN);
	__builtin_memcpy(e->dmac, p->dmac, ETH_ALEN);
	e->family = k->family;
	e->egress_flags = egress_flags;
	/* One second: the bound on how long a route or neighbour change can
	 * go unnoticed (see the top of this file). */
	e->expires_ns = now + VEER_FIB_CACHE_TTL_NS;
}

#endif /* VEER_LIB_FIB_CACHE_H */
