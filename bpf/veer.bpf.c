// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * veer data plane (SPEC §2.1-§2.9): one object, two entry points that share
 * all logic (the headers in bpf/lib/):
 *   veer_xdp  SEC("xdp")  native or generic XDP
 *   veer_tc   SEC("tc")   cls_bpf direct-action under clsact, or tcx
 * Per packet: parse -> classify -> (select) -> telemetry -> rewrite ->
 * forward (next hop from the per-CPU cache, else bpf_fib_lookup), and every
 * verdict is counted once under its enum veer_reason. A flow is one
 * connection (lib/conn.h): a new connection on a reused tuple selects again.
 */
#include "lib/common.h"
#include "lib/maps.h"
#include "lib/parse.h"
#include "lib/csum.h"
#include "lib/stats.h"
#include "lib/telemetry.h"
#include "lib/conn.h"
#include "lib/nat.h"
#include "lib/select.h"
#include "lib/fib_cache.h"
#include "lib/fwd.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

VEER_INLINE int veer_process(struct veer_pkt *pkt, const enum veer_hook hook)
{
	struct veer_hdrs h = {};
	struct veer_match m;
	struct veer_nat_target t;
	struct veer_l4_diff d = {};
	struct veer_tel tel = {};
	struct bpf_fib_lookup fib;
	struct veer_fib_cache_key nh_key;
	const struct veer_fib_cache_entry *nh;
	__u32 fwd_reason, tick;
	__u64 now;
	int r;

	r = veer_parse(pkt, &h);
	if (r != VEER_CONTINUE)
		return veer_end(hook, r);

	r = veer_classify(&h, &m);
	if (r != VEER_CONTINUE)
		return veer_end(hook, r);

	/* From here on the packet is ours: malformed L4 is dropped. */
	r = veer_check_l4(pkt, &h);
	if (r != VEER_CONTINUE)
		return veer_end(hook, r);
	r = veer_check_ttl(&h);
	if (r != VEER_CONTINUE)
		return veer_end(hook, r);

	/* One clock read per service packet, shared by the handshakes, the
	 * flow entries' ticks and the next-hop cache. */
	now = bpf_ktime_get_coarse_ns();
	tick = veer_tick(now);
	/* A SYN of another connection, or UDP after the idle timeout: the
	 * entry is an older flow's, this packet selects again. */
	if (m.kind == VEER_MATCH_FLOW && veer_conn_is_new(&h, m.flow, m.svc, tick))
		m.kind = VEER_MATCH_REUSED;

	if (m.kind == VEER_MATCH_FLOW) {
		tel.reset = veer_conn_client(&h, m.flow, tick) & VEER_FLOW_S_RST ? 1 : 0;
		veer_tel_client(&h, m.flow, m.id.service_id, now, &tel);
		veer_target_from_flow(m.flow, m.id.service_id, &t);
	} else if (m.kind == VEER_MATCH_REPLY) {
		tel.reset = veer_conn_reply(&h, m.flow, tick) & VEER_FLOW_S_RST ? 1 : 0;
		/* Before the rewrite: it reads the reply's own tuple and payload. */
		veer_tel_reply(pkt, hook, &h, m.flow, m.id.service_id, &tel);
		veer_target_from_reply(m.rev, m.flow, &t);
	} else {
		struct veer_service *svc = veer_match_service(&h, &m);

		if (!svc)
			return veer_end(hook, VEER_R_PASS_NOT_SERVICE);
		r = veer_flow_create(svc, &h, &m.id, m.kind == VEER_MATCH_REUSED, &t, now, &tel);
		if (r != VEER_CONTINUE)
			return veer_end(hook, r);
	}

	veer_nat_rewrite(&h, &t, &d);
	veer_count_packet(t.service_id, t.variant, t.to_client, pkt->len, &tel);
	fwd_reason = t.to_client ? VEER_R_FWD_TO_CLIENT : VEER_R_FWD_TO_BACKEND;

	/* The cache key and the FIB parameters read the rewritten headers:
	 * both before the TC checksum helpers invalidate packet pointers. Two
	 * separate tails, so that the verifier never sees fib used unset. */
	veer_fib_cache_key_of(pkt, hook, &h, &nh_key);
	nh = veer_fib_cache_find(&nh_key, now);
	if (nh) {
		veer_l4_csum_commit(pkt, hook, h.l4_check, h.l4_check_off, &d);
		return veer_forward_cached(pkt, hook, nh, fwd_reason);
	}
	veer_fib_params(pkt, hook, &h, &fib);
	veer_l4_csum_commit(pkt, hook, h.l4_check, h.l4_check_off, &d);
	return veer_forward(pkt, hook, &fib, fwd_reason, &nh_key, now);
}

SEC("xdp")
int veer_xdp(struct xdp_md *ctx)
{
	struct veer_pkt pkt = {
		.ctx = ctx,
		.data = (void *)(long)ctx->data,
		.data_end = (void *)(long)ctx->data_end,
		.ifindex = ctx->ingress_ifindex,
	};

	/* Single-buffer XDP (no xdp.frags): the frame is data..data_end. */
	pkt.len = (__u32)(pkt.data_end - pkt.data);
	return veer_process(&pkt, VEER_HOOK_XDP);
}

SEC("tc")
int veer_tc(struct __sk_buff *skb)
{
	struct veer_pkt pkt;

	veer_tc_pull_headers(skb);
	pkt.ctx = skb;
	pkt.data = (void *)(long)skb->data;
	pkt.data_end = (void *)(long)skb->data_end;
	pkt.len = skb->len; /* includes page fragments: bytes on the wire */
	/* At ingress skb->ifindex is the receiving device (what
	 * ingress_ifindex also says), and unlike ingress_ifindex it can be set
	 * through BPF_PROG_TEST_RUN's ctx, so tests exercise the FIB path. */
	pkt.ifindex = skb->ifindex;
	return veer_process(&pkt, VEER_HOOK_TC);
}
