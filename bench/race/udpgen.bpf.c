/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * udpgen: the frame-writing half of veer_udpgen, a UDP packet generator run by
 * BPF_PROG_TEST_RUN with BPF_F_TEST_XDP_LIVE_FRAMES. Live-frames mode hands
 * the program frames from a page pool whose pages come back recycled with
 * whatever the previous run left in them, so every run writes the complete
 * Ethernet/IPv4/UDP header again from udpgen_cfg, then stamps the UDP source
 * port of this frame (flows distinct values, round robin per CPU) and returns
 * XDP_TX, which live-frames mode turns into a transmit out of the device
 * given as ctx ingress_ifindex.
 *
 * The IPv4 checksum in the template stays valid because only the UDP source
 * port changes, and the UDP checksum is 0 ("none", allowed for IPv4).
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "udpgen.h"

const volatile struct udpgen_config udpgen_cfg = {};

/* Frames this CPU has written and returned XDP_TX for: the generator's
 * "sent" figure, and the source of the round-robin port index. Per-CPU so
 * that --threads N on several CPUs neither races nor bounces a cache line. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} udpgen_frames SEC(".maps");

SEC("xdp")
int udpgen_frame(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u32 key = 0;

	if (data + UDPGEN_HEADER_LEN > data_end)
		return XDP_ABORTED;
	__u64 *frames = bpf_map_lookup_elem(&udpgen_frames, &key);
	if (!frames)
		return XDP_ABORTED;

	/* Unaligned 8-byte stores into the packet are allowed on x86 (no strict
	 * alignment); the frame data itself starts at an arbitrary headroom. */
	__u64 *words = data;
#pragma unroll
	for (int i = 0; i < 5; i++)
		words[i] = udpgen_cfg.header.words[i];
	*(__u16 *)(data + 40) = udpgen_cfg.header.tail;

	__u16 sport = UDPGEN_FIRST_SRC_PORT + (__u16)(*frames % udpgen_cfg.flows);
	*(__u16 *)(data + UDPGEN_UDP_SPORT_OFFSET) = bpf_htons(sport);
	*frames += 1;
	return XDP_TX;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
