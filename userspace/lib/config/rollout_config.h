// The `rollout:` section of a service (SPEC §4/§5) and the persisted state of
// one rollout. Plain data: parsed and validated by config.cc, driven by
// rollout_engine.h, written to state.json by the daemon.
#pragma once
#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace veer {

// Durations and points in time are milliseconds; a point in time counts from
// whatever epoch the caller uses (the daemon: the Unix epoch). The engine
// never reads a clock.
using Millis = std::chrono::milliseconds;

enum class RolloutStrategy { Canary, BlueGreen, Ab };
// Probe: results of the synthetic requests the daemon sends to the preview
// backends during a blue-green pre-promotion (the only source there by default).
// PromQL: an instant query against the user's Prometheus server (`address`,
// `query`), answered by a scalar or a one-element vector (rollout/promql.h).
enum class GateSource { Kernel, Prometheus, Push, Probe, PromQL };
// What an empty PromQL answer means: no data yet (the default), or a breach
// (a query written as "the bad series exists").
enum class NoDataPolicy { Inconclusive, Fail };
enum class AbMetricKind { Proportion, Mean };

std::string to_string(RolloutStrategy);
std::string to_string(GateSource);
std::string to_string(NoDataPolicy);
std::string to_string(AbMetricKind);

// "500ms", "5s", "10m", "1h", "1m30s" -> milliseconds; nullopt if malformed,
// without a unit, or zero.
std::optional<Millis> parse_duration(std::string_view text);
std::string format_duration(Millis d);  // 90000 -> "1m30s", 500 -> "500ms"

// Metrics the kernel telemetry (SPEC §2.10) provides per variant.
// latency_pNN_ms: NN is a percentile 1..99 (p95 -> latency_p95_ms).
bool is_latency_metric(std::string_view metric);           // latency_p<1..99>_ms
std::optional<double> latency_quantile(std::string_view metric);  // latency_p95_ms -> 0.95
bool is_kernel_metric(std::string_view metric);  // latency_pNN_ms, error_rate, reset_rate, handshake_timeout_rate
// Drift metrics of a label distribution against the stable variant's:
// prediction_kl, prediction_psi, prediction_js, prediction_chi2_p.
bool is_label_metric(std::string_view metric);

struct GateConfig {
  std::string name;    // unique in its list; defaults to `metric`
  std::string metric;  // latency_p95_ms | error_rate | prediction_kl | any name (push/prometheus)
  GateSource source = GateSource::Kernel;
  std::optional<double> max;  // at least one of max/min
  std::optional<double> min;
  uint64_t min_samples = 0;   // fewer -> Inconclusive
  bool relative = false;      // bounds are ratios test/stable over the same window
  // prometheus: the series read from each variant's metrics_url. For
  // prediction_kl the counter family whose `label` values are the classes
  // (push: the pushed prefix, default "prediction"); for latency_pNN_ms the
  // histogram's base name (`histogram`).
  std::string series;
  std::string label;
  std::string histogram;
  double smoothing = 1.0;  // prediction_kl: additive smoothing of label counts
  // promql: the server ("http://prometheus:9090") and the query template with
  // {{service}} {{variant}} {{stable}} {{interval}}; for prediction_kl the
  // query answers one element per class, the class in label `label`.
  std::string address;
  std::string query;
  NoDataPolicy no_data = NoDataPolicy::Inconclusive;
  bool operator==(const GateConfig&) const = default;
};

struct CanaryStep {
  enum class Kind { SetWeight, Pause };
  Kind kind = Kind::SetWeight;
  uint32_t weight_bp = 0;       // SetWeight: the canary's weight, basis points
  std::optional<Millis> pause;  // Pause: duration; nullopt = `pause: {}` (until promote)
  bool operator==(const CanaryStep&) const = default;
};

struct PrePromotion {
  uint32_t requests = 10;       // synthetic probe requests per check
  std::string path = "/";       // HTTP path of the probe requests
  Millis timeout{2000};         // per probe request
  std::vector<GateConfig> gates;
  bool operator==(const PrePromotion&) const = default;
};

struct PostPromotion {
  Millis duration{0};
  std::vector<GateConfig> gates;
  bool operator==(const PostPromotion&) const = default;
};

struct AbMetric {
  std::string name;
  AbMetricKind kind = AbMetricKind::Proportion;
  bool operator==(const AbMetric&) const = default;
};

struct RolloutConfig {
  RolloutStrategy strategy = RolloutStrategy::Canary;
  Millis interval{5000};      // gates are evaluated every interval
  uint32_t failure_limit = 0;  // Failed more than this often (per gate, cumulative) -> abort

  // canary
  std::string canary;  // the variant under test
  std::vector<CanaryStep> steps;
  std::vector<GateConfig> gates;

  // blue-green
  std::string active;   // defaults to (and must be) the service's stable variant
  std::string preview;
  std::optional<PrePromotion> pre_promotion;
  bool auto_promote = false;
  std::optional<PostPromotion> post_promotion;

  // ab: the variants and shares are the service's `weights`
  AbMetric metric;
  double alpha = 0.05;
  double power = 0.8;
  // Absolute: a proportion difference (0.01 = 10 % -> 11 %) or a difference
  // of means in the metric's unit.
  double min_detectable_effect = 0;

  bool operator==(const RolloutConfig&) const = default;
};

// ---------------------------------------------------------------------------
// State

enum class RolloutPhase {
  Idle,                 // not started
  Progressing,          // a set_weight step is applied; the next tick moves on
  Paused,               // a timed pause runs
  WaitingForPromotion,  // pause: {}, an operator pause, or blue-green without auto_promote
  Holding,              // Inconclusive (or Error) past a pause: waits for an operator
  Aborted,              // rolled back; `retry` starts again
  Completed,            // the variant under test is the new stable
  PrePromotion,         // blue-green: probes of the preview, traffic not moved
  PostPromotion,        // blue-green: switched, watching; a breach switches back
};
enum class GateResult { Successful, Failed, Inconclusive, Error };

std::string to_string(RolloutPhase);
std::string to_string(GateResult);
std::optional<RolloutPhase> rollout_phase_from_string(std::string_view);
std::optional<GateResult> gate_result_from_string(std::string_view);

struct GateStatus {
  GateResult result = GateResult::Inconclusive;
  std::optional<double> value;     // the test variant's value (KL: the divergence)
  std::optional<double> baseline;  // the stable variant's value (relative gates)
  std::optional<double> compared;  // what was compared with the bounds (value or ratio)
  std::string reason;              // for Inconclusive/Error/Failed
  Millis at{0};                    // when measured
  uint32_t failures = 0;            // Failed results over the whole rollout
  uint32_t consecutive_errors = 0;  // Error results in a row
  bool operator==(const GateStatus&) const = default;
};

struct RolloutState {
  RolloutPhase phase = RolloutPhase::Idle;
  uint32_t step = 0;            // canary: index into steps (== steps.size() when done)
  Millis step_started{0};       // when the current step (or blue-green phase) began
  Millis pause_spent{0};        // time spent in the current timed pause / post-promotion watch
  Millis last_update{0};        // last input that advanced pause_spent
  std::vector<uint32_t> desired_weights_bp;  // per variant (service order); empty before start
  std::map<std::string, GateStatus> gates;   // by gate name
  // The list `gates` belongs to: "" (canary, A/B), "pre_promotion" or
  // "post_promotion" (blue-green, whose two lists may share gate names).
  std::string gates_stage;
  std::string abort_reason;
  bool switched = false;  // blue-green: traffic is on the preview
  bool operator==(const RolloutState&) const = default;
};

class RolloutStateError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

void to_json(nlohmann::json& j, const RolloutState& s);
void from_json(const nlohmann::json& j, RolloutState& s);  // throws RolloutStateError
std::string rollout_state_to_json(const RolloutState& s);
RolloutState rollout_state_from_json(std::string_view text);  // throws RolloutStateError

}  // namespace veer
