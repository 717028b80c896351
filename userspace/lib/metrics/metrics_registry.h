// veer's own metrics (SPEC §7) as a pure data model and its rendering in the
// Prometheus text exposition format 0.0.4
// (https://prometheus.io/docs/instrumenting/exposition_formats/).
//
// The daemon fills a fresh Registry from the maps and the rollout state on
// each scrape and serves render() (see userspace/net/metrics_server.h). No
// kernel, no sockets, no clock here: the unit tests check the text exactly.
//
// Output rules (what render() guarantees):
// - families sorted by name, each with "# HELP" and "# TYPE" lines; a family
//   with no series is left out (as the Prometheus client libraries do);
// - series of a family sorted by their label values (in the family's declared
//   label order), labels written in the declared order;
// - label values escaped (\\, \", \n), HELP escaped (\\, \n);
// - values: integers (|v| < 2^53) without exponent or fraction, other finite
//   values as the shortest text that reads back to the same double, and
//   +Inf, -Inf, NaN;
// - histograms: name_bucket{...,le="<bound>"} cumulative in increasing le,
//   then le="+Inf" equal to name_count, then name_sum (only when the sum is
//   known), then name_count.
#pragma once
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "veer/latency_histogram.h"
#include "metrics/metric_type.h"

namespace veer::metrics {

// The exposition format's types; a Registry declares Counter, Gauge and
// Histogram families only (declare() refuses the others).
using prom::MetricType;

// Label name -> value. Must hold exactly the family's declared label names.
using Labels = std::map<std::string, std::string>;

struct HistogramData {
  // The le= of each finite bucket: finite, strictly increasing.
  std::vector<double> upper_bounds;
  // Observations per bucket, NOT cumulative: counts[i] for the bucket ending
  // at upper_bounds[i]; counts.back() (size = upper_bounds.size() + 1) for the
  // observations above the last bound (the le="+Inf" bucket).
  std::vector<uint64_t> counts;
  // Sum of the observations; when unknown (the kernel histogram keeps none)
  // the _sum line is left out, which parsers accept (OpenMetrics makes it
  // optional; Prometheus' histogram_quantile does not need it).
  std::optional<double> sum;

  uint64_t count() const;
};

// The kernel's response-latency histogram (map veer_latency, log-linear
// buckets of veer/latency.h) in seconds: each bucket's exclusive upper bound
// in ns / 1e9 becomes its le (the kernel's buckets are [lower, upper) on
// integer nanoseconds, so "< upper" and "<= upper - 1ns" are the same set);
// the overflow bucket (>= 2^36 ns) is the +Inf bucket. No sum.
HistogramData latency_histogram_seconds(const LatencyHistogram& histogram);

class Registry {
 public:
  // Declares a family. Throws std::invalid_argument (and changes nothing) for
  // an invalid metric or label name ([a-zA-Z_:][a-zA-Z0-9_:]*, labels
  // [a-zA-Z_][a-zA-Z0-9_]* not starting with "__"), a duplicate label name,
  // "le" on a histogram, a name whose samples collide with another family's
  // (histogram "x" owns x_bucket, x_sum, x_count), or a redeclaration with a
  // different type, help or label names (an identical one is a no-op).
  void declare(const std::string& name, MetricType type, const std::string& help,
               const std::vector<std::string>& label_names);
  bool declared(std::string_view name) const;

  // Counters and gauges. Throw std::invalid_argument (changing nothing) for
  // an undeclared family, a histogram family, labels that differ from the
  // declared names, or a counter value that is negative or NaN.
  void set(const std::string& name, const Labels& labels, double value);
  // Adds to the series (created at 0).
  void add(const std::string& name, const Labels& labels, double value);
  // Histograms. Throws std::invalid_argument for the same reasons, and for
  // bounds that are not finite and strictly increasing, counts.size() !=
  // upper_bounds.size() + 1, or a NaN sum.
  void set_histogram(const std::string& name, const Labels& labels, HistogramData histogram);

  // The value of a counter or gauge series, nullopt if absent (tests, status).
  std::optional<double> value(const std::string& name, const Labels& labels) const;
  std::size_t series_count(const std::string& name) const;

  std::string render() const;

 private:
  struct Family {
    MetricType type;
    std::string help;
    std::vector<std::string> label_names;
    // Label values in declared order -> value.
    std::map<std::vector<std::string>, std::variant<double, HistogramData>> series;
  };
  Family& family_for_write(const std::string& name, const Labels& labels, bool histogram,
                           std::vector<std::string>& key);
  std::map<std::string, Family, std::less<>> families_;
};

// Formatting helpers, exposed for tests and other writers of the format.
std::string format_value(double value);
std::string escape_label_value(std::string_view value);
std::string escape_help(std::string_view help);

// ---------------------------------------------------------------------------
// The families of SPEC §7.

inline constexpr const char* kPacketsTotal = "veer_packets_total";
inline constexpr const char* kBytesTotal = "veer_bytes_total";
inline constexpr const char* kFlowsTotal = "veer_flows_total";
inline constexpr const char* kFlowErrorsTotal = "veer_flow_errors_total";
inline constexpr const char* kHttpResponsesTotal = "veer_http_responses_total";
inline constexpr const char* kResponseLatencySeconds = "veer_response_latency_seconds";
inline constexpr const char* kWeight = "veer_weight";
inline constexpr const char* kRolloutPhase = "veer_rollout_phase";
inline constexpr const char* kRolloutStep = "veer_rollout_step";
inline constexpr const char* kGateValue = "veer_gate_value";
inline constexpr const char* kGateResultTotal = "veer_gate_result_total";
inline constexpr const char* kSrmPValue = "veer_srm_p_value";
inline constexpr const char* kDropsTotal = "veer_drops_total";

// Declares every SPEC §7 family (idempotent).
void declare_veer_families(Registry& registry);

// One (service, variant)'s kernel counters, cumulative since the maps were
// created (counters: Prometheus computes the rates).
struct VariantTelemetry {
  std::string service;
  std::string variant;
  uint64_t packets_in = 0;   // client -> backend (abi.h: "in")
  uint64_t bytes_in = 0;
  uint64_t packets_out = 0;  // backend -> client (replies)
  uint64_t bytes_out = 0;
  uint64_t flows = 0;
  uint64_t backend_resets = 0;
  uint64_t client_resets = 0;
  uint64_t handshake_timeouts = 0;
  uint64_t http_2xx = 0;
  uint64_t http_3xx = 0;
  uint64_t http_4xx = 0;
  uint64_t http_5xx = 0;
  std::optional<HistogramData> latency;  // seconds; e.g. latency_histogram_seconds(...)
};

// Writes the SPEC §7 series into a registry (declaring the families first).
// Label values: direction in|out; kind backend_reset|client_reset|
// handshake_timeout (flow errors) and desired|applied (weight); class
// 2xx|3xx|4xx|5xx. Every method throws std::invalid_argument like Registry.
class VeerMetrics {
 public:
  explicit VeerMetrics(Registry& registry);

  // veer_packets_total, veer_bytes_total, veer_flows_total,
  // veer_flow_errors_total, veer_http_responses_total and (if present)
  // veer_response_latency_seconds of one variant.
  void variant_telemetry(const VariantTelemetry& t);
  // veer_weight{kind=desired} and {kind=applied}.
  void weight(const std::string& service, const std::string& variant, double desired, double applied);
  // veer_rollout_phase: 1 for `current`, 0 for every other name in
  // `all_phases` (so a phase change shows as a step in each series).
  void rollout_phase(const std::string& service, const std::string& current,
                     const std::vector<std::string>& all_phases);
  void rollout_step(const std::string& service, int64_t step);
  // `stage`: the gate's list, "" for rollout.gates, "pre_promotion" or
  // "post_promotion" (blue-green: both lists may name a latency_p95_ms).
  void gate_value(const std::string& service, const std::string& stage, const std::string& gate, double value);
  // veer_gate_result_total{result}: the number of evaluations with that result.
  void gate_result_count(const std::string& service, const std::string& stage, const std::string& gate,
                         const std::string& result, uint64_t count);
  void srm_p_value(const std::string& service, double p_value);
  void drops(const std::string& reason, uint64_t count);

 private:
  Registry& registry_;
};

}  // namespace veer::metrics
