// The fleet's pure decisions (issue 11): the encodings of its etcd records,
// table versions (a node builds exactly the leader's table, a mangled record
// is refused), the version fence (never at or below what is applied, whatever
// order or repetition the watch delivers), service definition digests, node
// reports, and the leader's fleet-wide window (sums, epochs, stale and
// missing nodes, Inconclusive below min_nodes).
#include <gtest/gtest.h>

#include <algorithm>
#include <random>

#include <nlohmann/json.hpp>

#include "config/config.h"
#include "fleet/definition_digest.h"
#include "fleet/encoding.h"
#include "fleet/fleet_window.h"
#include "fleet/node_report.h"
#include "fleet/table_version.h"
#include "fleet/version_fence.h"

namespace veer::fleet {
namespace {

using nlohmann::json;

// READ(J) throws ERROR whose message contains EXPECT.
template <typename Error, typename Read>
void expect_refused(Read read, const json& j, const std::string& expect) {
  try {
    read(j);
    ADD_FAILURE() << "accepted: " << j.dump().substr(0, 300);
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(expect), std::string::npos) << e.what() << " (wanted " << expect << ")";
  }
}

// ---------------------------------------------------------------------------
// encodings

TEST(FleetEncoding, Base64MatchesRfc4648Vectors) {
  const std::pair<const char*, const char*> vectors[] = {
      {"", ""}, {"f", "Zg=="}, {"fo", "Zm8="}, {"foo", "Zm9v"}, {"foob", "Zm9vYg=="}, {"fooba", "Zm9vYmE="},
      {"foobar", "Zm9vYmFy"}};
  for (const auto& [plain, coded] : vectors) {
    EXPECT_EQ(base64_encode(plain), coded) << plain;
    EXPECT_EQ(base64_decode(coded), plain) << coded;
  }
}

TEST(FleetEncoding, Base64RoundTripsEveryByteValue) {
  std::mt19937 rng(7);
  for (size_t n = 0; n < 200; ++n) {
    std::string bytes(n, '\0');
    for (auto& c : bytes) c = static_cast<char>(rng() & 0xff);
    EXPECT_EQ(base64_decode(base64_encode(bytes)), bytes) << n;
  }
}

TEST(FleetEncoding, Base64RefusesMalformedText) {
  for (const char* bad : {"Zg=", "Zg", "Z===", "Zg==Zg==", "Zm9*", "Zm 9", "=Zg=", "Zg=a"})
    EXPECT_THROW(base64_decode(bad), std::invalid_argument) << bad;
}

TEST(FleetEncoding, Fnv1aMatchesItsPublishedVectorsAndSeparatesFields) {
  EXPECT_EQ(Fnv1a64().value(), 0xcbf29ce484222325ULL);
  EXPECT_EQ(Fnv1a64().bytes("a").value(), 0xaf63dc4c8601ec8cULL);
  EXPECT_EQ(Fnv1a64().bytes("foobar").value(), 0x85944171f73967e8ULL);
  EXPECT_EQ(Fnv1a64().bytes("a").hex(), "af63dc4c8601ec8c");
  EXPECT_NE(Fnv1a64().str("ab").str("c").value(), Fnv1a64().str("a").str("bc").value());
}

// ---------------------------------------------------------------------------
// table versions

VariantBackends backends_of(size_t n_variants, size_t per_variant) {
  VariantBackends out(n_variants);
  for (size_t v = 0; v < n_variants; ++v)
    for (size_t b = 0; b < per_variant; ++b)
      out[v].push_back({*Endpoint::parse("10." + std::to_string(v) + "." + std::to_string(b) + ".2:8080"), false});
  return out;
}

constexpr uint32_t kSeed = 0x5eed;
const std::string kDefinition = "0123456789abcdef";

// A three-variant table reached through a path of weights (as a rollout does).
SlotTable path_table(const VariantBackends& backends) {
  SlotTable t = build_table({10000, 0, 0}, 0, backends, kSeed);
  t = rebalance(t, {8000, 2000, 0}, 0, backends, kSeed);
  t = rebalance(t, {5000, 1000, 4000}, 0, backends, kSeed);
  return rebalance(t, {6000, 2500, 1500}, 0, backends, kSeed);
}

TableVersion sample_version(const VariantBackends& backends) {
  return make_table_version(7, "ranker", kDefinition, path_table(backends), 0, {6000, 2500, 1500},
                            {{}, {1}, {}}, "rollout step 4/7", "node-1", 1765000000123);
}

TEST(FleetTableVersion, ANodeBuildsExactlyTheTableThatWasPublished) {
  const auto backends = backends_of(3, 3);
  const TableVersion v = sample_version(backends);
  const std::string text = table_version_to_string(v);
  EXPECT_LT(text.size(), 7500u) << "5,000 packed bytes in base64 plus the fields";
  const TableVersion read = table_version_from_string(text);
  EXPECT_EQ(read, v);

  // The leader's table with the drain applied is what the node builds.
  VariantBackends drained = backends;
  drained[1][1].draining = true;
  SlotTable expected = path_table(backends);
  assign_backends(expected, drained, kSeed);
  const SlotTable built = build_table_from_version(read, backends, kSeed);
  EXPECT_EQ(built, expected);
  EXPECT_EQ(count_weights(built, 3), (std::vector<uint32_t>{6000, 2500, 1500}));
  for (const auto& s : built.slots) EXPECT_FALSE(s.variant == 1 && s.backend == 1) << "a draining backend got a slot";
}

TEST(FleetTableVersion, ThreeVariantTablesDependOnThePathSoTheTableItselfIsPublished) {
  const auto backends = backends_of(3, 2);
  const SlotTable direct = build_table({6000, 2500, 1500}, 0, backends, kSeed);
  ASSERT_NE(path_table(backends), direct) << "if these were equal, weights alone would do";
  const TableVersion v = sample_version(backends);
  SlotTable leader = path_table(backends);
  VariantBackends drained = backends;
  drained[1][1].draining = true;
  assign_backends(leader, drained, kSeed);
  EXPECT_EQ(build_table_from_version(v, backends, kSeed), leader);
}

TEST(FleetTableVersion, EveryAlteredFieldIsRefusedByTheChecksum) {
  const auto backends = backends_of(3, 2);
  const json good = to_json(sample_version(backends));
  const std::vector<std::pair<const char*, json>> changes = {
      {"version", 8},       {"service", "ranker2"},     {"definition", "0123456789abcdee"},
      {"stable", 1},        {"draining", json::array({json::array(), json::array(), json::array()})},
      {"cause", "weights"}, {"writer", "node-2"},       {"at_ms", 1765000000124}};
  for (const auto& [name, value] : changes) {
    json j = good;
    j[name] = value;
    try {
      table_version_from_json(j);
      ADD_FAILURE() << name << " changed, yet the record was accepted";
    } catch (const TableVersionError& e) {
      EXPECT_NE(std::string(e.what()).find("checksum"), std::string::npos) << name << ": " << e.what();
    }
  }
  // The owners: two slots of different variants swapped keep the weights but not the checksum.
  TableVersion swapped = sample_version(backends);
  const auto a = std::find(swapped.owners.begin(), swapped.owners.end(), 1);
  const auto b = std::find(swapped.owners.begin(), swapped.owners.end(), 2);
  std::iter_swap(a, b);
  json j = to_json(swapped);
  j["checksum"] = good["checksum"];
  EXPECT_THROW(table_version_from_json(j), TableVersionError);
}

TEST(FleetTableVersion, MalformedRecordsAreRefusedWithTheReason) {
  const auto backends = backends_of(3, 2);
  const json good = to_json(sample_version(backends));
  auto refused = [](const json& j, const std::string& expect) {
    expect_refused<TableVersionError>([](const json& x) { table_version_from_json(x); }, j, expect);
  };
  json j = good;
  j.erase("owners");
  refused(j, "no \"owners\"");
  j = good;
  j["version"] = -1;
  refused(j, "non-negative integer");
  j = good;
  j["version"] = 1.5;
  refused(j, "non-negative integer");
  j = good;
  j["version"] = 0;
  refused(j, "at least 1");
  j = good;
  j["format"] = 2;
  refused(j, "format 2");
  j = good;
  j["weights_bp"] = {6000, 2500, 1400};
  refused(j, "sum to 9900");
  j = good;
  j["weights_bp"] = {6000, 2000, 2000};
  refused(j, "owns");
  j = good;
  j["owners"] = good["owners"].get<std::string>().substr(0, 400);
  refused(j, "slots");
  j = good;
  j["owners"] = "not base64!";
  refused(j, "owners");
  j = good;
  j["draining"] = json::array({json::array(), json::array({3, 1}), json::array()});
  refused(j, "ascending");
  j = good;
  j["stable"] = 3;
  refused(j, "stable");
  refused(json::array(), "not a JSON object");
  EXPECT_THROW(table_version_from_string("{\"format\": 1,"), TableVersionError);
  // Owners naming a fourth variant of three.
  TableVersion bad_owner = sample_version(backends);
  bad_owner.owners[17] = 3;
  j = to_json(bad_owner);
  refused(j, "owned by variant 3");
}

TEST(FleetTableVersion, ATableThatDoesNotHoldItsWeightsOrBackendsThatDoNotFitAreRefused) {
  const auto backends = backends_of(3, 2);
  EXPECT_THROW(make_table_version(1, "ranker", kDefinition, path_table(backends), 0, {5000, 2500, 2500},
                                  {{}, {}, {}}, "weights", "node-1", 0),
               TableVersionError);
  const TableVersion v = sample_version(backends);
  EXPECT_THROW(build_table_from_version(v, backends_of(2, 2), kSeed), TableVersionError);
  VariantBackends one_backend = backends_of(3, 1);
  EXPECT_THROW(build_table_from_version(v, one_backend, kSeed), TableVersionError) << "drains backend 1 of 1";
}

// ---------------------------------------------------------------------------
// version fence

TableVersion version_n(uint64_t n, const VariantBackends& backends, const std::string& definition = kDefinition) {
  const std::vector<uint32_t> w = {static_cast<uint32_t>(10000 - n), static_cast<uint32_t>(n)};
  SlotTable t = build_table(w, 0, backends, kSeed);
  return make_table_version(n, "ranker", definition, t, 0, w, {{}, {}}, "weights", "node-1", 0);
}

TEST(FleetVersionFence, NeverAppliesAVersionAtOrBelowTheAppliedOne) {
  const auto backends = backends_of(2, 1);
  VersionFence fence("ranker", kDefinition);
  EXPECT_EQ(fence.consider(version_n(1, backends)).verdict, FenceVerdict::Apply);
  fence.applied(version_n(1, backends));
  EXPECT_EQ(fence.consider(version_n(1, backends)).verdict, FenceVerdict::AlreadyApplied);
  EXPECT_EQ(fence.consider(version_n(4, backends)).verdict, FenceVerdict::Apply) << "catching up skips versions";
  fence.applied(version_n(4, backends));
  const FenceDecision old = fence.consider(version_n(3, backends));
  EXPECT_EQ(old.verdict, FenceVerdict::Older);
  EXPECT_NE(old.reason.find("older than the applied 4"), std::string::npos) << old.reason;
  EXPECT_THROW(fence.applied(version_n(2, backends)), std::logic_error);
  EXPECT_EQ(fence.applied_version(), 4u);
}

TEST(FleetVersionFence, ARestartedNodeResumesFromItsPinnedVersion) {
  const auto backends = backends_of(2, 1);
  VersionFence fence("ranker", kDefinition, 12);  // state.json said 12
  EXPECT_EQ(fence.consider(version_n(12, backends)).verdict, FenceVerdict::AlreadyApplied);
  EXPECT_EQ(fence.consider(version_n(11, backends)).verdict, FenceVerdict::Older);
  EXPECT_EQ(fence.consider(version_n(13, backends)).verdict, FenceVerdict::Apply);
}

TEST(FleetVersionFence, ANodeRestartedOnANewConfigIsToldTheVersionItHoldsIsNotItsDefinition) {
  const auto backends = backends_of(2, 1);
  // It applied 12 under the old definition, then came back with another config: the fleet is at 12, of the
  // old definition, which this node's service no longer is (never "applied already": that would hide it).
  const VersionFence fence("ranker", "fedcba9876543210", 12);
  const FenceDecision held = fence.consider(version_n(12, backends));
  EXPECT_EQ(held.verdict, FenceVerdict::DefinitionMismatch);
  EXPECT_NE(held.reason.find("config changed"), std::string::npos) << held.reason;
  // Older versions stay ignored (a replay after the new definition was adopted names nothing new), and the
  // adopted version of its definition applies.
  EXPECT_EQ(fence.consider(version_n(11, backends)).verdict, FenceVerdict::Older);
  EXPECT_EQ(fence.consider(version_n(13, backends, "fedcba9876543210")).verdict, FenceVerdict::Apply);
}

TEST(FleetVersionFence, AnotherDefinitionOrServiceAppliesNothing) {
  const auto backends = backends_of(2, 1);
  VersionFence fence("ranker", kDefinition);
  const TableVersion foreign = version_n(5, backends, "fedcba9876543210");
  const FenceDecision d = fence.consider(foreign);
  EXPECT_EQ(d.verdict, FenceVerdict::DefinitionMismatch);
  EXPECT_NE(d.reason.find("fedcba9876543210"), std::string::npos) << d.reason;
  EXPECT_THROW(fence.applied(foreign), std::logic_error);
  TableVersion other = version_n(5, backends);
  other.service = "embed";
  EXPECT_EQ(fence.consider(other).verdict, FenceVerdict::OtherService);
  EXPECT_EQ(fence.applied_version(), 0u);
}

TEST(FleetVersionFence, ShuffledAndRepeatedDeliveryAppliesAnIncreasingSequenceEndingAtTheNewest) {
  const auto backends = backends_of(2, 1);
  std::vector<TableVersion> versions;
  for (uint64_t n = 1; n <= 40; ++n) versions.push_back(version_n(n, backends));
  std::mt19937 rng(11);
  for (int run = 0; run < 50; ++run) {
    // In order, with duplicates and old events replayed in between (etcd 3.4 watch bugs).
    std::vector<const TableVersion*> delivered;
    for (const auto& v : versions) {
      delivered.push_back(&v);
      if (rng() % 3 == 0) delivered.push_back(&v);
      if (rng() % 4 == 0) delivered.push_back(&versions[rng() % v.version]);
    }
    std::shuffle(delivered.begin() + static_cast<long>(delivered.size() / 2), delivered.end(), rng);
    VersionFence fence("ranker", kDefinition);
    uint64_t last = 0;
    for (const TableVersion* v : delivered) {
      if (!fence.consider(*v).apply()) continue;
      ASSERT_GT(v->version, last);
      fence.applied(*v);
      last = v->version;
    }
    EXPECT_EQ(last, 40u);
  }
}

// ---------------------------------------------------------------------------
// definition digests

const std::string kService = R"(node:
  interfaces: [eth0]
  hash_seed: 0x5eed
services:
  - name: ranker
    vip: 10.0.0.100
    port: 80
    stable: blue
    variants:
      blue:   { backends: ["10.1.1.2:8080"], metrics_url: "http://10.1.1.2:8080/metrics" }
      canary: { backends: ["10.1.3.2:8080", "10.1.3.3:8080"] }
    weights: { blue: 95, canary: 5 }
    rollout:
      strategy: canary
      canary: canary
      interval: 5s
      steps: [ {set_weight: 5}, {pause: 10m}, {set_weight: 100} ]
      gates:
        - { metric: error_rate, source: kernel, max: 0.001, min_samples: 50 }
)";

std::string digest_of(const std::string& yaml) {
  const Config c = parse_config(yaml, "fleet.yaml");
  return definition_digest(c.services.at(0), c.node.hash_seed);
}

std::string replaced(const std::string& from, const std::string& to) {
  std::string s = kService;
  const auto pos = s.find(from);
  EXPECT_NE(pos, std::string::npos) << from;
  return s.replace(pos, from.size(), to);
}

TEST(FleetDefinitionDigest, TheSameDefinitionGivesTheSameDigestAndWhatRoutesOrRollsOutChangesIt) {
  const std::string base = digest_of(kService);
  EXPECT_EQ(base.size(), 16u);
  EXPECT_EQ(digest_of(kService), base);
  for (const auto& [from, to] : std::vector<std::pair<std::string, std::string>>{
           {"10.1.3.3:8080", "10.1.3.4:8080"},
           {"port: 80", "port: 81"},
           {"hash_seed: 0x5eed", "hash_seed: 0x5eee"},
           {"max: 0.001", "max: 0.0011"},
           {"{pause: 10m}", "{pause: 9m}"},
           {"interval: 5s", "interval: 4s"},
           {"[\"10.1.3.2:8080\", \"10.1.3.3:8080\"]", "[\"10.1.3.3:8080\", \"10.1.3.2:8080\"]"}})
    EXPECT_NE(digest_of(replaced(from, to)), base) << from << " -> " << to;
}

TEST(FleetDefinitionDigest, WeightsStableAndNodeLocalSettingsLeaveItAlone) {
  const std::string base = digest_of(kService);
  for (const auto& [from, to] : std::vector<std::pair<std::string, std::string>>{
           {"weights: { blue: 95, canary: 5 }", "weights: { blue: 50, canary: 50 }"},
           {"interfaces: [eth0]", "interfaces: [eth1, eth2]"},
           {", metrics_url: \"http://10.1.1.2:8080/metrics\"", ""}})
    EXPECT_EQ(digest_of(replaced(from, to)), base) << from << " -> " << to;
}

// ---------------------------------------------------------------------------
// node reports

KernelSample sample(uint64_t responses, uint64_t errors, uint64_t latency_ns, uint64_t flows = 0) {
  KernelSample s;
  s.counters.responses = responses;
  s.counters.http_2xx = responses - errors;
  s.counters.http_5xx = errors;
  s.counters.new_flows = flows ? flows : responses;
  s.latency[latency_bucket_of(latency_ns)] = responses;
  return s;
}

NodeReport report(const std::string& node, const std::string& epoch, uint64_t seq, int64_t at_ms,
                  KernelSample blue, KernelSample canary, const std::string& definition = kDefinition) {
  NodeReport r{node, epoch, seq, at_ms, {}};
  r.services["ranker"] = ServiceReport{definition, 3, {{"blue", blue}, {"canary", canary}}};
  return r;
}

TEST(FleetNodeReport, CountsSinceTheEpochAreTheGrowthAndACounterBelowItsBaseCountsFromZero) {
  const KernelSample base = sample(100, 5, 40'000'000, 30);
  KernelSample now = sample(250, 8, 40'000'000, 70);
  now.handshake_timeouts = 4;
  const KernelSample since = kernel_since(base, now);
  EXPECT_EQ(since.counters.responses, 150u);
  EXPECT_EQ(since.counters.http_5xx, 3u);
  EXPECT_EQ(since.counters.new_flows, 40u);
  EXPECT_EQ(since.handshake_timeouts, 4u);
  uint64_t buckets = 0;
  for (uint64_t n : since.latency) buckets += n;
  EXPECT_EQ(buckets, 150u);
  // The maps were re-created under a running veerd: what they hold now is all new.
  const KernelSample fresh = sample(20, 1, 40'000'000, 2);
  EXPECT_EQ(kernel_since(base, fresh).counters.responses, 20u);
  EXPECT_EQ(kernel_since(base, fresh).counters.new_flows, 2u);
}

TEST(FleetNodeReport, RoundTripsAndRefusesWhatIsNotAReport) {
  NodeReport r = report("node-1", "e1", 4, 1765000000000, sample(100, 2, 2'000'000), sample(10, 1, 300'000'000));
  r.services["ranker"].variants["blue"].handshake_timeouts = 3;
  const NodeReport read = node_report_from_string(node_report_to_string(r));
  EXPECT_EQ(read, r);

  const json good = to_json(r);
  auto refused = [](const json& j, const std::string& expect) {
    expect_refused<NodeReportError>([](const json& x) { node_report_from_json(x); }, j, expect);
  };
  json j = good;
  j["services"]["ranker"]["variants"]["blue"]["responses"] = -5;
  refused(j, "non-negative integer");
  j = good;
  j["services"]["ranker"]["variants"]["blue"]["responses"] = 1.5;
  refused(j, "non-negative integer");
  j = good;
  j["services"]["ranker"]["variants"]["blue"]["latency"] = {{VEER_LAT_BUCKETS, 1}};
  refused(j, "out of range");
  j = good;
  j["services"]["ranker"]["variants"]["blue"]["latency"] = {{9, 1}, {4, 1}};
  refused(j, "ascending");
  j = good;
  j["services"]["ranker"]["variants"]["blue"]["latency"] = {{-1, 1}};
  refused(j, "out of range");
  j = good;
  j["seq"] = 0;
  refused(j, "seq");
  j = good;
  j["node"] = "";
  refused(j, "node");
  j = good;
  j["services"]["ranker"]["variants"]["blue"].erase("http_5xx");
  refused(j, "http_5xx");
  j = good;
  for (int i = 0; i < 65; ++i) j["services"]["s" + std::to_string(i)] = good["services"]["ranker"];
  refused(j, "more than 64 services");
  EXPECT_THROW(node_report_from_string("[]"), NodeReportError);
  EXPECT_THROW(node_report_from_string("{"), NodeReportError);
}

// ---------------------------------------------------------------------------
// the leader's fleet window

const std::vector<std::string> kLive = {"node-1", "node-2", "node-3"};
constexpr int64_t kMaxAge = 2000;
constexpr int64_t T0 = 1765000000000;

FleetAggregator aggregator() { return FleetAggregator("ranker", {"blue", "canary"}, kDefinition); }

std::map<std::string, NodeReport> fleet_at(int64_t at, uint64_t seq, uint64_t scale) {
  std::map<std::string, NodeReport> m;
  for (const auto& n : kLive)
    m[n] = report(n, "e1", seq, at, sample(100 * scale, 0, 2'000'000), sample(10 * scale, 0, 3'000'000));
  return m;
}

const NodeContribution& node_in(const FleetWindow& w, const std::string& node) {
  for (const auto& c : w.nodes)
    if (c.node == node) return c;
  throw std::runtime_error("no " + node);
}

TEST(FleetWindowSum, TheFirstIntervalOnlyTakesBaselinesThenNodesGrowthIsSummed) {
  FleetAggregator agg = aggregator();
  FleetWindow w = agg.step(fleet_at(T0, 1, 1), kLive, T0 + 100, kMaxAge, 1.0);
  EXPECT_EQ(w.contributing, 0u);
  for (const auto& c : w.nodes) EXPECT_EQ(c.state, NodeState::FirstSeen);
  const Measurement first = fleet_measurement(w, "canary", "error_rate", 0);
  EXPECT_EQ(first.status, Measurement::Status::Inconclusive);
  EXPECT_NE(first.reason.find("0 of 3 live nodes"), std::string::npos) << first.reason;

  w = agg.step(fleet_at(T0 + 1000, 2, 3), kLive, T0 + 1100, kMaxAge, 1.0);
  EXPECT_EQ(w.contributing, 3u);
  EXPECT_EQ(w.variants.at("blue").responses, 3u * 200);  // each node grew 100 -> 300
  EXPECT_EQ(w.variants.at("canary").responses, 3u * 20);
  EXPECT_EQ(latency_count(w.variants.at("canary").latency), 60u);
  const Measurement m = fleet_measurement(w, "canary", "error_rate", 0);
  EXPECT_EQ(m.status, Measurement::Status::Value);
  EXPECT_EQ(m.samples, 60u);
}

TEST(FleetWindowSum, TheFleetsP95ComesFromTheMergedHistogramNotFromTheNodesP95s) {
  FleetAggregator agg = aggregator();
  auto reports = [](uint64_t seq, uint64_t k) {
    std::map<std::string, NodeReport> m;
    // The canary is slow (300 ms) only for node-3's clients; nodes 1 and 2 see 2 ms.
    m["node-1"] = report("node-1", "e1", seq, T0 + seq * 1000, sample(0, 0, 1), sample(40 * k, 0, 2'000'000));
    m["node-2"] = report("node-2", "e1", seq, T0 + seq * 1000, sample(0, 0, 1), sample(40 * k, 0, 2'000'000));
    m["node-3"] = report("node-3", "e1", seq, T0 + seq * 1000, sample(0, 0, 1), sample(20 * k, 0, 300'000'000));
    return m;
  };
  agg.step(reports(1, 1), kLive, T0 + 1100, kMaxAge, 1.0);
  const FleetWindow w = agg.step(reports(2, 2), kLive, T0 + 2100, kMaxAge, 1.0);
  const Measurement p95 = fleet_measurement(w, "canary", "latency_p95_ms", 0);
  ASSERT_EQ(p95.status, Measurement::Status::Value) << p95.reason;
  // 20 of 100 responses are slow: the fleet's p95 lies in the 300 ms bucket.
  EXPECT_GT(p95.value, 280.0);
  EXPECT_LT(p95.value, 320.0);
  EXPECT_EQ(p95.samples, 100u);
  // The p50 is fast, and no per-node reading (2, 2, 300) averaged would give either.
  const Measurement p50 = fleet_measurement(w, "canary", "latency_p50_ms", 0);
  EXPECT_LT(p50.value, 3.0);
}

TEST(FleetWindowSum, ARestartedNodeCountsFromItsNewEpochNeverNegative) {
  FleetAggregator agg = aggregator();
  agg.step(fleet_at(T0, 1, 5), kLive, T0 + 100, kMaxAge, 1.0);
  auto next = fleet_at(T0 + 1000, 2, 6);
  // node-2's veerd restarted: a new epoch whose counters start again near zero.
  next["node-2"] = report("node-2", "e2", 1, T0 + 1000, sample(30, 3, 2'000'000), sample(4, 0, 3'000'000));
  const FleetWindow w = agg.step(next, kLive, T0 + 1100, kMaxAge, 1.0);
  EXPECT_EQ(node_in(w, "node-2").state, NodeState::Restarted);
  EXPECT_EQ(w.contributing, 3u);
  EXPECT_EQ(w.variants.at("blue").responses, 100u + 100u + 30u);
  EXPECT_EQ(w.variants.at("blue").http_5xx, 3u);
  // The epoch after that continues normally from the new baseline.
  auto later = fleet_at(T0 + 2000, 3, 7);
  later["node-2"] = report("node-2", "e2", 2, T0 + 2000, sample(50, 3, 2'000'000), sample(6, 0, 3'000'000));
  const FleetWindow w2 = agg.step(later, kLive, T0 + 2100, kMaxAge, 1.0);
  EXPECT_EQ(node_in(w2, "node-2").state, NodeState::Fresh);
  EXPECT_EQ(w2.variants.at("blue").responses, 100u + 100u + 20u);
}

TEST(FleetWindowSum, FewerFreshNodesThanMinNodesIsInconclusiveNeverASmallerHealthySum) {
  FleetAggregator agg = aggregator();
  agg.step(fleet_at(T0, 1, 1), kLive, T0 + 100, kMaxAge, 1.0);
  auto next = fleet_at(T0 + 1000, 2, 2);
  next["node-3"].at_ms = T0 - 5000;  // cut off: its last report is old
  next["node-3"].seq = 1;
  const FleetWindow w = agg.step(next, kLive, T0 + 1100, kMaxAge, 1.0);
  EXPECT_EQ(node_in(w, "node-3").state, NodeState::Stale);
  EXPECT_EQ(w.contributing, 2u);
  const Measurement every = fleet_measurement(w, "canary", "error_rate", 0);
  EXPECT_EQ(every.status, Measurement::Status::Inconclusive);
  EXPECT_NE(every.reason.find("2 of 3 live nodes"), std::string::npos) << every.reason;
  EXPECT_NE(every.reason.find("node-3: stale"), std::string::npos) << every.reason;
  EXPECT_EQ(fleet_measurement(w, "canary", "error_rate", 2).status, Measurement::Status::Value);
  EXPECT_EQ(fleet_measurement(w, "canary", "error_rate", 3).status, Measurement::Status::Inconclusive);
}

TEST(FleetWindowSum, SilentMissingAndDivergedNodesAreNamedAndLeftOut) {
  FleetAggregator agg = aggregator();
  agg.step(fleet_at(T0, 1, 1), kLive, T0 + 100, kMaxAge, 1.0);
  auto next = fleet_at(T0 + 1000, 2, 2);
  next["node-1"].seq = 1;  // published nothing new
  next["node-1"].at_ms = T0;
  next["node-2"].services["ranker"].definition = "fedcba9876543210";
  next.erase("node-3");
  const FleetWindow w = agg.step(next, kLive, T0 + 1100, kMaxAge, 1.0);
  EXPECT_EQ(node_in(w, "node-1").state, NodeState::NoNewReport);
  EXPECT_EQ(node_in(w, "node-2").state, NodeState::Invalid);
  EXPECT_NE(node_in(w, "node-2").reason.find("fedcba9876543210"), std::string::npos);
  EXPECT_EQ(node_in(w, "node-3").state, NodeState::Missing);
  EXPECT_EQ(w.contributing, 0u);
  EXPECT_EQ(w.variants.at("blue").responses, 0u);
}

TEST(FleetWindowSum, CountersThatGoDownOrAnOlderSeqAreInvalidNotNegativeTraffic) {
  FleetAggregator agg = aggregator();
  agg.step(fleet_at(T0, 5, 4), kLive, T0 + 100, kMaxAge, 1.0);
  auto next = fleet_at(T0 + 1000, 6, 5);
  next["node-1"].services["ranker"].variants["canary"] = sample(10, 0, 3'000'000);  // 40 -> 10, same epoch
  next["node-2"].seq = 4;  // an older report replayed
  const FleetWindow w = agg.step(next, kLive, T0 + 1100, kMaxAge, 1.0);
  EXPECT_EQ(node_in(w, "node-1").state, NodeState::Invalid);
  EXPECT_NE(node_in(w, "node-1").reason.find("went down"), std::string::npos) << node_in(w, "node-1").reason;
  EXPECT_EQ(node_in(w, "node-2").state, NodeState::Invalid);
  EXPECT_EQ(node_in(w, "node-3").state, NodeState::Fresh);
  EXPECT_EQ(w.variants.at("canary").responses, 10u);  // node-3 only: 40 -> 50
  // node-1's dropped report became its baseline; it counts again next interval.
  auto after = fleet_at(T0 + 2000, 7, 6);
  after["node-1"].services["ranker"].variants["canary"] = sample(25, 0, 3'000'000);
  after["node-2"].seq = 7;
  const FleetWindow w2 = agg.step(after, kLive, T0 + 2100, kMaxAge, 1.0);
  EXPECT_EQ(node_in(w2, "node-1").state, NodeState::Fresh);
  EXPECT_EQ(w2.contributing, 3u);
}

TEST(FleetWindowSum, ANodeBackFromACutStartsANewBaselineAndNodesWithoutALeaseDoNotCount) {
  FleetAggregator agg = aggregator();
  agg.step(fleet_at(T0, 1, 1), kLive, T0 + 100, kMaxAge, 1.0);
  // node-3 was cut off for 10 s; its first report back spans all of it.
  auto back = fleet_at(T0 + 10000, 2, 50);
  FleetWindow w = agg.step(back, kLive, T0 + 10100, kMaxAge, 1.0);
  EXPECT_EQ(node_in(w, "node-3").state, NodeState::FirstSeen);
  EXPECT_NE(node_in(w, "node-3").reason.find("resumed"), std::string::npos);
  // A report from a node whose lease expired is not read at all.
  auto with_ghost = fleet_at(T0 + 11000, 3, 51);
  with_ghost["node-9"] = report("node-9", "e1", 1, T0 + 11000, sample(1000, 1000, 1), sample(1000, 1000, 1));
  w = agg.step(with_ghost, kLive, T0 + 11100, kMaxAge, 1.0);
  EXPECT_EQ(w.nodes.size(), 3u);
  EXPECT_EQ(w.variants.at("canary").http_5xx, 0u);
  EXPECT_EQ(w.contributing, 3u);
}

}  // namespace
}  // namespace veer::fleet
