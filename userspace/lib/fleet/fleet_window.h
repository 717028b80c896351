// The leader's view of one gate interval across the fleet: each live node's
// report turned into its window (what its counters grew by since the report
// the leader used last time), summed per variant, with the nodes that could
// not contribute named and why. A measurement resting on fewer than
// `min_nodes` nodes is Inconclusive: a smaller sum is never read as healthy.
//
// Per node, from its latest report and the one used last interval:
//   Fresh      same epoch, a newer seq, no counter went down: its growth counts;
//   Restarted  another epoch: the counters since that epoch began count (they
//              start at zero each epoch), never a negative difference;
//   FirstSeen  no earlier report (a new leader, a node that joined), or one
//              from longer ago than max_age (a node back from a cut): it
//              becomes the baseline, nothing counts this interval (its growth
//              spans more than one interval);
//   NoNewReport the same seq as last interval: the node published nothing new;
//   Stale      the report is older than max_age: a node cut off or stuck;
//   Missing    a live node without a report for the service;
//   Invalid    a counter went down within an epoch, an older seq, a variant
//              missing, another definition: left out, shown with the reason.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "fleet/node_report.h"
#include "rollout/gate_inputs.h"

namespace veer::fleet {

enum class NodeState { Fresh, Restarted, FirstSeen, NoNewReport, Stale, Missing, Invalid };
std::string to_string(NodeState);
inline bool contributes(NodeState s) { return s == NodeState::Fresh || s == NodeState::Restarted; }

struct NodeContribution {
  std::string node;
  NodeState state = NodeState::Missing;
  std::string reason;    // why it does not contribute (empty when it does)
  int64_t report_age_ms = -1;  // -1: no report
};

struct FleetWindow {
  std::map<std::string, KernelWindow> variants;  // summed over contributing nodes
  std::map<std::string, PushData> pushed;        // values pushed to contributing nodes, by variant
  std::vector<NodeContribution> nodes;           // every live node, by name
  size_t contributing = 0;
};

// Adds B to A, counter by counter and bucket by bucket (seconds stay A's).
void add_window(KernelWindow& a, const KernelWindow& b);

class FleetAggregator {
 public:
  // SERVICE with VARIANTS (names) and DEFINITION (the leader's digest);
  // reports of another definition are Invalid.
  FleetAggregator(std::string service, std::vector<std::string> variants, std::string definition);

  // One interval: LATEST holds the newest report read of each node (any
  // nodes; only LIVE ones, those with a lease, count), NOW_MS the leader's
  // clock, MAX_AGE_MS how old a report may be, SECONDS the interval.
  FleetWindow step(const std::map<std::string, NodeReport>& latest, const std::vector<std::string>& live,
                   int64_t now_ms, int64_t max_age_ms, double seconds);

 private:
  struct Baseline {
    std::string epoch;
    uint64_t seq = 0;
    int64_t at_ms = 0;
    std::map<std::string, KernelSample> variants;
    std::map<std::string, PushData> pushed;
  };
  std::string service_;
  std::vector<std::string> variants_;
  std::string definition_;
  std::map<std::string, Baseline> baselines_;
};

// The gate's measurement of VARIANT over the fleet's window: Inconclusive
// (naming the nodes that did not contribute) if fewer than MIN_NODES did
// (0: every live node), else kernel_measurement of the summed window.
Measurement fleet_measurement(const FleetWindow& window, const std::string& variant, std::string_view metric,
                              size_t min_nodes);
// A push gate's measurement of VARIANT over the fleet's window: the values pushed to any node count
// (push_measurement of their sum); Inconclusive below MIN_NODES as above, since a node left out may
// hold pushes.
Measurement fleet_push_measurement(const FleetWindow& window, const std::string& variant, const GateConfig& gate,
                                   size_t min_nodes);

}  // namespace veer::fleet
