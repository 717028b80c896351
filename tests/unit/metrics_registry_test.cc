// The metrics registry (metrics/metrics_registry.h): exact text of the
// Prometheus exposition format, escaping, histograms, the SPEC §7 families,
// bad input rejected without change, and a round trip through the parser of
// metrics/prom_text.h.
#include "metrics/metrics_registry.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <stdexcept>

#include "metrics/prom_text.h"

namespace veer::metrics {
namespace {

TEST(MetricsFormat, Values) {
  EXPECT_EQ(format_value(0), "0");
  EXPECT_EQ(format_value(-0.0), "0");
  EXPECT_EQ(format_value(42), "42");
  EXPECT_EQ(format_value(-7), "-7");
  // Above 2^53: the shortest exact text (std::to_chars picks fixed when shorter).
  EXPECT_EQ(format_value(18446744073709551615.0), "18446744073709551616");
  EXPECT_EQ(format_value(1e300), "1e+300");
  EXPECT_EQ(format_value(0.25), "0.25");
  EXPECT_EQ(format_value(8.192e-06), "8.192e-06");
  EXPECT_EQ(format_value(0.1), "0.1");
  EXPECT_EQ(format_value(std::numeric_limits<double>::infinity()), "+Inf");
  EXPECT_EQ(format_value(-std::numeric_limits<double>::infinity()), "-Inf");
  EXPECT_EQ(format_value(std::nan("")), "NaN");
  // Shortest text that reads back exactly.
  const double third = 1.0 / 3.0;
  EXPECT_EQ(std::stod(format_value(third)), third);
}

TEST(MetricsFormat, Escaping) {
  EXPECT_EQ(escape_label_value(R"(a\b"c)" "\n" "d"), R"(a\\b\"c\nd)");
  EXPECT_EQ(escape_help("line1\nback\\slash \"quoted\""), R"(line1\nback\\slash "quoted")");
}

TEST(MetricsRegistry, RendersSortedFamiliesAndSeriesExactly) {
  Registry r;
  r.declare("zeta_total", MetricType::Counter, "Last family.", {"b", "a"});
  r.declare("alpha", MetricType::Gauge, "First\nfamily \\ help.", {});
  r.set("zeta_total", {{"a", "2"}, {"b", "y"}}, 5);
  r.set("zeta_total", {{"a", "1"}, {"b", "x\"q"}}, 3);
  r.add("zeta_total", {{"a", "1"}, {"b", "x\"q"}}, 2);
  r.set("alpha", {}, 0.5);
  // Labels in declared order (b, a); series sorted by values in that order.
  EXPECT_EQ(r.render(),
            "# HELP alpha First\\nfamily \\\\ help.\n"
            "# TYPE alpha gauge\n"
            "alpha 0.5\n"
            "# HELP zeta_total Last family.\n"
            "# TYPE zeta_total counter\n"
            "zeta_total{b=\"x\\\"q\",a=\"1\"} 5\n"
            "zeta_total{b=\"y\",a=\"2\"} 5\n");
}

TEST(MetricsRegistry, EmptyFamiliesAreLeftOut) {
  Registry r;
  r.declare("declared_only", MetricType::Gauge, "h", {"x"});
  EXPECT_EQ(r.render(), "");
}

TEST(MetricsRegistry, HistogramIsCumulativeWithInfSumAndCount) {
  Registry r;
  r.declare("lat_seconds", MetricType::Histogram, "Latency.", {"v"});
  r.set_histogram("lat_seconds", {{"v", "blue"}}, HistogramData{{0.1, 0.5, 2}, {3, 0, 4, 1}, 6.25});
  r.set_histogram("lat_seconds", {{"v", "a"}}, HistogramData{{1}, {0, 2}, std::nullopt});
  EXPECT_EQ(r.render(),
            "# HELP lat_seconds Latency.\n"
            "# TYPE lat_seconds histogram\n"
            "lat_seconds_bucket{v=\"a\",le=\"1\"} 0\n"
            "lat_seconds_bucket{v=\"a\",le=\"+Inf\"} 2\n"
            "lat_seconds_count{v=\"a\"} 2\n"
            "lat_seconds_bucket{v=\"blue\",le=\"0.1\"} 3\n"
            "lat_seconds_bucket{v=\"blue\",le=\"0.5\"} 3\n"
            "lat_seconds_bucket{v=\"blue\",le=\"2\"} 7\n"
            "lat_seconds_bucket{v=\"blue\",le=\"+Inf\"} 8\n"
            "lat_seconds_sum{v=\"blue\"} 6.25\n"
            "lat_seconds_count{v=\"blue\"} 8\n");
}

TEST(MetricsRegistry, BadInputIsRejectedAndChangesNothing) {
  Registry r;
  EXPECT_THROW(r.declare("1bad", MetricType::Gauge, "h", {}), std::invalid_argument);
  EXPECT_THROW(r.declare("bad-name", MetricType::Gauge, "h", {}), std::invalid_argument);
  EXPECT_THROW(r.declare("ok", MetricType::Gauge, "h", {"__reserved"}), std::invalid_argument);
  EXPECT_THROW(r.declare("ok", MetricType::Summary, "h", {}), std::invalid_argument);  // the parser's types only
  EXPECT_THROW(r.declare("ok", MetricType::Untyped, "h", {}), std::invalid_argument);
  EXPECT_THROW(r.declare("ok", MetricType::Gauge, "h", {"x", "x"}), std::invalid_argument);
  EXPECT_THROW(r.declare("ok", MetricType::Gauge, "h", {"bad label"}), std::invalid_argument);
  EXPECT_THROW(r.declare("h", MetricType::Histogram, "h", {"le"}), std::invalid_argument);
  EXPECT_FALSE(r.declared("ok"));
  EXPECT_FALSE(r.declared("h"));

  r.declare("c_total", MetricType::Counter, "h", {"x"});
  r.declare("c_total", MetricType::Counter, "h", {"x"});  // identical: fine
  EXPECT_THROW(r.declare("c_total", MetricType::Gauge, "h", {"x"}), std::invalid_argument);
  EXPECT_THROW(r.declare("c_total", MetricType::Counter, "other help", {"x"}), std::invalid_argument);
  r.declare("lat", MetricType::Histogram, "h", {});
  EXPECT_THROW(r.declare("lat_count", MetricType::Counter, "h", {}), std::invalid_argument);
  EXPECT_THROW(r.declare("lat_bucket", MetricType::Gauge, "h", {}), std::invalid_argument);
  r.declare("x_sum", MetricType::Gauge, "h", {});
  EXPECT_THROW(r.declare("x", MetricType::Histogram, "h", {}), std::invalid_argument);
  EXPECT_FALSE(r.declared("lat_count"));

  r.set("c_total", {{"x", "1"}}, 10);
  EXPECT_THROW(r.set("undeclared", {}, 1), std::invalid_argument);
  EXPECT_THROW(r.set("c_total", {}, 1), std::invalid_argument);
  EXPECT_THROW(r.set("c_total", {{"y", "1"}}, 1), std::invalid_argument);
  EXPECT_THROW(r.set("c_total", {{"x", "1"}, {"y", "2"}}, 1), std::invalid_argument);
  EXPECT_THROW(r.set("c_total", {{"x", "1"}}, -1), std::invalid_argument);
  EXPECT_THROW(r.set("c_total", {{"x", "1"}}, std::nan("")), std::invalid_argument);
  EXPECT_THROW(r.add("c_total", {{"x", "1"}}, -1), std::invalid_argument);
  EXPECT_THROW(r.set("lat", {}, 1), std::invalid_argument);
  EXPECT_THROW(r.set_histogram("c_total", {{"x", "1"}}, HistogramData{{1}, {0, 0}, 0}), std::invalid_argument);
  EXPECT_THROW(r.set_histogram("lat", {}, HistogramData{{1, 2}, {0, 0}, 0}), std::invalid_argument);
  EXPECT_THROW(r.set_histogram("lat", {}, HistogramData{{2, 1}, {0, 0, 0}, 0}), std::invalid_argument);
  EXPECT_THROW(r.set_histogram("lat", {}, HistogramData{{1, 1}, {0, 0, 0}, 0}), std::invalid_argument);
  EXPECT_THROW(r.set_histogram("lat", {}, HistogramData{{1, INFINITY}, {0, 0, 0}, 0}), std::invalid_argument);
  EXPECT_THROW(r.set_histogram("lat", {}, HistogramData{{1}, {0, 0}, std::nan("")}), std::invalid_argument);
  EXPECT_EQ(r.value("c_total", {{"x", "1"}}), 10.0);
  EXPECT_EQ(r.series_count("c_total"), 1u);
  EXPECT_EQ(r.series_count("lat"), 0u);
}

TEST(MetricsRegistry, KernelLatencyHistogramInSeconds) {
  LatencyHistogram kernel{};
  kernel[0] = 2;                                                // below 8.192 us
  kernel[latency_bucket_of(50'000'000)] = 5;                    // 50 ms
  kernel[VEER_LAT_BUCKETS - 1] = 1;                             // overflow
  const HistogramData h = latency_histogram_seconds(kernel);
  ASSERT_EQ(h.upper_bounds.size(), static_cast<std::size_t>(VEER_LAT_BUCKETS - 1));
  ASSERT_EQ(h.counts.size(), static_cast<std::size_t>(VEER_LAT_BUCKETS));
  EXPECT_DOUBLE_EQ(h.upper_bounds[0], 8.192e-6);
  EXPECT_DOUBLE_EQ(h.upper_bounds.back(), 68.719476736);  // 2^36 ns
  EXPECT_EQ(h.count(), 8u);
  EXPECT_FALSE(h.sum.has_value());

  Registry r;
  VeerMetrics m(r);
  VariantTelemetry t;
  t.service = "api";
  t.variant = "canary";
  t.latency = h;
  m.variant_telemetry(t);
  const auto parsed = prom::parse_prometheus_text(r.render());
  ASSERT_TRUE(parsed.ok);
  EXPECT_EQ(parsed.error_count, 0u);
  const auto* fam = parsed.find(kResponseLatencySeconds);
  ASSERT_NE(fam, nullptr);
  EXPECT_EQ(fam->type, prom::MetricType::Histogram);
  EXPECT_EQ(prom::histogram_count(*fam, {{"variant", "canary"}}), 8);
  // The median (rank 4 of 8) lies in the 50 ms bucket, which is < 6.25 % wide.
  const auto p50 = prom::histogram_quantile(*fam, 0.5, {{"variant", "canary"}});
  ASSERT_TRUE(p50.has_value());
  EXPECT_NEAR(*p50, 0.050, 0.050 * 0.0625);
}

TEST(VeerMetrics, Spec7FamiliesNamesAndLabels) {
  Registry r;
  VeerMetrics m(r);
  VariantTelemetry t;
  t.service = "api";
  t.variant = "blue";
  t.packets_in = 10;
  t.bytes_in = 1000;
  t.packets_out = 8;
  t.bytes_out = 4000;
  t.flows = 3;
  t.backend_resets = 1;
  t.client_resets = 2;
  t.handshake_timeouts = 4;
  t.http_2xx = 5;
  t.http_3xx = 6;
  t.http_4xx = 7;
  t.http_5xx = 9;
  t.latency = HistogramData{{0.01, 0.1}, {1, 2, 0}, 0.2};
  m.variant_telemetry(t);
  m.weight("api", "blue", 95, 95);
  m.weight("api", "canary", 5, 0);
  m.rollout_phase("api", "Paused", {"Idle", "Progressing", "Paused", "Aborted"});
  m.rollout_step("api", 2);
  m.gate_value("api", "", "p95", 0.183);
  m.gate_result_count("api", "", "p95", "Successful", 4);
  m.gate_result_count("api", "", "p95", "Failed", 1);
  // blue-green: the same gate name in both lists, two series
  m.gate_result_count("bg", "pre_promotion", "p95", "Failed", 1);
  m.gate_result_count("bg", "post_promotion", "p95", "Failed", 2);
  m.srm_p_value("api", 0.42);
  m.drops("no_backend", 12);

  const std::string text = r.render();
  const auto parsed = prom::parse_prometheus_text(text);
  ASSERT_TRUE(parsed.ok) << text;
  EXPECT_EQ(parsed.error_count, 0u) << (parsed.errors.empty() ? "" : parsed.errors[0].message);

  struct Expect {
    const char* family;
    prom::MetricType type;
    prom::Labels labels;
    double value;
  };
  using PT = prom::MetricType;
  const std::vector<Expect> expected = {
      {"veer_packets_total", PT::Counter, {{"service", "api"}, {"variant", "blue"}, {"direction", "in"}}, 10},
      {"veer_packets_total", PT::Counter, {{"service", "api"}, {"variant", "blue"}, {"direction", "out"}}, 8},
      {"veer_bytes_total", PT::Counter, {{"service", "api"}, {"variant", "blue"}, {"direction", "in"}}, 1000},
      {"veer_bytes_total", PT::Counter, {{"service", "api"}, {"variant", "blue"}, {"direction", "out"}}, 4000},
      {"veer_flows_total", PT::Counter, {{"service", "api"}, {"variant", "blue"}}, 3},
      {"veer_flow_errors_total", PT::Counter, {{"service", "api"}, {"variant", "blue"}, {"kind", "backend_reset"}}, 1},
      {"veer_flow_errors_total", PT::Counter, {{"service", "api"}, {"variant", "blue"}, {"kind", "client_reset"}}, 2},
      {"veer_flow_errors_total",
       PT::Counter,
       {{"service", "api"}, {"variant", "blue"}, {"kind", "handshake_timeout"}},
       4},
      {"veer_http_responses_total", PT::Counter, {{"service", "api"}, {"variant", "blue"}, {"class", "2xx"}}, 5},
      {"veer_http_responses_total", PT::Counter, {{"service", "api"}, {"variant", "blue"}, {"class", "3xx"}}, 6},
      {"veer_http_responses_total", PT::Counter, {{"service", "api"}, {"variant", "blue"}, {"class", "4xx"}}, 7},
      {"veer_http_responses_total", PT::Counter, {{"service", "api"}, {"variant", "blue"}, {"class", "5xx"}}, 9},
      {"veer_weight", PT::Gauge, {{"service", "api"}, {"variant", "blue"}, {"kind", "desired"}}, 95},
      {"veer_weight", PT::Gauge, {{"service", "api"}, {"variant", "canary"}, {"kind", "desired"}}, 5},
      {"veer_weight", PT::Gauge, {{"service", "api"}, {"variant", "canary"}, {"kind", "applied"}}, 0},
      {"veer_rollout_phase", PT::Gauge, {{"service", "api"}, {"phase", "Paused"}}, 1},
      {"veer_rollout_phase", PT::Gauge, {{"service", "api"}, {"phase", "Idle"}}, 0},
      {"veer_rollout_phase", PT::Gauge, {{"service", "api"}, {"phase", "Aborted"}}, 0},
      {"veer_rollout_step", PT::Gauge, {{"service", "api"}}, 2},
      {"veer_gate_value", PT::Gauge, {{"service", "api"}, {"stage", ""}, {"gate", "p95"}}, 0.183},
      {"veer_gate_result_total", PT::Counter, {{"service", "api"}, {"stage", ""}, {"gate", "p95"}, {"result", "Successful"}}, 4},
      {"veer_gate_result_total", PT::Counter, {{"service", "api"}, {"stage", ""}, {"gate", "p95"}, {"result", "Failed"}}, 1},
      {"veer_gate_result_total", PT::Counter, {{"service", "bg"}, {"stage", "pre_promotion"}, {"gate", "p95"}, {"result", "Failed"}}, 1},
      {"veer_gate_result_total", PT::Counter, {{"service", "bg"}, {"stage", "post_promotion"}, {"gate", "p95"}, {"result", "Failed"}}, 2},
      {"veer_srm_p_value", PT::Gauge, {{"service", "api"}}, 0.42},
      {"veer_drops_total", PT::Counter, {{"reason", "no_backend"}}, 12},
  };
  for (const auto& e : expected) {
    const auto* fam = parsed.find(e.family);
    ASSERT_NE(fam, nullptr) << e.family;
    EXPECT_EQ(fam->type, e.type) << e.family;
    EXPECT_FALSE(fam->help.empty()) << e.family;
    bool found = false;
    for (const auto& s : fam->samples)
      if (s.labels == e.labels) {
        found = true;
        EXPECT_EQ(s.value, e.value) << e.family;
      }
    EXPECT_TRUE(found) << e.family;
  }
  EXPECT_EQ(r.series_count(kRolloutPhase), 4u);
  const auto* lat = parsed.find("veer_response_latency_seconds");
  ASSERT_NE(lat, nullptr);
  EXPECT_EQ(lat->type, prom::MetricType::Histogram);
  EXPECT_EQ(prom::histogram_count(*lat), 3);
  EXPECT_EQ(prom::histogram_sum(*lat), 0.2);
  EXPECT_NE(text.find("veer_response_latency_seconds_bucket{service=\"api\",variant=\"blue\",le=\"0.1\"} 3\n"),
            std::string::npos);

  // A phase change moves the 1.
  m.rollout_phase("api", "Aborted", {"Idle", "Progressing", "Paused", "Aborted"});
  EXPECT_EQ(r.value(kRolloutPhase, {{"service", "api"}, {"phase", "Paused"}}), 0.0);
  EXPECT_EQ(r.value(kRolloutPhase, {{"service", "api"}, {"phase", "Aborted"}}), 1.0);
}

TEST(VeerMetrics, BadHistogramChangesNothing) {
  Registry r;
  VeerMetrics m(r);
  VariantTelemetry t;
  t.service = "api";
  t.variant = "blue";
  t.packets_in = 1;
  t.latency = HistogramData{{0.2, 0.1}, {0, 0, 0}, std::nullopt};
  EXPECT_THROW(m.variant_telemetry(t), std::invalid_argument);
  EXPECT_EQ(r.render(), "");
}

TEST(MetricsRegistry, RoundTripThroughParserWithHostileLabelValues) {
  Registry r;
  r.declare("odd_total", MetricType::Counter, "Help with \\ and\nnewline.", {"v"});
  const std::vector<std::string> values = {"", "a\"b", "back\\slash", "new\nline", "{}=,", "ünïcödé", "\\n literal"};
  for (std::size_t i = 0; i < values.size(); ++i) r.set("odd_total", {{"v", values[i]}}, static_cast<double>(i + 1));
  const auto parsed = prom::parse_prometheus_text(r.render());
  ASSERT_TRUE(parsed.ok);
  EXPECT_EQ(parsed.error_count, 0u);
  const auto* fam = parsed.find("odd_total");
  ASSERT_NE(fam, nullptr);
  EXPECT_EQ(fam->help, "Help with \\ and\nnewline.");
  ASSERT_EQ(fam->samples.size(), values.size());
  for (std::size_t i = 0; i < values.size(); ++i) {
    bool found = false;
    for (const auto& s : fam->samples)
      if (s.labels.at("v") == values[i]) {
        found = true;
        EXPECT_EQ(s.value, static_cast<double>(i + 1)) << values[i];
      }
    EXPECT_TRUE(found) << values[i];
  }
}

}  // namespace
}  // namespace veer::metrics
