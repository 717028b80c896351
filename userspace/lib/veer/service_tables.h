// Keeps every service's slot tables and pushes changes through a MapWriter in
// the order that keeps the packet path consistent (SPEC §2.5):
//   1. backends of the variants,  2. the INACTIVE slot table,
//   3. one update of veer_service that flips active_table.
// The previously active table stays in the map untouched, so a rollback is
// one more flip. Pure logic: the writer is injected.
#pragma once
#include <cstdint>
#include <map>
#include <vector>

#include "veer/config.h"
#include "veer/map_writer.h"
#include "veer/slot_table.h"

namespace veer {

veer_service_key service_key(const ServiceConfig& svc);

class ServiceTables {
 public:
  ServiceTables(MapWriter& writer, uint32_t hash_seed);

  // Installs `svc` under `service_id`. If the map already holds this service
  // (same key and id), its active table is adopted and only rebalanced to
  // `weights_bp` (flows and slot ownership survive a daemon restart);
  // otherwise the table is built with build_table().
  void install(uint32_t service_id, const ServiceConfig& svc, const std::vector<uint32_t>& weights_bp);

  // New weights: minimal-change rebalance, then one flip. No-op flip if unchanged.
  void set_weights(uint32_t service_id, const std::vector<uint32_t>& weights_bp);

  // Marks a backend draining (no new flows; its flows keep going) or not.
  void set_draining(uint32_t service_id, unsigned variant, unsigned backend, bool draining);

  void remove(uint32_t service_id);

  const SlotTable& active_table(uint32_t service_id) const;
  // Applied weights, read back from the map's active table (not from memory).
  std::vector<uint32_t> applied_weights(uint32_t service_id) const;

 private:
  struct Entry {
    ServiceConfig svc;
    VariantBackends backends;
    SlotTable table;
    uint8_t active = 0;
    uint32_t generation = 0;
  };
  void push(uint32_t service_id, Entry& e, const SlotTable& next);

  MapWriter& writer_;
  uint32_t seed_;
  std::map<uint32_t, Entry> entries_;
};

}  // namespace veer
