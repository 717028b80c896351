// A service's rollout as the fleet keeps it in etcd (P/services/NAME/rollout):
// the rollout engine's state after the last decision, who wrote it and under
// which leader term, and the events of that decision. Written in the same txn
// as the table version the decision made (if it changed the weights), so a
// node that reads the record and the table together never sees a step without
// its table or a table without its step; a new leader restores its engine from
// the record and goes on at the same step with the pause time already spent.
//
// `seq` grows by one with every write: a node mirrors a record only if its seq
// is above the one it holds (etcd 3.4's watch may deliver a record twice, or an
// old one). `term` is the create revision of the leader key the writer held
// (0: an operator's command, which any node may write; its txn compares the
// record's mod revision instead).
#pragma once
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "config/rollout_config.h"
#include "fleet/fleet_window.h"
#include "rollout/rollout_engine.h"

namespace veer::fleet {

inline constexpr int kRolloutRecordFormat = 1;
inline constexpr size_t kMaxRecordEvents = 64;
inline constexpr size_t kMaxEventMessage = 2048;
inline constexpr size_t kMaxEventValues = 32;

class RolloutRecordError : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

// What the fleet's nodes counted since the rollout started, summed by the
// leader interval by interval (the A/B report's flows and pushed values). A
// node's counts while it did not contribute (cut off, just seen) are not in
// it: both arms lose alike, so the ratio the SRM check reads stays fair.
struct FleetTotals {
  std::map<std::string, uint64_t> flows;    // new flows, by variant
  std::map<std::string, PushData> pushed;   // pushed values, by variant
  void add(const FleetWindow& window);      // the contributing nodes' growth of one interval
  bool empty() const { return flows.empty() && pushed.empty(); }
  bool operator==(const FleetTotals&) const = default;
};

struct RolloutRecord {
  uint64_t seq = 0;            // 1, 2, ... per service
  std::string service;
  std::string definition;      // definition_digest() of the writer's service
  int64_t term = 0;            // the leader's term (create revision of P/leader); 0: an operator command
  std::string writer;          // the node that wrote it
  int64_t at_ms = 0;           // the writer's Unix time
  uint64_t table_version = 0;  // the table version written with it (0: the decision left the table alone)
  RolloutState state;
  std::vector<RolloutEvent> events;  // the decision's events (at most kMaxRecordEvents: the last ones)
  FleetTotals totals;                // A/B rollouts: the fleet's counts since the start
  bool operator==(const RolloutRecord&) const;
};

// CURRENT's successor (seq + 1, or 1) for the state and events of a decision.
// More than kMaxRecordEvents events keep the last ones; messages are cut to
// kMaxEventMessage.
RolloutRecord next_rollout_record(const std::optional<RolloutRecord>& current, std::string service,
                                  std::string definition, int64_t term, std::string writer, int64_t at_ms,
                                  uint64_t table_version, RolloutState state, std::vector<RolloutEvent> events,
                                  FleetTotals totals = {});

// Whether a node that mirrors HELD (nullopt: nothing yet) takes RECORD: only a
// newer one (a duplicate or an old one from the watch changes nothing).
inline bool newer(const RolloutRecord& record, const std::optional<RolloutRecord>& held) {
  return !held || record.seq > held->seq;
}

nlohmann::json to_json(const RolloutRecord& r);
std::string rollout_record_to_string(const RolloutRecord& r);
// Checks everything (format, names, seq >= 1, term >= 0, the state, the
// events' sizes); throws RolloutRecordError naming the first thing wrong.
RolloutRecord rollout_record_from_json(const nlohmann::json& j);
RolloutRecord rollout_record_from_string(const std::string& text);

}  // namespace veer::fleet
