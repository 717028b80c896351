// Rollout config vocabulary (names, durations, metric names) and the JSON form
// of RolloutState that the daemon persists in state.json.
#include "config/rollout_config.h"

#include <nlohmann/json.hpp>

#include <charconv>
#include <cmath>

namespace veer {

using nlohmann::json;

std::string to_string(RolloutStrategy s) {
  switch (s) {
    case RolloutStrategy::Canary: return "canary";
    case RolloutStrategy::BlueGreen: return "blue-green";
    case RolloutStrategy::Ab: return "ab";
  }
  return "?";
}

std::string to_string(GateSource s) {
  switch (s) {
    case GateSource::Kernel: return "kernel";
    case GateSource::Prometheus: return "prometheus";
    case GateSource::Push: return "push";
    case GateSource::Probe: return "probe";
    case GateSource::PromQL: return "promql";
  }
  return "?";
}

std::string to_string(NoDataPolicy p) { return p == NoDataPolicy::Fail ? "fail" : "inconclusive"; }

std::string to_string(AbMetricKind k) { return k == AbMetricKind::Proportion ? "proportion" : "mean"; }

namespace {
constexpr std::pair<RolloutPhase, std::string_view> kPhases[] = {
    {RolloutPhase::Idle, "Idle"},
    {RolloutPhase::Progressing, "Progressing"},
    {RolloutPhase::Paused, "Paused"},
    {RolloutPhase::WaitingForPromotion, "WaitingForPromotion"},
    {RolloutPhase::Holding, "Holding"},
    {RolloutPhase::Aborted, "Aborted"},
    {RolloutPhase::Completed, "Completed"},
    {RolloutPhase::PrePromotion, "PrePromotion"},
    {RolloutPhase::PostPromotion, "PostPromotion"},
};
constexpr std::pair<GateResult, std::string_view> kResults[] = {
    {GateResult::Successful, "Successful"},
    {GateResult::Failed, "Failed"},
    {GateResult::Inconclusive, "Inconclusive"},
    {GateResult::Error, "Error"},
};
}  // namespace

std::string to_string(RolloutPhase p) {
  for (auto [v, n] : kPhases)
    if (v == p) return std::string(n);
  return "?";
}

std::string to_string(GateResult r) {
  for (auto [v, n] : kResults)
    if (v == r) return std::string(n);
  return "?";
}

std::optional<RolloutPhase> rollout_phase_from_string(std::string_view s) {
  for (auto [v, n] : kPhases)
    if (n == s) return v;
  return std::nullopt;
}

std::optional<GateResult> gate_result_from_string(std::string_view s) {
  for (auto [v, n] : kResults)
    if (n == s) return v;
  return std::nullopt;
}

std::optional<Millis> parse_duration(std::string_view text) {
  // A sequence of <integer><unit>, units h, m, s, ms, largest first, each at
  // most once ("1h30m", "1m30s", "1s500ms"). Bounded to 30 days.
  if (text.empty() || text.size() > 32) return std::nullopt;
  int64_t total = 0;
  int last_rank = 5;  // units must come in decreasing order
  while (!text.empty()) {
    uint64_t n = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
    if (ec != std::errc{} || end == text.data() || n > 1000000000) return std::nullopt;
    text.remove_prefix(static_cast<size_t>(end - text.data()));
    int64_t unit = 0;
    int rank = 0;
    if (text.rfind("ms", 0) == 0) unit = 1, rank = 1, text.remove_prefix(2);
    else if (text.rfind("h", 0) == 0) unit = 3600000, rank = 4, text.remove_prefix(1);
    else if (text.rfind("m", 0) == 0) unit = 60000, rank = 3, text.remove_prefix(1);
    else if (text.rfind("s", 0) == 0) unit = 1000, rank = 2, text.remove_prefix(1);
    else return std::nullopt;
    if (rank >= last_rank) return std::nullopt;
    last_rank = rank;
    total += static_cast<int64_t>(n) * unit;
    if (total > 30LL * 24 * 3600000) return std::nullopt;
  }
  if (total <= 0) return std::nullopt;
  return Millis{total};
}

std::string format_duration(Millis d) {
  int64_t ms = d.count();
  if (ms <= 0) return "0s";
  std::string out;
  const std::pair<int64_t, const char*> units[] = {{3600000, "h"}, {60000, "m"}, {1000, "s"}, {1, "ms"}};
  for (auto [size, name] : units)
    if (ms >= size) {
      out += std::to_string(ms / size) + name;
      ms %= size;
    }
  return out;
}

bool is_latency_metric(std::string_view m) {
  if (m.size() < 13 || m.rfind("latency_p", 0) != 0 || m.substr(m.size() - 3) != "_ms") return false;
  const auto digits = m.substr(9, m.size() - 12);
  if (digits.empty() || digits.size() > 2 || digits[0] == '0') return false;
  for (char c : digits)
    if (c < '0' || c > '9') return false;
  return true;
}

bool is_label_metric(std::string_view m) {
  return m == "prediction_kl" || m == "prediction_psi" || m == "prediction_js" || m == "prediction_chi2_p";
}

std::optional<double> latency_quantile(std::string_view m) {
  if (!is_latency_metric(m)) return std::nullopt;
  const auto digits = m.substr(9, m.size() - 12);
  int n = 0;
  for (char c : digits) n = n * 10 + (c - '0');
  return n / 100.0;
}

bool is_kernel_metric(std::string_view m) {
  return is_latency_metric(m) || m == "error_rate" || m == "reset_rate" || m == "handshake_timeout_rate";
}

// ---------------------------------------------------------------------------
// JSON. Times and durations are integer milliseconds.

namespace {
json opt(const std::optional<double>& v) { return v ? json(*v) : json(nullptr); }

std::optional<double> opt_double(const json& j, const char* key) {
  if (!j.contains(key) || j.at(key).is_null()) return std::nullopt;
  if (!j.at(key).is_number()) throw RolloutStateError(std::string("'") + key + "' must be a number or null");
  return j.at(key).get<double>();
}

template <typename T>
T field(const json& j, const char* key) {
  if (!j.is_object() || !j.contains(key)) throw RolloutStateError(std::string("missing '") + key + "'");
  try {
    return j.at(key).get<T>();
  } catch (const json::exception& e) {
    throw RolloutStateError(std::string("'") + key + "' has the wrong type: " + e.what());
  }
}
}  // namespace

void to_json(json& j, const RolloutState& s) {
  json gates = json::object();
  for (const auto& [name, g] : s.gates) {
    gates[name] = {{"result", to_string(g.result)},
                   {"value", opt(g.value)},
                   {"baseline", opt(g.baseline)},
                   {"compared", opt(g.compared)},
                   {"reason", g.reason},
                   {"at_ms", g.at.count()},
                   {"failures", g.failures},
                   {"consecutive_errors", g.consecutive_errors}};
  }
  j = {{"phase", to_string(s.phase)},
       {"step", s.step},
       {"step_started_ms", s.step_started.count()},
       {"pause_spent_ms", s.pause_spent.count()},
       {"last_update_ms", s.last_update.count()},
       {"desired_weights_bp", s.desired_weights_bp},
       {"gates", gates},
       {"gates_stage", s.gates_stage},
       {"abort_reason", s.abort_reason},
       {"switched", s.switched}};
}

void from_json(const json& j, RolloutState& s) {
  if (!j.is_object()) throw RolloutStateError("rollout state must be a JSON object");
  RolloutState out;
  const auto phase = field<std::string>(j, "phase");
  auto p = rollout_phase_from_string(phase);
  if (!p) throw RolloutStateError("unknown rollout phase '" + phase + "'");
  out.phase = *p;
  out.step = field<uint32_t>(j, "step");
  out.step_started = Millis{field<int64_t>(j, "step_started_ms")};
  out.pause_spent = Millis{field<int64_t>(j, "pause_spent_ms")};
  out.last_update = Millis{field<int64_t>(j, "last_update_ms")};
  if (out.pause_spent.count() < 0) throw RolloutStateError("pause_spent_ms is negative");
  out.desired_weights_bp = field<std::vector<uint32_t>>(j, "desired_weights_bp");
  out.abort_reason = field<std::string>(j, "abort_reason");
  out.switched = field<bool>(j, "switched");
  // Files written before gates_stage existed have none: "" until the next evaluation.
  if (j.contains("gates_stage")) {
    out.gates_stage = field<std::string>(j, "gates_stage");
    if (out.gates_stage != "" && out.gates_stage != "pre_promotion" && out.gates_stage != "post_promotion")
      throw RolloutStateError("unknown gates_stage '" + out.gates_stage + "'");
  }
  const json& gates = j.contains("gates") ? j.at("gates") : json::object();
  if (!gates.is_object()) throw RolloutStateError("'gates' must be an object");
  for (const auto& [name, g] : gates.items()) {
    if (!g.is_object()) throw RolloutStateError("gate '" + name + "' must be an object");
    GateStatus st;
    const auto result = field<std::string>(g, "result");
    auto r = gate_result_from_string(result);
    if (!r) throw RolloutStateError("gate '" + name + "': unknown result '" + result + "'");
    st.result = *r;
    st.value = opt_double(g, "value");
    st.baseline = opt_double(g, "baseline");
    st.compared = opt_double(g, "compared");
    st.reason = field<std::string>(g, "reason");
    st.at = Millis{field<int64_t>(g, "at_ms")};
    st.failures = field<uint32_t>(g, "failures");
    st.consecutive_errors = field<uint32_t>(g, "consecutive_errors");
    out.gates.emplace(name, std::move(st));
  }
  s = std::move(out);
}

std::string rollout_state_to_json(const RolloutState& s) { return json(s).dump(); }

RolloutState rollout_state_from_json(std::string_view text) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    throw RolloutStateError(std::string("rollout state is not JSON: ") + e.what());
  }
  return j.get<RolloutState>();
}

}  // namespace veer
