#include "fleet/node_report.h"

#include <nlohmann/json.hpp>

#include "fleet/table_version.h"

namespace veer::fleet {
namespace {

using nlohmann::json;

[[noreturn]] void fail(const std::string& what) { throw NodeReportError("node report: " + what); }

// The counters a report carries, by their JSON names.
struct CounterField {
  const char* name;
  __u64 veer_variant_counters::*member;
};
constexpr CounterField kCounters[] = {
    {"packets_in", &veer_variant_counters::packets_in},   {"bytes_in", &veer_variant_counters::bytes_in},
    {"packets_out", &veer_variant_counters::packets_out}, {"bytes_out", &veer_variant_counters::bytes_out},
    {"flows", &veer_variant_counters::new_flows},         {"backend_resets", &veer_variant_counters::backend_resets},
    {"client_resets", &veer_variant_counters::client_resets}, {"http_2xx", &veer_variant_counters::http_2xx},
    {"http_3xx", &veer_variant_counters::http_3xx},       {"http_4xx", &veer_variant_counters::http_4xx},
    {"http_5xx", &veer_variant_counters::http_5xx},       {"responses", &veer_variant_counters::responses},
};

uint64_t count_field(const json& j, const std::string& where, const char* name) {
  const auto it = j.find(name);
  if (it == j.end()) fail(where + ": no \"" + name + "\"");
  if (!it->is_number_unsigned() && !(it->is_number_integer() && it->get<int64_t>() >= 0))
    fail(where + ": \"" + name + "\" must be a non-negative integer");
  return it->get<uint64_t>();
}

void check_name(const std::string& name, const std::string& what, size_t max) {
  if (name.empty() || name.size() > max) fail(what + " must be 1.." + std::to_string(max) + " characters");
}

json sample_to_json(const KernelSample& s) {
  json j = json::object();
  for (const auto& c : kCounters) j[c.name] = s.counters.*c.member;
  j["handshake_timeouts"] = s.handshake_timeouts;
  json buckets = json::array();
  for (size_t b = 0; b < s.latency.size(); ++b)
    if (s.latency[b]) buckets.push_back(json::array({b, s.latency[b]}));
  j["latency"] = std::move(buckets);
  return j;
}

KernelSample sample_from_json(const json& j, const std::string& where) {
  if (!j.is_object()) fail(where + " is not an object");
  KernelSample s;
  for (const auto& c : kCounters) s.counters.*c.member = count_field(j, where, c.name);
  s.handshake_timeouts = count_field(j, where, "handshake_timeouts");
  const auto it = j.find("latency");
  if (it == j.end() || !it->is_array()) fail(where + ": \"latency\" must be an array of [bucket, count]");
  int64_t last = -1;
  for (const auto& pair : *it) {
    // is_number_integer is true for unsigned numbers too, false for 1.5
    if (!pair.is_array() || pair.size() != 2 || !pair[0].is_number_integer() || !pair[1].is_number_integer())
      fail(where + ": a latency entry is not [bucket, count]");
    const int64_t bucket = pair[0].get<int64_t>();
    if (bucket <= last || bucket >= static_cast<int64_t>(s.latency.size()))  // also rejects a negative bucket
      fail(where + ": latency bucket " + std::to_string(bucket) + " out of range or not ascending");
    if (pair[1].get<int64_t>() < 0) fail(where + ": a latency count is negative");
    s.latency[static_cast<size_t>(bucket)] = pair[1].get<uint64_t>();
    last = bucket;
  }
  return s;
}

template <typename T>
T field(const json& j, const std::string& where, const char* name) {
  const auto it = j.find(name);
  if (it == j.end()) fail(where + ": no \"" + name + "\"");
  try {
    return it->get<T>();
  } catch (const json::exception&) {
    fail(where + ": \"" + name + "\" has the wrong type");
  }
}

}  // namespace

KernelSample kernel_since(const KernelSample& base, const KernelSample& now) {
  auto since = [](uint64_t b, uint64_t n) { return n >= b ? n - b : n; };
  KernelSample out;
  for (const auto& f : kCounters) out.counters.*f.member = since(base.counters.*f.member, now.counters.*f.member);
  for (size_t i = 0; i < out.latency.size(); ++i) out.latency[i] = since(base.latency[i], now.latency[i]);
  out.handshake_timeouts = since(base.handshake_timeouts, now.handshake_timeouts);
  return out;
}

bool ServiceReport::operator==(const ServiceReport& o) const {
  if (definition != o.definition || applied_version != o.applied_version || variants.size() != o.variants.size())
    return false;
  for (const auto& [name, s] : variants) {
    const auto it = o.variants.find(name);
    if (it == o.variants.end()) return false;
    for (const auto& c : kCounters)
      if (s.counters.*c.member != it->second.counters.*c.member) return false;
    if (s.handshake_timeouts != it->second.handshake_timeouts || s.latency != it->second.latency) return false;
  }
  return pushed == o.pushed;
}

json to_json(const NodeReport& r) {
  json services = json::object();
  for (const auto& [name, s] : r.services) {
    json variants = json::object();
    for (const auto& [v, sample] : s.variants) variants[v] = sample_to_json(sample);
    services[name] = {{"definition", s.definition}, {"applied_version", s.applied_version}, {"variants", variants}};
    json pushed = json::object();
    for (const auto& [v, data] : s.pushed)
      if (!data.empty()) pushed[v] = to_json(data);
    if (!pushed.empty()) services[name]["pushed"] = std::move(pushed);
  }
  return {{"format", kNodeReportFormat}, {"node", r.node},   {"epoch", r.epoch},
          {"seq", r.seq},                {"at_ms", r.at_ms}, {"services", services}};
}

std::string node_report_to_string(const NodeReport& r) { return to_json(r).dump(); }

NodeReport node_report_from_json(const json& j) {
  if (!j.is_object()) fail("not a JSON object");
  if (field<int64_t>(j, "report", "format") != kNodeReportFormat) fail("unknown format");
  NodeReport r;
  r.node = field<std::string>(j, "report", "node");
  check_name(r.node, "node", kMaxNodeNameLength);
  r.epoch = field<std::string>(j, "report", "epoch");
  check_name(r.epoch, "epoch", 64);
  r.seq = count_field(j, "report", "seq");
  if (r.seq == 0) fail("seq must be at least 1");
  r.at_ms = field<int64_t>(j, "report", "at_ms");
  const auto it = j.find("services");
  if (it == j.end() || !it->is_object()) fail("\"services\" must be an object");
  if (it->size() > kMaxReportServices) fail("more than " + std::to_string(kMaxReportServices) + " services");
  for (const auto& [name, sj] : it->items()) {
    const std::string where = "service '" + name + "'";
    check_name(name, where, 64);
    if (!sj.is_object()) fail(where + " is not an object");
    ServiceReport s;
    s.definition = field<std::string>(sj, where, "definition");
    check_name(s.definition, where + " definition", 64);
    s.applied_version = count_field(sj, where, "applied_version");
    const auto vit = sj.find("variants");
    if (vit == sj.end() || !vit->is_object()) fail(where + ": \"variants\" must be an object");
    if (vit->size() > VEER_MAX_VARIANTS) fail(where + ": more than " + std::to_string(VEER_MAX_VARIANTS) + " variants");
    for (const auto& [v, vj] : vit->items()) {
      check_name(v, where + " variant name", 64);
      s.variants[v] = sample_from_json(vj, where + " variant '" + v + "'");
    }
    if (const auto pit = sj.find("pushed"); pit != sj.end()) {
      if (!pit->is_object()) fail(where + ": \"pushed\" must be an object");
      for (const auto& [v, pj] : pit->items()) {
        if (!s.variants.count(v)) fail(where + ": values pushed for '" + v + "', a variant without telemetry");
        try {
          PushData data = push_data_from_json(pj);
          check_push_limits(data);
          s.pushed[v] = std::move(data);
        } catch (const PushError& e) {
          fail(where + " pushed to '" + v + "': " + e.what());
        }
      }
    }
    r.services[name] = std::move(s);
  }
  return r;
}

NodeReport node_report_from_string(const std::string& text) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    fail(std::string("not JSON: ") + e.what());
  }
  return node_report_from_json(j);
}

}  // namespace veer::fleet
