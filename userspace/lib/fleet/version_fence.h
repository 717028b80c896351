// Which table version a node applies. The rule: never a version at or below
// the one applied, whatever the order or repetition of what arrives (etcd
// 3.4's watch may deliver an event twice, a catch-up read and a watch event
// may carry the same version, and known watch bugs have replayed old events),
// and never a version built for another definition of the service than this
// node's. The check reads the version in the record, not the watch's order.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>

#include "fleet/table_version.h"

namespace veer::fleet {

enum class FenceVerdict {
  Apply,               // newer than the applied one, for this definition
  AlreadyApplied,      // the version applied now (a duplicate event, a catch-up read)
  Older,               // below the applied one: never goes back
  OtherService,        // the record names another service
  DefinitionMismatch,  // built for another definition: applies nothing (shown as diverged)
};
std::string to_string(FenceVerdict);

struct FenceDecision {
  FenceVerdict verdict = FenceVerdict::Apply;
  std::string reason;  // for the event log and status
  bool apply() const { return verdict == FenceVerdict::Apply; }
};

class VersionFence {
 public:
  // APPLIED: the version this node's pinned table holds (0: none yet, e.g.
  // a node that never joined), as state.json remembers it across restarts.
  VersionFence(std::string service, std::string definition, uint64_t applied = 0);

  FenceDecision consider(const TableVersion& v) const;
  // Records that V's table is live. Throws std::logic_error unless
  // consider(v) said Apply: the caller flips only what the fence allowed.
  void applied(const TableVersion& v);

  uint64_t applied_version() const { return applied_; }
  const std::string& definition() const { return definition_; }

 private:
  std::string service_;
  std::string definition_;
  uint64_t applied_;
};

}  // namespace veer::fleet
