// Layout of every abi.h struct, as the BPF side (clang -target bpf, same
// natural alignment as x86-64 and arm64) compiles it. A change here means the
// pinned maps change: bump VEER_ABI_VERSION.
#include <cstddef>

#include "config/net.h"  // abi.h with the kernel's __u* types

namespace {

#define VEER_CHECK_SIZE(type, size) static_assert(sizeof(struct type) == (size), #type " size changed")
#define VEER_CHECK_FIELD(type, field, offset) \
  static_assert(offsetof(struct type, field) == (offset), #type "." #field " moved")

VEER_CHECK_SIZE(veer_addr, 16);
VEER_CHECK_FIELD(veer_addr, addr, 0);

VEER_CHECK_SIZE(veer_service_key, 20);
VEER_CHECK_FIELD(veer_service_key, vip, 0);
VEER_CHECK_FIELD(veer_service_key, port, 16);
VEER_CHECK_FIELD(veer_service_key, proto, 18);
VEER_CHECK_FIELD(veer_service_key, family, 19);

VEER_CHECK_SIZE(veer_service, 20);
VEER_CHECK_FIELD(veer_service, id, 0);
VEER_CHECK_FIELD(veer_service, hash_seed, 4);
VEER_CHECK_FIELD(veer_service, active_table, 8);
VEER_CHECK_FIELD(veer_service, affinity, 9);
VEER_CHECK_FIELD(veer_service, n_variants, 10);
VEER_CHECK_FIELD(veer_service, pad, 11);
VEER_CHECK_FIELD(veer_service, generation, 12);
VEER_CHECK_FIELD(veer_service, udp_idle_ticks, 16);

VEER_CHECK_SIZE(veer_slot, 2);
VEER_CHECK_FIELD(veer_slot, variant, 0);
VEER_CHECK_FIELD(veer_slot, backend, 1);

VEER_CHECK_SIZE(veer_slot_table, 2 * VEER_SLOTS);
VEER_CHECK_FIELD(veer_slot_table, slot, 0);

VEER_CHECK_SIZE(veer_backend, 20);
VEER_CHECK_FIELD(veer_backend, addr, 0);
VEER_CHECK_FIELD(veer_backend, port, 16);
VEER_CHECK_FIELD(veer_backend, family, 18);
VEER_CHECK_FIELD(veer_backend, flags, 19);

VEER_CHECK_SIZE(veer_flow_key, 40);
VEER_CHECK_FIELD(veer_flow_key, src, 0);
VEER_CHECK_FIELD(veer_flow_key, dst, 16);
VEER_CHECK_FIELD(veer_flow_key, sport, 32);
VEER_CHECK_FIELD(veer_flow_key, dport, 34);
VEER_CHECK_FIELD(veer_flow_key, proto, 36);
VEER_CHECK_FIELD(veer_flow_key, family, 37);
VEER_CHECK_FIELD(veer_flow_key, pad, 38);

VEER_CHECK_SIZE(veer_flow_id, 24);
VEER_CHECK_FIELD(veer_flow_id, client, 0);
VEER_CHECK_FIELD(veer_flow_id, client_port, 16);
VEER_CHECK_FIELD(veer_flow_id, service_id, 18);
VEER_CHECK_FIELD(veer_flow_id, proto, 20);
VEER_CHECK_FIELD(veer_flow_id, family, 21);
VEER_CHECK_FIELD(veer_flow_id, pad, 22);

VEER_CHECK_SIZE(veer_flow, 32);
VEER_CHECK_FIELD(veer_flow, backend, 0);
VEER_CHECK_FIELD(veer_flow, backend_port, 16);
VEER_CHECK_FIELD(veer_flow, variant, 18);
VEER_CHECK_FIELD(veer_flow, state, 19);
VEER_CHECK_FIELD(veer_flow, syn_seq, 20);
VEER_CHECK_FIELD(veer_flow, seen_tick, 20);
VEER_CHECK_FIELD(veer_flow, req_ts_ns, 24);
static_assert(sizeof(veer_flow::syn_seq) == 4 && sizeof(veer_flow::seen_tick) == 4,
              "syn_seq and seen_tick share 4 bytes");

// Issue 5: <= 128 bytes of kernel memory per flow. An LRU_HASH element costs
// 48 (struct htab_elem) + round_up(key, 8) + round_up(value, 8), plus a
// 16-byte bucket per entry; the BPF tests check the kernel's own figure.
static_assert(48 + (sizeof(veer_flow_id) + 7) / 8 * 8 + (sizeof(veer_flow) + 7) / 8 * 8 + 16 <= 128,
              "a veer_flows entry must stay within 128 bytes of kernel memory");

VEER_CHECK_SIZE(veer_backend_rev_key, 20);
VEER_CHECK_FIELD(veer_backend_rev_key, addr, 0);
VEER_CHECK_FIELD(veer_backend_rev_key, port, 16);
VEER_CHECK_FIELD(veer_backend_rev_key, proto, 18);
VEER_CHECK_FIELD(veer_backend_rev_key, family, 19);

VEER_CHECK_SIZE(veer_backend_rev, 20);
VEER_CHECK_FIELD(veer_backend_rev, vip, 0);
VEER_CHECK_FIELD(veer_backend_rev, vport, 16);
VEER_CHECK_FIELD(veer_backend_rev, service_id, 18);

VEER_CHECK_SIZE(veer_variant_counters, 96);
VEER_CHECK_FIELD(veer_variant_counters, packets_in, 0);
VEER_CHECK_FIELD(veer_variant_counters, bytes_in, 8);
VEER_CHECK_FIELD(veer_variant_counters, packets_out, 16);
VEER_CHECK_FIELD(veer_variant_counters, bytes_out, 24);
VEER_CHECK_FIELD(veer_variant_counters, new_flows, 32);
VEER_CHECK_FIELD(veer_variant_counters, backend_resets, 40);
VEER_CHECK_FIELD(veer_variant_counters, client_resets, 48);
VEER_CHECK_FIELD(veer_variant_counters, http_2xx, 56);
VEER_CHECK_FIELD(veer_variant_counters, http_3xx, 64);
VEER_CHECK_FIELD(veer_variant_counters, http_4xx, 72);
VEER_CHECK_FIELD(veer_variant_counters, http_5xx, 80);
VEER_CHECK_FIELD(veer_variant_counters, responses, 88);

VEER_CHECK_SIZE(veer_latency_hist, 8 * VEER_LAT_BUCKETS);
VEER_CHECK_FIELD(veer_latency_hist, bucket, 0);
static_assert(VEER_LAT_BUCKETS == 370, "latency bucket layout changed");

VEER_CHECK_SIZE(veer_handshake, 16);
VEER_CHECK_FIELD(veer_handshake, syn_ts_ns, 0);
VEER_CHECK_FIELD(veer_handshake, service_id, 8);
VEER_CHECK_FIELD(veer_handshake, variant, 10);
VEER_CHECK_FIELD(veer_handshake, pad, 11);

VEER_CHECK_SIZE(veer_fib_cache_entry, 56);
VEER_CHECK_FIELD(veer_fib_cache_entry, dst, 0);
VEER_CHECK_FIELD(veer_fib_cache_entry, ingress_ifindex, 16);
VEER_CHECK_FIELD(veer_fib_cache_entry, egress_ifindex, 20);
VEER_CHECK_FIELD(veer_fib_cache_entry, expires_ns, 24);
VEER_CHECK_FIELD(veer_fib_cache_entry, mtu, 32);
VEER_CHECK_FIELD(veer_fib_cache_entry, smac, 36);
VEER_CHECK_FIELD(veer_fib_cache_entry, dmac, 42);
VEER_CHECK_FIELD(veer_fib_cache_entry, family, 48);
VEER_CHECK_FIELD(veer_fib_cache_entry, egress_flags, 49);

VEER_CHECK_SIZE(veer_meta, 16);
VEER_CHECK_FIELD(veer_meta, abi_version, 0);
VEER_CHECK_FIELD(veer_meta, hash_seed, 4);
VEER_CHECK_FIELD(veer_meta, created_ns, 8);

// Limits the userspace types rely on.
static_assert(VEER_SLOTS == VEER_WEIGHT_TOTAL, "a basis point must be exactly one slot");
static_assert(VEER_MAX_BACKENDS <= 256 && VEER_MAX_VARIANTS < VEER_VARIANT_NONE,
              "variant and backend indices must fit veer_slot's u8 fields");
static_assert(VEER_REASON_MAX > VEER_R_PASS_TRUNCATED_L4, "VEER_REASON_MAX must follow the last reason");

}  // namespace
