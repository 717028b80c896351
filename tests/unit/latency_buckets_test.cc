// The response-latency bucket math shared by the BPF program and userspace
// (bpf/include/veer/latency.h) and the quantile estimate over it
// (veer/latency_histogram.h). Pure: no kernel.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include "veer/latency_histogram.h"

namespace veer {
namespace {

constexpr uint64_t kUs = 1000;
constexpr uint64_t kMs = 1000 * kUs;
constexpr uint64_t kS = 1000 * kMs;
constexpr unsigned kLast = VEER_LAT_BUCKETS - 1;

// Values spread over the whole 64-bit range, many per power of two, from a
// fixed-seed generator (same values every run).
std::vector<uint64_t> sample_values() {
  std::vector<uint64_t> v = {0, 1, 2, 3, 8191, 8192, 8193, 10 * kUs, 60 * kS, (1ull << 36) - 1, 1ull << 36,
                             (1ull << 36) + 1, ~0ull};
  for (unsigned bit = 0; bit < 64; ++bit) {
    v.push_back(1ull << bit);
    v.push_back((1ull << bit) - 1);
    v.push_back((1ull << bit) + 1);
  }
  uint64_t x = 0x9e3779b97f4a7c15ull;
  for (int i = 0; i < 20000; ++i) {
    x = x * 6364136223846793005ull + 1442695040888963407ull;
    v.push_back(x >> (x % 64));  // every magnitude
  }
  return v;
}

TEST(LatencyBuckets, MsbMatchesAReferenceLoop) {
  for (uint64_t value : sample_values()) {
    if (value == 0) continue;
    unsigned want = 0;
    for (uint64_t v = value; v > 1; v >>= 1) ++want;
    ASSERT_EQ(veer_lat_msb64(value), want) << value;
  }
}

TEST(LatencyBuckets, EveryBucketIsAtMostTenPercentWide) {
  for (unsigned b = 1; b < kLast; ++b) {
    const LatencyBucketBounds bounds = latency_bucket_bounds(b);
    ASSERT_GT(bounds.upper_ns, bounds.lower_ns) << b;
    const double width = static_cast<double>(bounds.upper_ns - bounds.lower_ns) / static_cast<double>(bounds.lower_ns);
    EXPECT_LE(width, 0.10) << "bucket " << b << " [" << bounds.lower_ns << ", " << bounds.upper_ns << ")";
  }
}

TEST(LatencyBuckets, TenMicrosecondsToSixtySecondsLieInRegularBuckets) {
  // Neither end lands in the underflow or overflow bucket, so every latency
  // in the range is resolved to <= 10 %.
  EXPECT_LE(latency_bucket_bounds(0).upper_ns, 10 * kUs);
  EXPECT_GE(latency_bucket_bounds(kLast).lower_ns, 60 * kS);
  EXPECT_GT(latency_bucket_of(10 * kUs), 0u);
  EXPECT_LT(latency_bucket_of(60 * kS), kLast);
  EXPECT_EQ(latency_bucket_of(0), 0u);
  EXPECT_EQ(latency_bucket_of(~0ull), kLast);
}

TEST(LatencyBuckets, BoundariesAreContiguousAndMonotone) {
  EXPECT_EQ(latency_bucket_bounds(0).lower_ns, 0u);
  EXPECT_EQ(latency_bucket_bounds(kLast).upper_ns, ~0ull);
  for (unsigned b = 0; b + 1 < VEER_LAT_BUCKETS; ++b) {
    const LatencyBucketBounds here = latency_bucket_bounds(b), next = latency_bucket_bounds(b + 1);
    ASSERT_EQ(here.upper_ns, next.lower_ns) << "gap or overlap after bucket " << b;
    ASSERT_LT(here.lower_ns, next.lower_ns) << b;
    // Each lower bound maps to its own bucket, the value just below it to
    // the one before.
    ASSERT_EQ(latency_bucket_of(next.lower_ns), b + 1);
    ASSERT_EQ(latency_bucket_of(next.lower_ns - 1), b);
  }
  EXPECT_THROW(latency_bucket_bounds(VEER_LAT_BUCKETS), std::out_of_range);
}

TEST(LatencyBuckets, ValueToBucketToBoundsContainsTheValue) {
  for (uint64_t value : sample_values()) {
    const unsigned b = latency_bucket_of(value);
    ASSERT_LT(b, VEER_LAT_BUCKETS) << value;
    const LatencyBucketBounds bounds = latency_bucket_bounds(b);
    ASSERT_LE(bounds.lower_ns, value) << "bucket " << b;
    if (b != kLast) {
      ASSERT_LT(value, bounds.upper_ns) << "bucket " << b;
    }
  }
}

TEST(LatencyQuantile, EmptyHistogramHasNoQuantile) {
  LatencyHistogram h{};
  EXPECT_FALSE(latency_quantile_ns(h, 0.95).has_value());
  EXPECT_EQ(latency_count(h), 0u);
}

TEST(LatencyQuantile, RejectsQuantilesOutsideZeroToOne) {
  LatencyHistogram h{};
  h[10] = 1;
  EXPECT_THROW(latency_quantile_ns(h, -0.01), std::invalid_argument);
  EXPECT_THROW(latency_quantile_ns(h, 1.01), std::invalid_argument);
  EXPECT_THROW(latency_quantile_ns(h, std::nan("")), std::invalid_argument);
}

TEST(LatencyQuantile, InterpolatesLinearlyWithinTheBucket) {
  LatencyHistogram h{};
  const unsigned b = latency_bucket_of(50 * kMs);
  const LatencyBucketBounds bounds = latency_bucket_bounds(b);
  h[b] = 100;
  const double width = static_cast<double>(bounds.upper_ns - bounds.lower_ns);
  EXPECT_DOUBLE_EQ(*latency_quantile_ns(h, 0.0), static_cast<double>(bounds.lower_ns));
  EXPECT_DOUBLE_EQ(*latency_quantile_ns(h, 0.5), static_cast<double>(bounds.lower_ns) + 0.5 * width);
  EXPECT_DOUBLE_EQ(*latency_quantile_ns(h, 0.95), static_cast<double>(bounds.lower_ns) + 0.95 * width);
  EXPECT_DOUBLE_EQ(*latency_quantile_ns(h, 1.0), static_cast<double>(bounds.upper_ns));
}

TEST(LatencyQuantile, P95OfAKnownDistributionIsWithinTheBucketError) {
  // 900 requests at ~10 ms, 100 at ~300 ms: p50 is about 10 ms, p95 about
  // 300 ms, each within its bucket's 6.25 %.
  LatencyHistogram h{};
  h[latency_bucket_of(10 * kMs)] += 900;
  h[latency_bucket_of(300 * kMs)] += 100;
  EXPECT_EQ(latency_count(h), 1000u);
  const double p50 = *latency_quantile_ns(h, 0.50), p95 = *latency_quantile_ns(h, 0.95);
  EXPECT_NEAR(p50, 10.0 * kMs, 0.0625 * 10 * kMs);
  EXPECT_NEAR(p95, 300.0 * kMs, 0.0625 * 300 * kMs);
  // The rank just past the 900 lands in the upper bucket.
  EXPECT_GE(*latency_quantile_ns(h, 0.901), static_cast<double>(latency_bucket_bounds(latency_bucket_of(300 * kMs)).lower_ns));
}

TEST(LatencyQuantile, OverflowBucketReportsItsLowerBound) {
  LatencyHistogram h{};
  h[kLast] = 5;
  EXPECT_DOUBLE_EQ(*latency_quantile_ns(h, 0.99), static_cast<double>(1ull << VEER_LAT_MAX_SHIFT));
}

}  // namespace
}  // namespace veer
