// What each node of a fleet publishes every gate interval, under its lease:
// per service, the definition digest, the table version applied, and per
// variant the kernel telemetry counters and latency histogram buckets summed
// since the node's epoch began. Counters and buckets can be summed over nodes,
// a quantile cannot: the leader computes the fleet's p95 from the merged
// histogram, never from the nodes' p95s.
//
// The epoch names one run of the node's veerd (it changes on every start), and
// the counters count from zero in each epoch: the kernel's counters outlive a
// veerd restart, so veerd takes a baseline when its epoch begins and reports
// what came after it. `seq` grows with every report of an epoch.
#pragma once
#include <cstdint>
#include <map>
#include <stdexcept>
#include <string>

#include <nlohmann/json_fwd.hpp>

#include "rollout/gate_inputs.h"

namespace veer::fleet {

inline constexpr int kNodeReportFormat = 1;
inline constexpr size_t kMaxReportServices = 64;

class NodeReportError : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

struct ServiceReport {
  std::string definition;       // definition_digest() on this node
  uint64_t applied_version = 0;  // 0: none applied yet
  std::map<std::string, KernelSample> variants;  // by variant name; counts since the epoch began
  // Values pushed to this node (veerctl push), by variant, since the epoch began: running sums the
  // leader takes differences of, as of the counters (absent variants: nothing pushed).
  std::map<std::string, PushData> pushed;
  bool operator==(const ServiceReport&) const;
};

struct NodeReport {
  std::string node;
  std::string epoch;  // 1..64 characters, new on every veerd start
  uint64_t seq = 0;   // 1, 2, ... within the epoch
  int64_t at_ms = 0;  // the node's Unix time when it read the counters
  std::map<std::string, ServiceReport> services;
  bool operator==(const NodeReport&) const = default;
};

// What NOW counted since BASE (the readings when the epoch began), counter by
// counter and bucket by bucket; a counter below its base (the maps were
// re-created under a running veerd) counts from zero.
KernelSample kernel_since(const KernelSample& base, const KernelSample& now);

// JSON: {"format", "node", "epoch", "seq", "at_ms", "services": {NAME: {"definition",
// "applied_version", "variants": {VARIANT: {"flows", "responses", "backend_resets", "client_resets",
// "handshake_timeouts", "http_2xx", ..., "packets_in", "bytes_in", "packets_out", "bytes_out",
// "latency": [[BUCKET, COUNT], ...] (non-zero buckets only)}}, "pushed": {VARIANT: PushData}}}}
// ("pushed" only when something was pushed; PushData as in state.json).
nlohmann::json to_json(const NodeReport& r);
std::string node_report_to_string(const NodeReport& r);
// Checks everything (names, sizes, bucket indexes in range and ascending,
// counts non-negative integers); throws NodeReportError naming the first
// thing wrong. A node's report is outside input to the leader: a bad one is
// left out of the fleet's sums (and shown), never half-read.
NodeReport node_report_from_json(const nlohmann::json& j);
NodeReport node_report_from_string(const std::string& text);

}  // namespace veer::fleet
