// The next table version of a service from a change an operator or the
// rollout engine asks for (`weights`, `switch`, `drain`, a rollout step, an
// abort), starting from the fleet's current version. Pure: the writer reads
// the current version from etcd, calls this, and writes the result in a txn
// that compares the mod revision it read (fleet_keys.h), so version N+1 is
// made once, from version N, whichever node asks.
//
// With no current version yet (a fleet that was never written) the first
// version starts from the writer's own table (BASE): the fleet adopts the
// table its first writer has, flows and all, and every other node converges
// on it.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "config/config.h"
#include "fleet/table_version.h"

namespace veer::fleet {

struct DrainChange {
  unsigned variant = 0;
  unsigned backend = 0;
  bool draining = true;
};

struct TableChange {
  std::optional<std::vector<uint32_t>> weights_bp;  // per variant; absent: the current weights
  std::optional<unsigned> stable;                   // absent: the current stable variant
  std::vector<DrainChange> drains;
  std::string cause;                                // "weights", "switch", "drain", ...
};

// What a node has before the fleet has any version: its active table, stable
// variant and draining backends (per variant, ascending indexes).
struct BaseTable {
  SlotTable table;
  unsigned stable = 0;
  std::vector<std::vector<uint8_t>> draining;
};

// The variants' backends of SVC as the slot tables take them (none draining).
VariantBackends variant_backends(const ServiceConfig& svc);

// CURRENT's successor (or version 1 from BASE) with CHANGE applied: the
// slots move by the minimal-change rebalance from the current table, so
// connections on slots that keep their variant keep it. Throws
// TableVersionError or std::invalid_argument for a change that does not fit
// the service (weights not summing to 100 %, a variant or backend out of
// range, a weighted variant whose every backend would drain is allowed: its
// drain flags are ignored as on a single node).
TableVersion next_table_version(const std::optional<TableVersion>& current, const BaseTable& base,
                                const ServiceConfig& svc, const std::string& definition, uint32_t seed,
                                const TableChange& change, const std::string& writer, int64_t at_ms);

// The version that makes DEFINITION the fleet's (veerctl weights --adopt on a
// node whose definition differs from the current version's): CURRENT's
// successor number, but the table derived from BASE (this node's table; the
// current one was built for other variants or backends and may not fit).
// With CURRENT of DEFINITION already, the same as next_table_version.
TableVersion adopted_table_version(const std::optional<TableVersion>& current, const BaseTable& base,
                                   const ServiceConfig& svc, const std::string& definition, uint32_t seed,
                                   const TableChange& change, const std::string& writer, int64_t at_ms);

}  // namespace veer::fleet
