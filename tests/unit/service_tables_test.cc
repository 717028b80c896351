// ServiceTables against an in-memory MapWriter: write order, one flip per
// change, adoption of existing map state, backends and port filter bits.
#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <array>
#include <cstring>
#include <map>
#include <stdexcept>

#include "tables/service_tables.h"

namespace veer {
namespace {

// The maps as plain containers, plus a log of every write in order.
class MemoryMaps : public MapWriter {
 public:
  enum class Op {
    PutService, DeleteService, PutTable, PutBackend, PutPortFilter, PutBackendRev, DeleteBackendRev, PutServiceKey,
    PutTcpHint
  };
  struct Write {
    Op op;
    uint32_t index;  // table/backend index or port; 0 for services
  };

  using KeyBytes = std::array<uint8_t, sizeof(veer_service_key)>;
  static KeyBytes bytes_of(const veer_service_key& k) {
    KeyBytes b;
    std::memcpy(b.data(), &k, sizeof k);
    return b;
  }

  void put_service(const veer_service_key& key, const veer_service& value) override {
    services[bytes_of(key)] = value;
    log.push_back({Op::PutService, 0});
  }
  void delete_service(const veer_service_key& key) override {
    services.erase(bytes_of(key));
    log.push_back({Op::DeleteService, 0});
  }
  std::optional<veer_service> get_service(const veer_service_key& key) const override {
    auto it = services.find(bytes_of(key));
    if (it == services.end()) return std::nullopt;
    return it->second;
  }
  void put_slot_table(uint32_t index, const veer_slot_table& table) override {
    tables[index] = table;
    log.push_back({Op::PutTable, index});
  }
  std::optional<veer_slot_table> get_slot_table(uint32_t index) const override {
    auto it = tables.find(index);
    if (it == tables.end()) return std::nullopt;
    return it->second;
  }
  void put_backend(uint32_t index, const veer_backend& backend) override {
    backends[index] = backend;
    log.push_back({Op::PutBackend, index});
  }
  void put_port_filter(uint16_t port, uint8_t bits) override {
    port_filter[port] = bits;
    log.push_back({Op::PutPortFilter, port});
  }
  void put_service_key(uint32_t id, const veer_service_key& key) override {
    service_keys[id] = key;
    log.push_back({Op::PutServiceKey, id});
  }
  void put_tcp_port_hint(uint16_t port, uint8_t hint) override {
    tcp_hints[port] = hint;
    log.push_back({Op::PutTcpHint, port});
  }
  using RevKeyBytes = std::array<uint8_t, sizeof(veer_backend_rev_key)>;
  static RevKeyBytes bytes_of(const veer_backend_rev_key& k) {
    RevKeyBytes b;
    std::memcpy(b.data(), &k, sizeof k);
    return b;
  }
  void put_backend_rev(const veer_backend_rev_key& key, const veer_backend_rev& value) override {
    // A HASH map of VEER_BACKEND_REV_MAX entries refuses one more (E2BIG).
    if (!backend_rev.count(bytes_of(key)) && backend_rev.size() >= VEER_BACKEND_REV_MAX)
      throw std::runtime_error("veer_backend_rev is full");
    backend_rev[bytes_of(key)] = value;
    log.push_back({Op::PutBackendRev, ntohs(key.port)});
  }
  void delete_backend_rev(const veer_backend_rev_key& key) override {
    backend_rev.erase(bytes_of(key));
    log.push_back({Op::DeleteBackendRev, ntohs(key.port)});
  }
  // The entry of backend "ip:port" under `proto`, if any.
  std::optional<veer_backend_rev> rev(const std::string& backend, Protocol proto = Protocol::Tcp) const {
    const Endpoint ep = *Endpoint::parse(backend);
    veer_backend_rev_key k{};
    k.addr = ep.ip.to_abi();
    k.port = htons(ep.port);
    k.proto = proto == Protocol::Tcp ? VEER_PROTO_TCP : VEER_PROTO_UDP;
    k.family = static_cast<__u8>(ep.ip.family);
    auto it = backend_rev.find(bytes_of(k));
    if (it == backend_rev.end()) return std::nullopt;
    return it->second;
  }

  std::optional<veer_service> service(const ServiceConfig& svc) const { return get_service(service_key(svc)); }
  SlotTable table(uint32_t index) const {
    SlotTable t;
    const auto& raw = tables.at(index);
    t.slots.assign(raw.slot, raw.slot + VEER_SLOTS);
    return t;
  }
  size_t count(Op op, size_t from = 0) const {
    size_t n = 0;
    for (size_t i = from; i < log.size(); ++i) n += log[i].op == op;
    return n;
  }
  // Position of the first/last write of `op` at or after `from` (log.size() if none).
  size_t first(Op op, size_t from = 0) const {
    for (size_t i = from; i < log.size(); ++i)
      if (log[i].op == op) return i;
    return log.size();
  }
  size_t last(Op op, size_t from = 0) const {
    size_t pos = log.size();
    for (size_t i = from; i < log.size(); ++i)
      if (log[i].op == op) pos = i;
    return pos;
  }

  std::map<KeyBytes, veer_service> services;
  std::map<uint32_t, veer_slot_table> tables;
  std::map<uint32_t, veer_backend> backends;
  std::array<uint8_t, VEER_PORT_FILTER_SIZE> port_filter{};
  std::array<uint8_t, VEER_TCP_PORT_SERVICE_SIZE> tcp_hints{};
  std::map<uint32_t, veer_service_key> service_keys;
  std::map<RevKeyBytes, veer_backend_rev> backend_rev;
  std::vector<Write> log;
};

using Op = MemoryMaps::Op;

ServiceConfig make_service(const std::string& name, const std::string& vip, uint16_t port, Protocol proto,
                           std::vector<std::pair<std::string, std::vector<std::string>>> variants,
                           const std::string& stable) {
  ServiceConfig svc;
  svc.name = name;
  svc.vip = *IpAddress::parse(vip);
  svc.port = port;
  svc.protocol = proto;
  svc.stable = stable;
  for (auto& [vname, eps] : variants) {
    VariantConfig v;
    v.name = vname;
    for (const auto& e : eps) v.backends.push_back(*Endpoint::parse(e));
    svc.variants.push_back(v);
  }
  svc.weights_bp.assign(svc.variants.size(), 0);
  svc.weights_bp[static_cast<size_t>(svc.stable_index())] = VEER_WEIGHT_TOTAL;
  return svc;
}

ServiceConfig ranker() {
  return make_service("ranker", "10.0.0.100", 80, Protocol::Tcp,
                      {{"blue", {"10.1.1.2:8080", "10.1.1.3:8080"}}, {"canary", {"10.1.3.2:9090"}}}, "blue");
}

VariantBackends backends_of(const ServiceConfig& svc) {
  VariantBackends out;
  for (const auto& v : svc.variants) {
    out.emplace_back();
    for (const auto& e : v.backends) out.back().push_back({e, false});
  }
  return out;
}

constexpr uint32_t kSeed = 0x5eed;
constexpr uint32_t kId = 3;

TEST(ServiceTables, FreshInstallWritesInOrderAndReadsBack) {
  MemoryMaps maps;
  ServiceTables tables(maps, kSeed);
  const ServiceConfig svc = ranker();
  tables.install(kId, svc, {9500, 500});

  auto value = maps.service(svc);
  ASSERT_TRUE(value);
  EXPECT_EQ(value->id, kId);
  EXPECT_EQ(value->hash_seed, kSeed);
  EXPECT_EQ(value->active_table, 0);
  EXPECT_EQ(value->generation, 1u);
  EXPECT_EQ(value->affinity, VEER_AFFINITY_CONNECTION);
  EXPECT_EQ(value->n_variants, 2);
  EXPECT_EQ(maps.count(Op::PutService), 1u);

  const SlotTable expected = build_table({9500, 500}, 0, backends_of(svc), kSeed);
  EXPECT_TRUE(maps.table(kId * 2 + 0) == expected);
  EXPECT_TRUE(tables.active_table(kId) == expected);
  EXPECT_EQ(tables.applied_weights(kId), (std::vector<uint32_t>{9500, 500}));

  // Port bits, backends and the table are all written before the service appears.
  const size_t service_at = maps.first(Op::PutService);
  EXPECT_LT(maps.last(Op::PutPortFilter, 0), maps.log.size());
  EXPECT_LT(maps.first(Op::PutPortFilter), service_at);
  EXPECT_LT(maps.first(Op::PutBackend), maps.first(Op::PutTable));
  EXPECT_LT(maps.first(Op::PutTable), service_at);
  for (size_t i = 0; i < service_at; ++i)
    if (maps.log[i].op == Op::PutBackend) {
      const auto& be = maps.backends.at(maps.log[i].index);
      EXPECT_TRUE(be.flags & VEER_BACKEND_F_PRESENT) << "only present backends before the service is visible";
    }

  // Backend entries: address and port in network order, PRESENT.
  const uint32_t base = kId * VEER_MAX_VARIANTS * VEER_MAX_BACKENDS;
  const veer_backend& b1 = maps.backends.at(base + 1);  // blue, second backend
  EXPECT_EQ(IpAddress::from_abi(b1.addr, VEER_AF_INET).to_string(), "10.1.1.3");
  EXPECT_EQ(b1.port, htons(8080));
  EXPECT_EQ(b1.family, VEER_AF_INET);
  EXPECT_EQ(b1.flags, VEER_BACKEND_F_PRESENT);
  const veer_backend& c0 = maps.backends.at(base + VEER_MAX_BACKENDS);  // canary, first backend
  EXPECT_EQ(c0.port, htons(9090));
  EXPECT_EQ(maps.backends.count(base + 2) ? maps.backends.at(base + 2).flags : 0, 0);
}

TEST(ServiceTables, EachChangeFlipsOnceAndKeepsThePreviousTable) {
  MemoryMaps maps;
  ServiceTables tables(maps, kSeed);
  const ServiceConfig svc = ranker();
  tables.install(kId, svc, {9500, 500});
  const SlotTable at5 = maps.table(kId * 2 + 0);

  size_t mark = maps.log.size();
  tables.set_weights(kId, {8000, 2000});
  EXPECT_EQ(maps.count(Op::PutService, mark), 1u);
  EXPECT_EQ(maps.count(Op::PutTable, mark), 1u);
  EXPECT_EQ(maps.log[maps.first(Op::PutTable, mark)].index, kId * 2 + 1);  // the inactive one
  EXPECT_LT(maps.first(Op::PutTable, mark), maps.first(Op::PutService, mark));
  EXPECT_EQ(maps.service(svc)->active_table, 1);
  EXPECT_EQ(maps.service(svc)->generation, 2u);
  EXPECT_TRUE(maps.table(kId * 2 + 0) == at5);  // previous table untouched: rollback is one flip
  EXPECT_EQ(tables.applied_weights(kId), (std::vector<uint32_t>{8000, 2000}));
  EXPECT_TRUE(tables.active_table(kId) == maps.table(kId * 2 + 1));

  // Monotone through the service: every canary slot at 5 % is still canary.
  const SlotTable at20 = maps.table(kId * 2 + 1);
  for (size_t s = 0; s < VEER_SLOTS; ++s)
    if (at5.slots[s].variant == 1) { ASSERT_EQ(at20.slots[s].variant, 1); }

  // Unchanged weights: nothing written at all.
  mark = maps.log.size();
  tables.set_weights(kId, {8000, 2000});
  EXPECT_EQ(maps.log.size(), mark);

  // Back to 5 %: flips to table 0 again, which now equals the first table.
  tables.set_weights(kId, {9500, 500});
  EXPECT_EQ(maps.service(svc)->active_table, 0);
  EXPECT_EQ(maps.service(svc)->generation, 3u);
  EXPECT_TRUE(maps.table(kId * 2 + 0) == at5);
  EXPECT_TRUE(maps.table(kId * 2 + 1) == at20);
}

TEST(ServiceTables, InstallOverExistingMapStateAdoptsIt) {
  MemoryMaps maps;
  const ServiceConfig svc = ranker();
  SlotTable before;
  {
    ServiceTables first(maps, kSeed);
    first.install(kId, svc, {9500, 500});
    first.set_weights(kId, {8000, 2000});
    before = first.active_table(kId);
  }
  const auto value_before = *maps.service(svc);
  const auto tables_before = maps.tables;

  // A restarted daemon with the same config: no slot moves, no flip.
  ServiceTables second(maps, kSeed);
  const size_t mark = maps.log.size();
  second.install(kId, svc, {8000, 2000});
  EXPECT_EQ(maps.count(Op::PutTable, mark), 0u);
  EXPECT_EQ(maps.service(svc)->active_table, value_before.active_table);
  EXPECT_EQ(maps.service(svc)->generation, value_before.generation);
  EXPECT_TRUE(second.active_table(kId) == before);
  for (const auto& [index, raw] : tables_before)
    EXPECT_EQ(std::memcmp(&raw, &maps.tables.at(index), sizeof raw), 0) << "table " << index;
  EXPECT_EQ(second.applied_weights(kId), (std::vector<uint32_t>{8000, 2000}));

  // Restart with new weights: rebalanced from the adopted table (monotone),
  // not rebuilt, and one flip.
  ServiceTables third(maps, kSeed);
  third.install(kId, svc, {6000, 4000});
  EXPECT_EQ(maps.service(svc)->active_table, 1 - value_before.active_table);
  EXPECT_EQ(maps.service(svc)->generation, value_before.generation + 1);
  const SlotTable after = third.active_table(kId);
  for (size_t s = 0; s < VEER_SLOTS; ++s)
    if (before.slots[s].variant == 1) { ASSERT_EQ(after.slots[s].variant, 1); }
  EXPECT_EQ(third.applied_weights(kId), (std::vector<uint32_t>{6000, 4000}));
}

TEST(ServiceTables, AdoptionIgnoresTheKeyUnderAnotherId) {
  MemoryMaps maps;
  const ServiceConfig svc = ranker();
  ServiceTables(maps, kSeed).install(kId, svc, {9500, 500});
  // Planted state that must not be adopted: a table of all canary under id 5.
  veer_slot_table all_canary;
  for (auto& s : all_canary.slot) s = veer_slot{1, 0};
  maps.tables[5 * 2] = all_canary;
  maps.services.clear();
  veer_service other{};
  other.id = 5;
  maps.put_service(service_key(svc), other);

  ServiceTables fresh(maps, kSeed);
  fresh.install(kId, svc, {9500, 500});
  EXPECT_EQ(maps.service(svc)->id, kId);
  EXPECT_TRUE(fresh.active_table(kId) == build_table({9500, 500}, 0, backends_of(svc), kSeed));
}

TEST(ServiceTables, PortFilterIsTheUnionOfInstalledServices) {
  MemoryMaps maps;
  ServiceTables tables(maps, kSeed);
  const ServiceConfig web = ranker();  // tcp 80 -> 8080, 9090
  const ServiceConfig dns = make_service("dns", "fd00::53", 53, Protocol::Udp,
                                         {{"v1", {"[fd00:1::2]:5353"}}, {"v2", {"[fd00:2::2]:8080"}}}, "v1");
  tables.install(1, web, {10000, 0});
  tables.install(2, dns, {5000, 5000});
  EXPECT_EQ(maps.port_filter[80], VEER_PORT_F_SERVICE_TCP);
  EXPECT_EQ(maps.port_filter[9090], VEER_PORT_F_BACKEND_TCP);
  EXPECT_EQ(maps.port_filter[53], VEER_PORT_F_SERVICE_UDP);
  EXPECT_EQ(maps.port_filter[5353], VEER_PORT_F_BACKEND_UDP);
  EXPECT_EQ(maps.port_filter[8080], VEER_PORT_F_BACKEND_TCP | VEER_PORT_F_BACKEND_UDP);
  EXPECT_EQ(maps.port_filter[443], 0);
  EXPECT_EQ(maps.service(dns)->affinity, VEER_AFFINITY_CONNECTION);

  // Removal: the service disappears first, then its bits go; shared bits stay.
  const size_t mark = maps.log.size();
  tables.remove(1);
  EXPECT_FALSE(maps.service(web));
  EXPECT_LT(maps.first(Op::DeleteService, mark), maps.first(Op::PutPortFilter, mark));
  EXPECT_EQ(maps.port_filter[80], 0);
  EXPECT_EQ(maps.port_filter[9090], 0);
  EXPECT_EQ(maps.port_filter[8080], VEER_PORT_F_BACKEND_UDP);
  EXPECT_EQ(maps.port_filter[53], VEER_PORT_F_SERVICE_UDP);
  for (unsigned i = 0; i < VEER_MAX_VARIANTS * VEER_MAX_BACKENDS; ++i) {
    auto it = maps.backends.find(1 * VEER_MAX_VARIANTS * VEER_MAX_BACKENDS + i);
    if (it != maps.backends.end()) { EXPECT_EQ(it->second.flags, 0) << "backend " << i; }
  }
  EXPECT_THROW(tables.applied_weights(1), std::out_of_range);
  EXPECT_THROW(tables.set_weights(1, {10000, 0}), std::out_of_range);
}

TEST(ServiceTables, ReloadChangingThePortSetsNewBitsFirstAndClearsOldOnes) {
  MemoryMaps maps;
  ServiceTables tables(maps, kSeed);
  ServiceConfig svc = ranker();
  tables.install(1, svc, {10000, 0});
  ServiceConfig moved = svc;
  moved.variants[1].backends = {*Endpoint::parse("10.1.3.2:7070")};
  const size_t mark = maps.log.size();
  tables.install(1, moved, {10000, 0});
  EXPECT_EQ(maps.port_filter[7070], VEER_PORT_F_BACKEND_TCP);
  EXPECT_EQ(maps.port_filter[9090], 0);
  // 7070 set before the service update, 9090 cleared after it.
  size_t set_7070 = maps.log.size(), clear_9090 = maps.log.size();
  for (size_t i = mark; i < maps.log.size(); ++i)
    if (maps.log[i].op == Op::PutPortFilter) (maps.log[i].index == 7070 ? set_7070 : clear_9090) = i;
  EXPECT_LT(set_7070, maps.last(Op::PutService, mark));
  EXPECT_GT(clear_9090, maps.last(Op::PutService, mark));
}

TEST(ServiceTables, DrainMovesOnlyThatBackendAndMarksIt) {
  MemoryMaps maps;
  ServiceTables tables(maps, kSeed);
  const ServiceConfig svc = ranker();
  tables.install(kId, svc, {5000, 5000});
  const SlotTable before = tables.active_table(kId);
  const uint8_t active_before = maps.service(svc)->active_table;

  tables.set_draining(kId, 0, 1, true);
  const uint32_t index = (kId * VEER_MAX_VARIANTS + 0) * VEER_MAX_BACKENDS + 1;
  EXPECT_EQ(maps.backends.at(index).flags, VEER_BACKEND_F_PRESENT | VEER_BACKEND_F_DRAINING);
  EXPECT_EQ(maps.service(svc)->active_table, 1 - active_before);
  const SlotTable after = tables.active_table(kId);
  size_t moved = 0;
  for (size_t s = 0; s < VEER_SLOTS; ++s) {
    ASSERT_EQ(after.slots[s].variant, before.slots[s].variant);
    if (before.slots[s].variant == 0 && before.slots[s].backend == 1) {
      EXPECT_EQ(after.slots[s].backend, 0);  // the only other blue backend
      ++moved;
    } else {
      EXPECT_EQ(after.slots[s].backend, before.slots[s].backend);
    }
  }
  EXPECT_GT(moved, 1000u);
  EXPECT_EQ(tables.applied_weights(kId), (std::vector<uint32_t>{5000, 5000}));

  // A weight change keeps honouring the drain; a reload keeps the mark.
  tables.set_weights(kId, {4000, 6000});
  for (const auto& s : tables.active_table(kId).slots)
    if (s.variant == 0) { ASSERT_EQ(s.backend, 0); }
  tables.install(kId, svc, {4000, 6000});
  EXPECT_EQ(maps.backends.at(index).flags, VEER_BACKEND_F_PRESENT | VEER_BACKEND_F_DRAINING);

  tables.set_draining(kId, 0, 1, false);
  EXPECT_EQ(maps.backends.at(index).flags, VEER_BACKEND_F_PRESENT);
  EXPECT_THROW(tables.set_draining(kId, 0, 2, true), std::out_of_range);
  EXPECT_THROW(tables.set_draining(kId, 2, 0, true), std::out_of_range);
}

TEST(ServiceTables, BackendsDrainedAtInstallNeverAppearInATable) {
  // A restarted daemon passes the drain marks it saved: the first table it
  // writes already avoids the drained backend (no window before set_draining).
  MemoryMaps maps;
  ServiceTables tables(maps, kSeed);
  const ServiceConfig svc = ranker();
  const Endpoint drained = svc.variants[0].backends[1];
  tables.install(kId, svc, {5000, 5000}, {drained});
  const uint32_t index = (kId * VEER_MAX_VARIANTS + 0) * VEER_MAX_BACKENDS + 1;
  EXPECT_EQ(maps.backends.at(index).flags, VEER_BACKEND_F_PRESENT | VEER_BACKEND_F_DRAINING);
  size_t blue = 0;
  for (const auto& s : tables.active_table(kId).slots) {
    if (s.variant != 0) continue;
    ++blue;
    ASSERT_EQ(s.backend, 0);
  }
  EXPECT_EQ(blue, 5000u);
  // Every table the map ever held avoids it too.
  for (const auto& [i, t] : maps.tables)
    for (const auto& s : t.slot)
      if (s.variant == 0) { ASSERT_EQ(s.backend, 0); }
}

TEST(ServiceTables, ReloadMatchesVariantsByName) {
  MemoryMaps maps;
  ServiceTables tables(maps, kSeed);
  const ServiceConfig svc = ranker();
  tables.install(kId, svc, {7000, 3000});
  const SlotTable before = tables.active_table(kId);
  ServiceConfig swapped = svc;
  std::swap(swapped.variants[0], swapped.variants[1]);  // canary is now variant 0
  tables.install(kId, swapped, {3000, 7000});
  const SlotTable after = tables.active_table(kId);
  for (size_t s = 0; s < VEER_SLOTS; ++s) ASSERT_EQ(after.slots[s].variant, 1 - before.slots[s].variant);
  EXPECT_EQ(tables.applied_weights(kId), (std::vector<uint32_t>{3000, 7000}));
}

TEST(ServiceTables, ShrinkingABackendListClearsTheStaleEntryAfterTheFlip) {
  MemoryMaps maps;
  ServiceTables tables(maps, kSeed);
  ServiceConfig svc = ranker();
  tables.install(kId, svc, {10000, 0});
  svc.variants[0].backends.pop_back();
  const size_t mark = maps.log.size();
  tables.install(kId, svc, {10000, 0});
  const uint32_t stale = (kId * VEER_MAX_VARIANTS + 0) * VEER_MAX_BACKENDS + 1;
  EXPECT_EQ(maps.backends.at(stale).flags, 0);
  size_t cleared_at = maps.log.size();
  for (size_t i = mark; i < maps.log.size(); ++i)
    if (maps.log[i].op == Op::PutBackend && maps.log[i].index == stale) cleared_at = i;
  EXPECT_GT(cleared_at, maps.last(Op::PutService, mark));
  for (const auto& s : tables.active_table(kId).slots) ASSERT_EQ(s.backend, 0);
}

TEST(ServiceTables, BackendRevNamesEachBackendsServiceBeforeTheServiceAppears) {
  MemoryMaps maps;
  ServiceTables tables(maps, kSeed);
  const ServiceConfig svc = ranker();
  tables.install(kId, svc, {9500, 500});
  for (const std::string b : {"10.1.1.2:8080", "10.1.1.3:8080", "10.1.3.2:9090"}) {
    SCOPED_TRACE(b);
    auto rev = maps.rev(b);
    ASSERT_TRUE(rev);
    EXPECT_EQ(rev->service_id, kId);
    EXPECT_EQ(IpAddress::from_abi(rev->vip, VEER_AF_INET).to_string(), "10.0.0.100");
    EXPECT_EQ(rev->vport, htons(80));
    EXPECT_FALSE(maps.rev(b, Protocol::Udp)) << "the protocol is part of the key";
  }
  EXPECT_EQ(maps.backend_rev.size(), 3u);
  EXPECT_LT(maps.last(Op::PutBackendRev), maps.first(Op::PutService)) << "replies are known before flows exist";

  // Unchanged on a reload: nothing rewritten.
  const size_t mark = maps.log.size();
  tables.install(kId, svc, {9000, 1000});
  EXPECT_EQ(maps.count(Op::PutBackendRev, mark), 0u);
  EXPECT_EQ(maps.count(Op::DeleteBackendRev, mark), 0u);
}

TEST(ServiceTables, BackendRevOfARemovedBackendStaysUntilTheServiceGoes) {
  MemoryMaps maps;
  ServiceTables tables(maps, kSeed);
  tables.install(kId, ranker(), {10000, 0});
  // 10.1.1.3 leaves the lists: its flows still need their replies translated.
  const ServiceConfig shrunk = make_service("ranker", "10.0.0.100", 80, Protocol::Tcp,
                                            {{"blue", {"10.1.1.2:8080"}}, {"canary", {"10.1.3.2:9090"}}}, "blue");
  tables.install(kId, shrunk, {10000, 0});
  ASSERT_TRUE(maps.rev("10.1.1.3:8080"));
  EXPECT_EQ(maps.rev("10.1.1.3:8080")->service_id, kId);

  // Another service may take it over (a reload moving it); removing the
  // first service then leaves the new owner's entry alone.
  const ServiceConfig other = make_service("other", "10.0.0.200", 443, Protocol::Tcp,
                                           {{"a", {"10.1.1.3:8080"}}}, "a");
  tables.install(kId + 1, other, {10000});
  ASSERT_TRUE(maps.rev("10.1.1.3:8080"));
  EXPECT_EQ(maps.rev("10.1.1.3:8080")->service_id, kId + 1);
  EXPECT_EQ(maps.rev("10.1.1.3:8080")->vport, htons(443));

  tables.remove(kId);
  EXPECT_FALSE(maps.rev("10.1.1.2:8080"));
  EXPECT_FALSE(maps.rev("10.1.3.2:9090"));
  ASSERT_TRUE(maps.rev("10.1.1.3:8080"));
  EXPECT_EQ(maps.rev("10.1.1.3:8080")->service_id, kId + 1);
  tables.remove(kId + 1);
  EXPECT_TRUE(maps.backend_rev.empty());
}

TEST(ServiceTables, BackendRevDropsTheLongestRemovedBackendsWhenFull) {
  MemoryMaps maps;
  ServiceTables tables(maps, kSeed);
  // Fill the map with listed backends: 64 services x 8 variants x 64
  // backends, except one service with room for 2 more.
  auto service_with = [](uint32_t id, unsigned per_variant, unsigned first_port) {
    std::vector<std::pair<std::string, std::vector<std::string>>> variants;
    unsigned port = first_port;
    for (unsigned v = 0; v < VEER_MAX_VARIANTS; ++v) {
      variants.push_back({"v" + std::to_string(v), {}});
      for (unsigned b = 0; b < per_variant; ++b)
        variants.back().second.push_back("10.9." + std::to_string(id) + ".1:" + std::to_string(port++));
    }
    return make_service("s" + std::to_string(id), "10.0.1." + std::to_string(id), 80, Protocol::Tcp, variants,
                        "v0");
  };
  auto weights = [] {
    std::vector<uint32_t> w(VEER_MAX_VARIANTS, 0);
    w[0] = VEER_WEIGHT_TOTAL;
    return w;
  };
  for (uint32_t id = 1; id < VEER_MAX_SERVICES; ++id) tables.install(id, service_with(id, VEER_MAX_BACKENDS, 1000), weights());
  ServiceConfig last = service_with(0, VEER_MAX_BACKENDS, 1000);
  last.variants[0].backends.resize(VEER_MAX_BACKENDS - 2);
  tables.install(0, last, weights());
  ASSERT_EQ(maps.backend_rev.size(), VEER_BACKEND_REV_MAX - 2u);

  // Two reloads each swap one backend for a new one: the removed ones are
  // kept while there is room...
  ServiceConfig step1 = last;
  step1.variants[0].backends[0] = *Endpoint::parse("10.9.0.2:1");
  tables.install(0, step1, weights());
  ServiceConfig step2 = step1;
  step2.variants[0].backends[1] = *Endpoint::parse("10.9.0.2:2");
  tables.install(0, step2, weights());
  EXPECT_EQ(maps.backend_rev.size(), VEER_BACKEND_REV_MAX);
  EXPECT_TRUE(maps.rev("10.9.0.1:1000"));
  EXPECT_TRUE(maps.rev("10.9.0.1:1001"));
  // ...and once the map is full, a new backend pushes out the one removed first.
  ServiceConfig step3 = step2;
  step3.variants[0].backends[2] = *Endpoint::parse("10.9.0.2:3");
  tables.install(0, step3, weights());
  EXPECT_EQ(maps.backend_rev.size(), VEER_BACKEND_REV_MAX);
  EXPECT_FALSE(maps.rev("10.9.0.1:1000")) << "removed first, dropped first";
  EXPECT_TRUE(maps.rev("10.9.0.1:1001"));
  EXPECT_TRUE(maps.rev("10.9.0.2:3"));
}

TEST(ServiceTables, BadInputWritesNothing) {
  MemoryMaps maps;
  ServiceTables tables(maps, kSeed);
  const ServiceConfig svc = ranker();
  EXPECT_THROW(tables.install(kId, svc, {9000, 500}), std::invalid_argument);
  EXPECT_THROW(tables.install(kId, svc, {10000}), std::invalid_argument);
  EXPECT_THROW(tables.install(VEER_MAX_SERVICES, svc, {10000, 0}), std::invalid_argument);
  ServiceConfig no_stable = svc;
  no_stable.stable = "green";
  EXPECT_THROW(tables.install(kId, no_stable, {10000, 0}), std::invalid_argument);
  EXPECT_TRUE(maps.log.empty());

  tables.install(kId, svc, {10000, 0});
  const size_t mark = maps.log.size();
  EXPECT_THROW(tables.set_weights(kId, {5000, 4000}), std::invalid_argument);
  EXPECT_THROW(tables.set_weights(kId, {5000, 4000, 1000}), std::invalid_argument);
  // Another service under the same id with bad weights: the old one stays.
  const ServiceConfig other = make_service("other", "10.0.0.7", 81, Protocol::Tcp, {{"a", {"10.2.2.2:80"}}}, "a");
  EXPECT_THROW(tables.install(kId, other, {9999}), std::invalid_argument);
  EXPECT_EQ(maps.log.size(), mark);
  EXPECT_TRUE(maps.service(svc));
  EXPECT_EQ(tables.applied_weights(kId), (std::vector<uint32_t>{10000, 0}));
}

TEST(ServiceTables, APublishedTableGoesInWithItsDrainsInOneFlipAndABadOneWritesNothing) {
  MemoryMaps maps;
  ServiceTables tables(maps, kSeed);
  const ServiceConfig svc = ranker();
  tables.install(kId, svc, {10000, 0});
  const uint8_t active_before = maps.service(svc)->active_table;
  // What another node built for weights 70/30 with blue's backend 1 draining.
  VariantBackends backends(2);
  for (size_t v = 0; v < 2; ++v)
    for (const auto& ep : svc.variants[v].backends) backends[v].push_back(BackendSpec{ep, false});
  backends[0][1].draining = true;
  const SlotTable published = build_table({7000, 3000}, 0, backends, kSeed);
  tables.set_table(kId, published, {{1}, {}});
  EXPECT_EQ(tables.active_table(kId), published);
  EXPECT_EQ(maps.service(svc)->active_table, 1 - active_before);  // one flip
  EXPECT_EQ(tables.applied_weights(kId), (std::vector<uint32_t>{7000, 3000}));
  const uint32_t index = (kId * VEER_MAX_VARIANTS + 0) * VEER_MAX_BACKENDS + 1;
  EXPECT_EQ(maps.backends.at(index).flags, VEER_BACKEND_F_PRESENT | VEER_BACKEND_F_DRAINING);

  const size_t mark = maps.log.size();
  SlotTable bad = published;
  bad.slots[17] = veer_slot{2, 0};  // a third variant this service lacks
  EXPECT_THROW(tables.set_table(kId, bad, {{}, {}}), std::invalid_argument);
  bad = published;
  bad.slots[17] = veer_slot{0, 9};  // a backend blue lacks
  EXPECT_THROW(tables.set_table(kId, bad, {{}, {}}), std::invalid_argument);
  EXPECT_THROW(tables.set_table(kId, published, {{5}, {}}), std::invalid_argument);
  EXPECT_THROW(tables.set_table(kId, published, {{}}), std::invalid_argument);
  EXPECT_EQ(maps.log.size(), mark);
  EXPECT_EQ(tables.active_table(kId), published);
}

TEST(ServiceTables, ServiceKeyIsNetworkOrder) {
  const ServiceConfig svc = make_service("v6", "fd00::100", 5353, Protocol::Udp, {{"a", {"[fd00::1]:1"}}}, "a");
  const veer_service_key k = service_key(svc);
  EXPECT_EQ(k.port, htons(5353));
  EXPECT_EQ(k.proto, VEER_PROTO_UDP);
  EXPECT_EQ(k.family, VEER_AF_INET6);
  EXPECT_EQ(reinterpret_cast<const uint8_t*>(k.vip.addr)[0], 0xfd);
  EXPECT_EQ(reinterpret_cast<const uint8_t*>(k.vip.addr)[15], 0x00);
  EXPECT_EQ(reinterpret_cast<const uint8_t*>(k.vip.addr)[14], 0x01);
}

TEST(ServiceTables, UdpIdleTimeoutIsInEveryServiceEntryAndAReloadRewritesItWithoutAFlip) {
  EXPECT_EQ(udp_idle_ticks(Millis{30000}), 1789u);  // 30 s / 16.78 ms, rounded up
  EXPECT_EQ(udp_idle_ticks(Millis{1}), 1u);
  EXPECT_EQ(udp_idle_ticks(Millis{16}), 1u);
  EXPECT_EQ(udp_idle_ticks(Millis{17}), 2u);
  EXPECT_THROW(udp_idle_ticks(Millis{0}), std::invalid_argument);
  MemoryMaps maps;
  ServiceTables tables(maps, 0x5eed, Millis{2000});
  const ServiceConfig svc = ranker();
  tables.install(3, svc, {10000, 0});
  ASSERT_TRUE(maps.service(svc).has_value());
  EXPECT_EQ(maps.service(svc)->udp_idle_ticks, udp_idle_ticks(Millis{2000}));
  const veer_service before = *maps.service(svc);
  const size_t writes = maps.log.size();
  tables.set_udp_idle_timeout(Millis{60000});
  const veer_service after = *maps.service(svc);
  EXPECT_EQ(after.udp_idle_ticks, udp_idle_ticks(Millis{60000}));
  EXPECT_EQ(after.active_table, before.active_table) << "no flip";
  EXPECT_EQ(after.generation, before.generation);
  EXPECT_EQ(maps.count(Op::PutService, writes), 1u);
  EXPECT_EQ(maps.count(Op::PutTable, writes), 0u);
  tables.set_udp_idle_timeout(Millis{60000});
  EXPECT_EQ(maps.log.size(), writes + 1) << "unchanged: nothing written";
  // A flip keeps it.
  tables.set_weights(3, {5000, 5000});
  EXPECT_EQ(maps.service(svc)->udp_idle_ticks, udp_idle_ticks(Millis{60000}));
}

TEST(ServiceTables, TcpPortHintNamesTheOnlyTcpServiceOfAPortKeyFirstClearedBeforeRemoval) {
  MemoryMaps maps;
  ServiceTables tables(maps, 0x5eed);
  const ServiceConfig web = ranker();  // 10.0.0.100:80/tcp
  tables.install(3, web, {10000, 0});
  EXPECT_EQ(maps.tcp_hints[80], 4) << "1 + id";
  ASSERT_TRUE(maps.service_keys.count(3));
  const veer_service_key key = service_key(web);
  EXPECT_EQ(std::memcmp(&maps.service_keys[3], &key, sizeof key), 0);
  EXPECT_LT(maps.first(Op::PutServiceKey), maps.first(Op::PutTcpHint)) << "the key before the hint";
  EXPECT_EQ(maps.tcp_hints[8080], 0) << "backend ports get no hint";

  // A second TCP service on port 80 (another VIP): the port has no single service.
  ServiceConfig other = make_service("other", "10.0.0.101", 80, Protocol::Tcp, {{"a", {"10.2.1.2:8080"}}}, "a");
  tables.install(5, other, {10000});
  EXPECT_EQ(maps.tcp_hints[80], 0);
  // A UDP service on 80 does not count for TCP.
  ServiceConfig dns = make_service("dns", "10.0.0.102", 80, Protocol::Udp, {{"a", {"10.2.2.2:53"}}}, "a");
  tables.install(6, dns, {10000});
  EXPECT_EQ(maps.tcp_hints[80], 0);
  tables.remove(5);
  EXPECT_EQ(maps.tcp_hints[80], 4) << "one TCP service on 80 again";
  EXPECT_EQ(maps.service_keys[5].family, 0) << "the removed id's key is cleared";

  // Removal: the hint goes before the service does.
  const size_t from = maps.log.size();
  tables.remove(3);
  EXPECT_EQ(maps.tcp_hints[80], 0);
  EXPECT_LT(maps.first(Op::PutTcpHint, from), maps.first(Op::DeleteService, from));
  EXPECT_LT(maps.first(Op::DeleteService, from), maps.first(Op::PutServiceKey, from));
  EXPECT_EQ(maps.service_keys[3].family, 0);
}

}  // namespace
}  // namespace veer
