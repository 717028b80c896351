// Userspace view of the kernel's response-latency histogram (map veer_latency,
// SPEC §2.10): bucket bounds from the same veer/latency.h the BPF program
// compiles, and quantile estimates. C++ only, header-only and pure (no kernel):
// the daemon, veerctl and the unit tests use it alike.
#pragma once
#include <linux/types.h>

#include <array>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>

extern "C" {
#include "veer/abi.h"
#include "veer/latency.h"
}

namespace veer {

// Per-bucket counts, index = veer_lat_bucket(ns).
using LatencyHistogram = std::array<uint64_t, VEER_LAT_BUCKETS>;

// [lower_ns, upper_ns); the overflow bucket's upper_ns is UINT64_MAX.
struct LatencyBucketBounds {
  uint64_t lower_ns = 0;
  uint64_t upper_ns = 0;
};

inline unsigned latency_bucket_of(uint64_t ns) { return veer_lat_bucket(ns); }

inline LatencyBucketBounds latency_bucket_bounds(unsigned bucket) {
  if (bucket >= VEER_LAT_BUCKETS)
    throw std::out_of_range("latency bucket " + std::to_string(bucket) + " out of range (0.." +
                            std::to_string(VEER_LAT_BUCKETS - 1) + ")");
  return {veer_lat_bucket_lower(bucket), veer_lat_bucket_upper(bucket)};
}

inline uint64_t latency_count(const LatencyHistogram& h) {
  uint64_t n = 0;
  for (uint64_t c : h) n += c;
  return n;
}

// The q-quantile (0 <= q <= 1) in ns, interpolated linearly within the bucket
// that holds the rank q * count. The overflow bucket has no upper bound: a
// quantile that lands there is reported as its lower bound (2^36 ns, 68.7 s).
// nullopt for an empty histogram. Throws std::invalid_argument for q outside
// [0, 1] (or NaN).
inline std::optional<double> latency_quantile_ns(const LatencyHistogram& h, double q) {
  if (!(q >= 0.0 && q <= 1.0)) throw std::invalid_argument("quantile must be within [0, 1]");
  const uint64_t total = latency_count(h);
  if (total == 0) return std::nullopt;
  const double rank = q * static_cast<double>(total);
  uint64_t below = 0;
  for (unsigned b = 0; b < VEER_LAT_BUCKETS; ++b) {
    if (h[b] == 0) continue;
    const double upto = static_cast<double>(below + h[b]);
    if (rank <= upto) {
      const LatencyBucketBounds bounds = latency_bucket_bounds(b);
      if (b == VEER_LAT_BUCKETS - 1) return static_cast<double>(bounds.lower_ns);
      const double fraction = (rank - static_cast<double>(below)) / static_cast<double>(h[b]);
      return static_cast<double>(bounds.lower_ns) +
             fraction * static_cast<double>(bounds.upper_ns - bounds.lower_ns);
    }
    below += h[b];
  }
  return static_cast<double>(latency_bucket_bounds(VEER_LAT_BUCKETS - 1).lower_ns);  // rounding at q = 1
}

}  // namespace veer
