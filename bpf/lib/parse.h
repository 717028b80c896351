/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Header parsing: a cursor that moves over the frame and checks bounds
 * itself, and the parsers for Ethernet (+ one 802.1Q/802.1ad tag), IPv4 (any
 * IHL), IPv6 (fixed header only), and the TCP/UDP ports. Parsing only reads;
 * every malformed or unsupported input ends in a PASS reason of SPEC §2.7.
 * The full L4 header is checked later (veer_check_l4), once the packet is
 * known to belong to a service.
 */
#ifndef VEER_LIB_PARSE_H
#define VEER_LIB_PARSE_H

#include "lib/common.h"

#define VEER_ETH_P_8021Q 0x8100
#define VEER_ETH_P_8021AD 0x88A8
#define VEER_IP_MF 0x2000
#define VEER_IP_OFFSET 0x1FFF

/* Not in the uapi headers. */
struct veer_vlan_hdr {
	__be16 tci;
	__be16 encap_proto;
};

/* The first 4 bytes of TCP and UDP alike. */
struct veer_ports {
	__be16 src;
	__be16 dst;
};

struct veer_cursor {
	void *pos;
	void *end;
};

/* Returns the next n bytes and moves past them, or NULL if fewer remain.
 * n is a constant or a small bounded value: the verifier learns the range of
 * the returned pointer from the comparison with end. */
VEER_INLINE void *veer_cursor_take(struct veer_cursor *c, __u32 n)
{
	void *p = c->pos;

	if (p + n > c->end)
		return NULL;
	c->pos = p + n;
	return p;
}

/* What parsing found. Offsets are from the start of the frame, so a TC
 * program can find the headers again after a helper invalidated pointers. */
struct veer_hdrs {
	struct ethhdr *eth;
	struct iphdr *ip4;     /* exactly one of ip4/ip6 is set */
	struct ipv6hdr *ip6;
	struct veer_ports *ports; /* start of the TCP/UDP header */
	__sum16 *l4_check;     /* TCP/UDP checksum field; set by veer_check_l4 */
	__u32 l4_off;
	__u32 l4_check_off;    /* offset of *l4_check from the frame start */
	__u32 l4_len;          /* L4 length as the IP header declares it */
	__u32 payload_off;     /* first byte after the TCP/UDP header; set by veer_check_l4 */
	__u32 payload_len;     /* bytes after the TCP/UDP header (IP lengths, not the
				* frame: Ethernet padding is not payload); veer_check_l4 */
	__u8 family;           /* VEER_AF_* */
	__u8 proto;            /* VEER_PROTO_* */
	__u8 tcp_flags;        /* TCP flags byte (FIN..CWR); 0 for UDP; veer_check_l4 */
	__be32 tcp_seq;        /* TCP sequence number as on the wire; veer_check_l4 */
	__be32 tcp_ack;        /* TCP acknowledgment number as on the wire; veer_check_l4 */
};

#define VEER_TCP_FIN 0x01
#define VEER_TCP_SYN 0x02
#define VEER_TCP_RST 0x04
#define VEER_TCP_ACK 0x10


VEER_INLINE int veer_is_ipv6_ext_hdr(__u8 nexthdr)
{
	switch (nexthdr) {
	case 0:   /* hop-by-hop */
	case 43:  /* routing */
	case 44:  /* fragment */
	case 50:  /* ESP */
	case 51:  /* AH */
	case 60:  /* destination options */
	case 135: /* mobility */
	case 139: /* HIP */
	case 140: /* shim6 */
		return 1;
	default:
		return 0;
	}
}

/* Ethernet and at most one VLAN tag; returns the ethertype after them or a
 * reason. */
VEER_INLINE int veer_parse_eth(struct veer_cursor *c, struct veer_hdrs *h, __be16 *ethertype)
{
	struct ethhdr *eth = veer_cursor_take(c, sizeof(*eth));
	struct veer_vlan_hdr *vlan;
	__be16 proto;

	if (!eth)
		return VEER_R_PASS_TRUNCATED_ETH;
	h->eth = eth;
	proto = eth->h_proto;
	if (proto == bpf_htons(VEER_ETH_P_8021Q) || proto == bpf_htons(VEER_ETH_P_8021AD)) {
		vlan = veer_cursor_take(c, sizeof(*vlan));
		if (!vlan)
			return VEER_R_PASS_TRUNCATED_ETH;
		proto = vlan->encap_proto;
		if (proto == bpf_htons(VEER_ETH_P_8021Q) || proto == bpf_htons(VEER_ETH_P_8021AD))
			return VEER_R_PASS_VLAN_UNSUPPORTED;
	}
	*ethertype = proto;
	return VEER_CONTINUE;
}

VEER_INLINE int veer_parse_ipv4(struct veer_pkt *pkt, struct veer_cursor *c, struct veer_hdrs *h)
{
	struct iphdr *ip = veer_cursor_take(c, sizeof(*ip));
	__u32 hdr_len, tot_len, l3_off;

	if (!ip)
		return VEER_R_PASS_TRUNCATED_IP;
	if (ip->version != 4 || ip->ihl < 5)
		return VEER_R_PASS_BAD_IP_HEADER;
	hdr_len = ip->ihl * 4; /* 20..60: ihl is a 4-bit field */
	tot_len = bpf_ntohs(ip->tot_len);
	l3_off = (__u32)((void *)ip - pkt->data);
	if (tot_len < hdr_len || l3_off + tot_len > pkt->len)
		return VEER_R_PASS_BAD_IP_HEADER;
	/* Skip the options. The declared length fits in the frame, so this only
	 * fails for a TC skb whose options are not in the linear part. */
	if (hdr_len > sizeof(*ip) && !veer_cursor_take(c, hdr_len - sizeof(*ip)))
		return VEER_R_PASS_TRUNCATED_IP;
	if (ip->frag_off & bpf_htons(VEER_IP_MF | VEER_IP_OFFSET))
		return VEER_R_PASS_IPV4_FRAGMENT;
	if (ip->protocol != VEER_PROTO_TCP && ip->protocol != VEER_PROTO_UDP)
		return VEER_R_PASS_NOT_TCP_UDP;
	h->ip4 = ip;
	h->family = VEER_AF_INET;
	h->proto = ip->protocol;
	h->l4_len = tot_len - hdr_len;
	return VEER_CONTINUE;
}

VEER_INLINE int veer_parse_ipv6(struct veer_pkt *pkt, struct veer_cursor *c, struct veer_hdrs *h)
{
	struct ipv6hdr *ip6 = veer_cursor_take(c, sizeof(*ip6));
	__u32 payload_len, l3_off;

	if (!ip6)
		return VEER_R_PASS_TRUNCATED_IP;
	if (ip6->version != 6)
		return VEER_R_PASS_BAD_IP_HEADER;
	payload_len = bpf_ntohs(ip6->payload_len);
	l3_off = (__u32)((void *)ip6 - pkt->data);
	if (l3_off + sizeof(*ip6) + payload_len > pkt->len)
		return VEER_R_PASS_BAD_IP_HEADER;
	if (ip6->nexthdr != VEER_PROTO_TCP && ip6->nexthdr != VEER_PROTO_UDP)
		return veer_is_ipv6_ext_hdr(ip6->nexthdr) ? VEER_R_PASS_IPV6_EXT_HDR
							  : VEER_R_PASS_NOT_TCP_UDP;
	h->ip6 = ip6;
	h->family = VEER_AF_INET6;
	h->proto = ip6->nexthdr;
	h->l4_len = payload_len;
	return VEER_CONTINUE;
}

/* Longest header chain parsing ever reads: Ethernet + VLAN tag + IPv4 with
 * 40 bytes of options + a TCP header with options. */
#define VEER_MAX_HDR_LEN (14 + 4 + 60 + 60)

/* TC only: the bytes of a non-linear skb past its linear part are not
 * directly readable. Pull the headers in (once, only when needed) so that
 * "truncated" means truncated and not "in a page fragment". Run before the
 * packet pointers are read. */
VEER_INLINE void veer_tc_pull_headers(struct __sk_buff *skb)
{
	__u32 want = skb->len < VEER_MAX_HDR_LEN ? skb->len : VEER_MAX_HDR_LEN;

	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;

	if (data + want > data_end)
		bpf_skb_pull_data(skb, want);
}

/* Parses up to the L4 ports. On VEER_CONTINUE every field of h is set. */
VEER_INLINE int veer_parse(struct veer_pkt *pkt, struct veer_hdrs *h)
{
	struct veer_cursor c = { .pos = pkt->data, .end = pkt->data_end };
	__be16 ethertype = 0;
	int r;

	r = veer_parse_eth(&c, h, &ethertype);
	if (r != VEER_CONTINUE)
		return r;
	if (ethertype == bpf_htons(ETH_P_IP))
		r = veer_parse_ipv4(pkt, &c, h);
	else if (ethertype == bpf_htons(ETH_P_IPV6))
		r = veer_parse_ipv6(pkt, &c, h);
	else
		return VEER_R_PASS_NOT_IP;
	if (r != VEER_CONTINUE)
		return r;

	h->l4_off = (__u32)(c.pos - pkt->data);
	if (h->l4_len < sizeof(struct veer_ports))
		return VEER_R_PASS_TRUNCATED_L4;
	h->ports = veer_cursor_take(&c, sizeof(struct veer_ports));
	if (!h->ports)
		return VEER_R_PASS_TRUNCATED_L4;
	return VEER_CONTINUE;
}

/* The full TCP/UDP header, checked only for packets of a service or a reply
 * (SPEC §2.7: those are dropped, not passed, when malformed). Also finds the
 * checksum field: the pointer is taken here, in the branch that proved the
 * whole header readable, because the verifier attaches that proof to the
 * pointer it checked, not to the protocol number. */
VEER_INLINE int veer_check_l4(struct veer_pkt *pkt, struct veer_hdrs *h)
{
	if (h->proto == VEER_PROTO_TCP) {
		struct tcphdr *tcp = (void *)h->ports;

		if (h->l4_len < sizeof(*tcp) || (void *)(tcp + 1) > pkt->data_end)
			return VEER_R_DROP_TRUNCATED_L4;
		if (tcp->doff < 5 || tcp->doff * 4u > h->l4_len)
			return VEER_R_DROP_BAD_L4_HEADER;
		h->l4_check = &tcp->check;
		h->l4_check_off = h->l4_off + __builtin_offsetof(struct tcphdr, check);
		h->tcp_flags = ((__u8 *)tcp)[13];
		h->tcp_seq = tcp->seq;
		h->tcp_ack = tcp->ack_seq;
		h->payload_off = h->l4_off + tcp->doff * 4u;
		h->payload_len = h->l4_len - tcp->doff * 4u;
	} else {
		struct udphdr *udp = (void *)h->ports;

		if (h->l4_len < sizeof(*udp) || (void *)(udp + 1) > pkt->data_end)
			return VEER_R_DROP_TRUNCATED_L4;
		h->l4_check = &udp->check;
		h->l4_check_off = h->l4_off + __builtin_offsetof(struct udphdr, check);
		h->tcp_flags = 0;
		h->tcp_seq = 0;
		h->tcp_ack = 0;
		h->payload_off = h->l4_off + sizeof(*udp);
		h->payload_len = h->l4_len - sizeof(*udp);
	}
	return VEER_CONTINUE;
}

VEER_INLINE int veer_is_syn(const struct veer_hdrs *h)
{
	return h->proto == VEER_PROTO_TCP && (h->tcp_flags & (VEER_TCP_SYN | VEER_TCP_ACK)) == VEER_TCP_SYN;
}

VEER_INLINE int veer_is_syn_ack(const struct veer_hdrs *h)
{
	return h->proto == VEER_PROTO_TCP &&
	       (h->tcp_flags & (VEER_TCP_SYN | VEER_TCP_ACK)) == (VEER_TCP_SYN | VEER_TCP_ACK);
}

VEER_INLINE __u8 veer_is_rst(const struct veer_hdrs *h)
{
	return h->proto == VEER_PROTO_TCP && (h->tcp_flags & VEER_TCP_RST);
}

/* The packet's own tuple as a flow key (src -> dst as on the wire). */
VEER_INLINE void veer_flow_key_of(const struct veer_hdrs *h, struct veer_flow_key *key)
{
	/* Zeroed first: the key is hashed as bytes, pad and IPv4's
	 * addr[1..3] must be 0. */
	__builtin_memset(key, 0, sizeof(*key));
	if (h->family == VEER_AF_INET) {
		key->src.addr[0] = h->ip4->saddr;
		key->dst.addr[0] = h->ip4->daddr;
	} else {
		__builtin_memcpy(&key->src, &h->ip6->saddr, sizeof(key->src));
		__builtin_memcpy(&key->dst, &h->ip6->daddr, sizeof(key->dst));
	}
	key->sport = h->ports->src;
	key->dport = h->ports->dst;
	key->proto = h->proto;
	key->family = h->family;
}

#endif /* VEER_LIB_PARSE_H */
