/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Reference programs for veer_bpf_bench, measured in the same run as veer_xdp:
 *   ref_pass        XDP_PASS, the floor of BPF_PROG_TEST_RUN itself;
 *   ref_parse_hash  parse eth/ipv4/tcp + one HASH lookup (hit);
 *   ref_parse_lru   parse eth/ipv4/tcp + one LRU_HASH lookup on the 5-tuple (hit);
 *   ref_parse_fib   parse eth/ipv4/tcp + one bpf_fib_lookup (SUCCESS): not a
 *                   target, it shows what forwarding by FIB costs by itself.
 *
 * And bench_reset, the harness for programs that rewrite the packet: with
 * `repeat`, BPF_PROG_TEST_RUN runs a program again and again on the SAME
 * buffer, so after veer's first run the frame is already rewritten (and its
 * TTL drops by one per run). bench_reset copies a pristine frame from
 * bench_template over the packet (optionally stamping a fresh source address,
 * so every run is a new flow) and tail-calls bench_next[0], the program being
 * measured. Its own cost is measured by pointing it at ref_pass and subtracted.
 * With `alternate` it copies two 80-byte frames by turns instead (a request
 * and its reply: the telemetry row), measured and subtracted the same way.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/tcp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "bench_ref.h"

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, struct ref_service_key);
	__type(value, __u32);
} ref_services SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, REF_LRU_ENTRIES);
	__type(key, struct ref_tuple);
	__type(value, __u64);
} ref_flows SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct bench_template);
} bench_template SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} bench_next SEC(".maps");

__u32 bench_counter = 0;
__u32 bench_alt_counter = 0;

SEC("xdp")
int ref_pass(struct xdp_md *ctx)
{
	return XDP_PASS;
}

/* The parse both lookup references share: the same bounds checks a real
 * data plane needs before it may read the ports. */
static __always_inline int ref_parse(struct xdp_md *ctx, struct iphdr **ip_out, struct tcphdr **tcp_out)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip;
	struct tcphdr *tcp;

	if ((void *)(eth + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP))
		return -1;
	ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > end || ip->ihl < 5 || ip->protocol != IPPROTO_TCP)
		return -1;
	tcp = (void *)ip + ip->ihl * 4;
	if ((void *)(tcp + 1) > end)
		return -1;
	*ip_out = ip;
	*tcp_out = tcp;
	return 0;
}

SEC("xdp")
int ref_parse_hash(struct xdp_md *ctx)
{
	struct iphdr *ip;
	struct tcphdr *tcp;
	struct ref_service_key key = {};

	if (ref_parse(ctx, &ip, &tcp))
		return XDP_PASS;
	key.daddr = ip->daddr;
	key.dport = tcp->dest;
	key.proto = ip->protocol;
	return bpf_map_lookup_elem(&ref_services, &key) ? XDP_PASS : XDP_DROP;
}

SEC("xdp")
int ref_parse_lru(struct xdp_md *ctx)
{
	struct iphdr *ip;
	struct tcphdr *tcp;
	struct ref_tuple key = {};

	if (ref_parse(ctx, &ip, &tcp))
		return XDP_PASS;
	key.saddr = ip->saddr;
	key.daddr = ip->daddr;
	key.sport = tcp->source;
	key.dport = tcp->dest;
	key.proto = ip->protocol;
	return bpf_map_lookup_elem(&ref_flows, &key) ? XDP_PASS : XDP_DROP;
}

SEC("xdp")
int ref_parse_fib(struct xdp_md *ctx)
{
	struct iphdr *ip;
	struct tcphdr *tcp;
	struct bpf_fib_lookup p = {};

	if (ref_parse(ctx, &ip, &tcp))
		return XDP_PASS;
	p.family = 2; /* AF_INET */
	p.l4_protocol = ip->protocol;
	p.sport = tcp->source;
	p.dport = tcp->dest;
	p.tot_len = bpf_ntohs(ip->tot_len);
	p.ipv4_src = ip->saddr;
	p.ipv4_dst = ip->daddr;
	p.ifindex = ctx->ingress_ifindex;
	return bpf_fib_lookup(ctx, &p, sizeof(p), 0) == BPF_FIB_LKUP_RET_SUCCESS ? XDP_PASS : XDP_DROP;
}

SEC("xdp")
int bench_reset(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	__u32 zero = 0;
	struct bench_template *t = bpf_map_lookup_elem(&bench_template, &zero);

	if (!t)
		return XDP_ABORTED;
	if (t->alternate) {
		if (data + BENCH_TEL_FRAME_LEN > end)
			return XDP_ABORTED;
		if (++bench_alt_counter & 1)
			__builtin_memcpy(data, t->alt_frame[0], BENCH_TEL_FRAME_LEN);
		else
			__builtin_memcpy(data, t->alt_frame[1], BENCH_TEL_FRAME_LEN);
		bpf_tail_call(ctx, &bench_next, 0);
		return XDP_ABORTED;
	}
	if (data + BENCH_FRAME_LEN > end)
		return XDP_ABORTED;
	__builtin_memcpy(data, t->frame, BENCH_FRAME_LEN);
	if (t->vary_src) {
		/* A source address no earlier run used: the flow table misses. */
		__u32 n = ++bench_counter;
		__builtin_memcpy(data + BENCH_SRC_ADDR_OFFSET, &n, sizeof(n));
	}
	bpf_tail_call(ctx, &bench_next, 0);
	return XDP_ABORTED;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
