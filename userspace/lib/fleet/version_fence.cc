#include "fleet/version_fence.h"

#include <stdexcept>

namespace veer::fleet {

std::string to_string(FenceVerdict v) {
  switch (v) {
    case FenceVerdict::Apply: return "apply";
    case FenceVerdict::AlreadyApplied: return "already_applied";
    case FenceVerdict::Older: return "older";
    case FenceVerdict::OtherService: return "other_service";
    case FenceVerdict::DefinitionMismatch: return "definition_mismatch";
  }
  return "unknown";
}

VersionFence::VersionFence(std::string service, std::string definition, uint64_t applied)
    : service_(std::move(service)), definition_(std::move(definition)), applied_(applied) {}

FenceDecision VersionFence::consider(const TableVersion& v) const {
  const std::string which = "version " + std::to_string(v.version) + " of '" + v.service + "'";
  if (v.service != service_) return {FenceVerdict::OtherService, which + " is not for '" + service_ + "'"};
  // The version this node holds, of another definition: the node's config changed since it applied it (a
  // restart on a new config): what the fleet is at is not this node's service any more.
  if (v.version == applied_ && v.definition != definition_)
    return {FenceVerdict::DefinitionMismatch, which + " (applied before this node's config changed) was built for "
                                                  "definition " + v.definition + ", this node's is " + definition_};
  if (v.version == applied_) return {FenceVerdict::AlreadyApplied, which + " is applied already"};
  if (v.version < applied_)
    return {FenceVerdict::Older, which + " is older than the applied " + std::to_string(applied_) + ": ignored"};
  if (v.definition != definition_)
    return {FenceVerdict::DefinitionMismatch, which + " was built for definition " + v.definition +
                                                  ", this node's is " + definition_ + ": not applied"};
  return {FenceVerdict::Apply, which + " follows the applied " + std::to_string(applied_)};
}

void VersionFence::applied(const TableVersion& v) {
  const FenceDecision d = consider(v);
  if (!d.apply()) throw std::logic_error("VersionFence::applied: " + d.reason);
  applied_ = v.version;
}

}  // namespace veer::fleet
