// node.state_dir/state.json: what veerd must remember across restarts and
// reloads that the config does not say: stable service ids (they index the
// pinned BPF arrays, so a service must keep its id while flows of it live),
// weights set at runtime (weights/switch, rollouts), drained backends, the
// stable variant a completed rollout chose, each rollout's state and what it
// has gathered (pushed values, flow counter bases).
// Written atomically (temp file in the same folder + fsync + rename): a
// reader sees the old file or the new one, never a partial one.
#pragma once
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.h"
#include "rollout/gate_inputs.h"
#include "config/rollout_config.h"

namespace veer {

// What a rollout has gathered besides the engine's state, kept so that a
// restart (or a crash) of veerd loses none of an experiment's data: the values
// pushed since the rollout started (the A/B report's observations) and each
// variant's new-flow counter when it started (the kernel counters live in
// pinned maps and survive veerd). Per variant name.
struct RolloutTotals {
  std::map<std::string, PushData> pushed;
  std::map<std::string, uint64_t> flows_base;
  bool operator==(const RolloutTotals&) const = default;
};

struct ServiceState {
  // Runtime weights (variant name -> basis points); empty = none set at
  // runtime, the config's weights apply.
  std::map<std::string, uint32_t> weights_bp;
  std::set<std::string> draining;  // backend endpoints ("10.1.1.2:8080")
  // The stable variant when a rollout made another one stable than the
  // config names ("" = the config's).
  std::string stable;
  // Fleet mode: the table version of the fleet this node applied last (0:
  // none); a restarted node never applies it or an older one again.
  uint64_t fleet_version = 0;
  // The rollout engine's state (resumed after a restart at the same step).
  std::optional<RolloutState> rollout;
  // Since the rollout started; empty without a rollout.
  RolloutTotals totals;
  bool operator==(const ServiceState&) const = default;
};

struct NodeState {
  std::map<std::string, uint32_t> service_ids;       // service name -> id
  std::map<std::string, ServiceState> services;      // service name -> state
  bool operator==(const NodeState&) const = default;
};

class StateFileError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

inline constexpr int kStateFileVersion = 1;

std::string state_to_json(const NodeState& state);            // one JSON document
NodeState state_from_json(std::string_view text);              // throws StateFileError naming the problem

// Atomic write; creates the folder if needed. Throws StateFileError.
void write_state_file(const std::string& path, const NodeState& state);

struct StateLoad {
  NodeState state;                      // empty if the file is missing or unusable
  std::optional<std::string> problem;   // set if the file exists but is unusable
};
// A missing file is not a problem; a corrupt one is reported, never fatal.
StateLoad read_state_file(const std::string& path);

inline std::string state_file_path(const std::string& state_dir) { return state_dir + "/state.json"; }

// Ids for `names` (config order): a name keeps its previous id; new names get
// the lowest free id. Names not listed are dropped (their ids become free).
// Throws StateFileError if more than VEER_MAX_SERVICES services.
std::map<std::string, uint32_t> assign_service_ids(const std::vector<std::string>& names,
                                                   const std::map<std::string, uint32_t>& previous);

// The weights a service starts with: the runtime weights from `state` if they
// name exactly the service's variants and sum to 100.00 %, else the config's.
std::vector<uint32_t> effective_weights(const ServiceConfig& svc, const ServiceState* state);

// Runtime weights as stored in state (variant name -> bp), from a per-variant vector.
std::map<std::string, uint32_t> weights_by_name(const ServiceConfig& svc, const std::vector<uint32_t>& weights_bp);

}  // namespace veer
