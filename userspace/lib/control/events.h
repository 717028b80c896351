// veerd's event log (protocol.md, `events`): every weight change and every
// gate decision, numbered. An in-memory ring for the socket and an
// append-only JSON-lines file (state_dir/events.jsonl) whose size is bounded
// by rotation to events.jsonl.1. After a restart the ring is refilled from
// the file, so sequence numbers keep increasing and a follower never sees a
// number twice.
#pragma once
#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace veer {

struct Event {
  uint64_t seq = 0;
  int64_t time_ms = 0;  // Unix epoch, milliseconds
  std::string service;  // "" for node-wide events
  std::string kind;
  std::string message;
  std::map<std::string, double> values;
  bool operator==(const Event&) const = default;
};

// 2024-05-01T12:00:00.123Z
std::string format_rfc3339_ms(int64_t unix_ms);
std::optional<int64_t> parse_rfc3339_ms(const std::string& text);

// {"seq","time","service","kind","message","values"}; non-finite values -> null.
nlohmann::json to_json(const Event& e);
// nullopt if the object is not an event (a damaged line of the file).
std::optional<Event> event_from_json(const nlohmann::json& j);

class EventLog {
 public:
  explicit EventLog(size_t capacity = 10'000);

  // Assigns the next sequence number and stores the event; returns it.
  const Event& append(Event e);
  // Events with seq >= since (of `service` if given), oldest first, at most
  // `limit`. `next` is the seq to ask for next time.
  struct Page {
    std::vector<Event> events;
    uint64_t next = 0;
  };
  Page since(uint64_t since, const std::optional<std::string>& service, size_t limit) const;
  uint64_t next_seq() const { return next_seq_; }
  size_t size() const { return ring_.size(); }
  // Refill from previously written events (sorted by seq; the newest
  // `capacity` are kept), numbering continues after the last.
  void restore(const std::vector<Event>& events);

 private:
  size_t capacity_;
  std::deque<Event> ring_;
  uint64_t next_seq_ = 1;
};

// Appends events as JSON lines; when the file would exceed max_bytes it is
// renamed to PATH.1 (replacing the previous one) and a new file is begun.
class EventFile {
 public:
  EventFile(std::string path, uint64_t max_bytes = 8u << 20);
  // Throws std::runtime_error on an I/O error (the caller logs it).
  void append(const Event& e);
  // The events of PATH.1 then PATH, damaged lines skipped.
  std::vector<Event> read_all() const;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  uint64_t max_bytes_;
};

}  // namespace veer
