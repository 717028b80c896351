// The rollout engine of SPEC §5: a pure state machine. Config, metric
// snapshots, operator commands and the current time go in; decisions (desired
// weights, events, phase) come out. No clock, no kernel, no sockets: the
// daemon measures, calls tick() every `interval`, applies the weights and
// persists state() after every decision.
#pragma once
#include <cstdint>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "config/config.h"
#include "config/rollout_config.h"

namespace veer {

// One measurement of one metric for one variant over the last interval.
struct Measurement {
  // Fail: the source itself reports a breach without a value (a promql gate
  // with no_data: fail whose query came back empty).
  enum class Status { Value, Inconclusive, Error, Fail };
  Status status = Status::Value;
  double value = 0;        // Value: the metric's value
  uint64_t samples = 0;    // what the value rests on (requests, flows, label counts); vs min_samples
  std::map<std::string, double> labels;  // prediction_kl: label counts (class -> count)
  std::string reason;      // Inconclusive ("no data") or Error ("connection refused")

  static Measurement of(double value, uint64_t samples) { return {Status::Value, value, samples, {}, {}}; }
  static Measurement of_labels(std::map<std::string, double> counts);
  static Measurement inconclusive(std::string why) { return {Status::Inconclusive, 0, 0, {}, std::move(why)}; }
  static Measurement error(std::string why) { return {Status::Error, 0, 0, {}, std::move(why)}; }
  static Measurement failed(std::string why) { return {Status::Fail, 0, 0, {}, std::move(why)}; }
};

// Per gate (by GateConfig::name): the variant under test and the stable
// variant (needed by relative gates and prediction_kl; ignored otherwise).
struct GateMeasurement {
  Measurement test;
  std::optional<Measurement> stable;
};
struct MetricsSnapshot {
  std::map<std::string, GateMeasurement> gates;  // a gate missing here is Inconclusive ("no data")
};

struct RolloutEvent {
  Millis time{0};
  std::string kind;     // started, weights, step, gate, hold, pause, promote, abort, retry, switch, completed, resumed
  std::string message;  // human-readable, with the values
  std::map<std::string, double> values;  // e.g. {"value": 312.5, "max": 200, "weight.canary": 20}
};

struct Decision {
  std::optional<std::vector<uint32_t>> weights_bp;  // new desired weights (service variant order)
  std::optional<std::string> new_stable;            // Completed: this variant is the new stable
  std::vector<RolloutEvent> events;
  RolloutPhase phase = RolloutPhase::Idle;
};

// A command that does not apply in the current phase (promote while Aborted,
// retry while Progressing, ...). The state is unchanged.
class RolloutCommandError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Gate evaluation on its own (also used by the daemon for `status`).
// `previous` carries the failure and error counters forward.
GateStatus evaluate_gate(const GateConfig& gate, const std::optional<GateMeasurement>& m, Millis now,
                         const GateStatus& previous);

inline constexpr uint32_t kConsecutiveErrorsToAbort = 5;

class RolloutEngine {
 public:
  // `service` must hold `rollout` (copied). `persisted`: a state written by
  // state() before a restart; the pause time it had already spent counts, the
  // time the daemon was down does not (no gate watched it).
  // Throws std::invalid_argument if the service has no rollout or the state
  // does not fit the config (weights of another size, step out of range).
  RolloutEngine(ServiceConfig service, std::optional<RolloutState> persisted = std::nullopt);

  Decision start(Millis now);                                     // Idle, Completed -> first step
  Decision tick(Millis now, const MetricsSnapshot& metrics);       // every interval
  Decision promote(Millis now, bool full);                         // next step / switch; full: to 100 %
  Decision pause(Millis now);                                      // operator pause (canary)
  Decision abort(Millis now, const std::string& reason);           // roll back now
  Decision retry(Millis now);                                      // Aborted -> step 0

  const RolloutState& state() const { return state_; }
  // True between a restore from persisted state and the first input after
  // it: the time since state().last_update was downtime, not pause time.
  bool resumed_without_input() const { return restored_; }
  const RolloutConfig& config() const { return rollout_; }
  const ServiceConfig& service() const { return service_; }
  bool active() const;  // a phase in which tick() evaluates gates or moves on

 private:
  Decision canary_tick(Millis now, const MetricsSnapshot& m, Decision d);
  Decision blue_green_tick(Millis now, const MetricsSnapshot& m, Decision d);
  // Evaluates `gates`; returns true if the rollout must abort (events added).
  bool evaluate(Millis now, const std::vector<GateConfig>& gates, const MetricsSnapshot& m, Decision& d,
                std::string& abort_why);
  void enter_step(Millis now, Decision& d);  // canary: enter state_.step (may complete)
  void complete(Millis now, Decision& d, const std::string& why);
  void switch_to_preview(Millis now, Decision& d, const std::string& why, bool skip_watch);
  void do_abort(Millis now, Decision& d, const std::string& reason, const std::map<std::string, double>& values);
  void set_weights(Millis now, Decision& d, std::vector<uint32_t> w, const std::string& why);
  void account_time(Millis now);
  bool pause_over(Millis length) const;
  void event(Decision& d, Millis now, std::string kind, std::string message,
             std::map<std::string, double> values = {}) const;
  std::vector<uint32_t> canary_weights(uint32_t canary_bp) const;
  std::vector<uint32_t> all_on(int variant) const;
  const std::vector<GateConfig>* current_gates() const;
  // "" (rollout.gates), "pre_promotion" or "post_promotion": RolloutState::gates_stage.
  std::string stage_of(const std::vector<GateConfig>& gates) const;
  Decision finish(Decision d) const;

  ServiceConfig service_;
  RolloutConfig rollout_;
  RolloutState state_;
  int test_ = -1;    // variant under test (canary / preview)
  int stable_ = -1;  // stable / active
  bool restored_ = false;  // first input after a restart does not count the downtime
};

// ---------------------------------------------------------------------------
// A/B report (SPEC §5), a pure function of the data.

struct AbVariantData {
  uint64_t flows = 0;      // new flows seen by the kernel (for the SRM check)
  uint64_t n = 0;          // observations of the metric (proportion: trials)
  uint64_t successes = 0;  // proportion
  double mean = 0;         // mean
  double variance = 0;     // mean: sample variance
};
struct AbSnapshot {
  std::vector<AbVariantData> variants;  // service variant order
};

struct AbVariantReport {
  std::string variant;
  uint32_t weight_bp = 0;
  uint64_t flows = 0;
  uint64_t n = 0;
  double estimate = 0;  // proportion or mean
  double ci_low = 0, ci_high = 0;  // 95 % interval
  // Versus the stable variant (absent for the stable variant itself).
  std::optional<double> difference;
  std::optional<double> statistic;
  std::optional<double> p_value;
  bool significant = false;
};

struct AbReport {
  std::string metric;
  AbMetricKind kind = AbMetricKind::Proportion;
  std::string test;    // "chi-square" or "welch-t"
  double alpha = 0.05;  // per comparison: Bonferroni over the non-stable variants
  std::vector<AbVariantReport> variants;
  uint64_t sample_size_per_arm = 0;  // needed for power/alpha/MDE; 0 if not computable yet
  uint64_t samples_still_needed = 0;  // per arm, for the smallest arm
  double srm_p_value = 1;
  bool srm_mismatch = false;
  bool significant = false;  // some variant differs from stable (and the sample is large enough)
  std::string verdict;       // "hold: sample ratio mismatch", "collecting: N more per arm", ...
};

// Throws std::invalid_argument if the service has no ab rollout or the
// snapshot does not have one entry per variant.
AbReport ab_report(const ServiceConfig& service, const AbSnapshot& snapshot);
nlohmann::json to_json(const AbReport& report);

}  // namespace veer
