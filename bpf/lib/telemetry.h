/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Kernel telemetry per (service, variant), SPEC §2.10: resets from either
 * side, unanswered TCP handshakes, the response latency of each request, and
 * the HTTP/1.x status class of its response.
 *
 * Request/response tracking, at a bounded cost per packet and no lookup of
 * its own: both directions hold the flow entry (struct veer_flow) anyway.
 * - client packet with payload, flow not REQUEST_PENDING: a request starts.
 *   Its time goes into the flow (req_ts_ns), the flow gets REQUEST_PENDING.
 *   Later segments of the same request see the bit: no cost.
 * - reply with payload and req_ts_ns set: the first answer to the request.
 *   One histogram increment (bucket index by bit tricks, no loop), the status
 *   class from the first 12 payload bytes, req_ts_ns = 0 and REQUEST_PENDING
 *   cleared. Later reply segments see req_ts_ns == 0: no cost.
 * Every other packet pays only a few compares on fields already loaded.
 * A request whose answer never comes leaves the flow pending: no further
 * request of that flow is measured until a reply with payload arrives (or a
 * new connection reuses the tuple: its entry replaces this one, lib/conn.h).
 *
 * Handshakes: a client SYN (no ACK) records (time, service, variant) under
 * the reverse tuple in veer_handshakes; the backend's SYN-ACK deletes it;
 * userspace counts what stays longer than its timeout. The SYN of a new
 * connection starts a new record; a retransmitted SYN keeps the first one's
 * time.
 */
#ifndef VEER_LIB_TELEMETRY_H
#define VEER_LIB_TELEMETRY_H

#include "lib/common.h"
#include "lib/maps.h"
#include "lib/parse.h"
#include "veer/latency.h"

/* What a packet contributes to its variant's counters (applied by
 * veer_count_packet with the one lookup it does anyway). */
struct veer_tel {
	__u8 reset;      /* the connection's first TCP RST (set by the caller, lib/conn.h) */
	__u8 response;   /* a latency sample was taken */
	__u8 http_class; /* 2..5, or 0: none */
};

/* The reverse tuple of a client packet: what the backend's replies carry. */
VEER_INLINE void veer_reverse_key(const struct veer_flow_key *key, const struct veer_addr *backend,
				  __u16 backend_port, struct veer_flow_key *rkey)
{
	__builtin_memset(rkey, 0, sizeof(*rkey));
	rkey->src = *backend;
	rkey->dst = key->src;
	rkey->sport = backend_port;
	rkey->dport = key->sport;
	rkey->proto = key->proto;
	rkey->family = key->family;
}

/* A client SYN: the handshake is pending until the backend's SYN-ACK.
 * flags: BPF_ANY for the SYN of a new connection (its own time, whatever an
 * older connection of the tuple left), BPF_NOEXIST for a retransmission
 * (keeps the first SYN's time). */
VEER_INLINE void veer_handshake_start(const struct veer_flow_key *rkey, __u16 service_id, __u8 variant,
				      __u64 now, __u64 flags)
{
	struct veer_handshake hs = {
		.syn_ts_ns = now,
		.service_id = service_id,
		.variant = variant,
	};

	bpf_map_update_elem(&veer_handshakes, rkey, &hs, flags);
}

/* A client packet that continues its flow (flow: the map's value). New
 * flows, also a new connection on a reused tuple, get their initial state in
 * veer_flow_create. */
VEER_INLINE void veer_tel_client(const struct veer_hdrs *h, struct veer_flow *flow, __u16 service_id,
				 __u64 now, struct veer_tel *tel)
{
	__u8 state = flow->state;

	if (veer_is_syn(h)) {
		/* A SYN that continues its entry is a retransmission
		 * (lib/conn.h): the handshake keeps the first SYN's time. Only
		 * SYNs pay for the tuple. */
		struct veer_flow_key tuple, rkey;

		veer_flow_key_of(h, &tuple);
		veer_reverse_key(&tuple, &flow->backend, flow->backend_port, &rkey);
		veer_handshake_start(&rkey, service_id, flow->variant, now, BPF_NOEXIST);
		return;
	}
	if (h->payload_len == 0 || (state & VEER_FLOW_S_REQUEST_PENDING))
		return;
	/* Time first, then the bit: a reply that sees the bit finds the time. */
	flow->req_ts_ns = bpf_ktime_get_ns();
	flow->state = state | VEER_FLOW_S_REQUEST_PENDING;
}

/* "HTTP/1.x NNN": the status class digit (2..5), or 0. Reads the first 12
 * payload bytes: straight from the packet when they are in the linear part,
 * else (TC, non-linear skb) with bpf_skb_load_bytes. veer_tc_pull_headers
 * made VEER_MAX_HDR_LEN bytes linear, so the fallback is only reached when
 * the headers fill nearly all of them (VLAN + IP and TCP options); neither
 * BPF_PROG_TEST_RUN (linear skbs) nor the testbed's traffic reaches it. */
VEER_INLINE __u8 veer_http_class(const struct veer_pkt *pkt, const enum veer_hook hook,
				 const struct veer_hdrs *h)
{
	__u8 b[12];
	__u32 off = h->payload_off;
	__u8 *p;

	if (h->payload_len < sizeof(b))
		return 0;
	/* Headers end within VEER_MAX_HDR_LEN: the bound the verifier needs
	 * for the variable offset. */
	if (off > VEER_MAX_HDR_LEN)
		return 0;
	p = pkt->data + off;
	if ((void *)(p + sizeof(b)) <= pkt->data_end) {
		__builtin_memcpy(b, p, sizeof(b));
	} else if (hook == VEER_HOOK_TC) {
		if (bpf_skb_load_bytes(pkt->ctx, off, b, sizeof(b)))
			return 0;
	} else {
		return 0; /* single-buffer XDP: the frame ends before 12 payload bytes */
	}
	if (b[0] != 'H' || b[1] != 'T' || b[2] != 'T' || b[3] != 'P' || b[4] != '/' || b[5] != '1' ||
	    b[6] != '.' || b[7] < '0' || b[7] > '9' || b[8] != ' ')
		return 0;
	if (b[9] < '2' || b[9] > '5' || b[10] < '0' || b[10] > '9' || b[11] < '0' || b[11] > '9')
		return 0; /* 1xx (interim) and anything else: no class */
	return b[9] - '0';
}

/* A backend reply (flow: the flow it answers, already checked to name this
 * backend; service_id: its key's). */
VEER_INLINE void veer_tel_reply(const struct veer_pkt *pkt, const enum veer_hook hook,
				const struct veer_hdrs *h, struct veer_flow *flow, __u16 service_id,
				struct veer_tel *tel)
{
	struct veer_latency_hist *hist;
	__u64 req_ts, now, elapsed;
	__u32 hist_key, bucket;

	if (veer_is_syn_ack(h)) {
		/* The handshake was answered: its key is the reply's own
		 * tuple, as the SYN stored it. Only SYN-ACKs pay for this. */
		struct veer_flow_key tuple;

		veer_flow_key_of(h, &tuple);
		bpf_map_delete_elem(&veer_handshakes, &tuple);
		return;
	}
	if (h->payload_len == 0)
		return;
	req_ts = flow->req_ts_ns;
	if (req_ts == 0)
		return;
	/* The client may start its next request. */
	flow->req_ts_ns = 0;
	flow->state &= ~VEER_FLOW_S_REQUEST_PENDING;
	now = bpf_ktime_get_ns();
	elapsed = now > req_ts ? now - req_ts : 0;
	tel->response = 1;
	tel->http_class = veer_http_class(pkt, hook, h);

	if (flow->variant < VEER_MAX_VARIANTS && service_id < VEER_MAX_SERVICES) {
		hist_key = (__u32)service_id * VEER_MAX_VARIANTS + flow->variant;
		hist = bpf_map_lookup_elem(&veer_latency, &hist_key);
		bucket = veer_lat_bucket(elapsed);
		/* < VEER_LAT_BUCKETS by construction; the verifier wants to
		 * see it before indexing. */
		if (hist && bucket < VEER_LAT_BUCKETS)
			hist->bucket[bucket] += 1;
	}
}

#endif /* VEER_LIB_TELEMETRY_H */
