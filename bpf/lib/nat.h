/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Address translation: DNAT of a client packet to its backend (daddr and
 * dport; the client address is preserved) and the reverse translation of a
 * backend's reply (saddr and sport back to the VIP), with the TTL / hop limit
 * decrement a router owes. Writes the IP header and its checksum directly and
 * returns what changed under the L4 checksum (applied by veer_l4_csum_commit,
 * which differs between XDP and TC).
 */
#ifndef VEER_LIB_NAT_H
#define VEER_LIB_NAT_H

#include "lib/common.h"
#include "lib/csum.h"
#include "lib/parse.h"

/* Where a packet goes: the address/port to write and whose counters it
 * belongs to. */
struct veer_nat_target {
	struct veer_addr addr; /* new daddr (to backend) or new saddr (reply: VIP) */
	__be16 port;           /* new dport (to backend) or new sport (reply: VIP port) */
	__u16 service_id;
	__u8 variant;
	__u8 to_client;        /* 0: client -> backend, 1: reply backend -> client */
};

VEER_INLINE void veer_target_from_flow(const struct veer_flow *f, __u16 service_id,
					struct veer_nat_target *t)
{
	t->addr = f->backend;
	t->port = f->backend_port;
	t->service_id = service_id;
	t->variant = f->variant;
	t->to_client = 0;
}

/* A reply: the VIP and port of the backend's service go back as the source;
 * the counters are those of the flow's variant. */
VEER_INLINE void veer_target_from_reply(const struct veer_backend_rev *r, const struct veer_flow *f,
					struct veer_nat_target *t)
{
	t->addr = r->vip;
	t->port = r->vport;
	t->service_id = r->service_id;
	t->variant = f->variant;
	t->to_client = 1;
}

/* A router must not forward what would leave with TTL 0: left to the stack,
 * untouched, which answers with ICMP time exceeded. */
VEER_INLINE int veer_check_ttl(const struct veer_hdrs *h)
{
	__u8 ttl = h->family == VEER_AF_INET ? h->ip4->ttl : h->ip6->hop_limit;

	return ttl <= 1 ? VEER_R_PASS_TTL_EXPIRED : VEER_CONTINUE;
}

VEER_INLINE void veer_nat_ipv4(struct iphdr *ip, const struct veer_nat_target *t,
			       struct veer_l4_diff *d)
{
	__be32 *field = t->to_client ? &ip->saddr : &ip->daddr;
	__be32 old_addr = *field, new_addr = t->addr.addr[0];
	/* TTL shares a 16-bit checksum word with the protocol byte. */
	__u16 *ttl_word = (__u16 *)&ip->ttl;
	__u16 old_ttl_word = *ttl_word;
	__u32 hdr_diff;

	*field = new_addr;
	ip->ttl--;
	d->pseudo = veer_csum_diff32(0, old_addr, new_addr);
	hdr_diff = veer_csum_diff16(d->pseudo, old_ttl_word, *ttl_word);
	ip->check = veer_csum_apply(ip->check, hdr_diff);
	d->is_v4 = 1;
}

VEER_INLINE void veer_nat_ipv6(struct ipv6hdr *ip6, const struct veer_nat_target *t,
			       struct veer_l4_diff *d)
{
	__u32 *field = t->to_client ? ip6->saddr.in6_u.u6_addr32 : ip6->daddr.in6_u.u6_addr32;
	__u16 *hop_word = (__u16 *)&ip6->nexthdr; /* next header + hop limit */
	__u16 old_hop_word = *hop_word;

	d->pseudo = veer_csum_diff_addr(0, field, t->addr.addr, VEER_AF_INET6);
	field[0] = t->addr.addr[0];
	field[1] = t->addr.addr[1];
	field[2] = t->addr.addr[2];
	field[3] = t->addr.addr[3];
	ip6->hop_limit--;
	d->ip6_hdr = veer_csum_diff16(d->pseudo, old_hop_word, *hop_word);
	d->is_v4 = 0;
}

/* Rewrites addresses, ports and TTL; fills d for the L4 checksum commit.
 * Needs veer_check_l4 and veer_check_ttl to have passed. */
VEER_INLINE void veer_nat_rewrite(struct veer_hdrs *h, const struct veer_nat_target *t,
				  struct veer_l4_diff *d)
{
	__be16 *port = t->to_client ? &h->ports->src : &h->ports->dst;

	if (h->family == VEER_AF_INET)
		veer_nat_ipv4(h->ip4, t, d);
	else
		veer_nat_ipv6(h->ip6, t, d);
	d->port = veer_csum_diff16(0, *port, t->port);
	*port = t->port;
	d->is_udp = h->proto == VEER_PROTO_UDP;
}

#endif /* VEER_LIB_NAT_H */
