// What veerd's gate sources measure, as pure functions (no kernel, no
// sockets): the kernel window (deltas of the cumulative telemetry counters of
// one variant over one gate interval) and its metrics as protocol.md defines
// them, the values of `push` requests, and the per-window accumulation of
// pushed observations. The daemon reads the maps and the sockets and feeds
// these; the unit tests feed them known values.
#pragma once
#include <cstdint>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "veer/latency_histogram.h"
#include "metrics/prom_text.h"
#include "rollout/rollout_engine.h"

namespace veer {

// One reading of a variant's kernel telemetry (cumulative since the maps
// were created), as Dataplane::telemetry returns it.
struct KernelSample {
  veer_variant_counters counters{};
  LatencyHistogram latency{};
  uint64_t handshake_timeouts = 0;
};

// The difference of two readings over `seconds`.
struct KernelWindow {
  double seconds = 0;
  uint64_t flows = 0;
  uint64_t responses = 0;
  uint64_t backend_resets = 0;
  uint64_t client_resets = 0;
  uint64_t handshake_timeouts = 0;
  uint64_t http_2xx = 0, http_3xx = 0, http_4xx = 0, http_5xx = 0;
  uint64_t packets_in = 0, packets_out = 0;
  LatencyHistogram latency{};  // per-bucket delta
};

// after - before, per counter and per histogram bucket. A counter that went
// down (the maps were recreated under a running veerd) counts from zero: its
// delta is its `after` value.
KernelWindow kernel_window(const KernelSample& before, const KernelSample& after, double seconds);

// A kernel metric of one window (protocol.md, "Kernel metric definitions"):
//   latency_pNN_ms  quantile NN of the window's latency histogram, in ms;
//                   samples = responses
//   error_rate      (5xx + backend resets + handshake timeouts) /
//                   (responses + backend resets + handshake timeouts)
//   reset_rate      backend resets / (responses + backend resets)
//   handshake_timeout_rate  handshake timeouts / (responses + handshake timeouts)
// samples = the denominator. An empty window is Inconclusive; a metric that
// is not a kernel metric is Error (the config check refuses it earlier).
Measurement kernel_measurement(const KernelWindow& window, std::string_view metric);

// The "window" object of a variant in `status` (protocol.md).
nlohmann::json to_json(const KernelWindow& window);

// ---------------------------------------------------------------------------
// push

// One NAME=VALUE of a push request: `count` observations of `value` for
// metric `name`, or (label set) `value` added to label `label` of the
// label-count metric `name` ("prediction.cat": "12").
struct PushItem {
  std::string name;
  std::optional<std::string> label;
  double value = 0;
  uint64_t count = 1;
};

class PushError : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

inline constexpr uint64_t kMaxPushRepeat = 1'000'000'000;

// "12.5" -> one observation; "1*130" -> 130 observations of 1. For a label
// count ("prediction.cat") the text is the count itself (a non-negative
// number, no "*N"). Throws PushError naming the item.
PushItem parse_push_item(const std::string& name, const std::string& value_text);
// A push request's "values" object; values are strings or JSON numbers.
// All or nothing: throws PushError for the first bad item.
std::vector<PushItem> parse_push_values(const nlohmann::json& values);

// Running sums of observations (count, sum, sum of squares).
struct Observations {
  uint64_t n = 0;
  double sum = 0;
  double sum_squares = 0;
  void add(double value, uint64_t count);
  double mean() const { return n ? sum / static_cast<double>(n) : 0; }
  double variance() const;  // sample variance (n - 1), 0 below two observations
};

// What one variant's pushed data may hold: every name and label is kept
// for the rollout's life (and written to state.json on every push), so a
// client that invents names cannot grow veerd without bound.
inline constexpr size_t kMaxPushedNames = 64;     // metrics + label series
inline constexpr size_t kMaxPushedLabels = 1024;  // labels of one series (prediction classes)

// Pushed data of one variant: observations per metric and counts per label.
struct PushData {
  std::map<std::string, Observations> metrics;
  std::map<std::string, std::map<std::string, double>> labels;
  void add(const PushItem& item);
  // Throws PushError (naming the limit) if adding `items` would exceed
  // kMaxPushedNames or kMaxPushedLabels; checked before anything is added.
  void check_room_for(const std::vector<PushItem>& items) const;
  // Adds OTHER's observations and label counts (the fleet sums its nodes' pushes).
  void merge(const PushData& other);
  bool empty() const { return metrics.empty() && labels.empty(); }
  bool operator==(const PushData&) const = default;
};

// What AFTER holds beyond BEFORE (both running totals of one source, BEFORE
// the earlier): observations and label counts of the growth. Returns the
// first thing that went down instead (a count, a label, a metric gone) in
// *DROP, with an empty result: running totals only grow.
PushData push_growth(const PushData& before, const PushData& after, std::string* drop);

// Throws PushError if DATA holds more than a variant may (kMaxPushedNames,
// kMaxPushedLabels) or a number that is not finite: for pushed data read
// from outside (a node's report).
void check_push_limits(const PushData& data);
inline bool operator==(const Observations& a, const Observations& b) {
  return a.n == b.n && a.sum == b.sum && a.sum_squares == b.sum_squares;
}

// PushData in state.json: {"metrics": {NAME: {"n", "sum", "sum_squares"}},
// "labels": {NAME: {LABEL: COUNT}}}. Doubles round-trip exactly (nlohmann
// writes max_digits10). The reader throws PushError naming what is wrong.
nlohmann::json to_json(const PushData& data);
PushData push_data_from_json(const nlohmann::json& j);

// The A/B report's data (SPEC §5) of SERVICE from FLOWS (new flows since the
// rollout started, in variant order) and PUSHED (the values pushed since then,
// by variant name): one node's totals, or the fleet's.
AbSnapshot ab_snapshot_of(const ServiceConfig& service, const std::vector<uint64_t>& flows,
                          const std::map<std::string, PushData>& pushed);

// A push gate's measurement from one window's data: the mean of the
// observations of `metric` (samples = their number); for prediction_kl the
// label counts of `series`. No data: Inconclusive.
Measurement push_measurement(const PushData& window, const GateConfig& gate);

// ---------------------------------------------------------------------------
// prometheus

// A prometheus gate's measurement from two scrapes of a variant's
// metrics_url `seconds` apart:
//   latency_pNN_ms  histogram_quantile over the window's increase of the
//                   histogram `gate.histogram` (seconds) -> ms; samples =
//                   observations in the window
//   prediction_kl   label counts (label `gate.label`) of the window's
//                   increase of counter family `gate.series`
//   anything else   family `gate.series`: a counter -> its increase per
//                   second (samples = the increase); a histogram or summary
//                   -> the mean observation of the window (sum / count);
//                   a gauge or untyped -> its current value (samples 1)
// A family missing from `after` is Error (the exporter does not expose
// it); missing from `before` counts from zero. No observations in the
// window: Inconclusive.
Measurement prometheus_measurement(const prom::ParseResult& before, const prom::ParseResult& after,
                                   const GateConfig& gate, double seconds);

// ---------------------------------------------------------------------------
// probe (blue-green pre-promotion)

struct ProbeOutcome {
  bool ok = false;       // an HTTP 2xx answer within the timeout
  double latency_ms = 0;  // time to the whole answer
};
// error_rate: failed / sent (samples = sent); latency_pNN_ms: the
// nearest-rank quantile of the successful probes (samples = their number).
Measurement probe_measurement(const std::vector<ProbeOutcome>& outcomes, std::string_view metric);

}  // namespace veer
