/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Which connection a flow entry belongs to (SPEC §2.2: a flow is one
 * connection, not one tuple).
 *
 * The flow table is keyed by (client, client port, service), and clients
 * reuse those tuples: an API gateway, wrk or a NAT gateway opening many short
 * connections cycles through its ephemeral ports within seconds. If a new
 * connection on a reused tuple followed the entry of the finished one, a
 * switch or an abort would not reach it: it would go to the old variant.
 * conntrack starts a new entry for a new connection on a closed tuple;
 * Katran selects again on every SYN. veer does what conntrack does:
 *
 * TCP: the entry keeps the sequence number of the client SYN that made it
 * (the connection's ISN) and the connection's state as seen in both
 * directions (VEER_FLOW_S_*: SYN, ESTABLISHED, FIN from either side, RST).
 * A client SYN (without ACK) that finds an entry continues it only if it is
 * the same handshake: the entry was made by a SYN with this very sequence
 * number (a retransmission, also after a SYN-ACK the client did not get) and
 * neither side has closed or reset. Any other SYN is a new connection: it
 * selects again from the active table and replaces the entry, telemetry
 * included (lib/select.h). Packets that are not SYNs always follow the entry;
 * a non-SYN packet that finds no entry still selects and creates one
 * (ESTABLISHED, no SYN), so flows survive an eviction or a node restart.
 *
 * UDP has no connection: an entry idle (no datagram either way) for longer
 * than the service's udp_idle_ticks selects again on its next client
 * datagram, as conntrack's UDP timeout does; a live exchange keeps its
 * backend.
 *
 * Cost: an established TCP packet pays a few ALU operations on fields already
 * loaded and writes the entry only when a FIN, RST or SYN-ACK changes its
 * state; a UDP packet writes the entry's tick at most once a tick (16.8 ms).
 * The state byte is written by both directions without atomics (BPF has no
 * 8-bit atomics), so a FIN bit can be lost to a concurrent write of the other
 * direction; that only matters for a SYN reusing the closed connection's own
 * ISN, since any other SYN differs in its sequence number anyway.
 */
#ifndef VEER_LIB_CONN_H
#define VEER_LIB_CONN_H

#include "lib/common.h"
#include "lib/parse.h"

VEER_INLINE __u32 veer_tick(__u64 now_ns)
{
	return (__u32)(now_ns >> VEER_TICK_SHIFT);
}

/* A client packet whose tuple has an entry: does it start a new flow? svc:
 * the service's value, needed for UDP only (TCP flows may have been matched
 * through the port hint, without it). */
VEER_INLINE int veer_conn_is_new(const struct veer_hdrs *h, const struct veer_flow *f,
				 const struct veer_service *svc, __u32 tick)
{
	if (h->proto == VEER_PROTO_TCP) {
		if (!veer_is_syn(h))
			return 0;
		/* Same handshake: made by a SYN, not ending, same ISN. */
		return (f->state & (VEER_FLOW_S_SYN | VEER_FLOW_S_ENDING)) != VEER_FLOW_S_SYN ||
		       f->syn_seq != h->tcp_seq;
	}
	if (!svc)
		return 0; /* not reached: UDP is never matched through a hint */
	/* Modulo 2^32: right for idle times below 2^31 ticks (a year). */
	return tick - f->seen_tick > svc->udp_idle_ticks;
}

/* The state bits a TCP packet's FIN and RST flags give; fin_bit: whose FIN. */
VEER_INLINE __u8 veer_conn_close_bits(const struct veer_hdrs *h, __u8 fin_bit)
{
	__u8 bits = 0;

	if (h->tcp_flags & VEER_TCP_FIN)
		bits |= fin_bit;
	if (h->tcp_flags & VEER_TCP_RST)
		bits |= VEER_FLOW_S_RST;
	return bits;
}

/* The connection part of a new entry made by a client packet (the request
 * bit is the telemetry's, set by the caller). */
VEER_INLINE void veer_conn_init(const struct veer_hdrs *h, struct veer_flow *f, __u32 tick)
{
	if (h->proto != VEER_PROTO_TCP) {
		f->state = 0;
		f->seen_tick = tick;
	} else if (veer_is_syn(h)) {
		f->state = VEER_FLOW_S_SYN;
		f->syn_seq = h->tcp_seq;
	} else {
		/* Picked up mid-stream: no ISN known, so any SYN is new. */
		f->state = VEER_FLOW_S_ESTABLISHED | veer_conn_close_bits(h, VEER_FLOW_S_FIN_CLIENT);
		f->syn_seq = 0;
	}
}

/* Adds BITS to a TCP entry's state, writing the entry only when one is new;
 * returns the new ones. */
VEER_INLINE __u8 veer_conn_add_bits(struct veer_flow *f, __u8 bits)
{
	__u8 added = bits & ~f->state;

	if (added)
		f->state |= added;
	return added;
}

/* A UDP entry saw a datagram: its tick, written at most once a tick. */
VEER_INLINE void veer_conn_touch(struct veer_flow *f, __u32 tick)
{
	if (f->seen_tick != tick)
		f->seen_tick = tick;
}

/* A client packet that continues its entry. Returns the state bits it
 * added (TCP; 0 for UDP): telemetry counts a reset when the RST bit is new,
 * so a connection reset counts once however many RSTs follow (the peer
 * answers every segment still in flight with another one). */
VEER_INLINE __u8 veer_conn_client(const struct veer_hdrs *h, struct veer_flow *f, __u32 tick)
{
	if (h->proto == VEER_PROTO_TCP)
		return veer_conn_add_bits(f, veer_conn_close_bits(h, VEER_FLOW_S_FIN_CLIENT));
	veer_conn_touch(f, tick);
	return 0;
}

/* A backend's packet acknowledges the SYN that made the entry. */
VEER_INLINE int veer_conn_acks_syn(const struct veer_hdrs *h, const struct veer_flow *f)
{
	return (h->tcp_flags & VEER_TCP_ACK) && bpf_ntohl(h->tcp_ack) == bpf_ntohl(f->syn_seq) + 1;
}

/* A backend's reply on its entry; returns the state bits it added, as
 * veer_conn_client.
 *
 * Before the handshake is answered, an RST belongs to this connection only if
 * it acknowledges its SYN (RFC 9293 3.10.7.3: in SYN-SENT the client drops
 * any other). Any other is an earlier connection's on the reused tuple: a
 * backend answers the segments that were in flight when it reset that one,
 * and a client whose port was freed by the reset may already have opened the
 * next connection on it. Such an RST neither ends the entry nor counts. */
VEER_INLINE __u8 veer_conn_reply(const struct veer_hdrs *h, struct veer_flow *f, __u32 tick)
{
	if (h->proto == VEER_PROTO_TCP) {
		__u8 bits = veer_conn_close_bits(h, VEER_FLOW_S_FIN_BACKEND);

		if (veer_is_syn_ack(h))
			bits |= VEER_FLOW_S_ESTABLISHED;
		if ((bits & VEER_FLOW_S_RST) &&
		    (f->state & (VEER_FLOW_S_SYN | VEER_FLOW_S_ESTABLISHED)) == VEER_FLOW_S_SYN &&
		    !veer_conn_acks_syn(h, f))
			bits &= (__u8)~VEER_FLOW_S_RST;
		return veer_conn_add_bits(f, bits);
	}
	veer_conn_touch(f, tick);
	return 0;
}

#endif /* VEER_LIB_CONN_H */
