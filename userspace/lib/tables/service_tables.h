// Keeps every service's slot tables and pushes changes through a MapWriter in
// the order that keeps the packet path consistent (SPEC §2.5):
//   1. backends of the variants,  2. the INACTIVE slot table,
//   3. one update of veer_service that flips active_table.
// The previously active table stays in the map untouched, so a rollback is
// one more flip. Pure logic: the writer is injected.
//
// It also keeps veer_port_filter equal to the union of the installed
// services' bits (VIP port -> SERVICE_TCP/UDP, every backend port ->
// BACKEND_TCP/UDP): new bits are set before a service becomes visible, stale
// bits are cleared after it is gone. It only knows the bits it wrote itself:
// bits left in a pinned map by an earlier veerd stay (harmless: a set bit only
// means "look further").
//
// It also keeps veer_tcp_port_service (port -> 1 + id of the only TCP service
// on it) and veer_service_keys (id -> key) for the data plane's hint that
// spares established TCP packets the service hash lookup: the key before the
// hint, the hint cleared before the service is removed.
//
// It also keeps veer_backend_rev (backend -> service, how the kernel tells a
// backend's replies) for every backend of every installed service, written
// before the service's table can name the backend. A backend that leaves a
// service's lists keeps its entry while the service exists: flows to it
// (established, or to a draining or removed backend) still need their
// replies translated. Its entries go with remove(). If the map would
// overflow (VEER_BACKEND_REV_MAX, every backend a config can hold), the
// entries of the longest-removed backends go first. A backend installed in
// another service takes its entry over (config validation keeps a backend
// in one service; during a reload it may move). Entries left in a pinned map
// by an earlier veerd are overwritten for listed backends, otherwise stay
// (harmless: a reply also needs a flow naming that backend).
//
// Backends live in one (not double-buffered) array: a reload that changes a
// variant's backend list rewrites indices before the flip, so during that one
// step a slot may name the new backend at its old index. Adding backends at
// the end of a list or draining is seamless.
//
// Errors: invalid input (bad id, weights, variants) throws
// std::invalid_argument before anything is written; an unknown service id
// throws std::out_of_range; MapWriter exceptions propagate (the write order
// keeps the packet path consistent whatever step fails).
#pragma once
#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <vector>

#include "config/config.h"
#include "tables/map_writer.h"
#include "tables/slot_table.h"

namespace veer {

veer_service_key service_key(const ServiceConfig& svc);

// node.udp_idle_timeout in flow-entry ticks (VEER_TICK_NS), rounded up:
// what veer_service.udp_idle_ticks holds.
uint32_t udp_idle_ticks(Millis timeout);

class ServiceTables {
 public:
  ServiceTables(MapWriter& writer, uint32_t hash_seed, Millis udp_idle_timeout = Millis{30000});

  // A new node.udp_idle_timeout: rewrites every installed service's entry
  // in place (no flip, tables untouched).
  void set_udp_idle_timeout(Millis timeout);

  // Installs `svc` under `service_id`. If the map already holds this service
  // (same key and id), its active table is adopted and only rebalanced to
  // `weights_bp` (flows and slot ownership survive a daemon restart);
  // otherwise the table is built with build_table(). Installing again under
  // the same id (reload) rebalances from the current table, matching
  // variants by name and keeping drain marks; a different service under an
  // id in use replaces it (the old one is removed first). A previously
  // unknown service appears with its table in slot 0 and generation 1.
  // `draining` lists backends that start drained (drain marks saved across a
  // restart), so a drained backend never gets a new flow, not even between
  // install and a later set_draining().
  void install(uint32_t service_id, const ServiceConfig& svc, const std::vector<uint32_t>& weights_bp,
               const std::vector<Endpoint>& draining = {});

  // New weights: minimal-change rebalance, then one flip. No-op flip if unchanged.
  void set_weights(uint32_t service_id, const std::vector<uint32_t>& weights_bp);

  // Marks a backend draining (no new flows; its flows keep going) or not.
  void set_draining(uint32_t service_id, unsigned variant, unsigned backend, bool draining);

  // Fleet mode: TABLE as published (a table version of the fleet) with
  // DRAINING (per variant, backend indexes) as the drain marks; the drain
  // flags go first, then one flip. Throws std::invalid_argument (nothing
  // written) if a slot names a variant or backend the service lacks.
  void set_table(uint32_t service_id, const SlotTable& table, const std::vector<std::vector<uint8_t>>& draining);

  void remove(uint32_t service_id);

  const SlotTable& active_table(uint32_t service_id) const;
  // Applied weights, read back from the map's active table (not from memory).
  std::vector<uint32_t> applied_weights(uint32_t service_id) const;

 private:
  struct Entry {
    ServiceConfig svc;
    VariantBackends backends;
    SlotTable table;  // what the map's active table holds
    uint8_t active = 0;
    uint32_t generation = 0;
    bool visible = false;  // veer_service written (or adopted)
  };
  void push(uint32_t service_id, Entry& e, const SlotTable& next);
  Entry& entry(uint32_t service_id);
  const Entry& entry(uint32_t service_id) const;
  veer_service service_value(uint32_t service_id, const Entry& e) const;
  // present_only: write the backends the lists hold (PRESENT); otherwise
  // zero every other index of the service (stale entries).
  void write_backends(uint32_t service_id, const Entry& e, bool present_only);
  static std::map<uint16_t, uint8_t> port_bits_of(const ServiceConfig& svc);
  std::map<uint16_t, uint8_t> installed_port_bits() const;
  void write_port_filter(const std::map<uint16_t, uint8_t>& wanted);
  // veer_tcp_port_service: 1 + id for each port that exactly one installed
  // TCP service (not `without`) listens on.
  std::map<uint16_t, uint8_t> tcp_port_hints(std::optional<uint32_t> without = std::nullopt) const;
  void write_tcp_port_hints(const std::map<uint16_t, uint8_t>& wanted);
  void write_port_values(const std::map<uint16_t, uint8_t>& wanted, std::map<uint16_t, uint8_t>& written,
                         void (MapWriter::*put)(uint16_t, uint8_t));
  void write_backend_rev(uint32_t service_id, const Entry& e);
  void delete_backend_rev(uint32_t service_id);

  using BackendRevKeyBytes = std::array<uint8_t, sizeof(veer_backend_rev_key)>;
  struct BackendRevEntry {
    uint32_t service_id = 0;
    veer_backend_rev_key key{};
    veer_backend_rev value{};
    bool listed = false;   // in the service's current backend lists
    uint64_t removed = 0;  // order of removal from the lists (oldest first)
  };

  MapWriter& writer_;
  uint32_t seed_;
  uint32_t udp_idle_ticks_;
  std::map<uint32_t, Entry> entries_;
  std::map<uint16_t, uint8_t> port_filter_;  // non-zero bits this object has written
  std::map<uint16_t, uint8_t> tcp_hints_;    // non-zero TCP port hints this object has written
  std::map<BackendRevKeyBytes, BackendRevEntry> backend_rev_;  // what this object has written
  uint64_t removals_ = 0;
};

}  // namespace veer
