/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Counters: one per-CPU count per enum veer_reason (every verdict is counted
 * exactly once, by veer_end or veer_forward) and per-CPU packets/bytes/new
 * flows per (service, variant). Per-CPU values need no atomics; userspace sums
 * the CPUs.
 */
#ifndef VEER_LIB_STATS_H
#define VEER_LIB_STATS_H

#include "lib/common.h"
#include "lib/maps.h"
#include "lib/telemetry.h"

VEER_INLINE void veer_count_reason(__u32 reason)
{
	__u64 *count = bpf_map_lookup_elem(&veer_reasons, &reason);

	if (count)
		*count += 1;
}

VEER_INLINE struct veer_variant_counters *veer_variant_counters(__u16 service_id, __u8 variant)
{
	__u32 key = (__u32)service_id * VEER_MAX_VARIANTS + variant;

	/* variant comes from maps userspace wrote: keep a bad one from
	 * landing in another service's counters. */
	if (variant >= VEER_MAX_VARIANTS)
		return NULL;
	return bpf_map_lookup_elem(&veer_variant_stats, &key);
}

/* A packet that was translated: "in" is client -> backend, "out" is the
 * reply; tel: what telemetry saw in it (lib/telemetry.h), counted with the
 * same lookup. */
VEER_INLINE void veer_count_packet(__u16 service_id, __u8 variant, __u8 to_client, __u32 bytes,
				   const struct veer_tel *tel)
{
	struct veer_variant_counters *c = veer_variant_counters(service_id, variant);

	if (!c)
		return;
	if (to_client) {
		c->packets_out += 1;
		c->bytes_out += bytes;
		if (tel->reset)
			c->backend_resets += 1;
		if (tel->response) {
			c->responses += 1;
			switch (tel->http_class) {
			case 2: c->http_2xx += 1; break;
			case 3: c->http_3xx += 1; break;
			case 4: c->http_4xx += 1; break;
			case 5: c->http_5xx += 1; break;
			default: break;
			}
		}
	} else {
		c->packets_in += 1;
		c->bytes_in += bytes;
		if (tel->reset)
			c->client_resets += 1;
	}
}

VEER_INLINE void veer_count_new_flow(__u16 service_id, __u8 variant)
{
	struct veer_variant_counters *c = veer_variant_counters(service_id, variant);

	if (c)
		c->new_flows += 1;
}

/* The verdict kind of each reason, generated from the one list in abi.h. */
#define VEER_KIND_pass 0
#define VEER_KIND_drop 1
#define VEER_KIND_forward 2

VEER_INLINE int veer_reason_kind(int reason)
{
	switch (reason) {
#define VEER_REASON_KIND(name, value, kind, desc) \
	case VEER_R_##name:                       \
		return VEER_KIND_##kind;
		VEER_REASONS(VEER_REASON_KIND)
#undef VEER_REASON_KIND
	default:
		return VEER_KIND_pass;
	}
}

/* Ends the packet's journey with a pass or drop reason: counts it and
 * returns the hook's verdict. (Forwarding verdicts come from veer_forward.) */
VEER_INLINE int veer_end(const enum veer_hook hook, int reason)
{
	veer_count_reason(reason);
	return veer_reason_kind(reason) == VEER_KIND_drop ? veer_act_drop(hook) : veer_act_pass(hook);
}

#endif /* VEER_LIB_STATS_H */
