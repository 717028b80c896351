/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Which packets are ours and where they go: the port pre-filter, the flow
 * table (established flows), the service lookup, the reverse-NAT lookup for
 * replies, and for a new flow the seeded hash -> slot -> (variant, backend)
 * selection plus the flow/reverse entries it creates (SPEC §2.2).
 */
#ifndef VEER_LIB_SELECT_H
#define VEER_LIB_SELECT_H

#include "lib/common.h"
#include "lib/maps.h"
#include "lib/nat.h"
#include "lib/parse.h"
#include "lib/stats.h"
#include "lib/telemetry.h"

enum veer_match_kind {
	VEER_MATCH_FLOW = 1,  /* client packet of an established flow */
	VEER_MATCH_NEW = 2,   /* client packet to a service, no flow yet */
	VEER_MATCH_REPLY = 3, /* backend's reply to a client */
};

struct veer_match {
	struct veer_flow *flow;      /* VEER_MATCH_FLOW */
	struct veer_service *svc;    /* VEER_MATCH_NEW */
	struct veer_nat_rev *rev;    /* VEER_MATCH_REPLY */
	enum veer_match_kind kind;
};

VEER_INLINE __u8 veer_port_bits(__be16 port)
{
	__u32 key = bpf_ntohs(port);
	/* ARRAY lookups are inlined by the verifier into a bounds check and a
	 * load: no hash is computed for packets the filter rules out. */
	__u8 *bits = bpf_map_lookup_elem(&veer_port_filter, &key);

	return bits ? *bits : 0;
}

/* Finds what the packet is; anything else passes untouched (SPEC §2.1).
 * Fills key with the packet's tuple only once the port filter let it
 * through: non-service packets cost parsing and two array loads. */
VEER_INLINE int veer_classify(const struct veer_hdrs *h, struct veer_flow_key *key,
			      struct veer_match *m)
{
	int tcp = h->proto == VEER_PROTO_TCP;
	int client = veer_port_bits(h->ports->dst) &
		     (tcp ? VEER_PORT_F_SERVICE_TCP : VEER_PORT_F_SERVICE_UDP);
	int reply = veer_port_bits(h->ports->src) &
		    (tcp ? VEER_PORT_F_BACKEND_TCP : VEER_PORT_F_BACKEND_UDP);

	if (!client && !reply)
		return VEER_R_PASS_NOT_SERVICE;
	veer_flow_key_of(h, key);

	if (client) {
		struct veer_service_key skey;

		/* Established flows first: they never need the service. */
		m->flow = bpf_map_lookup_elem(&veer_flows, key);
		if (m->flow) {
			m->kind = VEER_MATCH_FLOW;
			return VEER_CONTINUE;
		}
		skey.vip = key->dst;
		skey.port = key->dport;
		skey.proto = key->proto;
		skey.family = key->family;
		m->svc = bpf_map_lookup_elem(&veer_services, &skey);
		if (m->svc) {
			m->kind = VEER_MATCH_NEW;
			return VEER_CONTINUE;
		}
	}
	if (reply) {
		/* The reply's own tuple (src = backend, dst = client) is the
		 * reverse key. */
		m->rev = bpf_map_lookup_elem(&veer_nat_rev, key);
		if (m->rev) {
			m->kind = VEER_MATCH_REPLY;
			return VEER_CONTINUE;
		}
	}
	return VEER_R_PASS_NOT_SERVICE;
}

/* Keeps last_seen fresh without writing the shared cache line on every
 * packet. now: the packet's bpf_ktime_get_coarse_ns() reading (jiffies
 * resolution, kernel 5.11+: enough for a one-second granularity, cheaper than
 * bpf_ktime_get_ns()), read once and shared with the next-hop cache. */
VEER_INLINE void veer_flow_touch(struct veer_flow *flow, __u64 now)
{
	if ((__s64)(now - flow->last_seen_ns) >= (__s64)VEER_LAST_SEEN_GRANULARITY_NS)
		flow->last_seen_ns = now;
}

/* Hash -> slot of the active table -> (variant, backend) -> backend entry. */
VEER_INLINE int veer_select_backend(const struct veer_service *svc, const struct veer_flow_key *key,
				    struct veer_flow *flow)
{
	__u32 id = svc->id;
	__u32 hash = svc->affinity == VEER_AFFINITY_CLIENT_IP
			     ? veer_hash_client(&key->src, svc->hash_seed)
			     : veer_hash_connection(key, svc->hash_seed);
	__u32 slot = veer_slot_of(hash);
	__u32 table_key, backend_key;
	struct veer_slot_table *table;
	struct veer_backend *backend;
	struct veer_slot s;

	if (id >= VEER_MAX_SERVICES)
		return VEER_R_DROP_STATE_MISSING;
	table_key = id * 2 + (svc->active_table & 1);
	table = bpf_map_lookup_elem(&veer_slots, &table_key);
	if (!table)
		return VEER_R_DROP_STATE_MISSING;
	/* veer_slot_of() is < VEER_SLOTS by construction; the verifier wants
	 * to see it before indexing the 20 kB value. */
	if (slot >= VEER_SLOTS)
		return VEER_R_DROP_STATE_MISSING;
	s = table->slot[slot];
	if (s.variant >= VEER_MAX_VARIANTS || s.backend >= VEER_MAX_BACKENDS)
		return VEER_R_DROP_NO_BACKEND; /* includes VEER_VARIANT_NONE */
	backend_key = (id * VEER_MAX_VARIANTS + s.variant) * VEER_MAX_BACKENDS + s.backend;
	backend = bpf_map_lookup_elem(&veer_backends, &backend_key);
	if (!backend || !(backend->flags & VEER_BACKEND_F_PRESENT) || backend->family != key->family)
		return VEER_R_DROP_NO_BACKEND;

	flow->backend = backend->addr;
	flow->backend_port = backend->port;
	flow->service_id = (__u16)id;
	flow->variant = s.variant;
	flow->backend_idx = s.backend;
	flow->state = 0;
	flow->pad = 0;
	return VEER_CONTINUE;
}

/* A client packet of an unknown flow (any packet, no SYN needed): select,
 * record the flow and its reverse entry, fill the NAT target. Telemetry
 * (lib/telemetry.h) starts in the entries themselves, at no extra lookup: a
 * packet with payload starts a request, a SYN a handshake. */
VEER_INLINE int veer_flow_create(const struct veer_service *svc, const struct veer_hdrs *h,
				 const struct veer_flow_key *key, struct veer_nat_target *t, __u64 now,
				 struct veer_tel *tel)
{
	struct veer_flow flow;
	struct veer_flow_key rkey;
	struct veer_nat_rev rev;
	int r;

	r = veer_select_backend(svc, key, &flow);
	if (r != VEER_CONTINUE)
		return r;
	flow.last_seen_ns = now;
	if (h->payload_len)
		flow.state = VEER_FLOW_S_REQUEST_PENDING;
	tel->reset = veer_is_rst(h);

	/* NOEXIST: if another CPU created this flow meanwhile (its first
	 * packets raced, maybe across a table flip), its choice wins so every
	 * packet of the flow goes the same way. */
	if (bpf_map_update_elem(&veer_flows, key, &flow, BPF_NOEXIST) == 0) {
		veer_count_new_flow(flow.service_id, flow.variant);
	} else {
		struct veer_flow *existing = bpf_map_lookup_elem(&veer_flows, key);

		if (existing)
			flow = *existing;
		/* else: the update failed otherwise; forward with this choice,
		 * the next packet selects the same backend again. */
	}

	veer_reverse_key(key, &flow.backend, flow.backend_port, &rkey);
	__builtin_memset(&rev, 0, sizeof(rev));
	rev.vip = key->dst;
	rev.vport = key->dport;
	rev.service_id = flow.service_id;
	rev.variant = flow.variant;
	/* The request this packet starts, if it carries payload (a UDP
	 * datagram, or TCP data of a flow the table had lost). */
	if (flow.state & VEER_FLOW_S_REQUEST_PENDING)
		rev.req_ts_ns = bpf_ktime_get_ns();
	bpf_map_update_elem(&veer_nat_rev, &rkey, &rev, BPF_ANY);
	if (veer_is_syn(h))
		veer_handshake_start(&rkey, flow.service_id, flow.variant, now);

	veer_target_from_flow(&flow, t);
	return VEER_CONTINUE;
}

#endif /* VEER_LIB_SELECT_H */
