/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The seeded hash that picks a slot for a new flow. It is compiled into the
 * BPF program AND into userspace (`veerctl which`, the tests, the table
 * builder), so both sides compute the same slot for the same key: one
 * definition, no mirror. Needs abi.h first; no includes (see abi.h).
 *
 * Murmur3-style rounds over 32-bit words. Addresses and ports are hashed as
 * they sit in the packet (network order), so userspace must hash the same
 * raw words. Fixed word counts, no loops: the verifier sees straight code.
 */
#ifndef VEER_HASH_H
#define VEER_HASH_H

#ifndef VEER_HASH_INLINE
#define VEER_HASH_INLINE static inline __attribute__((always_inline))
#endif

VEER_HASH_INLINE __u32 veer_rotl32(__u32 x, int r)
{
	return (x << r) | (x >> (32 - r));
}

VEER_HASH_INLINE __u32 veer_hash_round(__u32 h, __u32 k)
{
	k *= 0xcc9e2d51u;
	k = veer_rotl32(k, 15);
	k *= 0x1b873593u;
	h ^= k;
	h = veer_rotl32(h, 13);
	return h * 5 + 0xe6546b64u;
}

VEER_HASH_INLINE __u32 veer_hash_final(__u32 h, __u32 len)
{
	h ^= len;
	h ^= h >> 16;
	h *= 0x85ebca6bu;
	h ^= h >> 13;
	h *= 0xc2b2ae35u;
	h ^= h >> 16;
	return h;
}

VEER_HASH_INLINE __u32 veer_hash_addr(__u32 h, const struct veer_addr *a)
{
	h = veer_hash_round(h, a->addr[0]);
	h = veer_hash_round(h, a->addr[1]);
	h = veer_hash_round(h, a->addr[2]);
	return veer_hash_round(h, a->addr[3]);
}

/* affinity: connection. Key = client tuple as seen on the wire. */
VEER_HASH_INLINE __u32 veer_hash_connection(const struct veer_flow_key *k, __u32 seed)
{
	__u32 h = veer_hash_addr(seed, &k->src);
	h = veer_hash_addr(h, &k->dst);
	h = veer_hash_round(h, ((__u32)k->sport << 16) | k->dport);
	h = veer_hash_round(h, ((__u32)k->proto << 8) | k->family);
	return veer_hash_final(h, 40);
}

/* affinity: client-ip. Key = client address only. */
VEER_HASH_INLINE __u32 veer_hash_client(const struct veer_addr *client, __u32 seed)
{
	return veer_hash_final(veer_hash_addr(seed, client), 16);
}

/* Hash -> slot in [0, VEER_SLOTS) by multiply-shift (no division). */
VEER_HASH_INLINE __u32 veer_slot_of(__u32 hash)
{
	return (__u32)(((__u64)hash * VEER_SLOTS) >> 32);
}

#endif /* VEER_HASH_H */
