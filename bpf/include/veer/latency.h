/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Response-latency buckets (SPEC §2.10): value in ns -> bucket index, and a
 * bucket's bounds. Compiled into the BPF program AND into userspace, so both
 * sides agree on every boundary: one definition, no mirror. Needs abi.h first
 * (the VEER_LAT_* constants); no includes (see abi.h).
 *
 * Log-linear: bucket 0 is [0, 2^MIN_SHIFT); then for each power of two 2^k,
 * MIN_SHIFT <= k < MAX_SHIFT, VEER_LAT_SUB_BUCKETS equal parts
 * [2^k + j * 2^(k - SUB_BITS), 2^k + (j + 1) * 2^(k - SUB_BITS)); the last
 * bucket is [2^MAX_SHIFT, infinity).
 *
 * No loops and no table: the most significant bit comes from a fixed
 * six-step binary search, so the per-packet cost is a handful of ALU ops
 * whatever the value (the verifier sees straight code).
 */
#ifndef VEER_LATENCY_H
#define VEER_LATENCY_H

#ifndef VEER_LAT_INLINE
#define VEER_LAT_INLINE static inline __attribute__((always_inline))
#endif

/* Index of the highest set bit of v (v != 0): 0..63. */
VEER_LAT_INLINE __u32 veer_lat_msb64(__u64 v)
{
	__u32 r = 0, s;

	s = (v > 0xFFFFFFFFull) << 5;
	v >>= s;
	r |= s;
	s = (v > 0xFFFFull) << 4;
	v >>= s;
	r |= s;
	s = (v > 0xFFull) << 3;
	v >>= s;
	r |= s;
	s = (v > 0xFull) << 2;
	v >>= s;
	r |= s;
	s = (v > 0x3ull) << 1;
	v >>= s;
	r |= s;
	r |= (__u32)(v >> 1);
	return r;
}

/* The bucket of a latency of ns nanoseconds: 0 .. VEER_LAT_BUCKETS - 1. */
VEER_LAT_INLINE __u32 veer_lat_bucket(__u64 ns)
{
	__u32 msb, sub;

	if (ns < (1ull << VEER_LAT_MIN_SHIFT))
		return 0;
	if (ns >= (1ull << VEER_LAT_MAX_SHIFT))
		return VEER_LAT_BUCKETS - 1;
	msb = veer_lat_msb64(ns); /* MIN_SHIFT .. MAX_SHIFT - 1 */
	sub = (__u32)(ns >> (msb - VEER_LAT_SUB_BITS)) & (VEER_LAT_SUB_BUCKETS - 1);
	return 1 + (msb - VEER_LAT_MIN_SHIFT) * VEER_LAT_SUB_BUCKETS + sub;
}

/* Inclusive lower bound of a bucket, in ns. */
VEER_LAT_INLINE __u64 veer_lat_bucket_lower(__u32 bucket)
{
	__u32 k, j;

	if (bucket == 0)
		return 0;
	if (bucket >= VEER_LAT_BUCKETS - 1)
		return 1ull << VEER_LAT_MAX_SHIFT;
	k = (bucket - 1) / VEER_LAT_SUB_BUCKETS + VEER_LAT_MIN_SHIFT;
	j = (bucket - 1) % VEER_LAT_SUB_BUCKETS;
	return (__u64)(VEER_LAT_SUB_BUCKETS + j) << (k - VEER_LAT_SUB_BITS);
}

/* Exclusive upper bound of a bucket, in ns; ~0 for the overflow bucket. */
VEER_LAT_INLINE __u64 veer_lat_bucket_upper(__u32 bucket)
{
	if (bucket >= VEER_LAT_BUCKETS - 1)
		return ~0ull;
	return veer_lat_bucket_lower(bucket + 1);
}

#endif /* VEER_LATENCY_H */
