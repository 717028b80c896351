#include "view/history.h"

#include <stdexcept>

#include "config/config.h"

namespace veer::view {

using nlohmann::json;

namespace {

[[noreturn]] void bad(const std::string& what) { throw std::invalid_argument("service status: " + what); }

const json& field(const json& j, const char* name, const std::string& where) {
  const auto it = j.find(name);
  if (it == j.end()) bad(where + " has no \"" + name + "\"");
  return *it;
}

std::string string_field(const json& j, const char* name, const std::string& where) {
  const json& f = field(j, name, where);
  if (!f.is_string()) bad(where + "." + name + " is not a string");
  return f.get<std::string>();
}

// Calls F(element, "WHERE.NAME[i]") for each element of the array PARENT.NAME, each an object.
template <class F>
void for_each_object(const json& parent, const char* name, const std::string& where, F f) {
  const std::string path = where.empty() ? name : where + "." + name;
  const json& list = field(parent, name, where.empty() ? "service" : where);
  if (!list.is_array()) bad(path + " is not an array");
  for (size_t i = 0; i < list.size(); ++i) {
    const std::string at = path + "[" + std::to_string(i) + "]";
    if (!list[i].is_object()) bad(at + " is not an object");
    f(list[i], at);
  }
}

double weight_pct(const json& j, const char* name, const std::string& where) {
  const json& w = field(j, name, where);
  if (!w.is_string()) bad(where + "." + name + " is not a weight string");
  const auto bp = parse_weight_bp(w.get<std::string>());
  if (!bp) bad(where + "." + name + " is \"" + w.get<std::string>() + "\", not a weight");
  return *bp / 100.0;
}

std::optional<double> optional_number(const json& j, const char* name) {
  const auto it = j.find(name);
  if (it == j.end() || !it->is_number()) return std::nullopt;
  return it->get<double>();
}

bool is_count(const json& j) { return j.is_number_unsigned() || (j.is_number_integer() && j.get<int64_t>() >= 0); }

json number_or_null(const std::optional<double>& v) { return v ? json(*v) : json(nullptr); }

bool same_shape(const Sample& a, const Sample& b) {
  if (a.variants.size() != b.variants.size() || a.gates.size() != b.gates.size()) return false;
  for (size_t i = 0; i < a.variants.size(); ++i)
    if (a.variants[i].name != b.variants[i].name) return false;
  for (size_t i = 0; i < a.gates.size(); ++i)
    if (a.gates[i].key != b.gates[i].key) return false;
  return true;
}

}  // namespace

Sample sample_of_status(const json& st, int64_t time_ms) {
  if (!st.is_object()) bad("not an object");
  Sample s;
  s.time_ms = time_ms;
  for_each_object(st, "variants", "", [&](const json& v, const std::string& where) {
    VariantSample vs;
    vs.name = string_field(v, "name", where);
    vs.desired_pct = weight_pct(v, "weight_desired", where);
    vs.applied_pct = weight_pct(v, "weight_applied", where);
    const json& flows = field(v, "flows", where);
    if (!is_count(flows)) bad(where + ".flows is not a count");
    vs.flows = flows.get<uint64_t>();
    if (const auto w = v.find("window"); w != v.end() && w->is_object()) {
      vs.latency_p95_ms = optional_number(*w, "latency_p95_ms");
      vs.error_rate = optional_number(*w, "error_rate");
    }
    s.variants.push_back(std::move(vs));
  });
  const auto rollout = st.find("rollout");
  if (rollout == st.end() || rollout->is_null()) return s;
  if (!rollout->is_object()) bad("rollout is not an object");
  s.phase = string_field(*rollout, "phase", "rollout");
  if (const auto step = rollout->find("step"); step != rollout->end() && is_count(*step))
    s.step = step->get<uint32_t>();
  for_each_object(*rollout, "gates", "rollout", [&](const json& g, const std::string& where) {
    GateSample gs;
    gs.name = string_field(g, "name", where);
    gs.stage = g.value("stage", std::string());
    gs.key = gs.stage.empty() ? gs.name : gs.stage + "." + gs.name;
    gs.value = optional_number(g, "value");
    gs.max = optional_number(g, "max");
    gs.min = optional_number(g, "min");
    gs.result = g.value("last_result", std::string("none"));
    if (const auto f = g.find("failures"); f != g.end() && is_count(*f)) gs.failures = f->get<uint64_t>();
    s.gates.push_back(std::move(gs));
  });
  return s;
}

History::History(std::size_t capacity) : capacity_(capacity < 2 ? 2 : capacity) {}

void History::add(Sample s) {
  if (!samples_.empty()) {
    if (s.time_ms <= samples_.back().time_ms) return;
    if (!same_shape(samples_.back(), s)) samples_.clear();
  }
  samples_.push_back(std::move(s));
  while (samples_.size() > capacity_) samples_.pop_front();
}

json History::to_json() const {
  json t = json::array(), phase = json::array(), step = json::array();
  json variants = json::object(), gates = json::object();
  if (!samples_.empty()) {
    for (const auto& v : samples_.back().variants)
      variants[v.name] = json{{"desired", json::array()},     {"applied", json::array()},
                              {"flows_per_s", json::array()}, {"latency_p95_ms", json::array()},
                              {"error_rate", json::array()}};
    for (const auto& g : samples_.back().gates)
      gates[g.key] = json{{"name", g.name},
                          {"stage", g.stage},
                          {"max", number_or_null(g.max)},
                          {"min", number_or_null(g.min)},
                          {"value", json::array()},
                          {"result", json::array()},
                          {"failures", json::array()}};
  }
  const Sample* previous = nullptr;
  for (const auto& s : samples_) {
    t.push_back(s.time_ms);
    phase.push_back(s.phase);
    step.push_back(s.step);
    for (size_t i = 0; i < s.variants.size(); ++i) {
      const VariantSample& v = s.variants[i];
      json& out = variants[v.name];
      out["desired"].push_back(v.desired_pct);
      out["applied"].push_back(v.applied_pct);
      json rate = nullptr;
      if (previous) {
        const uint64_t before = previous->variants[i].flows;
        const double seconds = static_cast<double>(s.time_ms - previous->time_ms) / 1000.0;
        if (v.flows >= before) rate = static_cast<double>(v.flows - before) / seconds;
      }
      out["flows_per_s"].push_back(rate);
      out["latency_p95_ms"].push_back(number_or_null(v.latency_p95_ms));
      out["error_rate"].push_back(number_or_null(v.error_rate));
    }
    for (const auto& g : s.gates) {
      json& out = gates[g.key];
      out["value"].push_back(number_or_null(g.value));
      out["result"].push_back(g.result);
      out["failures"].push_back(g.failures);
    }
    previous = &s;
  }
  return json{{"capacity", capacity_}, {"t", t},           {"phase", phase},
              {"step", step},          {"variants", variants}, {"gates", gates}};
}

}  // namespace veer::view
