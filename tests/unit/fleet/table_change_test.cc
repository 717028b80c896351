// The fleet's key layout and how a change becomes the next table version: a
// writer on any node derives version N+1 from version N (not from its own
// table), moves only the slots the change needs, and every node then builds
// the same table from the record.
#include <gtest/gtest.h>

#include "config/config.h"
#include "fleet/definition_digest.h"
#include "fleet/fleet_keys.h"
#include "fleet/table_change.h"
#include "fleet/version_fence.h"

namespace veer::fleet {
namespace {

TEST(FleetKeys, KeysAreBuiltUnderThePrefixAndReadBack) {
  const FleetKeys k("/prod/veer");
  EXPECT_EQ(k.leader(), "/prod/veer/leader");
  EXPECT_EQ(k.table("ranker"), "/prod/veer/services/ranker/table");
  EXPECT_EQ(k.node("lb-1"), "/prod/veer/nodes/lb-1");
  EXPECT_EQ(k.table_service("/prod/veer/services/ranker/table"), "ranker");
  EXPECT_EQ(k.node_of("/prod/veer/nodes/lb-1"), "lb-1");
  for (const char* other : {"/prod/veer/services/ranker/rollout", "/prod/veer/services//table",
                            "/prod/veer/services/a/b/table", "/prod/veeer/services/ranker/table",
                            "/prod/veer/services/table", ""})
    EXPECT_FALSE(k.table_service(other)) << other;
  for (const char* other : {"/prod/veer/nodes/", "/prod/veer/nodes/a/b", "/prod/veer/leader"})
    EXPECT_FALSE(k.node_of(other)) << other;
  EXPECT_EQ(k.rollout("ranker"), "/prod/veer/services/ranker/rollout");
  EXPECT_EQ(k.rollout_service("/prod/veer/services/ranker/rollout"), "ranker");
  EXPECT_FALSE(k.rollout_service("/prod/veer/services/ranker/table"));
  EXPECT_EQ(k.service_prefix("ranker"), "/prod/veer/services/ranker/");
  EXPECT_THROW(FleetKeys("veer"), std::invalid_argument);
  EXPECT_THROW(FleetKeys("/veer/"), std::invalid_argument);
}

const std::string kConfig = R"(node:
  interfaces: [eth0]
services:
  - name: ranker
    vip: 10.0.0.100
    port: 80
    stable: blue
    variants:
      blue:   { backends: ["10.1.1.2:8080", "10.1.1.3:8080"] }
      green:  { backends: ["10.1.2.2:8080"] }
      canary: { backends: ["10.1.3.2:8080", "10.1.3.3:8080"] }
)";
constexpr uint32_t kSeed = 0x5eed;

struct Fixture {
  Config config = parse_config(kConfig, "fleet.yaml");
  const ServiceConfig& svc = config.services.at(0);
  std::string definition = definition_digest(svc, kSeed);
  BaseTable base{build_table({10000, 0, 0}, 0, variant_backends(svc), kSeed), 0, {{}, {}, {}}};
  TableVersion next(const std::optional<TableVersion>& current, TableChange change) const {
    return next_table_version(current, base, svc, definition, kSeed, change, "node-1", 1765000000000);
  }
};

TEST(FleetTableChange, TheFirstVersionStartsFromTheWritersTableAndEachNextFromTheCurrentVersion) {
  Fixture f;
  const TableVersion v1 = f.next(std::nullopt, {std::vector<uint32_t>{9000, 0, 1000}, std::nullopt, {}, "weights"});
  EXPECT_EQ(v1.version, 1u);
  EXPECT_EQ(v1.weights_bp, (std::vector<uint32_t>{9000, 0, 1000}));
  EXPECT_EQ(v1.cause, "weights");
  EXPECT_EQ(v1.writer, "node-1");
  // The slots that moved are exactly the canary's 1,000, taken from blue.
  const SlotTable t1 = build_table_from_version(v1, variant_backends(f.svc), kSeed);
  size_t moved = 0;
  for (size_t s = 0; s < VEER_SLOTS; ++s) moved += t1.slots[s].variant != f.base.table.slots[s].variant;
  EXPECT_EQ(moved, 1000u);

  const TableVersion v2 = f.next(v1, {std::vector<uint32_t>{8000, 0, 2000}, std::nullopt, {}, "rollout step 2/4"});
  EXPECT_EQ(v2.version, 2u);
  const SlotTable t2 = build_table_from_version(v2, variant_backends(f.svc), kSeed);
  for (size_t s = 0; s < VEER_SLOTS; ++s)
    if (t1.slots[s].variant == 2) EXPECT_EQ(t2.slots[s].variant, 2) << "a canary slot moved back at slot " << s;
  // Any node derives the same successor from the same record: the writer's own table does not matter.
  Fixture other;
  other.base.table = build_table({0, 10000, 0}, 1, variant_backends(other.svc), kSeed);
  EXPECT_EQ(other.next(v1, {std::vector<uint32_t>{8000, 0, 2000}, std::nullopt, {}, "rollout step 2/4"}).owners,
            v2.owners);
}

TEST(FleetTableChange, SwitchAndDrainChangeTheRecordAndEveryNodeBuildsTheSameBackends) {
  Fixture f;
  const TableVersion v1 = f.next(std::nullopt, {std::vector<uint32_t>{0, 10000, 0}, 1u, {}, "switch"});
  EXPECT_EQ(v1.stable, 1u);
  const TableVersion v2 = f.next(v1, {std::nullopt, std::nullopt, {{0, 1, true}}, "drain"});
  EXPECT_EQ(v2.weights_bp, v1.weights_bp);  // a drain keeps the weights
  EXPECT_EQ(v2.draining, (std::vector<std::vector<uint8_t>>{{1}, {}, {}}));
  const TableVersion v3 = f.next(v2, {std::vector<uint32_t>{10000, 0, 0}, 0u, {}, "switch"});
  EXPECT_EQ(v3.draining, v2.draining);  // drains carry over
  const SlotTable t3 = build_table_from_version(v3, variant_backends(f.svc), kSeed);
  for (const auto& slot : t3.slots) EXPECT_EQ(slot.backend, 0) << "a slot names the drained backend";
  const TableVersion v4 = f.next(v3, {std::nullopt, std::nullopt, {{0, 1, false}}, "undrain"});
  EXPECT_EQ(v4.draining, (std::vector<std::vector<uint8_t>>{{}, {}, {}}));
  // A node applying the records in order ends where the writer is.
  VersionFence fence("ranker", f.definition);
  for (const auto* v : {&v1, &v2, &v3, &v4}) {
    ASSERT_TRUE(fence.consider(*v).apply());
    fence.applied(*v);
  }
  EXPECT_EQ(fence.applied_version(), 4u);
}

TEST(FleetTableChange, ChangesThatDoNotFitTheServiceAreRefused) {
  Fixture f;
  EXPECT_THROW(f.next(std::nullopt, {std::vector<uint32_t>{9000, 0}, std::nullopt, {}, "weights"}),
               std::invalid_argument);
  EXPECT_THROW(f.next(std::nullopt, {std::vector<uint32_t>{9000, 0, 0}, std::nullopt, {}, "weights"}),
               std::invalid_argument);
  EXPECT_THROW(f.next(std::nullopt, {std::nullopt, 3u, {}, "switch"}), std::invalid_argument);
  EXPECT_THROW(f.next(std::nullopt, {std::nullopt, std::nullopt, {{1, 1, true}}, "drain"}), std::invalid_argument);
  TableVersion other = f.next(std::nullopt, {std::nullopt, std::nullopt, {}, "weights"});
  other.service = "embed";
  EXPECT_THROW(f.next(other, {std::nullopt, std::nullopt, {}, "weights"}), std::invalid_argument);
}

TEST(FleetTableChange, AdoptingANewDefinitionNumbersOnAndBuildsFromTheWritersTable) {
  Fixture f;
  const TableVersion v1 = f.next(std::nullopt, {std::vector<uint32_t>{9000, 0, 1000}, std::nullopt, {}, "weights"});
  const TableVersion v2 = f.next(v1, {std::vector<uint32_t>{8000, 0, 2000}, std::nullopt, {}, "weights"});
  // Every node's config changed: canary lost a backend. Version 2 no longer fits (its table names canary's
  // second backend), so a normal change on the new definition cannot be built from it.
  std::string text = kConfig;
  text.replace(text.find(", \"10.1.3.3:8080\""), std::string(", \"10.1.3.3:8080\"").size(), "");
  const Config changed = parse_config(text, "fleet.yaml");
  const ServiceConfig& svc = changed.services.at(0);
  const std::string definition = definition_digest(svc, kSeed);
  ASSERT_NE(definition, f.definition);
  const BaseTable base{build_table({8000, 0, 2000}, 0, variant_backends(svc), kSeed), 0, {{}, {}, {}}};
  const TableChange change{std::vector<uint32_t>{7000, 0, 3000}, std::nullopt, {}, "weights, adopting"};
  const TableVersion v3 = adopted_table_version(v2, base, svc, definition, kSeed, change, "node-2", 1765000000001);
  EXPECT_EQ(v3.version, 3u);  // the fleet's numbering goes on: no node applies it as old
  EXPECT_EQ(v3.definition, definition);
  EXPECT_EQ(v3.weights_bp, (std::vector<uint32_t>{7000, 0, 3000}));
  EXPECT_EQ(v3.writer, "node-2");
  // Every node of the new definition builds it; a node of the old one is told it differs.
  EXPECT_NO_THROW(build_table_from_version(v3, variant_backends(svc), kSeed));
  VersionFence old_node("ranker", f.definition);
  EXPECT_EQ(old_node.consider(v3).verdict, FenceVerdict::DefinitionMismatch);
  const VersionFence new_node("ranker", definition, v2.version);  // it applied 2 before its restart (state.json)
  EXPECT_FALSE(new_node.consider(v2).apply());
  EXPECT_TRUE(new_node.consider(v3).apply());
  // From the base table: only the 1,000 slots the change needs moved (blue to canary).
  const SlotTable t3 = build_table_from_version(v3, variant_backends(svc), kSeed);
  size_t moved = 0;
  for (size_t i = 0; i < VEER_SLOTS; ++i) moved += t3.slots[i].variant != base.table.slots[i].variant;
  EXPECT_EQ(moved, 1000u);
  // Adopting what the fleet already has is a normal change: from the current version's table.
  const TableVersion again = adopted_table_version(v3, base, svc, definition, kSeed,
                                                   {std::vector<uint32_t>{7000, 0, 3000}, std::nullopt, {}, "w"},
                                                   "node-1", 1765000000002);
  EXPECT_EQ(again.version, 4u);
  const SlotTable t4 = build_table_from_version(again, variant_backends(svc), kSeed);
  for (size_t i = 0; i < VEER_SLOTS; ++i) EXPECT_EQ(t4.slots[i].variant, t3.slots[i].variant) << i;
  // Another service's version is refused.
  TableVersion other = v2;
  other.service = "scorer";
  EXPECT_THROW(adopted_table_version(other, base, svc, definition, kSeed, change, "node-2", 0), std::invalid_argument);
}

}  // namespace
}  // namespace veer::fleet
