/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Types shared by ref.bpf.c and veer_bpf_bench.cc (no includes: the includer
 * provides __u8/__u16/__u32). */
#ifndef VEER_BENCH_REF_H
#define VEER_BENCH_REF_H

#define REF_LRU_ENTRIES 65536   /* the map; the bench fills 50,000 of them */
#define BENCH_FRAME_LEN 64      /* every benchmark frame is exactly this long */
#define BENCH_SRC_ADDR_OFFSET 26 /* IPv4 source address in an untagged frame */
#define BENCH_TEL_FRAME_LEN 80  /* the telemetry row's frames: 26 payload bytes, room
				 * for a request line and an "HTTP/1.1 200" status */

struct ref_service_key {
	__u32 daddr;
	__u16 dport;
	__u8 proto;
	__u8 pad;
};

struct ref_tuple {
	__u32 saddr;
	__u32 daddr;
	__u16 sport;
	__u16 dport;
	__u8 proto;
	__u8 pad[3];
};

struct bench_template {
	__u8 frame[BENCH_FRAME_LEN];
	__u32 vary_src;
	/* alternate != 0: odd runs get alt_frame[0], even runs alt_frame[1]
	 * (a request and its reply), BENCH_TEL_FRAME_LEN bytes each. */
	__u32 alternate;
	__u8 alt_frame[2][BENCH_TEL_FRAME_LEN];
};

#endif /* VEER_BENCH_REF_H */
