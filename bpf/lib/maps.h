/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Every map of the data plane, BTF-defined. Names, types and sizes are part
 * of the ABI with userspace (bpf/include/veer/abi.h): veerd pins the maps by
 * these names and may resize veer_flows before load
 * (node.flow_table_size). Nothing here but map definitions.
 */
#ifndef VEER_LIB_MAPS_H
#define VEER_LIB_MAPS_H

#include "lib/common.h"

#define VEER_FLOW_TABLE_DEFAULT 1048576

/* (VIP, port, proto, family) -> service. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, VEER_MAX_SERVICES);
	__type(key, struct veer_service_key);
	__type(value, struct veer_service);
} veer_services SEC(".maps");

/* service_id * 2 + table -> slot table (two per service, SPEC §2.5). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, VEER_MAX_SERVICES * 2);
	__type(key, __u32);
	__type(value, struct veer_slot_table);
} veer_slots SEC(".maps");

/* (service_id * VEER_MAX_VARIANTS + variant) * VEER_MAX_BACKENDS + backend. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, VEER_MAX_SERVICES * VEER_MAX_VARIANTS * VEER_MAX_BACKENDS);
	__type(key, __u32);
	__type(value, struct veer_backend);
} veer_backends SEC(".maps");

/* (client, client port, service) -> chosen backend and request state: one
 * entry per flow, read by both directions (abi.h). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, VEER_FLOW_TABLE_DEFAULT);
	__type(key, struct veer_flow_id);
	__type(value, struct veer_flow);
} veer_flows SEC(".maps");

/* Backend (address, port, proto, family) -> its service, VIP and port:
 * what tells a reply from other traffic of a backend. Written by userspace. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, VEER_BACKEND_REV_MAX);
	__type(key, struct veer_backend_rev_key);
	__type(value, struct veer_backend_rev);
} veer_backend_rev SEC(".maps");

/* service_id * VEER_MAX_VARIANTS + variant -> per-CPU counters. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, VEER_MAX_SERVICES * VEER_MAX_VARIANTS);
	__type(key, __u32);
	__type(value, struct veer_variant_counters);
} veer_variant_stats SEC(".maps");

/* service_id * VEER_MAX_VARIANTS + variant -> per-CPU response-latency
 * histogram (veer/latency.h buckets). A map of its own: only reply packets
 * that answer a request touch it, the hot counters stay one lookup. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, VEER_MAX_SERVICES * VEER_MAX_VARIANTS);
	__type(key, __u32);
	__type(value, struct veer_latency_hist);
} veer_latency SEC(".maps");

/* Reverse tuple (backend -> client) -> a SYN the backend has not answered. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, VEER_HANDSHAKES_MAX);
	__type(key, struct veer_flow_key);
	__type(value, struct veer_handshake);
} veer_handshakes SEC(".maps");

/* service_id * VEER_MAX_VARIANTS + variant -> handshakes that timed out.
 * Written by userspace only; here so that it is created and pinned with the
 * rest (and survives veerd restarts like them). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, VEER_MAX_SERVICES * VEER_MAX_VARIANTS);
	__type(key, __u32);
	__type(value, __u64);
} veer_handshake_timeouts SEC(".maps");

/* enum veer_reason -> per-CPU packet count. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, VEER_REASON_MAX);
	__type(key, __u32);
	__type(value, __u64);
} veer_reasons SEC(".maps");

/* Port in host order -> VEER_PORT_F_* bits. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, VEER_PORT_FILTER_SIZE);
	__type(key, __u32);
	__type(value, __u8);
} veer_port_filter SEC(".maps");

/* Port in host order -> 1 + the id of the only TCP service on it (abi.h). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, VEER_TCP_PORT_SERVICE_SIZE);
	__type(key, __u32);
	__type(value, __u8);
} veer_tcp_port_service SEC(".maps");

/* Service id -> its veer_services key: what a veer_tcp_port_service hint is
 * checked against. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, VEER_MAX_SERVICES);
	__type(key, __u32);
	__type(value, struct veer_service_key);
} veer_service_keys SEC(".maps");

/* Written by veerd only; here so that it is created and pinned with the rest. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct veer_meta);
} veer_meta SEC(".maps");

/* veer_fib_cache, the per-CPU next-hop cache, is BPF-private (no abi.h type,
 * never read by userspace) and defined with its logic in lib/fib_cache.h. */

#endif /* VEER_LIB_MAPS_H */
