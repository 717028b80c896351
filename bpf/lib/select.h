/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Which packets are ours and where they go: the port pre-filter, the service
 * lookup, the flow table (one entry per connection for both directions), the
 * backend -> service lookup that tells replies from other backend traffic,
 * and for a new flow the seeded hash -> slot -> (variant, backend) selection
 * plus the flow entry it creates or replaces (SPEC §2.2). Whether a client
 * packet that finds an entry continues it or starts a new connection on a
 * reused tuple is lib/conn.h's decision.
 */
#ifndef VEER_LIB_SELECT_H
#define VEER_LIB_SELECT_H

#include "lib/common.h"
#include "lib/conn.h"
#include "lib/maps.h"
#include "lib/nat.h"
#include "lib/parse.h"
#include "lib/stats.h"
#include "lib/telemetry.h"

enum veer_match_kind {
	VEER_MATCH_FLOW = 1,   /* client packet of an established flow */
	VEER_MATCH_NEW = 2,    /* client packet to a service, no flow yet */
	VEER_MATCH_REPLY = 3,  /* backend's reply to a client */
	VEER_MATCH_REUSED = 4, /* client packet that starts a new connection on a
				* tuple whose entry is an older one's (set by
				* veer_process once lib/conn.h has decided) */
};

struct veer_match {
	struct veer_flow *flow;       /* FLOW, REPLY (and REUSED: the old entry) */
	struct veer_service *svc;     /* NEW; FLOW unless found through the TCP
				       * port hint (NULL then: veer_match_service) */
	struct veer_backend_rev *rev; /* REPLY */
	struct veer_flow_id id;       /* every kind: the flow's key (service_id
				       * included, so the value need not hold it) */
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

VEER_INLINE int veer_service_key_eq(const struct veer_service_key *a, const struct veer_service_key *b)
{
	return a->vip.addr[0] == b->vip.addr[0] && a->vip.addr[1] == b->vip.addr[1] &&
	       a->vip.addr[2] == b->vip.addr[2] && a->vip.addr[3] == b->vip.addr[3] && a->port == b->port &&
	       a->proto == b->proto && a->family == b->family;
}

/* The id of the TCP service at skey by the port's hint (abi.h,
 * veer_tcp_port_service): two array loads and a compare instead of a jhash.
 * -1: no hint for this port, or it names another VIP (several services on
 * the port, or userspace mid-change): look it up in veer_services. */
VEER_INLINE int veer_tcp_service_hint(const struct veer_service_key *skey)
{
	__u32 port = bpf_ntohs(skey->port);
	__u8 *hint = bpf_map_lookup_elem(&veer_tcp_port_service, &port);
	const struct veer_service_key *k;
	__u32 id;

	if (!hint || !*hint)
		return -1;
	id = *hint - 1;
	k = bpf_map_lookup_elem(&veer_service_keys, &id);
	if (!k || !veer_service_key_eq(k, skey))
		return -1;
	return (int)id;
}

/* The packet's source (source = 1) or destination (source = 0) address;
 * IPv4's addr[1..3] zero (keys are hashed as bytes). */
VEER_INLINE void veer_addr_of(const struct veer_hdrs *h, int source, struct veer_addr *a)
{
	if (h->family == VEER_AF_INET) {
		a->addr[0] = source ? h->ip4->saddr : h->ip4->daddr;
		a->addr[1] = 0;
		a->addr[2] = 0;
		a->addr[3] = 0;
	} else {
		__builtin_memcpy(a, source ? &h->ip6->saddr : &h->ip6->daddr, sizeof(*a));
	}
}

VEER_INLINE int veer_addr_eq(const struct veer_addr *a, const struct veer_addr *b)
{
	return a->addr[0] == b->addr[0] && a->addr[1] == b->addr[1] && a->addr[2] == b->addr[2] &&
	       a->addr[3] == b->addr[3];
}

/* Finds what the packet is; anything else passes untouched (SPEC §2.1).
 * Non-service packets cost parsing and two array loads (the port filter).
 * Client packet: the service by (VIP, port), then the flow by (client, client
 * port, service). Reply: the service of the source backend
 * (veer_backend_rev), then the flow by (destination = client, its port,
 * service), which must name this backend: otherwise the backend is talking
 * to someone else (or the flow is gone) and the packet is not ours. */
VEER_INLINE int veer_classify(const struct veer_hdrs *h, struct veer_match *m)
{
	int tcp = h->proto == VEER_PROTO_TCP;
	int client = veer_port_bits(h->ports->dst) &
		     (tcp ? VEER_PORT_F_SERVICE_TCP : VEER_PORT_F_SERVICE_UDP);
	int reply = veer_port_bits(h->ports->src) &
		    (tcp ? VEER_PORT_F_BACKEND_TCP : VEER_PORT_F_BACKEND_UDP);

	if (!client && !reply)
		return VEER_R_PASS_NOT_SERVICE;
	/* pad must be zero: the key is hashed as bytes. */
	m->id.pad = 0;
	m->id.proto = h->proto;
	m->id.family = h->family;

	if (client) {
		struct veer_service_key skey;
		int hinted;

		veer_addr_of(h, 0, &skey.vip);
		skey.port = h->ports->dst;
		skey.proto = h->proto;
		skey.family = h->family;
		veer_addr_of(h, 1, &m->id.client);
		m->id.client_port = h->ports->src;
		/* An established TCP flow needs only the service's id (its
		 * flow's key): the port hint gives it without hashing. The
		 * service's value is read when a flow is selected. */
		hinted = tcp ? veer_tcp_service_hint(&skey) : -1;
		m->flow = NULL;
		if (hinted >= 0) {
			m->id.service_id = (__u16)hinted;
			m->flow = bpf_map_lookup_elem(&veer_flows, &m->id);
			if (m->flow) {
				m->svc = NULL;
				m->kind = VEER_MATCH_FLOW;
				return VEER_CONTINUE;
			}
		}
		m->svc = bpf_map_lookup_elem(&veer_services, &skey);
		if (m->svc) {
			/* Looked up already unless the hint named another id. */
			if (hinted < 0 || hinted != (int)m->svc->id) {
				m->id.service_id = (__u16)m->svc->id;
				m->flow = bpf_map_lookup_elem(&veer_flows, &m->id);
			}
			m->kind = m->flow ? VEER_MATCH_FLOW : VEER_MATCH_NEW;
			return VEER_CONTINUE;
		}
	}
	if (reply) {
		struct veer_backend_rev_key bkey;
		struct veer_flow *flow;

		veer_addr_of(h, 1, &bkey.addr);
		bkey.port = h->ports->src;
		bkey.proto = h->proto;
		bkey.family = h->family;
		m->rev = bpf_map_lookup_elem(&veer_backend_rev, &bkey);
		if (!m->rev)
			return VEER_R_PASS_NOT_SERVICE;
		veer_addr_of(h, 0, &m->id.client);
		m->id.client_port = h->ports->dst;
		m->id.service_id = m->rev->service_id;
		flow = bpf_map_lookup_elem(&veer_flows, &m->id);
		if (flow && flow->backend_port == bkey.port && veer_addr_eq(&flow->backend, &bkey.addr)) {
			m->flow = flow;
			m->kind = VEER_MATCH_REPLY;
			return VEER_CONTINUE;
		}
	}
	return VEER_R_PASS_NOT_SERVICE;
}

/* The service of a client packet matched through the port hint (m->svc
 * NULL), once it turns out to need the value: a new connection to select.
 * NULL if the service is gone (userspace is removing it). */
VEER_INLINE struct veer_service *veer_match_service(const struct veer_hdrs *h, struct veer_match *m)
{
	struct veer_service_key skey;

	if (m->svc)
		return m->svc;
	veer_addr_of(h, 0, &skey.vip);
	skey.port = h->ports->dst;
	skey.proto = h->proto;
	skey.family = h->family;
	m->svc = bpf_map_lookup_elem(&veer_services, &skey);
	return m->svc;
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
	flow->variant = s.variant;
	return VEER_CONTINUE;
}

/* A client packet of a new flow: of an unknown tuple (any packet, no SYN
 * needed), or the first of a new connection on a reused tuple (replace: its
 * entry belongs to an older connection and is overwritten, telemetry state
 * included). Selects from the active table, records the flow (id: its key,
 * from veer_classify), fills the NAT target. Telemetry (lib/telemetry.h)
 * starts in the entry itself: a packet with payload starts a request, a SYN
 * a handshake. */
VEER_INLINE int veer_flow_create(const struct veer_service *svc, const struct veer_hdrs *h,
				 const struct veer_flow_id *id, int replace, struct veer_nat_target *t,
				 __u64 now, struct veer_tel *tel)
{
	struct veer_flow_key tuple, rkey;
	struct veer_flow flow;
	int inserted = 0;
	int r;

	/* The whole tuple: what the hash of connection affinity reads, and
	 * (reversed) the handshake's key. Only new flows build it. */
	veer_flow_key_of(h, &tuple);
	r = veer_select_backend(svc, &tuple, &flow);
	if (r != VEER_CONTINUE)
		return r;
	veer_conn_init(h, &flow, veer_tick(now));
	/* The request this packet starts, if it carries payload (a UDP
	 * datagram, a SYN with data, or TCP data of a flow the table had
	 * lost). */
	flow.req_ts_ns = 0;
	if (h->payload_len) {
		flow.state |= VEER_FLOW_S_REQUEST_PENDING;
		flow.req_ts_ns = bpf_ktime_get_ns();
	}
	tel->reset = veer_is_rst(h);

	/* A new tuple: NOEXIST, so that if another CPU created this flow
	 * meanwhile (its first packets raced, maybe across a table flip), its
	 * choice wins and every packet of the flow goes the same way. A reused
	 * tuple: the old connection's entry is replaced in one update (readers
	 * see the old entry or the new one, never a mix). */
	if (bpf_map_update_elem(&veer_flows, id, &flow, replace ? BPF_ANY : BPF_NOEXIST) == 0) {
		inserted = 1;
		veer_count_new_flow(id->service_id, flow.variant);
	} else {
		struct veer_flow *existing = bpf_map_lookup_elem(&veer_flows, id);

		if (existing)
			flow = *existing;
		/* else: the update failed otherwise; forward with this choice,
		 * the next packet selects the same backend again. */
	}

	if (veer_is_syn(h)) {
		veer_reverse_key(&tuple, &flow.backend, flow.backend_port, &rkey);
		veer_handshake_start(&rkey, id->service_id, flow.variant, now,
				     inserted ? BPF_ANY : BPF_NOEXIST);
	}

	veer_target_from_flow(&flow, id->service_id, t);
	return VEER_CONTINUE;
}

#endif /* VEER_LIB_SELECT_H */
