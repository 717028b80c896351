// The live view's memory of a service (README "Live view", docs/view.md): a
// bounded ring of samples, one a second by default, each taken from the
// service's status object (the `status` answer's shape), so that the page can
// draw weights desired and applied, flows/s, p95 and error rate per variant,
// and every gate's value against its bound over the last minutes. Pure: the
// daemon hands in status objects and times; nothing here reads the kernel.
#pragma once
#include <cstddef>
#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace veer::view {

struct VariantSample {
  std::string name;
  double desired_pct = 0;
  double applied_pct = 0;
  uint64_t flows = 0;                   // the kernel's new-flows counter (cumulative)
  std::optional<double> latency_p95_ms;  // over the service's last window
  std::optional<double> error_rate;
  bool operator==(const VariantSample&) const = default;
};

struct GateSample {
  std::string key;    // "NAME", or "STAGE.NAME" for a blue-green stage's list
  std::string stage;  // "" for canary and A/B gates
  std::string name;
  std::optional<double> value;
  std::optional<double> max, min;
  std::string result;  // "none", "Successful", "Failed", "Inconclusive", "Error"
  uint64_t failures = 0;
  bool operator==(const GateSample&) const = default;
};

struct Sample {
  int64_t time_ms = 0;  // Unix epoch
  std::string phase;    // "" without a rollout
  uint32_t step = 0;
  std::vector<VariantSample> variants;
  std::vector<GateSample> gates;
};

// One sample out of a service's status object (Daemon::service_status: name,
// variants[] with weight_desired / weight_applied / flows / window, rollout
// with phase / step / gates[]). Throws std::invalid_argument naming the field
// if the object does not have that shape.
Sample sample_of_status(const nlohmann::json& service_status, int64_t time_ms);

class History {
 public:
  // At most `capacity` samples (>= 2) are kept, the oldest dropped first.
  explicit History(std::size_t capacity = 600);

  // Appends S. A sample whose variant names or gate keys differ from the
  // previous one (a reload changed the service) starts the history afresh:
  // the series would not line up. A sample not later than the last one is
  // ignored (a clock step back).
  void add(Sample s);
  std::size_t size() const { return samples_.size(); }
  std::size_t capacity() const { return capacity_; }
  const std::deque<Sample>& samples() const { return samples_; }

  // Column form for the API (one array per series, aligned with "t"):
  //   {"capacity", "t": [ms...], "phase": [...], "step": [...],
  //    "variants": {NAME: {"desired", "applied", "flows_per_s", "latency_p95_ms", "error_rate"}},
  //    "gates": {KEY: {"name", "stage", "max", "min", "value": [...], "result": [...], "failures": [...]}}}
  // flows_per_s is the counter's rise over the time since the sample before
  // (null for the first sample, and where the counter went back: a data
  // plane created afresh); a bound is the latest sample's.
  nlohmann::json to_json() const;

 private:
  std::size_t capacity_;
  std::deque<Sample> samples_;
};

}  // namespace veer::view
