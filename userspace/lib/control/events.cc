// Event ring and events.jsonl. See control/events.h.
#include "control/events.h"

#include <cmath>
#include <ctime>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <system_error>

namespace veer {

using nlohmann::json;

std::string format_rfc3339_ms(int64_t unix_ms) {
  const int64_t secs = unix_ms >= 0 ? unix_ms / 1000 : (unix_ms - 999) / 1000;
  const int ms = static_cast<int>(unix_ms - secs * 1000);
  const std::time_t t = static_cast<std::time_t>(secs);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                tm.tm_hour, tm.tm_min, tm.tm_sec, ms);
  return buf;
}

std::optional<int64_t> parse_rfc3339_ms(const std::string& text) {
  int y, mo, d, h, mi, s, ms;
  char z = 0;
  if (std::sscanf(text.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d.%3d%c", &y, &mo, &d, &h, &mi, &s, &ms, &z) != 8 || z != 'Z')
    return std::nullopt;
  std::tm tm{};
  tm.tm_year = y - 1900;
  tm.tm_mon = mo - 1;
  tm.tm_mday = d;
  tm.tm_hour = h;
  tm.tm_min = mi;
  tm.tm_sec = s;
  return static_cast<int64_t>(timegm(&tm)) * 1000 + ms;
}

json to_json(const Event& e) {
  json values = json::object();
  for (const auto& [k, v] : e.values) values[k] = std::isfinite(v) ? json(v) : json(nullptr);
  return json{{"seq", e.seq},
              {"time", format_rfc3339_ms(e.time_ms)},
              {"service", e.service},
              {"kind", e.kind},
              {"message", e.message},
              {"values", values}};
}

std::optional<Event> event_from_json(const json& j) {
  if (!j.is_object()) return std::nullopt;
  Event e;
  auto seq = j.find("seq");
  auto time = j.find("time");
  if (seq == j.end() || !seq->is_number_unsigned() || time == j.end() || !time->is_string()) return std::nullopt;
  e.seq = seq->get<uint64_t>();
  auto t = parse_rfc3339_ms(time->get<std::string>());
  if (!t) return std::nullopt;
  e.time_ms = *t;
  auto str = [&](const char* key, std::string& out) {
    auto it = j.find(key);
    if (it != j.end() && it->is_string()) out = it->get<std::string>();
  };
  str("service", e.service);
  str("kind", e.kind);
  str("message", e.message);
  if (auto v = j.find("values"); v != j.end() && v->is_object()) {
    for (auto it = v->begin(); it != v->end(); ++it) {
      if (it->is_number()) e.values[it.key()] = it->get<double>();
      else if (it->is_null()) e.values[it.key()] = std::nan("");
    }
  }
  return e;
}

EventLog::EventLog(size_t capacity) : capacity_(capacity == 0 ? 1 : capacity) {}

const Event& EventLog::append(Event e) {
  e.seq = next_seq_++;
  ring_.push_back(std::move(e));
  while (ring_.size() > capacity_) ring_.pop_front();
  return ring_.back();
}

EventLog::Page EventLog::since(uint64_t since, const std::optional<std::string>& service, size_t limit) const {
  Page page;
  page.next = since;
  bool cut = false;
  for (const Event& e : ring_) {
    if (e.seq < since) continue;
    if (limit != 0 && page.events.size() >= limit) {
      cut = true;
      break;
    }
    page.next = e.seq + 1;
    if (service && e.service != *service) continue;
    page.events.push_back(e);
  }
  // Everything up to the newest event was looked at unless the limit cut it short.
  if (!cut) page.next = std::max(since, next_seq_);
  return page;
}

void EventLog::restore(const std::vector<Event>& events) {
  ring_.clear();
  const size_t skip = events.size() > capacity_ ? events.size() - capacity_ : 0;
  uint64_t last = 0;
  for (size_t i = 0; i < events.size(); ++i) {
    last = std::max(last, events[i].seq);
    if (i >= skip) ring_.push_back(events[i]);
  }
  next_seq_ = std::max(next_seq_, last + 1);
}

EventFile::EventFile(std::string path, uint64_t max_bytes) : path_(std::move(path)), max_bytes_(max_bytes) {}

void EventFile::append(const Event& e) {
  const std::string line = to_json(e).dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
  std::error_code ec;
  const auto size = std::filesystem::file_size(path_, ec);
  if (!ec && size + line.size() > max_bytes_) {
    std::filesystem::rename(path_, path_ + ".1", ec);
    if (ec) throw std::runtime_error("rotate " + path_ + ": " + ec.message());
  }
  std::filesystem::create_directories(std::filesystem::path(path_).parent_path(), ec);
  std::ofstream out(path_, std::ios::app | std::ios::binary);
  if (!out) throw std::runtime_error("cannot open " + path_ + " for appending");
  out << line;
  out.flush();
  if (!out) throw std::runtime_error("write to " + path_ + " failed");
}

std::vector<Event> EventFile::read_all() const {
  std::vector<Event> out;
  for (const std::string& p : {path_ + ".1", path_}) {
    std::ifstream in(p, std::ios::binary);
    std::string line;
    while (std::getline(in, line)) {
      json j = json::parse(line, nullptr, false);
      if (j.is_discarded()) continue;
      if (auto e = event_from_json(j)) {
        if (!out.empty() && e->seq <= out.back().seq) continue;  // keep the order strict
        out.push_back(std::move(*e));
      }
    }
  }
  return out;
}

}  // namespace veer
