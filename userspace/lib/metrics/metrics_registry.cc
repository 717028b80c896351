#include "metrics/metrics_registry.h"

#include <charconv>
#include <cmath>
#include <set>
#include <stdexcept>

namespace veer::metrics {
namespace {

bool valid_metric_name(std::string_view name) {
  if (name.empty()) return false;
  for (std::size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    const bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
    const bool digit = c >= '0' && c <= '9';
    if (!(alpha || (i > 0 && digit))) return false;
  }
  return true;
}

bool valid_label_name(std::string_view name) {
  if (name.empty() || name.starts_with("__")) return false;
  for (std::size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    const bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
    const bool digit = c >= '0' && c <= '9';
    if (!(alpha || (i > 0 && digit))) return false;
  }
  return true;
}

// The sample names a family writes: a histogram owns three.
std::vector<std::string> sample_names(const std::string& name, MetricType type) {
  if (type == MetricType::Histogram) return {name + "_bucket", name + "_sum", name + "_count"};
  return {name};
}

void write_labels(std::string& out, const std::vector<std::string>& names, const std::vector<std::string>& values,
                  std::string_view le = {}) {
  if (names.empty() && le.empty()) return;
  out += '{';
  for (std::size_t i = 0; i < names.size(); ++i) {
    if (i > 0) out += ',';
    out += names[i];
    out += "=\"";
    out += escape_label_value(values[i]);
    out += '"';
  }
  if (!le.empty()) {
    if (!names.empty()) out += ',';
    out += "le=\"";
    out += le;
    out += '"';
  }
  out += '}';
}

void validate_histogram(const std::string& name, const HistogramData& h) {
  if (h.counts.size() != h.upper_bounds.size() + 1)
    throw std::invalid_argument("histogram " + name + ": " + std::to_string(h.counts.size()) + " counts for " +
                                std::to_string(h.upper_bounds.size()) +
                                " bounds (need one more count: the +Inf bucket)");
  for (std::size_t i = 0; i < h.upper_bounds.size(); ++i) {
    if (!std::isfinite(h.upper_bounds[i]))
      throw std::invalid_argument("histogram " + name + ": bucket bounds must be finite (+Inf is implied)");
    if (i > 0 && !(h.upper_bounds[i] > h.upper_bounds[i - 1]))
      throw std::invalid_argument("histogram " + name + ": bucket bounds must be strictly increasing");
  }
  if (h.sum && std::isnan(*h.sum)) throw std::invalid_argument("histogram " + name + ": sum is NaN");
}

}  // namespace

uint64_t HistogramData::count() const {
  uint64_t n = 0;
  for (uint64_t c : counts) n += c;
  return n;
}

HistogramData latency_histogram_seconds(const LatencyHistogram& histogram) {
  HistogramData h;
  h.upper_bounds.reserve(VEER_LAT_BUCKETS - 1);
  h.counts.reserve(VEER_LAT_BUCKETS);
  for (unsigned b = 0; b + 1 < VEER_LAT_BUCKETS; ++b)
    h.upper_bounds.push_back(static_cast<double>(latency_bucket_bounds(b).upper_ns) / 1e9);
  h.counts.assign(histogram.begin(), histogram.end());
  return h;
}

std::string format_value(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  // Integers print as integers (counters are the common case); 2^53 is where
  // doubles stop holding every integer.
  if (value == std::floor(value) && std::fabs(value) < 9007199254740992.0) {
    if (value == 0) return "0";  // also -0
    return std::to_string(static_cast<int64_t>(value));
  }
  char buf[64];
  // Shortest representation that reads back to the same double.
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, value);
  if (ec != std::errc{}) return "NaN";  // cannot happen with 64 bytes
  return std::string(buf, end);
}

std::string escape_label_value(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (char c : value) {
    if (c == '\\') out += "\\\\";
    else if (c == '"') out += "\\\"";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

std::string escape_help(std::string_view help) {
  std::string out;
  out.reserve(help.size());
  for (char c : help) {
    if (c == '\\') out += "\\\\";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

void Registry::declare(const std::string& name, MetricType type, const std::string& help,
                       const std::vector<std::string>& label_names) {
  if (!valid_metric_name(name)) throw std::invalid_argument("invalid metric name '" + name + "'");
  if (type != MetricType::Counter && type != MetricType::Gauge && type != MetricType::Histogram)
    throw std::invalid_argument("metric " + name + ": a registry holds counters, gauges and histograms, not " +
                                prom::to_string(type) + "s");
  std::set<std::string> seen;
  for (const auto& l : label_names) {
    if (!valid_label_name(l)) throw std::invalid_argument("metric " + name + ": invalid label name '" + l + "'");
    if (!seen.insert(l).second) throw std::invalid_argument("metric " + name + ": duplicate label name '" + l + "'");
    if (type == MetricType::Histogram && l == "le")
      throw std::invalid_argument("histogram " + name + ": label 'le' is reserved for the buckets");
  }
  if (auto it = families_.find(name); it != families_.end()) {
    const Family& f = it->second;
    if (f.type != type || f.help != help || f.label_names != label_names)
      throw std::invalid_argument("metric " + name + " is already declared differently");
    return;
  }
  const auto mine = sample_names(name, type);
  for (const auto& [other_name, other] : families_) {
    for (const auto& theirs : sample_names(other_name, other.type))
      for (const auto& m : mine)
        if (m == theirs)
          throw std::invalid_argument("metric " + name + ": sample name " + m + " collides with family " +
                                      other_name);
  }
  families_.emplace(name, Family{type, help, label_names, {}});
}

bool Registry::declared(std::string_view name) const { return families_.find(name) != families_.end(); }

Registry::Family& Registry::family_for_write(const std::string& name, const Labels& labels, bool histogram,
                                             std::vector<std::string>& key) {
  auto it = families_.find(name);
  if (it == families_.end()) throw std::invalid_argument("metric " + name + " is not declared");
  Family& f = it->second;
  if (histogram != (f.type == MetricType::Histogram))
    throw std::invalid_argument("metric " + name + " is a " + to_string(f.type) + (histogram ? ", not a histogram" : ""));
  if (labels.size() != f.label_names.size())
    throw std::invalid_argument("metric " + name + ": expected " + std::to_string(f.label_names.size()) +
                                " labels, got " + std::to_string(labels.size()));
  key.clear();
  for (const auto& l : f.label_names) {
    auto v = labels.find(l);
    if (v == labels.end()) throw std::invalid_argument("metric " + name + ": label '" + l + "' missing");
    key.push_back(v->second);
  }
  return f;
}

void Registry::set(const std::string& name, const Labels& labels, double value) {
  std::vector<std::string> key;
  Family& f = family_for_write(name, labels, false, key);
  if (f.type == MetricType::Counter && !(value >= 0))
    throw std::invalid_argument("counter " + name + ": value must be >= 0, got " + format_value(value));
  f.series[std::move(key)] = value;
}

void Registry::add(const std::string& name, const Labels& labels, double value) {
  std::vector<std::string> key;
  Family& f = family_for_write(name, labels, false, key);
  if (f.type == MetricType::Counter && !(value >= 0))
    throw std::invalid_argument("counter " + name + ": increment must be >= 0, got " + format_value(value));
  if (std::isnan(value)) throw std::invalid_argument("metric " + name + ": increment is NaN");
  auto [it, inserted] = f.series.try_emplace(std::move(key), 0.0);
  std::get<double>(it->second) += value;
}

void Registry::set_histogram(const std::string& name, const Labels& labels, HistogramData histogram) {
  std::vector<std::string> key;
  Family& f = family_for_write(name, labels, true, key);
  validate_histogram(name, histogram);
  f.series[std::move(key)] = std::move(histogram);
}

std::optional<double> Registry::value(const std::string& name, const Labels& labels) const {
  auto it = families_.find(name);
  if (it == families_.end() || it->second.type == MetricType::Histogram) return std::nullopt;
  std::vector<std::string> key;
  for (const auto& l : it->second.label_names) {
    auto v = labels.find(l);
    if (v == labels.end()) return std::nullopt;
    key.push_back(v->second);
  }
  auto s = it->second.series.find(key);
  if (s == it->second.series.end()) return std::nullopt;
  return std::get<double>(s->second);
}

std::size_t Registry::series_count(const std::string& name) const {
  auto it = families_.find(name);
  return it == families_.end() ? 0 : it->second.series.size();
}

std::string Registry::render() const {
  std::string out;
  for (const auto& [name, f] : families_) {
    if (f.series.empty()) continue;
    out += "# HELP " + name + " " + escape_help(f.help) + "\n";
    out += "# TYPE " + name + " " + to_string(f.type) + "\n";
    for (const auto& [values, v] : f.series) {
      if (const double* d = std::get_if<double>(&v)) {
        out += name;
        write_labels(out, f.label_names, values);
        out += ' ';
        out += format_value(*d);
        out += '\n';
        continue;
      }
      const auto& h = std::get<HistogramData>(v);
      uint64_t cumulative = 0;
      for (std::size_t i = 0; i < h.upper_bounds.size(); ++i) {
        cumulative += h.counts[i];
        out += name + "_bucket";
        write_labels(out, f.label_names, values, format_value(h.upper_bounds[i]));
        out += ' ' + std::to_string(cumulative) + '\n';
      }
      cumulative += h.counts.back();
      out += name + "_bucket";
      write_labels(out, f.label_names, values, "+Inf");
      out += ' ' + std::to_string(cumulative) + '\n';
      if (h.sum) {
        out += name + "_sum";
        write_labels(out, f.label_names, values);
        out += ' ' + format_value(*h.sum) + '\n';
      }
      out += name + "_count";
      write_labels(out, f.label_names, values);
      out += ' ' + std::to_string(cumulative) + '\n';
    }
  }
  return out;
}

// ---------------------------------------------------------------------------

void declare_veer_families(Registry& r) {
  using T = MetricType;
  r.declare(kPacketsTotal, T::Counter, "Packets steered, per service, variant and direction (in: client to backend).",
            {"service", "variant", "direction"});
  r.declare(kBytesTotal, T::Counter, "Bytes steered, per service, variant and direction (in: client to backend).",
            {"service", "variant", "direction"});
  r.declare(kFlowsTotal, T::Counter, "New flows assigned to a variant.", {"service", "variant"});
  r.declare(kFlowErrorsTotal, T::Counter,
            "Flow errors seen in the kernel, one per connection: backend_reset, client_reset, handshake_timeout.",
            {"service", "variant", "kind"});
  r.declare(kHttpResponsesTotal, T::Counter, "HTTP/1.x responses by status class, read from the first reply bytes.",
            {"service", "variant", "class"});
  r.declare(kResponseLatencySeconds, T::Histogram,
            "Time from the first request byte to the first response byte, measured in the kernel.",
            {"service", "variant"});
  r.declare(kWeight, T::Gauge, "Variant weight: desired (the rollout's) and applied (read back from the maps).",
            {"service", "variant", "kind"});
  r.declare(kRolloutPhase, T::Gauge, "1 for the rollout's current phase, 0 for the others.", {"service", "phase"});
  r.declare(kRolloutStep, T::Gauge, "Index of the rollout's current step.", {"service"});
  r.declare(kGateValue, T::Gauge, "Last value a gate measured (stage: its blue-green list, else empty).",
            {"service", "stage", "gate"});
  r.declare(kGateResultTotal, T::Counter, "Gate evaluations by result (stage: its blue-green list, else empty).",
            {"service", "stage", "gate", "result"});
  r.declare(kSrmPValue, T::Gauge, "p-value of the A/B sample-ratio-mismatch check.", {"service"});
  r.declare(kDropsTotal, T::Counter, "Packets the data plane dropped, by reason.", {"reason"});
}

VeerMetrics::VeerMetrics(Registry& registry) : registry_(registry) { declare_veer_families(registry_); }

void VeerMetrics::variant_telemetry(const VariantTelemetry& t) {
  const auto d = [&](double v) { return v; };
  const Labels sv{{"service", t.service}, {"variant", t.variant}};
  auto with = [&](const char* key, const char* value) {
    Labels l = sv;
    l[key] = value;
    return l;
  };
  // Validate the histogram before writing anything, so a bad one changes nothing.
  if (t.latency) validate_histogram(kResponseLatencySeconds, *t.latency);
  registry_.set(kPacketsTotal, with("direction", "in"), d(t.packets_in));
  registry_.set(kPacketsTotal, with("direction", "out"), d(t.packets_out));
  registry_.set(kBytesTotal, with("direction", "in"), d(t.bytes_in));
  registry_.set(kBytesTotal, with("direction", "out"), d(t.bytes_out));
  registry_.set(kFlowsTotal, sv, d(t.flows));
  registry_.set(kFlowErrorsTotal, with("kind", "backend_reset"), d(t.backend_resets));
  registry_.set(kFlowErrorsTotal, with("kind", "client_reset"), d(t.client_resets));
  registry_.set(kFlowErrorsTotal, with("kind", "handshake_timeout"), d(t.handshake_timeouts));
  registry_.set(kHttpResponsesTotal, with("class", "2xx"), d(t.http_2xx));
  registry_.set(kHttpResponsesTotal, with("class", "3xx"), d(t.http_3xx));
  registry_.set(kHttpResponsesTotal, with("class", "4xx"), d(t.http_4xx));
  registry_.set(kHttpResponsesTotal, with("class", "5xx"), d(t.http_5xx));
  if (t.latency) registry_.set_histogram(kResponseLatencySeconds, sv, *t.latency);
}

void VeerMetrics::weight(const std::string& service, const std::string& variant, double desired, double applied) {
  registry_.set(kWeight, {{"service", service}, {"variant", variant}, {"kind", "desired"}}, desired);
  registry_.set(kWeight, {{"service", service}, {"variant", variant}, {"kind", "applied"}}, applied);
}

void VeerMetrics::rollout_phase(const std::string& service, const std::string& current,
                                const std::vector<std::string>& all_phases) {
  for (const auto& p : all_phases)
    if (p != current) registry_.set(kRolloutPhase, {{"service", service}, {"phase", p}}, 0);
  registry_.set(kRolloutPhase, {{"service", service}, {"phase", current}}, 1);
}

void VeerMetrics::rollout_step(const std::string& service, int64_t step) {
  registry_.set(kRolloutStep, {{"service", service}}, static_cast<double>(step));
}

void VeerMetrics::gate_value(const std::string& service, const std::string& stage, const std::string& gate,
                             double value) {
  registry_.set(kGateValue, {{"service", service}, {"stage", stage}, {"gate", gate}}, value);
}

void VeerMetrics::gate_result_count(const std::string& service, const std::string& stage, const std::string& gate,
                                    const std::string& result, uint64_t count) {
  registry_.set(kGateResultTotal, {{"service", service}, {"stage", stage}, {"gate", gate}, {"result", result}},
                static_cast<double>(count));
}

void VeerMetrics::srm_p_value(const std::string& service, double p_value) {
  registry_.set(kSrmPValue, {{"service", service}}, p_value);
}

void VeerMetrics::drops(const std::string& reason, uint64_t count) {
  registry_.set(kDropsTotal, {{"reason", reason}}, static_cast<double>(count));
}

}  // namespace veer::metrics
