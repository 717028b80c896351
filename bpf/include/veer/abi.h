/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * veer ABI: every type and constant shared by the BPF programs and the C++
 * userspace. This is the only definition: userspace includes this file, it
 * never mirrors it, and checks the layout with static_assert
 * (userspace/lib/tables/abi_check.cc).
 *
 * No includes on purpose: the includer provides __u8/__u16/__u32/__u64
 * (<linux/types.h> in userspace, vmlinux or <linux/types.h> in BPF).
 *
 * Byte order: addresses and ports are stored in NETWORK order everywhere
 * (they are copied straight from/to packet headers); all other fields are
 * host order.
 *
 * Changing a struct here changes the pinned maps: bump VEER_ABI_VERSION so a
 * new veerd refuses to adopt pins of an incompatible layout.
 */
#ifndef VEER_ABI_H
#define VEER_ABI_H

#define VEER_ABI_VERSION 6 /* 2: veer_fib_cache; 3: kernel telemetry (flow state,
			    * nat_rev.req_ts_ns, counters, latency histogram,
			    * handshakes); 4: one veer_flows entry per flow for
			    * both directions (key struct veer_flow_id, value
			    * with req_ts_ns, no last_seen_ns), veer_nat_rev
			    * replaced by veer_backend_rev; 5: veer_egress
			    * (peer redirect), veer_fib_cache_entry.egress_flags;
			    * 6: one flow entry per connection (veer_flow.syn_seq /
			    * seen_tick and TCP state bits, no service_id and
			    * backend_idx), veer_service.udp_idle_ticks,
			    * veer_tcp_port_service and veer_service_keys */

/* Limits (SPEC §1). */
#define VEER_MAX_SERVICES 64
#define VEER_MAX_VARIANTS 8
#define VEER_MAX_BACKENDS 64 /* per variant */

/* Slots per table: 10,000 gives exactly 0.01 % per slot, so a weight in
 * basis points is exactly a slot count (SPEC §1 resolution). */
#define VEER_SLOTS 10000
#define VEER_WEIGHT_TOTAL 10000 /* basis points: 100.00 % */

#define VEER_VARIANT_NONE 0xff

#define VEER_AF_INET 4
#define VEER_AF_INET6 6

#define VEER_PROTO_TCP 6
#define VEER_PROTO_UDP 17

enum veer_affinity {
	VEER_AFFINITY_CONNECTION = 0, /* hash the 5-tuple */
	VEER_AFFINITY_CLIENT_IP = 1,  /* hash the client address only */
};

/* An IPv4 address is stored in addr[0], addr[1..3] are zero. */
struct veer_addr {
	__u32 addr[4];
};

/* Map veer_services (HASH): (VIP, port, protocol) -> service. */
struct veer_service_key {
	struct veer_addr vip;
	__u16 port; /* network order */
	__u8 proto; /* VEER_PROTO_* */
	__u8 family; /* VEER_AF_* */
};

struct veer_service {
	__u32 id;          /* index into the per-service arrays, < VEER_MAX_SERVICES */
	__u32 hash_seed;   /* node.hash_seed */
	__u8 active_table; /* 0 or 1: which of the two slot tables new flows use */
	__u8 affinity;     /* enum veer_affinity */
	__u8 n_variants;
	__u8 pad;
	__u32 generation;  /* bumped on every flip, for observers */
	__u32 udp_idle_ticks; /* UDP: a flow entry idle for more than this many
			       * VEER_TICKs selects again on its next datagram
			       * (node.udp_idle_timeout); unused for TCP */
};

/* The coarse clock of flow entries: bpf_ktime_get_coarse_ns() >> 24, about
 * 16.8 ms a tick, so a 32-bit tick wraps after 2.3 years and differences are
 * taken modulo 2^32. Only UDP idle times use it. */
#define VEER_TICK_SHIFT 24
#define VEER_TICK_NS (1ull << VEER_TICK_SHIFT)

/* Map veer_slots (ARRAY), key = service_id * 2 + table. The table not named
 * by veer_service.active_table is the one userspace writes; the flip is one
 * update of veer_service (SPEC §2.5). */
struct veer_slot {
	__u8 variant; /* VEER_VARIANT_NONE: no variant (slot unused) */
	__u8 backend; /* index into the variant's backends */
};

struct veer_slot_table {
	struct veer_slot slot[VEER_SLOTS];
};

/* Map veer_backends (ARRAY),
 * key = (service_id * VEER_MAX_VARIANTS + variant) * VEER_MAX_BACKENDS + backend. */
#define VEER_BACKEND_F_PRESENT 1
#define VEER_BACKEND_F_DRAINING 2
struct veer_backend {
	struct veer_addr addr;
	__u16 port;   /* network order */
	__u8 family;  /* VEER_AF_* */
	__u8 flags;   /* VEER_BACKEND_F_* */
};

/* The connection tuple as the client's packet carries it (src = client, dst =
 * VIP). What the slot hash of connection affinity reads (veer/hash.h), what
 * `veerctl which` builds; reversed (src = backend, dst = client, what the
 * SYN-ACK carries) it is the key of veer_handshakes. Not a flow-table key
 * any more (ABI 4): see struct veer_flow_id. */
struct veer_flow_key {
	struct veer_addr src;
	struct veer_addr dst;
	__u16 sport; /* network order */
	__u16 dport; /* network order */
	__u8 proto;
	__u8 family;
	__u16 pad;   /* always zero: the key is hashed as bytes */
};

/* Map veer_flows (LRU_HASH, node.flow_table_size entries): one entry per
 * connection (TCP) or exchange (UDP), shared by both directions. A client
 * packet finds it by (its source, the service its destination names); a
 * backend's reply by (its destination, the service of its source backend,
 * from veer_backend_rev), and only counts as a reply if the flow's backend is
 * the reply's source. The VIP is not stored: service_id names it.
 *
 * The key is a tuple, and clients reuse tuples (a busy client address cycles
 * through its ephemeral ports within seconds), so the entry also records
 * which connection it belongs to (lib/conn.h): a client SYN that is not a
 * retransmission of the SYN that made the entry (another sequence number, or
 * the entry's connection has closed), or a UDP datagram after more than
 * veer_service.udp_idle_ticks of silence, is a new flow: it selects again
 * from the active table and replaces the entry. Kernel accounting per entry:
 * 48 (htab_elem) + 24 (key) + 32 (value) + 16 (bucket) = 120 bytes
 * (<= 128). */
struct veer_flow_id {
	struct veer_addr client;
	__u16 client_port; /* network order */
	__u16 service_id;
	__u8 proto;
	__u8 family;
	__u16 pad;         /* always zero: the key is hashed as bytes */
};

struct veer_flow {
	struct veer_addr backend;
	__u16 backend_port; /* network order */
	__u8 variant;
	__u8 state;         /* VEER_FLOW_S_* */
	union {
		__u32 syn_seq;   /* TCP, with VEER_FLOW_S_SYN: the sequence number
				  * (network order) of the client SYN that made
				  * the entry, i.e. the connection's ISN */
		__u32 seen_tick; /* UDP: VEER_TICK of the last datagram, either way */
	};
	__u64 req_ts_ns;    /* bpf_ktime_get_ns() of the first payload byte of
			     * the pending request; 0: none pending */
};

/* veer_flow.state bits.
 * REQUEST_PENDING (telemetry, SPEC §2.10): the client sent payload that the
 * backend has not answered yet; the request's start time is in req_ts_ns.
 * Set only together with a non-zero req_ts_ns, cleared with it.
 * The rest is the TCP connection as seen in both directions (lib/conn.h):
 * SYN: the entry was made by a client SYN, syn_seq holds its sequence number
 * (an entry made by any other packet, e.g. after an eviction or a veerd-less
 * restart of the node, has ESTABLISHED without SYN); ESTABLISHED: the
 * backend answered the SYN (SYN-ACK), or the entry was picked up mid-stream;
 * FIN_CLIENT / FIN_BACKEND: that side sent FIN; RST: either side reset. */
#define VEER_FLOW_S_REQUEST_PENDING 0x01
#define VEER_FLOW_S_SYN 0x02
#define VEER_FLOW_S_ESTABLISHED 0x04
#define VEER_FLOW_S_FIN_CLIENT 0x08
#define VEER_FLOW_S_FIN_BACKEND 0x10
#define VEER_FLOW_S_RST 0x20
/* The connection is closing or closed: a SYN never continues it. */
#define VEER_FLOW_S_ENDING (VEER_FLOW_S_FIN_CLIENT | VEER_FLOW_S_FIN_BACKEND | VEER_FLOW_S_RST)

/* Map veer_backend_rev (HASH, VEER_BACKEND_REV_MAX entries), written by
 * userspace: a backend (address, port, protocol, family) -> the service it
 * belongs to. A backend belongs to at most one service (config validation).
 * Entries of backends removed from the configuration stay while their
 * service exists (flows to them still need their replies translated). */
struct veer_backend_rev_key {
	struct veer_addr addr;
	__u16 port; /* network order */
	__u8 proto; /* VEER_PROTO_* */
	__u8 family; /* VEER_AF_* */
};

struct veer_backend_rev {
	struct veer_addr vip;
	__u16 vport;      /* network order */
	__u16 service_id;
};

/* Every backend a configuration can hold at once; removed backends kept for
 * their flows' replies only take room while there is room (userspace drops
 * the oldest of those first). */
#define VEER_BACKEND_REV_MAX (VEER_MAX_SERVICES * VEER_MAX_VARIANTS * VEER_MAX_BACKENDS)

/* Map veer_variant_stats (PERCPU_ARRAY),
 * key = service_id * VEER_MAX_VARIANTS + variant.
 * "in" is client -> backend, "out" is backend -> client (replies). */
struct veer_variant_counters {
	__u64 packets_in;
	__u64 bytes_in;
	__u64 packets_out;
	__u64 bytes_out;
	__u64 new_flows;
	/* Telemetry (SPEC §2.10), since ABI 3. */
	__u64 backend_resets; /* TCP replies with RST */
	__u64 client_resets;  /* TCP client packets with RST */
	__u64 http_2xx;       /* status class of the first reply payload after a */
	__u64 http_3xx;       /* request, when it starts with "HTTP/1.x NNN"     */
	__u64 http_4xx;
	__u64 http_5xx;
	__u64 responses;      /* latency samples: one per answered request */
};

/* Map veer_latency (PERCPU_ARRAY), key = service_id * VEER_MAX_VARIANTS +
 * variant: the response-latency histogram, time from the first payload byte
 * of a request (client -> backend) to the first payload byte of the reply.
 * Log-linear buckets over nanoseconds: VEER_LAT_SUB_BUCKETS per power of two
 * from 2^VEER_LAT_MIN_SHIFT (8.192 us) to 2^VEER_LAT_MAX_SHIFT (68.7 s), plus
 * bucket 0 for [0, 2^MIN_SHIFT) and the last bucket for [2^MAX_SHIFT, inf).
 * 16 sub-buckets: a bucket is at most 1/16 = 6.25 % of its lower bound wide
 * (8 would give 12.5 %, above the 10 % of SPEC §2.10). The index and the
 * bounds are computed by veer/latency.h, on both sides. */
#define VEER_LAT_SUB_BITS 4
#define VEER_LAT_SUB_BUCKETS (1u << VEER_LAT_SUB_BITS)
#define VEER_LAT_MIN_SHIFT 13 /* 8192 ns <= 10 us */
#define VEER_LAT_MAX_SHIFT 36 /* 68.7 s >= 60 s */
#define VEER_LAT_BUCKETS ((VEER_LAT_MAX_SHIFT - VEER_LAT_MIN_SHIFT) * VEER_LAT_SUB_BUCKETS + 2)

struct veer_latency_hist {
	__u64 bucket[VEER_LAT_BUCKETS];
};

/* Map veer_handshakes (LRU_HASH, VEER_HANDSHAKES_MAX): TCP handshakes the
 * backend has not answered yet. Key = the reverse tuple (backend -> client,
 * what the SYN-ACK carries, struct veer_flow_key). Inserted by the client's SYN
 * (no ACK), deleted by the backend's SYN-ACK; userspace deletes entries older
 * than its timeout and counts them in veer_handshake_timeouts. Under a SYN
 * flood the LRU evicts the oldest entries silently: those are not counted. */
#define VEER_HANDSHAKES_MAX 65536

struct veer_handshake {
	__u64 syn_ts_ns;   /* bpf_ktime_get_coarse_ns() of the SYN (CLOCK_MONOTONIC
			    * base, jiffy resolution) */
	__u16 service_id;
	__u8 variant;
	__u8 pad[5];
};

/* Map veer_handshake_timeouts (ARRAY of __u64), key = service_id *
 * VEER_MAX_VARIANTS + variant: handshakes with no answer within the timeout,
 * written by userspace only (pinned, so counts survive veerd restarts). */

/* Map veer_reasons (PERCPU_ARRAY of __u64), key = enum veer_reason.
 * Every verdict the program returns is counted under exactly one reason.
 * Values never renumber: add new ones at the end, before VEER_REASON_MAX.
 * X(name, value, verdict-kind, description) */
#define VEER_REASONS(X)                                                              \
	X(PASS_NOT_IP, 0, pass, "not IPv4 or IPv6")                                  \
	X(PASS_NOT_SERVICE, 1, pass, "not addressed to a service nor a reply")       \
	X(PASS_NOT_TCP_UDP, 2, pass, "IP protocol other than TCP or UDP")            \
	X(PASS_IPV4_FRAGMENT, 3, pass, "IPv4 fragment")                              \
	X(PASS_IPV6_EXT_HDR, 4, pass, "IPv6 extension header")                       \
	X(PASS_TRUNCATED_ETH, 5, pass, "truncated Ethernet or VLAN header")          \
	X(PASS_TRUNCATED_IP, 6, pass, "truncated IPv4 or IPv6 header")               \
	X(PASS_BAD_IP_HEADER, 7, pass, "malformed IP header (version, IHL, length)") \
	X(DROP_TRUNCATED_L4, 8, drop, "service packet with truncated TCP/UDP header") \
	X(DROP_BAD_L4_HEADER, 9, drop, "service packet with malformed TCP header")   \
	X(DROP_NO_BACKEND, 10, drop, "service has no variant or backend for the slot") \
	X(PASS_TTL_EXPIRED, 11, pass, "TTL/hop limit would expire: left to the stack") \
	X(PASS_FIB_TO_STACK, 12, pass, "rewritten, forwarding left to the stack (no neighbour yet)") \
	X(DROP_FIB_UNREACHABLE, 13, drop, "rewritten, no route to the destination")  \
	X(FWD_TO_BACKEND, 14, forward, "client packet rewritten and sent to a backend") \
	X(FWD_TO_CLIENT, 15, forward, "reply rewritten and sent to the client")      \
	X(DROP_STATE_MISSING, 16, drop, "internal state missing (map lookup failed)") \
	X(PASS_VLAN_UNSUPPORTED, 17, pass, "more than one VLAN tag")                  \
	X(PASS_TRUNCATED_L4, 18, pass, "TCP/UDP header too short to read the ports")

enum veer_reason {
#define VEER_REASON_ENUM(name, value, kind, desc) VEER_R_##name = value,
	VEER_REASONS(VEER_REASON_ENUM)
#undef VEER_REASON_ENUM
	VEER_REASON_MAX = 19,
};

/* Map veer_port_filter (ARRAY, 65536 entries of __u8), key = port in HOST
 * order. A pre-check before any hash lookup: array lookups are inlined by the
 * verifier into a bounds check and a load, so packets whose ports belong to
 * no service and no backend (most non-service traffic) cost no hash lookup.
 * Userspace sets the bits; a set bit only means "look further". */
#define VEER_PORT_F_SERVICE_TCP 0x01 /* some TCP service listens on this dport */
#define VEER_PORT_F_SERVICE_UDP 0x02
#define VEER_PORT_F_BACKEND_TCP 0x04 /* some TCP backend answers from this sport */
#define VEER_PORT_F_BACKEND_UDP 0x08
#define VEER_PORT_FILTER_SIZE 65536

/* Map veer_tcp_port_service (ARRAY, 65536 entries of __u8), key = port in
 * HOST order: 1 + the id of the only TCP service whose VIP port this is; 0
 * when none or several are. A hint that spares established TCP packets the
 * veer_services hash lookup (its jhash is a sixth of their cost): the
 * packet's VIP is checked against veer_service_keys[id], an array load, and
 * a packet the hint does not fit takes the hash lookup as before. The
 * service's value (tables, seed) is still read from veer_services whenever a
 * flow is selected, so flips stay one update of veer_services. Written by
 * userspace: the key first, then the hint; cleared before the service goes. */
#define VEER_TCP_PORT_SERVICE_SIZE 65536

/* Map veer_service_keys (ARRAY, VEER_MAX_SERVICES entries of struct
 * veer_service_key), key = service id: the key each id stands for in
 * veer_services. An entry of family 0 matches no packet. */

/* Map veer_fib_cache (PERCPU_ARRAY, VEER_FIB_CACHE_ENTRIES per CPU): the
 * next hop of recent bpf_fib_lookup() SUCCESSes (bpf/lib/fib_cache.h). Only
 * the data plane uses it; it is here because the BPF tests and the benchmark
 * read it. Index = hash of (destination, ingress ifindex). */
#define VEER_FIB_CACHE_BITS 8
#define VEER_FIB_CACHE_ENTRIES (1u << VEER_FIB_CACHE_BITS) /* per CPU */
#define VEER_FIB_CACHE_TTL_NS 1000000000ull

struct veer_fib_cache_entry {
	__u32 dst[4];          /* destination as looked up (IPv4: dst[0], rest 0) */
	__u32 ingress_ifindex; /* where the lookup started */
	__u32 egress_ifindex;  /* where the FIB sent it */
	__u64 expires_ns;      /* bpf_ktime_get_coarse_ns() clock; 0: empty */
	__u32 mtu;             /* the FIB's MTU for this route (mtu_result) */
	__u8 smac[6];
	__u8 dmac[6];
	__u8 family;           /* VEER_AF_*; 0: empty */
	__u8 egress_flags;     /* VEER_EGRESS_F_* of egress_ifindex */
	__u8 pad[2];
};

/* Map veer_egress (HASH, key __u32 ifindex -> __u32 VEER_EGRESS_F_* bits),
 * written by veerd for the interfaces it attaches to.
 * VEER_EGRESS_F_PEER: a veth whose peer lives in another network namespace.
 * The TC hook (ingress) then sends with bpf_redirect_peer(): the packet
 * enters the peer's namespace on the same CPU, in the same softirq, instead
 * of a transmit on the veth that queues it to the backlog for a second pass
 * (how Cilium moves pod traffic). Not used by XDP, and never for a device
 * without the flag (redirect_peer drops for anything but a veth/netkit whose
 * peer is in another namespace). */
#define VEER_EGRESS_MAX 256
#define VEER_EGRESS_F_PEER 0x01

/* Map veer_meta (ARRAY, 1 entry): written by veerd, read on adoption. */
struct veer_meta {
	__u32 abi_version; /* VEER_ABI_VERSION of the veerd that created the pins */
	__u32 hash_seed;
	__u64 created_ns;
};

#endif /* VEER_ABI_H */
