#include "fleet/fleet_window.h"

#include <optional>

namespace veer::fleet {
namespace {

// The first counter of AFTER below BEFORE, or empty: within one epoch
// counters only grow, so a drop means a report that is not what it claims.
std::string first_drop(const KernelSample& before, const KernelSample& after) {
  const auto& b = before.counters;
  const auto& a = after.counters;
  const std::pair<const char*, std::pair<uint64_t, uint64_t>> pairs[] = {
      {"flows", {b.new_flows, a.new_flows}},          {"responses", {b.responses, a.responses}},
      {"backend_resets", {b.backend_resets, a.backend_resets}}, {"client_resets", {b.client_resets, a.client_resets}},
      {"http_2xx", {b.http_2xx, a.http_2xx}},         {"http_3xx", {b.http_3xx, a.http_3xx}},
      {"http_4xx", {b.http_4xx, a.http_4xx}},         {"http_5xx", {b.http_5xx, a.http_5xx}},
      {"packets_in", {b.packets_in, a.packets_in}},   {"packets_out", {b.packets_out, a.packets_out}},
      {"handshake_timeouts", {before.handshake_timeouts, after.handshake_timeouts}},
  };
  for (const auto& [name, v] : pairs)
    if (v.second < v.first) return name;
  for (size_t i = 0; i < before.latency.size(); ++i)
    if (after.latency[i] < before.latency[i]) return "latency bucket " + std::to_string(i);
  return {};
}

const PushData& pushed_of(const std::map<std::string, PushData>& pushed, const std::string& variant) {
  static const PushData none;
  const auto it = pushed.find(variant);
  return it == pushed.end() ? none : it->second;
}

// Inconclusive when fewer than MIN_NODES (0: all live nodes) contributed to WINDOW, naming the others.
std::optional<Measurement> too_few_nodes(const FleetWindow& window, size_t min_nodes) {
  const size_t required = min_nodes == 0 ? window.nodes.size() : min_nodes;
  if (window.nodes.empty()) return Measurement::inconclusive("no live node");
  if (window.contributing >= required) return std::nullopt;
  std::string why = std::to_string(window.contributing) + " of " + std::to_string(window.nodes.size()) +
                    " live nodes reported fresh data (min_nodes " + std::to_string(required) + ")";
  for (const auto& c : window.nodes)
    if (!contributes(c.state)) why += "; " + c.node + ": " + to_string(c.state) + " (" + c.reason + ")";
  return Measurement::inconclusive(why);
}

}  // namespace

std::string to_string(NodeState s) {
  switch (s) {
    case NodeState::Fresh: return "fresh";
    case NodeState::Restarted: return "restarted";
    case NodeState::FirstSeen: return "first_seen";
    case NodeState::NoNewReport: return "no_new_report";
    case NodeState::Stale: return "stale";
    case NodeState::Missing: return "missing";
    case NodeState::Invalid: return "invalid";
  }
  return "unknown";
}

void add_window(KernelWindow& a, const KernelWindow& b) {
  a.flows += b.flows;
  a.responses += b.responses;
  a.backend_resets += b.backend_resets;
  a.client_resets += b.client_resets;
  a.handshake_timeouts += b.handshake_timeouts;
  a.http_2xx += b.http_2xx;
  a.http_3xx += b.http_3xx;
  a.http_4xx += b.http_4xx;
  a.http_5xx += b.http_5xx;
  a.packets_in += b.packets_in;
  a.packets_out += b.packets_out;
  for (size_t i = 0; i < a.latency.size(); ++i) a.latency[i] += b.latency[i];
}

FleetAggregator::FleetAggregator(std::string service, std::vector<std::string> variants, std::string definition)
    : service_(std::move(service)), variants_(std::move(variants)), definition_(std::move(definition)) {}

FleetWindow FleetAggregator::step(const std::map<std::string, NodeReport>& latest,
                                  const std::vector<std::string>& live, int64_t now_ms, int64_t max_age_ms,
                                  double seconds) {
  FleetWindow out;
  for (const auto& v : variants_) out.variants[v].seconds = seconds;
  for (const std::string& node : live) {
    NodeContribution c;
    c.node = node;
    const auto rit = latest.find(node);
    const ServiceReport* service = nullptr;
    if (rit != latest.end()) {
      const auto sit = rit->second.services.find(service_);
      if (sit != rit->second.services.end()) service = &sit->second;
    }
    if (service == nullptr) {
      c.state = NodeState::Missing;
      c.reason = "no report for '" + service_ + "'";
      out.nodes.push_back(std::move(c));
      continue;
    }
    const NodeReport& report = rit->second;
    c.report_age_ms = now_ms - report.at_ms;
    auto invalid = [&](std::string why) {
      c.state = NodeState::Invalid;
      c.reason = std::move(why);
    };
    std::string missing_variant;
    for (const auto& v : variants_)
      if (!service->variants.count(v)) missing_variant = v;
    const auto bit = baselines_.find(node);
    if (c.report_age_ms > max_age_ms) {
      c.state = NodeState::Stale;
      c.reason = "report " + std::to_string(c.report_age_ms) + " ms old (max " + std::to_string(max_age_ms) + ")";
    } else if (service->definition != definition_) {
      invalid("definition " + service->definition + " differs from the leader's " + definition_);
    } else if (!missing_variant.empty()) {
      invalid("no telemetry of variant '" + missing_variant + "'");
    } else if (bit == baselines_.end()) {
      c.state = NodeState::FirstSeen;
      c.reason = "first report seen: the baseline of the next interval";
      baselines_[node] = {report.epoch, report.seq, report.at_ms, service->variants, service->pushed};
    } else if (report.seq != bit->second.seq && report.at_ms - bit->second.at_ms > max_age_ms) {
      c.state = NodeState::FirstSeen;
      c.reason = "resumed " + std::to_string(report.at_ms - bit->second.at_ms) +
                 " ms after the report used last: the baseline of the next interval";
      bit->second = {report.epoch, report.seq, report.at_ms, service->variants, service->pushed};
    } else if (bit->second.epoch != report.epoch) {
      c.state = NodeState::Restarted;
      for (const auto& v : variants_) {
        add_window(out.variants[v], kernel_window(KernelSample{}, service->variants.at(v), seconds));
        out.pushed[v].merge(pushed_of(service->pushed, v));
      }
      bit->second = {report.epoch, report.seq, report.at_ms, service->variants, service->pushed};
    } else if (report.seq == bit->second.seq) {
      c.state = NodeState::NoNewReport;
      c.reason = "no report since seq " + std::to_string(report.seq);
    } else if (report.seq < bit->second.seq) {
      invalid("seq " + std::to_string(report.seq) + " is below the " + std::to_string(bit->second.seq) +
              " already used");
    } else {
      std::string drop;
      std::map<std::string, PushData> pushed;
      for (const auto& v : variants_) {
        drop = first_drop(bit->second.variants.at(v), service->variants.at(v));
        if (!drop.empty()) {
          drop = "variant '" + v + "': " + drop + " went down within epoch " + report.epoch;
          break;
        }
        pushed[v] = push_growth(pushed_of(bit->second.pushed, v), pushed_of(service->pushed, v), &drop);
        if (!drop.empty()) {
          drop = "variant '" + v + "': " + drop + " within epoch " + report.epoch;
          break;
        }
      }
      if (!drop.empty()) {
        invalid(drop + " (the report is the next baseline)");
      } else {
        c.state = NodeState::Fresh;
        for (const auto& v : variants_) {
          add_window(out.variants[v], kernel_window(bit->second.variants.at(v), service->variants.at(v), seconds));
          out.pushed[v].merge(pushed[v]);
        }
      }
      bit->second = {report.epoch, report.seq, report.at_ms, service->variants, service->pushed};
    }
    if (contributes(c.state)) ++out.contributing;
    out.nodes.push_back(std::move(c));
  }
  return out;
}

Measurement fleet_measurement(const FleetWindow& window, const std::string& variant, std::string_view metric,
                              size_t min_nodes) {
  if (auto few = too_few_nodes(window, min_nodes)) return *few;
  const auto it = window.variants.find(variant);
  if (it == window.variants.end()) return Measurement::error("variant '" + variant + "' is not in the fleet's window");
  return kernel_measurement(it->second, metric);
}

Measurement fleet_push_measurement(const FleetWindow& window, const std::string& variant, const GateConfig& gate,
                                   size_t min_nodes) {
  if (auto few = too_few_nodes(window, min_nodes)) return *few;
  return push_measurement(pushed_of(window.pushed, variant), gate);
}

}  // namespace veer::fleet
