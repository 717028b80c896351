// Kernel windows, push items and their measurements. See rollout/gate_inputs.h.
#include "rollout/gate_inputs.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <set>

namespace veer {

namespace {

uint64_t delta(uint64_t before, uint64_t after) { return after >= before ? after - before : after; }

std::string num(double v) {
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  return ec == std::errc() ? std::string(buf, end) : std::string("?");
}

}  // namespace

KernelWindow kernel_window(const KernelSample& before, const KernelSample& after, double seconds) {
  const veer_variant_counters& b = before.counters;
  const veer_variant_counters& a = after.counters;
  KernelWindow w;
  w.seconds = seconds;
  w.flows = delta(b.new_flows, a.new_flows);
  w.responses = delta(b.responses, a.responses);
  w.backend_resets = delta(b.backend_resets, a.backend_resets);
  w.client_resets = delta(b.client_resets, a.client_resets);
  w.handshake_timeouts = delta(before.handshake_timeouts, after.handshake_timeouts);
  w.http_2xx = delta(b.http_2xx, a.http_2xx);
  w.http_3xx = delta(b.http_3xx, a.http_3xx);
  w.http_4xx = delta(b.http_4xx, a.http_4xx);
  w.http_5xx = delta(b.http_5xx, a.http_5xx);
  w.packets_in = delta(b.packets_in, a.packets_in);
  w.packets_out = delta(b.packets_out, a.packets_out);
  for (size_t i = 0; i < w.latency.size(); ++i) w.latency[i] = delta(before.latency[i], after.latency[i]);
  return w;
}

Measurement kernel_measurement(const KernelWindow& w, std::string_view metric) {
  auto rate = [](uint64_t bad, uint64_t total, const char* what) {
    if (total == 0) return Measurement::inconclusive(std::string("no ") + what + " in the window");
    return Measurement::of(static_cast<double>(bad) / static_cast<double>(total), total);
  };
  if (auto q = latency_quantile(metric)) {
    if (w.responses == 0 || latency_count(w.latency) == 0)
      return Measurement::inconclusive("no responses in the window");
    const auto ns = latency_quantile_ns(w.latency, *q);
    if (!ns) return Measurement::inconclusive("no responses in the window");
    return Measurement::of(*ns / 1e6, w.responses);
  }
  if (metric == "error_rate")
    return rate(w.http_5xx + w.backend_resets + w.handshake_timeouts,
                w.responses + w.backend_resets + w.handshake_timeouts, "requests");
  if (metric == "reset_rate") return rate(w.backend_resets, w.responses + w.backend_resets, "requests");
  if (metric == "handshake_timeout_rate")
    return rate(w.handshake_timeouts, w.responses + w.handshake_timeouts, "requests");
  return Measurement::error("'" + std::string(metric) + "' is not a kernel metric");
}

nlohmann::json to_json(const KernelWindow& w) {
  using nlohmann::json;
  auto per_s = [&](uint64_t n) { return w.seconds > 0 ? static_cast<double>(n) / w.seconds : 0.0; };
  const Measurement p95 = kernel_measurement(w, "latency_p95_ms");
  const Measurement err = kernel_measurement(w, "error_rate");
  return json{{"seconds", w.seconds},
              {"flows", w.flows},
              {"flows_per_s", per_s(w.flows)},
              {"responses", w.responses},
              {"latency_p95_ms", p95.status == Measurement::Status::Value ? json(p95.value) : json(nullptr)},
              {"error_rate", err.status == Measurement::Status::Value ? json(err.value) : json(nullptr)},
              {"http", {{"2xx", w.http_2xx}, {"3xx", w.http_3xx}, {"4xx", w.http_4xx}, {"5xx", w.http_5xx}}},
              {"backend_resets", w.backend_resets},
              {"client_resets", w.client_resets},
              {"handshake_timeouts", w.handshake_timeouts}};
}

// ---------------------------------------------------------------------------
// push

namespace {

bool valid_push_name(std::string_view s) {
  if (s.empty() || s.size() > 128) return false;
  for (char c : s) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
                    c == '-' || c == ':';
    if (!ok) return false;
  }
  return true;
}

std::optional<double> parse_number(std::string_view s) {
  if (s.empty()) return std::nullopt;
  double v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size() || !std::isfinite(v)) return std::nullopt;
  return v;
}

}  // namespace

PushItem parse_push_item(const std::string& name, const std::string& text) {
  PushItem item;
  const auto dot = name.find('.');
  item.name = name.substr(0, dot);
  if (!valid_push_name(item.name))
    throw PushError("push: \"" + name + "\" is not a metric name (1..128 of A-Z a-z 0-9 _ - :, then .LABEL)");
  if (dot != std::string::npos) {
    item.label = name.substr(dot + 1);
    if (item.label->empty() || item.label->size() > 128)
      throw PushError("push: \"" + name + "\" has an empty or too long label after the dot");
    for (unsigned char c : *item.label)
      if (c < 0x21 || c == 0x7f) throw PushError("push: label of \"" + name + "\" has a space or control character");
    const auto count = parse_number(text);
    if (!count || *count < 0)
      throw PushError("push: " + name + "=" + text + ": a label count must be a non-negative number");
    item.value = *count;
    return item;
  }
  std::string_view value_text = text;
  if (const auto star = text.find('*'); star != std::string::npos) {
    value_text = std::string_view(text).substr(0, star);
    const std::string_view n_text = std::string_view(text).substr(star + 1);
    uint64_t n = 0;
    auto [end, ec] = std::from_chars(n_text.data(), n_text.data() + n_text.size(), n);
    if (n_text.empty() || ec != std::errc() || end != n_text.data() + n_text.size() || n == 0 || n > kMaxPushRepeat)
      throw PushError("push: " + name + "=" + text + ": the repeat after '*' must be an integer 1.." +
                      std::to_string(kMaxPushRepeat));
    item.count = n;
  }
  const auto v = parse_number(value_text);
  if (!v) throw PushError("push: " + name + "=" + text + ": expected a finite number or VALUE*N");
  item.value = *v;
  return item;
}

std::vector<PushItem> parse_push_values(const nlohmann::json& values) {
  if (!values.is_object()) throw PushError("field \"values\" must be an object of NAME: VALUE");
  if (values.empty()) throw PushError("field \"values\" must hold at least one NAME: VALUE");
  std::vector<PushItem> items;
  for (auto it = values.begin(); it != values.end(); ++it) {
    std::string text;
    if (it->is_string()) {
      text = it->get<std::string>();
    } else if (it->is_number()) {
      text = it->is_number_float() ? num(it->get<double>()) : it->dump();
    } else {
      throw PushError("push: value of \"" + it.key() + "\" must be a string or a number, not " + it->type_name());
    }
    items.push_back(parse_push_item(it.key(), text));
  }
  return items;
}

void Observations::add(double value, uint64_t count) {
  n += count;
  sum += value * static_cast<double>(count);
  sum_squares += value * value * static_cast<double>(count);
}

double Observations::variance() const {
  if (n < 2) return 0;
  const double dn = static_cast<double>(n);
  const double v = (sum_squares - sum * sum / dn) / (dn - 1);
  return v > 0 ? v : 0;  // rounding can make an all-equal sample slightly negative
}

void PushData::add(const PushItem& item) {
  if (item.label) {
    labels[item.name][*item.label] += item.value;
  } else {
    metrics[item.name].add(item.value, item.count);
  }
}

nlohmann::json to_json(const PushData& data) {
  nlohmann::json metrics = nlohmann::json::object();
  for (const auto& [name, o] : data.metrics) metrics[name] = {{"n", o.n}, {"sum", o.sum}, {"sum_squares", o.sum_squares}};
  nlohmann::json labels = nlohmann::json::object();
  for (const auto& [name, counts] : data.labels) labels[name] = counts;
  return {{"metrics", metrics}, {"labels", labels}};
}

PushData push_data_from_json(const nlohmann::json& j) {
  if (!j.is_object()) throw PushError("must be an object");
  PushData data;
  if (auto m = j.find("metrics"); m != j.end()) {
    if (!m->is_object()) throw PushError("\"metrics\" must be an object");
    for (auto it = m->begin(); it != m->end(); ++it) {
      const auto n = it->find("n"), sum = it->find("sum"), squares = it->find("sum_squares");
      if (!it->is_object() || n == it->end() || !n->is_number_unsigned() || sum == it->end() ||
          !sum->is_number() || squares == it->end() || !squares->is_number() || squares->get<double>() < 0) {
        throw PushError("metrics." + it.key() + " must be {\"n\": count, \"sum\": number, \"sum_squares\": number >= 0}");
      }
      data.metrics[it.key()] = Observations{n->get<uint64_t>(), sum->get<double>(), squares->get<double>()};
    }
  }
  if (auto l = j.find("labels"); l != j.end()) {
    if (!l->is_object()) throw PushError("\"labels\" must be an object");
    for (auto it = l->begin(); it != l->end(); ++it) {
      if (!it->is_object()) throw PushError("labels." + it.key() + " must be an object");
      for (auto c = it->begin(); c != it->end(); ++c) {
        if (!c->is_number() || c->get<double>() < 0)
          throw PushError("labels." + it.key() + "." + c.key() + " must be a number >= 0");
        data.labels[it.key()][c.key()] = c->get<double>();
      }
    }
  }
  return data;
}

void PushData::check_room_for(const std::vector<PushItem>& items) const {
  std::set<std::string> names;
  for (const auto& [n, o] : metrics) names.insert(n);
  for (const auto& [n, l] : labels) names.insert(n + ".");
  std::map<std::string, std::set<std::string>> new_labels;
  for (const auto& item : items) {
    names.insert(item.label ? item.name + "." : item.name);
    if (!item.label) continue;
    const auto series = labels.find(item.name);
    if (series == labels.end() || !series->second.count(*item.label)) new_labels[item.name].insert(*item.label);
  }
  if (names.size() > kMaxPushedNames)
    throw PushError("push: a variant holds at most " + std::to_string(kMaxPushedNames) +
                    " pushed metrics and label series; this push would make " + std::to_string(names.size()));
  for (const auto& [series, added] : new_labels) {
    const auto it = labels.find(series);
    const size_t total = (it == labels.end() ? 0 : it->second.size()) + added.size();
    if (total > kMaxPushedLabels)
      throw PushError("push: label series \"" + series + "\" holds at most " + std::to_string(kMaxPushedLabels) +
                      " labels; this push would make " + std::to_string(total));
  }
}

void PushData::merge(const PushData& other) {
  for (const auto& [name, o] : other.metrics) {
    Observations& mine = metrics[name];
    mine.n += o.n;
    mine.sum += o.sum;
    mine.sum_squares += o.sum_squares;
  }
  for (const auto& [series, counts] : other.labels)
    for (const auto& [label, count] : counts) labels[series][label] += count;
}

PushData push_growth(const PushData& before, const PushData& after, std::string* drop) {
  PushData out;
  auto dropped = [&](std::string what) {
    if (drop) *drop = std::move(what);
    return PushData{};
  };
  for (const auto& [name, b] : before.metrics) {
    const auto a = after.metrics.find(name);
    if (a == after.metrics.end()) return dropped("pushed metric '" + name + "' is gone");
    if (a->second.n < b.n) return dropped("pushed metric '" + name + "' has fewer observations");
  }
  for (const auto& [series, counts] : before.labels) {
    const auto a = after.labels.find(series);
    if (a == after.labels.end()) return dropped("pushed series '" + series + "' is gone");
    for (const auto& [label, count] : counts) {
      const auto c = a->second.find(label);
      if (c == a->second.end() || c->second < count)
        return dropped("pushed count '" + series + "." + label + "' went down");
    }
  }
  for (const auto& [name, a] : after.metrics) {
    const auto b = before.metrics.find(name);
    if (b == before.metrics.end()) {
      out.metrics[name] = a;
    } else if (a.n > b->second.n) {
      // Differences of running sums: the window's observations (a square sum cannot shrink below 0).
      out.metrics[name] = Observations{a.n - b->second.n, a.sum - b->second.sum,
                                       std::max(0.0, a.sum_squares - b->second.sum_squares)};
    }
  }
  for (const auto& [series, counts] : after.labels) {
    const auto b = before.labels.find(series);
    for (const auto& [label, count] : counts) {
      double base = 0;
      if (b != before.labels.end())
        if (const auto c = b->second.find(label); c != b->second.end()) base = c->second;
      if (count > base) out.labels[series][label] = count - base;
    }
  }
  if (drop) drop->clear();
  return out;
}

void check_push_limits(const PushData& data) {
  if (data.metrics.size() + data.labels.size() > kMaxPushedNames)
    throw PushError("more than " + std::to_string(kMaxPushedNames) + " pushed metrics and label series");
  for (const auto& [name, o] : data.metrics)
    if (!std::isfinite(o.sum) || !std::isfinite(o.sum_squares))
      throw PushError("metrics." + name + ": sums must be finite");
  for (const auto& [series, counts] : data.labels) {
    if (counts.size() > kMaxPushedLabels)
      throw PushError("labels." + series + ": more than " + std::to_string(kMaxPushedLabels) + " labels");
    for (const auto& [label, count] : counts)
      if (!std::isfinite(count)) throw PushError("labels." + series + "." + label + " must be finite");
  }
}

AbSnapshot ab_snapshot_of(const ServiceConfig& service, const std::vector<uint64_t>& flows,
                          const std::map<std::string, PushData>& pushed) {
  AbSnapshot snap;
  const std::string& metric = service.rollout->metric.name;
  const bool proportion = service.rollout->metric.kind == AbMetricKind::Proportion;
  for (size_t v = 0; v < service.variants.size(); ++v) {
    AbVariantData d;
    d.flows = v < flows.size() ? flows[v] : 0;
    if (const auto p = pushed.find(service.variants[v].name); p != pushed.end()) {
      const auto& m = p->second.metrics;
      if (auto it = m.find(metric); it != m.end()) {
        d.n = it->second.n;
        if (proportion) {
          // Observations are 0/1 (converted or not): successes are their sum.
          const double succ = std::round(it->second.sum);
          d.successes = succ <= 0 ? 0 : std::min<uint64_t>(d.n, static_cast<uint64_t>(succ));
        } else {
          d.mean = it->second.mean();
          d.variance = it->second.variance();
        }
      }
    }
    snap.variants.push_back(d);
  }
  return snap;
}

Measurement push_measurement(const PushData& window, const GateConfig& gate) {
  if (is_label_metric(gate.metric)) {
    const std::string& series = gate.series.empty() ? std::string("prediction") : gate.series;
    auto it = window.labels.find(series);
    if (it == window.labels.end() || it->second.empty())
      return Measurement::inconclusive("no label counts of '" + series + "' pushed in the window");
    return Measurement::of_labels(it->second);
  }
  auto it = window.metrics.find(gate.metric);
  if (it == window.metrics.end() || it->second.n == 0)
    return Measurement::inconclusive("nothing pushed for '" + gate.metric + "' in the window");
  return Measurement::of(it->second.mean(), it->second.n);
}

// ---------------------------------------------------------------------------
// prometheus

Measurement prometheus_measurement(const prom::ParseResult& before, const prom::ParseResult& after,
                                   const GateConfig& gate, double seconds) {
  if (!after.ok) return Measurement::error("metrics_url answer rejected (size or sample limits)");
  const prom::Family empty_family;
  auto pair = [&](const std::string& name) -> std::pair<const prom::Family*, const prom::Family*> {
    const prom::Family* a = after.find(name);
    const prom::Family* b = before.find(name);
    return {b ? b : &empty_family, a};
  };
  if (auto q = latency_quantile(gate.metric)) {
    auto [b, a] = pair(gate.histogram);
    if (!a) return Measurement::error("no histogram '" + gate.histogram + "' at the metrics_url");
    if (a->type != prom::MetricType::Histogram)
      return Measurement::error("'" + gate.histogram + "' is a " + prom::to_string(a->type) + ", not a histogram");
    prom::Family before_family = *b;
    if (before_family.name.empty()) before_family = prom::Family{a->name, a->type, a->help, {}};
    const prom::Family d = prom::histogram_delta(before_family, *a);
    const double count = prom::histogram_count(d);
    if (!(count > 0)) return Measurement::inconclusive("no observations of '" + gate.histogram + "' in the window");
    const auto v = prom::histogram_quantile(d, *q);
    if (!v) return Measurement::inconclusive("no quantile of '" + gate.histogram + "' in the window");
    return Measurement::of(*v * 1000.0, static_cast<uint64_t>(count));
  }
  auto [b, a] = pair(gate.series);
  if (!a) return Measurement::error("no series '" + gate.series + "' at the metrics_url");
  prom::Family before_family = *b;
  if (before_family.name.empty()) before_family = prom::Family{a->name, a->type, a->help, {}};
  if (is_label_metric(gate.metric)) {
    auto labels = prom::label_distribution(prom::counter_delta(before_family, *a), gate.label);
    double total = 0;
    for (const auto& [k, c] : labels) total += c;
    if (labels.empty() || !(total > 0))
      return Measurement::inconclusive("no increase of '" + gate.series + "' by '" + gate.label + "' in the window");
    return Measurement::of_labels(std::move(labels));
  }
  switch (a->type) {
    case prom::MetricType::Counter: {
      const double inc = prom::counter_increase(before_family, *a);
      if (!(seconds > 0)) return Measurement::inconclusive("empty window");
      return Measurement::of(inc / seconds, static_cast<uint64_t>(std::max(0.0, inc)));
    }
    case prom::MetricType::Histogram:
    case prom::MetricType::Summary: {
      const prom::Family d = prom::counter_delta(before_family, *a);
      const double count = prom::histogram_count(d);
      if (!(count > 0)) return Measurement::inconclusive("no observations of '" + gate.series + "' in the window");
      return Measurement::of(prom::histogram_sum(d) / count, static_cast<uint64_t>(count));
    }
    default: {
      bool any = false;
      for (const auto& sample : a->samples) any |= std::isfinite(sample.value);
      if (!any) return Measurement::inconclusive("'" + gate.series + "' has no finite sample");
      return Measurement::of(prom::counter_sum(*a), 1);
    }
  }
}

// ---------------------------------------------------------------------------
// probe

Measurement probe_measurement(const std::vector<ProbeOutcome>& outcomes, std::string_view metric) {
  if (outcomes.empty()) return Measurement::inconclusive("no probe sent");
  std::vector<double> ok_ms;
  for (const auto& o : outcomes)
    if (o.ok) ok_ms.push_back(o.latency_ms);
  if (metric == "error_rate")
    return Measurement::of(static_cast<double>(outcomes.size() - ok_ms.size()) / static_cast<double>(outcomes.size()),
                           outcomes.size());
  if (auto q = latency_quantile(metric)) {
    if (ok_ms.empty()) return Measurement::inconclusive("no probe answered");
    std::sort(ok_ms.begin(), ok_ms.end());
    // Nearest rank: the smallest value with at least q of the sample at or below it.
    const size_t rank = static_cast<size_t>(std::ceil(*q * static_cast<double>(ok_ms.size())));
    return Measurement::of(ok_ms[std::clamp<size_t>(rank, 1, ok_ms.size()) - 1], ok_ms.size());
  }
  return Measurement::error("probes measure latency_pNN_ms and error_rate, not '" + std::string(metric) + "'");
}

}  // namespace veer
