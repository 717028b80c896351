#include "fleet/rollout_record.h"

#include <cmath>
#include <nlohmann/json.hpp>

#include "fleet/table_version.h"

namespace veer::fleet {
namespace {

using nlohmann::json;

[[noreturn]] void fail(const std::string& what) { throw RolloutRecordError("rollout record: " + what); }

template <typename T>
T field(const json& j, const char* name) {
  const auto it = j.find(name);
  if (it == j.end()) fail(std::string("no \"") + name + "\"");
  try {
    return it->get<T>();
  } catch (const json::exception&) {
    fail(std::string("\"") + name + "\" has the wrong type");
  }
}

void check_text(const std::string& text, const char* what, size_t max) {
  if (text.empty() || text.size() > max) fail(std::string(what) + " must be 1.." + std::to_string(max) + " characters");
}

}  // namespace

void FleetTotals::add(const FleetWindow& window) {
  for (const auto& [variant, w] : window.variants) flows[variant] += w.flows;
  for (const auto& [variant, data] : window.pushed)
    if (!data.empty()) pushed[variant].merge(data);
}

bool RolloutRecord::operator==(const RolloutRecord& o) const {
  if (seq != o.seq || service != o.service || definition != o.definition || term != o.term ||
      writer != o.writer || at_ms != o.at_ms || table_version != o.table_version || !(state == o.state) ||
      events.size() != o.events.size() || !(totals == o.totals))
    return false;
  for (size_t i = 0; i < events.size(); ++i) {
    const auto &a = events[i], &b = o.events[i];
    if (a.time != b.time || a.kind != b.kind || a.message != b.message || a.values != b.values) return false;
  }
  return true;
}

RolloutRecord next_rollout_record(const std::optional<RolloutRecord>& current, std::string service,
                                  std::string definition, int64_t term, std::string writer, int64_t at_ms,
                                  uint64_t table_version, RolloutState state, std::vector<RolloutEvent> events,
                                  FleetTotals totals) {
  RolloutRecord r;
  r.seq = current ? current->seq + 1 : 1;
  r.service = std::move(service);
  r.definition = std::move(definition);
  r.term = term;
  r.writer = std::move(writer);
  r.at_ms = at_ms;
  r.table_version = table_version;
  r.state = std::move(state);
  if (events.size() > kMaxRecordEvents) events.erase(events.begin(), events.end() - kMaxRecordEvents);
  for (auto& e : events) {
    if (e.message.size() > kMaxEventMessage) e.message.resize(kMaxEventMessage);
    if (e.values.size() > kMaxEventValues) e.values.erase(std::next(e.values.begin(), kMaxEventValues), e.values.end());
    for (auto it = e.values.begin(); it != e.values.end();)  // JSON has no NaN or infinity
      it = std::isfinite(it->second) ? std::next(it) : e.values.erase(it);
  }
  r.events = std::move(events);
  r.totals = std::move(totals);
  return r;
}

json to_json(const RolloutRecord& r) {
  json events = json::array();
  for (const auto& e : r.events)
    events.push_back({{"time_ms", e.time.count()}, {"kind", e.kind}, {"message", e.message}, {"values", e.values}});
  json out = {{"format", kRolloutRecordFormat}, {"seq", r.seq},
              {"service", r.service},           {"definition", r.definition},
              {"term", r.term},                 {"writer", r.writer},
              {"at_ms", r.at_ms},               {"table_version", r.table_version},
              {"state", r.state},               {"events", events}};
  if (!r.totals.empty()) {
    json pushed = json::object();
    for (const auto& [v, data] : r.totals.pushed) pushed[v] = to_json(data);
    out["totals"] = {{"flows", r.totals.flows}, {"pushed", pushed}};
  }
  return out;
}

std::string rollout_record_to_string(const RolloutRecord& r) { return to_json(r).dump(); }

RolloutRecord rollout_record_from_json(const json& j) {
  if (!j.is_object()) fail("not a JSON object");
  if (field<int64_t>(j, "format") != kRolloutRecordFormat) fail("unknown format");
  RolloutRecord r;
  const auto seq = j.find("seq");
  if (seq == j.end() || !seq->is_number_unsigned() || seq->get<uint64_t>() == 0) fail("\"seq\" must be 1 or more");
  r.seq = seq->get<uint64_t>();
  r.service = field<std::string>(j, "service");
  check_text(r.service, "service", 64);
  r.definition = field<std::string>(j, "definition");
  check_text(r.definition, "definition", 64);
  r.term = field<int64_t>(j, "term");
  if (r.term < 0) fail("\"term\" is negative");
  r.writer = field<std::string>(j, "writer");
  check_text(r.writer, "writer", kMaxNodeNameLength);
  r.at_ms = field<int64_t>(j, "at_ms");
  const auto tv = j.find("table_version");
  if (tv == j.end() || !tv->is_number_unsigned()) fail("\"table_version\" must be a non-negative integer");
  r.table_version = tv->get<uint64_t>();
  const auto st = j.find("state");
  if (st == j.end()) fail("no \"state\"");
  try {
    r.state = st->get<RolloutState>();
  } catch (const std::exception& e) {
    fail(std::string("state: ") + e.what());
  }
  const auto ev = j.find("events");
  if (ev == j.end() || !ev->is_array()) fail("\"events\" must be an array");
  if (ev->size() > kMaxRecordEvents) fail("more than " + std::to_string(kMaxRecordEvents) + " events");
  for (const auto& e : *ev) {
    if (!e.is_object()) fail("an event is not an object");
    RolloutEvent out;
    out.time = Millis{field<int64_t>(e, "time_ms")};
    out.kind = field<std::string>(e, "kind");
    check_text(out.kind, "an event's kind", 32);
    out.message = field<std::string>(e, "message");
    if (out.message.size() > kMaxEventMessage) fail("an event's message is too long");
    const auto values = e.find("values");
    if (values == e.end() || !values->is_object() || values->size() > kMaxEventValues)
      fail("an event's \"values\" must be an object of at most " + std::to_string(kMaxEventValues) + " numbers");
    for (const auto& [k, v] : values->items()) {
      if (!v.is_number() || k.empty() || k.size() > 128) fail("an event's value \"" + k + "\" is not a number");
      out.values[k] = v.get<double>();
    }
    r.events.push_back(std::move(out));
  }
  if (const auto t = j.find("totals"); t != j.end()) {
    if (!t->is_object()) fail("\"totals\" must be an object");
    const auto flows = t->find("flows");
    if (flows != t->end()) {
      if (!flows->is_object() || flows->size() > VEER_MAX_VARIANTS)
        fail("totals.flows must be an object of at most " + std::to_string(VEER_MAX_VARIANTS) + " variants");
      for (const auto& [v, n] : flows->items()) {
        check_text(v, "a variant of totals.flows", 64);
        if (!n.is_number_unsigned()) fail("totals.flows." + v + " must be a non-negative integer");
        r.totals.flows[v] = n.get<uint64_t>();
      }
    }
    const auto pushed = t->find("pushed");
    if (pushed != t->end()) {
      if (!pushed->is_object() || pushed->size() > VEER_MAX_VARIANTS)
        fail("totals.pushed must be an object of at most " + std::to_string(VEER_MAX_VARIANTS) + " variants");
      for (const auto& [v, pj] : pushed->items()) {
        check_text(v, "a variant of totals.pushed", 64);
        try {
          PushData data = push_data_from_json(pj);
          check_push_limits(data);
          r.totals.pushed[v] = std::move(data);
        } catch (const PushError& e) {
          fail("totals.pushed." + v + ": " + e.what());
        }
      }
    }
  }
  return r;
}

RolloutRecord rollout_record_from_string(const std::string& text) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    fail(std::string("not JSON: ") + e.what());
  }
  return rollout_record_from_json(j);
}

}  // namespace veer::fleet
