/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Types shared by udpgen.bpf.c and udpgen.cc (no includes: the includer
 * provides __u8/__u16/__u32/__u64). */
#ifndef VEER_UDPGEN_H
#define VEER_UDPGEN_H

/* Ethernet (14) + IPv4 without options (20) + UDP (8). */
#define UDPGEN_HEADER_LEN 42
#define UDPGEN_UDP_SPORT_OFFSET 34
/* Source ports are UDPGEN_FIRST_SRC_PORT .. UDPGEN_FIRST_SRC_PORT + flows - 1. */
#define UDPGEN_FIRST_SRC_PORT 10000
#define UDPGEN_MAX_FLOWS (65536 - UDPGEN_FIRST_SRC_PORT)

/* The complete header of every frame, written by userspace before load
 * (rodata: frozen, so the verifier also sees `flows` as a constant). The
 * header is held as 8-byte words so the program copies it with five 8-byte
 * and one 2-byte store instead of 42 byte stores. */
struct udpgen_config {
	union {
		__u8 bytes[UDPGEN_HEADER_LEN];
		struct {
			__u64 words[5];
			__u16 tail;
		} __attribute__((packed));
	} header;
	__u32 flows;
};

#endif /* VEER_UDPGEN_H */
