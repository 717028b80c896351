// metrics/prom_text.h: parsing good and hostile expositions, and the gate
// helpers (quantiles from histograms, counter increases, label distributions).
#include "metrics/prom_text.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <random>
#include <string>

namespace veer::prom {
namespace {

using namespace std::string_literals;
constexpr double kInf = std::numeric_limits<double>::infinity();

// The example of https://prometheus.io/docs/instrumenting/exposition_formats/
const char* const kFormatDocExample = R"(# HELP http_requests_total The total number of HTTP requests.
# TYPE http_requests_total counter
http_requests_total{method="post",code="200"} 1027 1395066363000
http_requests_total{method="post",code="400"}    3 1395066363000

# Escaping in label values:
msdos_file_access_time_seconds{path="C:\\DIR\\FILE.TXT",error="Cannot find file:\n\"FILE.TXT\""} 1.458255915e9

# Minimalistic line:
metric_without_timestamp_and_labels 12.47

# A weird metric from before the epoch:
something_weird{problem="division by zero"} +Inf -3982045

# A histogram, which has a pretty complex representation in the text format:
# HELP http_request_duration_seconds A histogram of the request duration.
# TYPE http_request_duration_seconds histogram
http_request_duration_seconds_bucket{le="0.05"} 24054
http_request_duration_seconds_bucket{le="0.1"} 33444
http_request_duration_seconds_bucket{le="0.2"} 100392
http_request_duration_seconds_bucket{le="0.5"} 129389
http_request_duration_seconds_bucket{le="1"} 133988
http_request_duration_seconds_bucket{le="+Inf"} 144320
http_request_duration_seconds_sum 53423
http_request_duration_seconds_count 144320

# Finally a summary, which has a complex representation, too:
# HELP rpc_duration_seconds A summary of the RPC duration in seconds.
# TYPE rpc_duration_seconds summary
rpc_duration_seconds{quantile="0.01"} 3102
rpc_duration_seconds{quantile="0.05"} 3272
rpc_duration_seconds{quantile="0.5"} 4773
rpc_duration_seconds{quantile="0.9"} 9001
rpc_duration_seconds{quantile="0.99"} 76656
rpc_duration_seconds_sum 1.7560473e+07
rpc_duration_seconds_count 2693
)";

// What the testbed's model-server stand-in exposes (two scrapes).
std::string model_server(double cat, double dog, double bird, const std::string& buckets) {
  return "# HELP model_predictions_total Predictions by class.\r\n"
         "# TYPE model_predictions_total counter\r\n"
         "model_predictions_total{model=\"resnet\",class=\"cat\"} " + std::to_string(cat) + "\r\n"
         "model_predictions_total{model=\"resnet\",class=\"dog\"} " + std::to_string(dog) + "\r\n"
         "model_predictions_total{model=\"resnet\",class=\"bird\"} " + std::to_string(bird) + "\r\n"
         "\r\n"
         "# HELP request_duration_seconds Request latency.\r\n"
         "# TYPE request_duration_seconds histogram\r\n" + buckets +
         "# TYPE http_responses_total counter\r\n"
         "http_responses_total{code=\"200\"} 990\r\n"
         "http_responses_total{code=\"500\"} 10\r\n";
}

std::string histogram_lines(const std::string& name, const std::string& labels,
                            const std::vector<std::pair<std::string, double>>& buckets, double sum) {
  std::string out;
  for (const auto& [le, count] : buckets)
    out += name + "_bucket{" + labels + (labels.empty() ? "" : ",") + "le=\"" + le + "\"} " + std::to_string(count) + "\n";
  out += name + "_sum" + (labels.empty() ? "" : "{" + labels + "}") + " " + std::to_string(sum) + "\n";
  out += name + "_count" + (labels.empty() ? "" : "{" + labels + "}") + " " +
         std::to_string(buckets.empty() ? 0 : buckets.back().second) + "\n";
  return out;
}

const Family& family(const ParseResult& r, const std::string& name) {
  const Family* f = r.find(name);
  if (!f) throw std::runtime_error("no family " + name);
  return *f;
}

// ---- Good inputs -----------------------------------------------------------

TEST(PromParse, FormatDocExample) {
  const auto r = parse_prometheus_text(kFormatDocExample);
  ASSERT_TRUE(r.ok);
  EXPECT_EQ(r.error_count, 0u) << (r.errors.empty() ? "" : r.errors[0].message);
  EXPECT_EQ(r.sample_count, 20u);
  ASSERT_EQ(r.families.size(), 6u);

  const Family& requests = family(r, "http_requests_total");
  EXPECT_EQ(requests.type, MetricType::Counter);
  EXPECT_EQ(requests.help, "The total number of HTTP requests.");
  ASSERT_EQ(requests.samples.size(), 2u);
  EXPECT_EQ(requests.samples[0].labels.at("code"), "200");
  EXPECT_EQ(requests.samples[0].value, 1027);
  EXPECT_EQ(requests.samples[1].value, 3);
  EXPECT_EQ(requests.samples[1].timestamp_ms, 1395066363000);
  EXPECT_EQ(counter_sum(requests), 1030);
  EXPECT_EQ(counter_sum(requests, {{"code", "400"}}), 3);

  const Family& msdos = family(r, "msdos_file_access_time_seconds");
  EXPECT_EQ(msdos.type, MetricType::Untyped);
  EXPECT_EQ(msdos.samples[0].labels.at("path"), "C:\\DIR\\FILE.TXT");
  EXPECT_EQ(msdos.samples[0].labels.at("error"), "Cannot find file:\n\"FILE.TXT\"");
  EXPECT_EQ(msdos.samples[0].value, 1.458255915e9);
  EXPECT_FALSE(msdos.samples[0].timestamp_ms);

  EXPECT_EQ(family(r, "metric_without_timestamp_and_labels").samples[0].value, 12.47);
  const Family& weird = family(r, "something_weird");
  EXPECT_EQ(weird.samples[0].value, kInf);
  EXPECT_EQ(weird.samples[0].timestamp_ms, -3982045);

  const Family& hist = family(r, "http_request_duration_seconds");
  EXPECT_EQ(hist.type, MetricType::Histogram);
  EXPECT_EQ(hist.samples.size(), 8u);
  EXPECT_EQ(histogram_count(hist), 144320);
  EXPECT_EQ(histogram_sum(hist), 53423);

  const Family& summary = family(r, "rpc_duration_seconds");
  EXPECT_EQ(summary.type, MetricType::Summary);
  EXPECT_EQ(summary.samples.size(), 7u);
  EXPECT_EQ(histogram_count(summary), 2693);
  EXPECT_EQ(summary.help, "A summary of the RPC duration in seconds.");
}

TEST(PromQuantile, FormatDocHistogramHandComputed) {
  const auto r = parse_prometheus_text(kFormatDocExample);
  const Family& hist = family(r, "http_request_duration_seconds");
  // q = 0.5: rank 72160 lies in (0.1, 0.2], which holds 100392 - 33444 =
  // 66948 observations, 72160 - 33444 = 38716 of them up to the rank.
  EXPECT_NEAR(*histogram_quantile(hist, 0.5), 0.1 + 0.1 * 38716.0 / 66948.0, 1e-12);
  EXPECT_NEAR(*histogram_quantile(hist, 0.5), 0.157830, 1e-6);
  // q = 0.1: rank 14432 in the first bucket, which starts at 0.
  EXPECT_NEAR(*histogram_quantile(hist, 0.1), 0.05 * 14432.0 / 24054.0, 1e-12);
  // q = 0.9: rank 129888 in (0.5, 1]: 0.5 + 0.5 * 499 / 4599.
  EXPECT_NEAR(*histogram_quantile(hist, 0.9), 0.5 + 0.5 * 499.0 / 4599.0, 1e-12);
  // q = 0.95: rank 137104 > 133988, in the +Inf bucket -> highest finite bound.
  EXPECT_EQ(*histogram_quantile(hist, 0.95), 1.0);
  EXPECT_EQ(*histogram_quantile(hist, 1.0), 1.0);
  EXPECT_EQ(*histogram_quantile(hist, 0.0), 0.0);
  EXPECT_FALSE(histogram_quantile(hist, 1.5));
  EXPECT_FALSE(histogram_quantile(hist, -0.1));
  EXPECT_FALSE(histogram_quantile(hist, std::nan("")));
  // Not histograms.
  EXPECT_FALSE(histogram_quantile(family(r, "rpc_duration_seconds"), 0.5));
  EXPECT_FALSE(histogram_quantile(family(r, "http_requests_total"), 0.5));
}

TEST(PromParse, ModelServerWithCrlfAndLabels) {
  const std::string buckets =
      histogram_lines("request_duration_seconds", "variant=\"canary\"",
                      {{"0.01", 10}, {"0.05", 60}, {"0.1", 90}, {"0.5", 100}, {"+Inf", 100}}, 3.2) +
      histogram_lines("request_duration_seconds", "variant=\"stable\"",
                      {{"0.01", 100}, {"0.05", 100}, {"0.1", 100}, {"0.5", 100}, {"+Inf", 100}}, 0.5);
  const auto r = parse_prometheus_text(model_server(50, 30, 20, buckets));
  ASSERT_TRUE(r.ok);
  EXPECT_EQ(r.error_count, 0u) << (r.errors.empty() ? "" : r.errors[0].message);
  ASSERT_EQ(r.families.size(), 3u);
  const Family& predictions = family(r, "model_predictions_total");
  EXPECT_EQ(predictions.type, MetricType::Counter);
  const auto dist = label_distribution(predictions, "class");
  EXPECT_EQ(dist, (std::map<std::string, double>{{"bird", 20}, {"cat", 50}, {"dog", 30}}));
  EXPECT_TRUE(label_distribution(predictions, "class", {{"model", "other"}}).empty());

  const Family& latency = family(r, "request_duration_seconds");
  // Canary alone: q = 0.95 -> rank 95 in (0.1, 0.5] with 10 observations,
  // 5 up to the rank: 0.1 + 0.4 * 5 / 10 = 0.3.
  EXPECT_NEAR(*histogram_quantile(latency, 0.95, {{"variant", "canary"}}), 0.3, 1e-12);
  // Stable alone: all 100 in the first bucket: 0.01 * 95 / 100.
  EXPECT_NEAR(*histogram_quantile(latency, 0.95, {{"variant", "stable"}}), 0.0095, 1e-12);
  // Both summed per le (as sum by (le) in PromQL): cumulative 110, 160,
  // 190, 200, 200; rank 190 is reached exactly at le 0.1, in (0.05, 0.1]
  // holding 30: 0.05 + 0.05 * 30 / 30.
  EXPECT_NEAR(*histogram_quantile(latency, 0.95), 0.1, 1e-12);
  EXPECT_EQ(histogram_count(latency, {{"variant", "canary"}}), 100);
  EXPECT_NEAR(histogram_sum(latency, {{"variant", "canary"}}), 3.2, 1e-9);
  EXPECT_FALSE(histogram_quantile(latency, 0.5, {{"variant", "absent"}}));

  const Family& responses = family(r, "http_responses_total");
  EXPECT_EQ(counter_sum(responses, {{"code", "500"}}), 10);
  EXPECT_EQ(counter_sum(responses), 1000);
}

TEST(PromParse, ValuesAndSyntaxVariants) {
  const auto r = parse_prometheus_text(
      "a 1e3\n"
      "b -2.5E-2\n"
      "c +Inf\n"
      "d -Inf\n"
      "e NaN\n"
      "f nan\n"
      "g{x=\"1\",} 7\n"            // trailing comma
      "h { x = \"1\" , y=\"\" } 8\n"  // blanks inside the label set
      "\t  i 9 123\t\n"             // leading/trailing blanks, tab separators
      "j{} 10\n"
      "k 1e999\n"                   // saturates like ParseFloat
      "l{u=\"日本\"} 11\n"
      "#HELP not_a_help_line\n"
      "# some comment with \"quotes\" and {braces}\n"
      "m 12");                      // no final newline
  ASSERT_TRUE(r.ok);
  EXPECT_EQ(r.error_count, 0u) << (r.errors.empty() ? "" : r.errors[0].message);
  EXPECT_EQ(family(r, "a").samples[0].value, 1000);
  EXPECT_EQ(family(r, "b").samples[0].value, -0.025);
  EXPECT_EQ(family(r, "c").samples[0].value, kInf);
  EXPECT_EQ(family(r, "d").samples[0].value, -kInf);
  EXPECT_TRUE(std::isnan(family(r, "e").samples[0].value));
  EXPECT_TRUE(std::isnan(family(r, "f").samples[0].value));
  EXPECT_EQ(family(r, "g").samples[0].labels, (Labels{{"x", "1"}}));
  EXPECT_EQ(family(r, "h").samples[0].labels, (Labels{{"x", "1"}, {"y", ""}}));
  EXPECT_EQ(family(r, "i").samples[0].timestamp_ms, 123);
  EXPECT_TRUE(family(r, "j").samples[0].labels.empty());
  EXPECT_EQ(family(r, "k").samples[0].value, kInf);
  EXPECT_EQ(family(r, "l").samples[0].labels.at("u"), "日本");
  EXPECT_EQ(family(r, "m").samples[0].value, 12);
  EXPECT_EQ(r.families.size(), 13u);
}

TEST(PromParse, CounterTypedWithoutTotalSuffix) {
  // OpenMetrics-style naming: TYPE names "foo", samples are "foo_total".
  const auto r = parse_prometheus_text("# TYPE predictions counter\npredictions_total{class=\"a\"} 4\n");
  ASSERT_EQ(r.families.size(), 1u);
  EXPECT_EQ(r.families[0].type, MetricType::Counter);
  EXPECT_EQ(counter_sum(r.families[0]), 4);
  EXPECT_EQ(r.find("predictions_total"), &r.families[0]);
  EXPECT_EQ(r.find("predictions"), &r.families[0]);
  const auto plain = parse_prometheus_text("# TYPE x_total counter\nx_total 1\n");
  EXPECT_EQ(plain.find("x"), &plain.families[0]);
  EXPECT_EQ(plain.find("y"), nullptr);
}

// ---- Hostile inputs --------------------------------------------------------

TEST(PromHostile, BadLinesAreRejectedWithLineNumbersOthersKept) {
  const std::string text =
      "good_one 1\n"                       // 1
      "truncated{a=\"b\"\n"                 // 2 unterminated label set
      "missing_value\n"                    // 3
      "missing_value_with_labels{a=\"b\"}\n"  // 4
      "unterminated{a=\"b} 1\n"             // 5
      "bad_escape{a=\"\\t\"} 1\n"           // 6
      "bad_value xyz\n"                    // 7
      "bad_ts 1 12.5\n"                    // 8
      "extra 1 2 3\n"                      // 9
      "1leading_digit 1\n"                 // 10
      "dup{a=\"1\",a=\"2\"} 1\n"             // 11
      "no_quote{a=b} 1\n"                  // 12
      "sep{a=\"1\" b=\"2\"} 1\n"             // 13
      "# TYPE t wibble\n"                  // 14 unknown type
      "good_two 2\n"                       // 15
      "good_one 3\n"                       // 16 duplicate series
      "x{a=\"\xff\"} 1\n"                    // 17 invalid UTF-8
      "y-z 1\n"                            // 18
      "two  signs 1\n"                     // 19
      "neg +-1\n"                          // 20
      "good_three 3\n";                    // 21
  const auto r = parse_prometheus_text(text);
  ASSERT_TRUE(r.ok);
  std::vector<std::size_t> lines;
  for (const auto& e : r.errors) lines.push_back(e.line);
  EXPECT_EQ(lines, (std::vector<std::size_t>{2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 16, 17, 18, 19, 20}));
  EXPECT_EQ(r.error_count, lines.size());
  for (const auto& e : r.errors) EXPECT_FALSE(e.message.empty()) << e.line;
  EXPECT_EQ(r.sample_count, 3u);
  EXPECT_EQ(family(r, "good_one").samples[0].value, 1);
  EXPECT_EQ(family(r, "good_two").samples[0].value, 2);
  EXPECT_EQ(family(r, "good_three").samples[0].value, 3);
}

TEST(PromHostile, NulBytesRejectLine) {
  const std::string text = "a 1\nb\0c 2\nd{x=\"\0\"} 3\n# TYPE e\0 counter\nf 4\n"s;
  const auto r = parse_prometheus_text(text);
  ASSERT_TRUE(r.ok);
  EXPECT_EQ(r.error_count, 3u);
  EXPECT_EQ(r.sample_count, 2u);
  EXPECT_NE(r.find("a"), nullptr);
  EXPECT_NE(r.find("f"), nullptr);
  EXPECT_EQ(r.errors[0].line, 2u);
}

TEST(PromHostile, TypeRules) {
  const auto r = parse_prometheus_text(
      "s 1\n# TYPE s counter\n"                       // TYPE after samples
      "# TYPE h histogram\n# TYPE h gauge\n"          // second TYPE
      "h 5\n"                                          // histogram without suffix
      "h_bucket 3\n"                                   // bucket without le
      "# HELP h one\n# HELP h two\n");                // second HELP
  EXPECT_EQ(r.error_count, 5u);
  EXPECT_EQ(family(r, "s").type, MetricType::Untyped);
  EXPECT_EQ(family(r, "h").type, MetricType::Histogram);
  EXPECT_EQ(family(r, "h").help, "one");
  EXPECT_TRUE(family(r, "h").samples.empty());
}

TEST(PromHostile, OversizedInputIsRejectedWhole) {
  const std::string big((4u << 20) + 1, '#');
  const auto r = parse_prometheus_text(big);
  EXPECT_FALSE(r.ok);
  EXPECT_TRUE(r.families.empty());
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_EQ(r.errors[0].line, 0u);
  EXPECT_NE(r.errors[0].message.find("exceeds"), std::string::npos);
  // A configurable limit.
  ParseLimits small;
  small.max_bytes = 10;
  EXPECT_FALSE(parse_prometheus_text("a 1\nb 2\nc 3\n", small).ok);
  EXPECT_TRUE(parse_prometheus_text("a 1\nb 2\n", small).ok);
}

TEST(PromHostile, TooManySamplesOrFamiliesIsFatal) {
  ParseLimits limits;
  limits.max_samples = 100;
  std::string text;
  for (int i = 0; i < 101; ++i) text += "m{i=\"" + std::to_string(i) + "\"} 1\n";
  const auto r = parse_prometheus_text(text, limits);
  EXPECT_FALSE(r.ok);
  EXPECT_TRUE(r.families.empty());
  EXPECT_EQ(r.errors.back().line, 101u);
  limits.max_samples = 101;
  EXPECT_TRUE(parse_prometheus_text(text, limits).ok);

  ParseLimits few_families;
  few_families.max_families = 3;
  EXPECT_FALSE(parse_prometheus_text("a 1\nb 1\nc 1\nd 1\n", few_families).ok);
  EXPECT_TRUE(parse_prometheus_text("a 1\nb 1\nc 1\n", few_families).ok);
}

TEST(PromHostile, HundredThousandLabelsBounded) {
  std::string line = "wide{";
  for (int i = 0; i < 100'000; ++i) line += "l" + std::to_string(i) + "=\"v\",";
  line += "} 1\nok 1\n";
  const auto start = std::chrono::steady_clock::now();
  const auto r = parse_prometheus_text(line);
  const auto elapsed = std::chrono::steady_clock::now() - start;
  ASSERT_TRUE(r.ok);
  EXPECT_EQ(r.error_count, 1u);
  EXPECT_NE(r.errors[0].message.find("labels"), std::string::npos);
  EXPECT_NE(r.find("ok"), nullptr);
  EXPECT_EQ(r.find("wide"), nullptr);
  EXPECT_LT(elapsed, std::chrono::seconds(2));
  // Exactly at the limit is fine.
  std::string at_limit = "wide{";
  for (int i = 0; i < 64; ++i) at_limit += "l" + std::to_string(i) + "=\"v\",";
  EXPECT_EQ(parse_prometheus_text(at_limit + "} 1\n").sample_count, 1u);
}

TEST(PromHostile, ManyErrorsKeptBounded) {
  std::string text;
  for (int i = 0; i < 1000; ++i) text += "bad{\n";
  const auto r = parse_prometheus_text(text);
  EXPECT_TRUE(r.ok);
  EXPECT_EQ(r.error_count, 1000u);
  EXPECT_EQ(r.errors.size(), ParseLimits{}.max_errors_kept);
}

TEST(PromHostile, RandomMutationsNeverCrash) {
  // Deterministic byte-level mutations of a good exposition: whatever the
  // parser makes of them, it returns, and each line is either a sample or an
  // error (never both, never neither for a non-comment, non-blank line).
  std::mt19937 rng(4242);
  const std::string base = kFormatDocExample;
  for (int round = 0; round < 2000; ++round) {
    std::string text = base;
    const int edits = 1 + static_cast<int>(rng() % 8);
    for (int e = 0; e < edits; ++e) {
      const std::size_t at = rng() % text.size();
      switch (rng() % 3) {
        case 0: text[at] = static_cast<char>(rng() % 256); break;
        case 1: text.erase(at, 1 + rng() % 5); break;
        case 2: text.insert(at, 1, "{}\"\\=,# \n\r\0e+-"[rng() % 15]); break;
      }
      if (text.empty()) text = "x";
    }
    const auto r = parse_prometheus_text(text);
    ASSERT_TRUE(r.ok);
    std::size_t samples = 0;
    for (const auto& f : r.families) {
      samples += f.samples.size();
      if (f.type == MetricType::Histogram) (void)histogram_quantile(f, 0.5);
    }
    ASSERT_EQ(samples, r.sample_count);
  }
}

// ---- Histogram edge cases --------------------------------------------------

ParseResult histogram(const std::vector<std::pair<std::string, double>>& buckets) {
  return parse_prometheus_text("# TYPE lat histogram\n" + histogram_lines("lat", "", buckets, 1.0));
}

TEST(PromQuantile, MissingInfBucketIsNullopt) {
  const auto r = histogram({{"0.1", 5}, {"0.2", 10}});
  ASSERT_EQ(r.error_count, 0u);
  EXPECT_FALSE(histogram_quantile(r.families[0], 0.5));
}

TEST(PromQuantile, NegativeOrNonFiniteBucketsAreNullopt) {
  EXPECT_FALSE(histogram_quantile(histogram({{"0.1", -5}, {"+Inf", 10}}).families[0], 0.5));
  EXPECT_FALSE(histogram_quantile(histogram({{"0.1", 5}, {"+Inf", kInf}}).families[0], 0.5));
  const auto nan = parse_prometheus_text("# TYPE lat histogram\nlat_bucket{le=\"0.1\"} NaN\nlat_bucket{le=\"+Inf\"} 3\n");
  EXPECT_FALSE(histogram_quantile(nan.families[0], 0.5));
  const auto bad_le = parse_prometheus_text("# TYPE lat histogram\nlat_bucket{le=\"fast\"} 1\nlat_bucket{le=\"+Inf\"} 3\n");
  EXPECT_FALSE(histogram_quantile(bad_le.families[0], 0.5));
}

TEST(PromQuantile, NoObservationsOrSingleBucketIsNullopt) {
  EXPECT_FALSE(histogram_quantile(histogram({{"0.1", 0}, {"+Inf", 0}}).families[0], 0.5));
  EXPECT_FALSE(histogram_quantile(histogram({{"+Inf", 10}}).families[0], 0.5));
}

TEST(PromQuantile, NonMonotoneBucketsCarryTheMaximum) {
  // 0.1 -> 10, 0.2 -> 8 (goes down), 0.4 -> 20, +Inf -> 20. Made monotone:
  // 10, 10, 20, 20. q = 0.75: rank 15 in (0.2, 0.4] holding 10, 5 of them:
  // 0.2 + 0.2 * 5 / 10 = 0.3.
  const auto r = histogram({{"0.1", 10}, {"0.2", 8}, {"0.4", 20}, {"+Inf", 20}});
  EXPECT_NEAR(*histogram_quantile(r.families[0], 0.75), 0.3, 1e-12);
  // q = 0.5: rank 10 reached at 0.1 -> 0.1 * 10 / 10.
  EXPECT_NEAR(*histogram_quantile(r.families[0], 0.5), 0.1, 1e-12);
}

TEST(PromQuantile, NegativeBoundsAndLowestBucket) {
  // Lowest bound <= 0: the quantile in it is that bound (Prometheus).
  const auto r = histogram({{"-1", 5}, {"1", 10}, {"+Inf", 10}});
  EXPECT_EQ(*histogram_quantile(r.families[0], 0.2), -1.0);
  EXPECT_NEAR(*histogram_quantile(r.families[0], 0.75), -1.0 + 2.0 * 2.5 / 5.0, 1e-12);
  // Buckets given out of order and with equivalent spellings of le.
  const auto shuffled = parse_prometheus_text(
      "# TYPE lat histogram\nlat_bucket{le=\"+Inf\"} 4\nlat_bucket{le=\"2.0\"} 4\nlat_bucket{le=\"1e0\"} 2\n");
  EXPECT_NEAR(*histogram_quantile(shuffled.families[0], 0.5), 1.0, 1e-12);
  EXPECT_NEAR(*histogram_quantile(shuffled.families[0], 0.75), 1.5, 1e-12);
}

// ---- Deltas over a window --------------------------------------------------

TEST(PromDelta, CounterIncreaseWithReset) {
  const auto before = parse_prometheus_text(
      "# TYPE req_total counter\nreq_total{v=\"a\"} 100\nreq_total{v=\"b\"} 50\nreq_total{v=\"gone\"} 9\n");
  const auto after = parse_prometheus_text(
      "# TYPE req_total counter\nreq_total{v=\"a\"} 130\nreq_total{v=\"b\"} 20\nreq_total{v=\"new\"} 7\n");
  const Family d = counter_delta(before.families[0], after.families[0]);
  EXPECT_EQ(counter_sum(d, {{"v", "a"}}), 30);   // plain increase
  EXPECT_EQ(counter_sum(d, {{"v", "b"}}), 20);   // reset: counts from 0
  EXPECT_EQ(counter_sum(d, {{"v", "new"}}), 7);  // new series
  EXPECT_EQ(counter_sum(d, {{"v", "gone"}}), 0);
  EXPECT_EQ(counter_increase(before.families[0], after.families[0]), 57);
}

TEST(PromDelta, LabelDistributionOverWindowFeedsKl) {
  const auto before = parse_prometheus_text(model_server(50, 30, 20, ""));
  const auto after = parse_prometheus_text(model_server(150, 60, 20, ""));
  const Family d = counter_delta(family(before, "model_predictions_total"), family(after, "model_predictions_total"));
  EXPECT_EQ(label_distribution(d, "class"), (std::map<std::string, double>{{"bird", 0}, {"cat", 100}, {"dog", 30}}));
}

TEST(PromDelta, HistogramQuantileOverWindow) {
  // Before: 100 fast requests. After: 100 more, all in (0.1, 0.5].
  const auto before = histogram({{"0.1", 100}, {"0.5", 100}, {"+Inf", 100}});
  const auto after = histogram({{"0.1", 100}, {"0.5", 200}, {"+Inf", 200}});
  const Family window = histogram_delta(before.families[0], after.families[0]);
  // Window: 0, 100, 100 -> q = 0.5: rank 50 in (0.1, 0.5]: 0.1 + 0.4 * 0.5.
  EXPECT_NEAR(*histogram_quantile(window, 0.5), 0.3, 1e-12);
  EXPECT_EQ(histogram_count(window), 100);
  // Over all time the median is still in the fast bucket.
  EXPECT_NEAR(*histogram_quantile(after.families[0], 0.5), 0.1, 1e-12);
}

TEST(PromDelta, HistogramResetAppliesToWholeSeries) {
  // The server restarted: _count went down, so every sample of the series
  // counts from 0, even a bucket that happens to be higher than before.
  const auto before = histogram({{"0.1", 10}, {"0.5", 50}, {"+Inf", 50}});
  const auto after = histogram({{"0.1", 12}, {"0.5", 20}, {"+Inf", 20}});
  const Family window = histogram_delta(before.families[0], after.families[0]);
  EXPECT_EQ(histogram_count(window), 20);
  EXPECT_NEAR(*histogram_quantile(window, 0.5), 0.1 * 10 / 12, 1e-12);
}

TEST(PromDelta, GaugesAndSummaryQuantilesAreCopied) {
  const auto before = parse_prometheus_text(
      "# TYPE g gauge\ng 10\n# TYPE s summary\ns{quantile=\"0.5\"} 3\ns_sum 10\ns_count 5\n");
  const auto after = parse_prometheus_text(
      "# TYPE g gauge\ng 4\n# TYPE s summary\ns{quantile=\"0.5\"} 2\ns_sum 16\ns_count 8\n");
  const Family g = counter_delta(family(before, "g"), family(after, "g"));
  EXPECT_EQ(g.samples[0].value, 4);
  const Family s = counter_delta(family(before, "s"), family(after, "s"));
  EXPECT_EQ(counter_sum(s), 2);  // the quantile sample, as scraped
  EXPECT_EQ(histogram_count(s), 3);
  EXPECT_EQ(histogram_sum(s), 6);
}

TEST(PromDelta, NanAndNegativeValuesDropped) {
  const auto before = parse_prometheus_text("# TYPE c counter\nc{k=\"a\"} 5\nc{k=\"b\"} NaN\n");
  const auto after = parse_prometheus_text("# TYPE c counter\nc{k=\"a\"} NaN\nc{k=\"b\"} 4\nc{k=\"c\"} -3\n");
  const Family d = counter_delta(family(before, "c"), family(after, "c"));
  ASSERT_EQ(d.samples.size(), 1u);
  EXPECT_EQ(d.samples[0].labels.at("k"), "b");
  EXPECT_EQ(d.samples[0].value, 4);  // no usable previous value: counts from 0
}

TEST(PromMatch, MatcherSemantics) {
  EXPECT_TRUE(matches({{"a", "1"}}, {}));
  EXPECT_TRUE(matches({{"a", "1"}, {"b", "2"}}, {{"a", "1"}}));
  EXPECT_FALSE(matches({{"a", "1"}}, {{"a", "2"}}));
  EXPECT_FALSE(matches({{"a", "1"}}, {{"b", "1"}}));
  EXPECT_TRUE(matches({{"a", "1"}}, {{"b", ""}}));  // absent label == empty value
}

}  // namespace
}  // namespace veer::prom
