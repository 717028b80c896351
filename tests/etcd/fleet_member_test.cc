// A fleet's members on a real etcd, without a data plane (what veerd runs
// beside its maps): a version written from any node reaches every node, each
// applies an increasing sequence (the fence on what the watch delivers),
// concurrent writers never both make version N+1, a late or restarted node
// catches up, nothing is written while etcd is away and delivery resumes when
// it is back, and a node's report lives under its lease.
#include <gtest/gtest.h>

#include <algorithm>
#include <mutex>
#include <numeric>
#include <thread>

#include "config/config.h"
#include "etcd_test_support.h"
#include "fleet/definition_digest.h"
#include "fleet/table_change.h"
#include "fleet/version_fence.h"
#include "net_test_support.h"
#include "veer/fleet_member.h"
#include "veer/tls.h"

namespace veer::etcd {
namespace {

const std::string kConfig = R"(node:
  interfaces: [eth0]
services:
  - name: ranker
    vip: 10.0.0.100
    port: 80
    stable: blue
    variants:
      blue:   { backends: ["10.1.1.2:8080"] }
      canary: { backends: ["10.1.3.2:8080", "10.1.3.3:8080"] }
)";
constexpr uint32_t kSeed = 0x5eed;

// One node: its member and what it applied, through its own fence.
struct SimNode {
  SimNode(net::test::IoThread& io, const std::string& endpoint, const std::string& name,
          std::chrono::milliseconds leader_poll = 250ms, ClientOptions client_options = {})
      : config(parse_config(kConfig, "fleet.yaml")),
        definition(fleet::definition_digest(config.services.at(0), kSeed)),
        fence("ranker", definition) {
    MemberCallbacks cb;
    cb.on_version = [this](const fleet::TableVersion& v) {
      std::lock_guard lock(mu);
      ++delivered;
      if (!fence.consider(v).apply()) return;
      fence.applied(v);
      applied.push_back(v.version);
    };
    cb.on_bad_record = [this](const std::string& key, const std::string& why) {
      std::lock_guard lock(mu);
      bad.push_back(key + ": " + why);
    };
    cb.on_leader = [this](const LeaderView& l) {
      std::lock_guard lock(mu);
      leader = l;
    };
    cb.on_connection = [this](bool up, const std::string&) {
      std::lock_guard lock(mu);
      connections += up;
    };
    MemberOptions options;
    options.leader_poll = leader_poll;
    options.node = name;
    options.lease_ttl_seconds = 2;
    options.retry = 200ms;
    member = std::make_shared<FleetMember>(io.io, std::vector<std::string>{endpoint}, options, cb, client_options);
    io.run([this] { member->start(); });
  }
  uint64_t applied_version() {
    std::lock_guard lock(mu);
    return fence.applied_version();
  }
  LeaderView leader_view() {
    std::lock_guard lock(mu);
    return leader;
  }
  std::vector<uint64_t> applied_list() {
    std::lock_guard lock(mu);
    return applied;
  }

  Config config;
  std::string definition;
  std::mutex mu;
  fleet::VersionFence fence;
  std::vector<uint64_t> applied;
  std::vector<std::string> bad;
  size_t delivered = 0;
  size_t connections = 0;  // times the catch-up read and watch came up
  LeaderView leader;
  std::shared_ptr<FleetMember> member;
};

class FleetMemberTest : public ::testing::Test {
 protected:
  // EtcdTls::On: etcd serves https:// and requires a client certificate; every client here presents the tests' one.
  explicit FleetMemberTest(EtcdTls tls = EtcdTls::Off) : server_(1, tls) {
    const auto& pki = server_.pki();
    if (tls == EtcdTls::On)
      client_options_.tls = net::make_tls_client(net::TlsConfig{pki.ca, pki.client_cert, pki.client_key, ""});
  }
  void SetUp() override {
    Client probe(io_.io, {server_.url()}, client_options_);
    for (int i = 0; i < 100; ++i) {
      if (wait_call<RangeAnswer>(io_, [&](auto cb) { probe.range("ready", false, cb); }).first.ok) return;
      std::this_thread::sleep_for(100ms);
    }
    FAIL() << "etcd did not answer within 10 s";
  }
  void TearDown() override {
    for (auto& n : nodes_) {
      auto done = std::make_shared<std::promise<void>>();
      auto f = done->get_future();
      boost::asio::post(io_.io, [&n, done] { n->member->stop([done] { done->set_value(); }); });
      f.wait_for(10s);
    }
  }
  SimNode& add_node(const std::string& name, std::chrono::milliseconds leader_poll = 250ms) {
    nodes_.push_back(std::make_unique<SimNode>(io_, server_.url(), name, leader_poll, client_options_));
    return *nodes_.back();
  }
  // weights {100 - canary, canary} as the next version, proposed by NODE.
  ProposeResult set_canary(SimNode& node, uint32_t canary_bp) {
    const auto& svc = node.config.services.at(0);
    const fleet::BaseTable base{build_table({10000, 0}, 0, fleet::variant_backends(svc), kSeed), 0, {{}, {}}};
    auto make = [&node, &svc, base, canary_bp](const std::optional<fleet::TableVersion>& current) {
      return fleet::next_table_version(current, base, svc, node.definition, kSeed,
                                       {std::vector<uint32_t>{10000 - canary_bp, canary_bp}, std::nullopt, {}, "weights"},
                                       "sim", 1765000000000);
    };
    return wait_call<ProposeResult>(io_, [&node, make](auto cb) {
      node.member->propose("ranker", make, [cb](ProposeResult r) { cb(Status{true, {}, {}, false}, std::move(r)); });
    }).second;
  }
  bool all_at(uint64_t version, std::chrono::milliseconds within = 5s) {
    const auto until = std::chrono::steady_clock::now() + within;
    while (std::chrono::steady_clock::now() < until) {
      bool all = true;
      for (auto& n : nodes_) all &= n->applied_version() == version;
      if (all) return true;
      std::this_thread::sleep_for(20ms);
    }
    return false;
  }
  std::pair<Status, RangeAnswer> range(const std::string& key, bool prefix = false) {
    Client c(io_.io, {server_.url()}, client_options_);
    return wait_call<RangeAnswer>(io_, [&](auto cb) { c.range(key, prefix, cb); });
  }
  // The node among NODES that leads (all agreeing on its name), within WITHIN.
  SimNode* leader_of(const std::vector<SimNode*>& nodes, std::chrono::milliseconds within = 5s) {
    const auto until = std::chrono::steady_clock::now() + within;
    while (std::chrono::steady_clock::now() < until) {
      SimNode* self = nullptr;
      int leaders = 0;
      bool agree = true;
      for (SimNode* n : nodes) {
        const LeaderView l = n->leader_view();
        if (l.self) ++leaders, self = n;
        agree &= !l.leader.empty() && l.leader == nodes[0]->leader_view().leader;
      }
      if (leaders == 1 && agree) return self;
      std::this_thread::sleep_for(20ms);
    }
    return nullptr;
  }
  // A commit of NODE writing a rollout record (seq from the current one) and, with CANARY_BP, a table.
  CommitResult write_rollout(SimNode& node, bool as_leader, std::optional<uint32_t> canary_bp = std::nullopt) {
    const auto& svc = node.config.services.at(0);
    const fleet::BaseTable base{build_table({10000, 0}, 0, fleet::variant_backends(svc), kSeed), 0, {{}, {}}};
    auto make = [&node, &svc, base, canary_bp, as_leader](const ServiceRecords& current) {
      Writes w;
      if (canary_bp)
        w.table = fleet::next_table_version(current.table, base, svc, node.definition, kSeed,
                                            {std::vector<uint32_t>{10000 - *canary_bp, *canary_bp}, std::nullopt, {},
                                             "rollout: step"},
                                            "sim", 1765000000000);
      RolloutState st;
      st.phase = RolloutPhase::Progressing;
      w.rollout = fleet::next_rollout_record(current.rollout, "ranker", node.definition,
                                             as_leader ? node.member->leader().term : 0, "sim", 1765000000000,
                                             w.table ? w.table->version : 0, st, {});
      return w;
    };
    return wait_call<CommitResult>(io_, [&node, make, as_leader](auto cb) {
      node.member->commit("ranker", as_leader, make, [cb](CommitResult r) { cb(Status{true, {}, {}, false}, std::move(r)); });
    }).second;
  }
  Status revoke(int64_t lease) {
    Client c(io_.io, {server_.url()}, client_options_);
    return wait_call<Header>(io_, [&](auto cb) { c.lease_revoke(lease, cb); }).first;
  }
  Status put(const std::string& key, const std::string& value) {
    Client c(io_.io, {server_.url()}, client_options_);
    return wait_call<Header>(io_, [&](auto cb) { c.put(key, value, 0, cb); }).first;
  }

  EtcdCluster server_;  // one member
  ClientOptions client_options_;
  net::test::IoThread io_;
  std::vector<std::unique_ptr<SimNode>> nodes_;
};

class FleetMemberOverTlsTest : public FleetMemberTest {
 protected:
  FleetMemberOverTlsTest() : FleetMemberTest(EtcdTls::On) {}
};

// The whole path over https:// with a client certificate: the catch-up range,
// the proposals' txns, the lease's grant and keepalives, the leader's txn and
// the watch stream (each version after the first connection arrives by it).
TEST_F(FleetMemberOverTlsTest, MembersElectApplyAndWatchVersionsAndKeepTheirLeases) {
  ASSERT_EQ(server_.url().rfind("https://", 0), 0u) << server_.url();
  SimNode& a = add_node("node-1");
  SimNode& b = add_node("node-2");
  ASSERT_TRUE(leader_of({&a, &b})) << "no single leader over TLS";
  io_.run([&] { a.member->publish("{\"seq\": 1}"); });
  const ProposeResult r1 = set_canary(a, 500);
  ASSERT_TRUE(r1.ok) << r1.error;
  ASSERT_TRUE(all_at(1));
  const ProposeResult r2 = set_canary(b, 1000);
  ASSERT_TRUE(r2.ok) << r2.error;
  ASSERT_TRUE(all_at(2));
  EXPECT_EQ(a.applied_list(), (std::vector<uint64_t>{1, 2}));
  EXPECT_EQ(b.applied_list(), (std::vector<uint64_t>{1, 2}));
  // Keepalives hold the report past the TTL (2 s).
  std::this_thread::sleep_for(3s);
  const auto [s, report] = range("/veer/nodes/node-1");
  ASSERT_TRUE(s.ok) << s.error;
  ASSERT_EQ(report.kvs.size(), 1u);
  EXPECT_EQ(report.kvs[0].lease, a.member->lease());
  for (SimNode* n : {&a, &b}) {
    std::lock_guard lock(n->mu);
    EXPECT_EQ(n->connections, 1u) << "the watch never broke: the versions came by it";
    EXPECT_TRUE(n->bad.empty());
  }
}

TEST_F(FleetMemberTest, AVersionWrittenFromAnyNodeIsAppliedByEveryNodeInOrder) {
  SimNode& a = add_node("node-1");
  SimNode& b = add_node("node-2");
  SimNode& c = add_node("node-3");
  const ProposeResult r1 = set_canary(a, 500);
  ASSERT_TRUE(r1.ok) << r1.error;
  EXPECT_EQ(r1.version.version, 1u);
  EXPECT_TRUE(all_at(1));
  const ProposeResult r2 = set_canary(c, 2000);  // from another node: version 2 follows version 1
  ASSERT_TRUE(r2.ok) << r2.error;
  EXPECT_EQ(r2.version.version, 2u);
  EXPECT_TRUE(all_at(2));
  for (SimNode* n : {&a, &b, &c}) EXPECT_EQ(n->applied_list(), (std::vector<uint64_t>{1, 2}));
  // Every node holds the same record, and it builds the same table everywhere.
  const auto la = a.member->latest("ranker");
  ASSERT_TRUE(la);
  EXPECT_EQ(la->weights_bp, (std::vector<uint32_t>{8000, 2000}));
  EXPECT_EQ(*la, *c.member->latest("ranker"));
}

TEST_F(FleetMemberTest, ConcurrentWritersNeverBothMakeTheSameVersion) {
  SimNode& a = add_node("node-1");
  SimNode& b = add_node("node-2");
  std::vector<ProposeResult> results(20);
  std::thread ta([&] { for (int i = 0; i < 10; ++i) results[i] = set_canary(a, 100 * (i + 1)); });
  std::thread tb([&] { for (int i = 0; i < 10; ++i) results[10 + i] = set_canary(b, 50 * (i + 1)); });
  ta.join();
  tb.join();
  std::vector<uint64_t> written;
  for (const auto& r : results) {
    ASSERT_TRUE(r.ok) << r.error;
    written.push_back(r.version.version);
  }
  std::sort(written.begin(), written.end());
  std::vector<uint64_t> expected(20);
  std::iota(expected.begin(), expected.end(), 1);
  EXPECT_EQ(written, expected) << "a version was written twice or skipped";
  EXPECT_TRUE(all_at(20));
  for (SimNode* n : {&a, &b}) {
    const auto seq = n->applied_list();
    EXPECT_TRUE(std::is_sorted(seq.begin(), seq.end()) && std::adjacent_find(seq.begin(), seq.end()) == seq.end());
    EXPECT_EQ(seq.back(), 20u);
  }
}

TEST_F(FleetMemberTest, OldDuplicateAndMalformedRecordsAreDeliveredButNeverApplied) {
  SimNode& a = add_node("node-1");
  ASSERT_TRUE(set_canary(a, 500).ok);
  ASSERT_TRUE(set_canary(a, 1000).ok);
  ASSERT_TRUE(set_canary(a, 2000).ok);
  ASSERT_TRUE(all_at(3));
  // Someone writes version 1 again (a replayed event looks the same to a node), then garbage.
  const auto& svc = a.config.services.at(0);
  const fleet::TableVersion old = fleet::next_table_version(std::nullopt, {build_table({10000, 0}, 0, fleet::variant_backends(svc), kSeed), 0,
                                                 {{}, {}}},
                                  svc, a.definition, kSeed, {std::vector<uint32_t>{9000, 1000}, std::nullopt, {}, "x"},
                                  "old", 1);
  ASSERT_TRUE(put(a.member->keys().table("ranker"), fleet::table_version_to_string(old)).ok);
  ASSERT_TRUE(put(a.member->keys().table("ranker"), "{\"format\": 1}").ok);
  const auto until = std::chrono::steady_clock::now() + 5s;
  while (std::chrono::steady_clock::now() < until) {
    {
      std::lock_guard lock(a.mu);
      if (a.delivered >= 4 && !a.bad.empty()) break;
    }
    std::this_thread::sleep_for(20ms);
  }
  std::this_thread::sleep_for(200ms);
  EXPECT_EQ(a.applied_list(), (std::vector<uint64_t>{1, 2, 3}));
  std::lock_guard lock(a.mu);
  ASSERT_EQ(a.bad.size(), 1u);
  EXPECT_NE(a.bad[0].find("/veer/services/ranker/table"), std::string::npos) << a.bad[0];
}

TEST_F(FleetMemberTest, ALateNodeCatchesUpAndEtcdAwayWritesNothingThenDeliveryResumes) {
  SimNode& a = add_node("node-1");
  ASSERT_TRUE(set_canary(a, 500).ok);
  ASSERT_TRUE(set_canary(a, 1000).ok);
  SimNode& late = add_node("node-2");
  EXPECT_TRUE(all_at(2));
  EXPECT_EQ(late.applied_list(), (std::vector<uint64_t>{2}));  // the current version, not the path to it

  server_.kill();
  const ProposeResult away = set_canary(a, 3000);
  EXPECT_FALSE(away.ok);
  EXPECT_TRUE(away.unreachable) << away.error;
  EXPECT_EQ(a.applied_version(), 2u);  // the last applied table stays
  server_.restart();
  // Members reconnect on their own (catch-up read, new watch); a write from one reaches both.
  ProposeResult back;
  for (int i = 0; i < 50 && !back.ok; ++i) {
    back = set_canary(a, 3000);
    if (!back.ok) std::this_thread::sleep_for(200ms);
  }
  ASSERT_TRUE(back.ok) << back.error;
  EXPECT_EQ(back.version.version, 3u);
  EXPECT_TRUE(all_at(3, 10s));
}

TEST_F(FleetMemberTest, ANodesReportLivesUnderItsLease) {
  SimNode& a = add_node("node-1");
  io_.run([&] { a.member->publish("{\"seq\": 1}"); });
  std::optional<KeyValue> kv;
  for (int i = 0; i < 100 && !kv; ++i) {
    const auto [s, r] = range("/veer/nodes/node-1");
    if (s.ok && !r.kvs.empty()) kv = r.kvs[0];
    else std::this_thread::sleep_for(50ms);
  }
  ASSERT_TRUE(kv);
  EXPECT_EQ(kv->value, "{\"seq\": 1}");
  EXPECT_NE(kv->lease, 0);
  EXPECT_EQ(kv->lease, a.member->lease());
  // Keepalives hold it past the TTL (2 s).
  std::this_thread::sleep_for(3s);
  EXPECT_EQ(range("/veer/nodes/node-1").second.kvs.size(), 1u);
  // A stopped member revokes its lease: its report is gone at once.
  auto done = std::make_shared<std::promise<void>>();
  auto f = done->get_future();
  boost::asio::post(io_.io, [&a, done] { a.member->stop([done] { done->set_value(); }); });
  ASSERT_EQ(f.wait_for(10s), std::future_status::ready);
  EXPECT_TRUE(range("/veer/nodes/node-1").second.kvs.empty());
}

TEST_F(FleetMemberTest, OneLeaderAtATimeAndAStoppedLeaderHandsOverAtOnce) {
  SimNode& a = add_node("node-1");
  SimNode& b = add_node("node-2");
  SimNode& c = add_node("node-3");
  SimNode* first = leader_of({&a, &b, &c});
  ASSERT_TRUE(first) << "no single leader that every node names";
  const LeaderView was = first->leader_view();
  EXPECT_GT(was.term, 0);
  const auto [s, r] = range("/veer/leader");
  ASSERT_TRUE(s.ok);
  ASSERT_EQ(r.kvs.size(), 1u);
  EXPECT_EQ(r.kvs[0].value, was.leader);
  EXPECT_EQ(r.kvs[0].create_revision, was.term);  // the term is the key's create revision
  EXPECT_EQ(r.kvs[0].lease, first->member->lease());
  // A leader that stops revokes its lease: the key goes, another node takes it at its next poll.
  auto done = std::make_shared<std::promise<void>>();
  auto f = done->get_future();
  boost::asio::post(io_.io, [first, done] { first->member->stop([done] { done->set_value(); }); });
  ASSERT_EQ(f.wait_for(10s), std::future_status::ready);
  const auto handed_over = std::chrono::steady_clock::now();
  std::vector<SimNode*> rest;
  for (SimNode* n : {&a, &b, &c})
    if (n != first) rest.push_back(n);
  SimNode* next = leader_of(rest, 3s);
  ASSERT_TRUE(next);
  EXPECT_LT(std::chrono::steady_clock::now() - handed_over, 1s);
  EXPECT_GT(next->leader_view().term, was.term);
  nodes_.erase(std::remove_if(nodes_.begin(), nodes_.end(), [first](auto& n) { return n.get() == first; }),
               nodes_.end());
}

TEST_F(FleetMemberTest, ADeposedLeaderThatStillRunsWritesNothing) {
  // node-1 reads the leader key only every 30 s: once its lease is revoked it still believes it leads,
  // as a paused or cut-off process would (argo-rollouts#2117).
  SimNode& a = add_node("node-1", 30s);
  ASSERT_TRUE(leader_of({&a}));
  SimNode& b = add_node("node-2");
  const CommitResult first = write_rollout(a, true, 1000);
  ASSERT_TRUE(first.ok) << first.error;
  ASSERT_TRUE(first.written.rollout && first.written.table);
  EXPECT_EQ(first.written.rollout->seq, 1u);
  EXPECT_TRUE(all_at(1));

  ASSERT_TRUE(revoke(a.member->lease()).ok);
  SimNode* next = leader_of({&b}, 3s);
  ASSERT_EQ(next, &b) << "node-2 did not take over";
  EXPECT_TRUE(a.leader_view().self) << "node-1 noticed too early for this test";
  const auto before = range("/veer/services/ranker/", true).second.kvs;

  const CommitResult stale = write_rollout(a, true, 5000);
  EXPECT_FALSE(stale.ok);
  EXPECT_TRUE(stale.deposed) << stale.error;
  EXPECT_FALSE(stale.written.table || stale.written.rollout);
  EXPECT_FALSE(a.leader_view().self);
  EXPECT_EQ(a.leader_view().leader, "node-2");
  const auto after = range("/veer/services/ranker/", true).second.kvs;
  ASSERT_EQ(after.size(), before.size());
  for (size_t i = 0; i < after.size(); ++i) EXPECT_EQ(after[i].mod_revision, before[i].mod_revision) << after[i].key;

  // The new leader's write goes through (it read the same records), and a non-leader's operator command too.
  const CommitResult ok = write_rollout(b, true, 2000);
  ASSERT_TRUE(ok.ok) << ok.error;
  EXPECT_EQ(ok.written.rollout->seq, 2u);
  EXPECT_EQ(ok.written.rollout->term, b.leader_view().term);
  const CommitResult op = write_rollout(a, false);
  ASSERT_TRUE(op.ok) << op.error;
  EXPECT_EQ(op.written.rollout->seq, 3u);
  EXPECT_TRUE(all_at(2));
}

TEST_F(FleetMemberTest, ACommitThatLostARaceIsBuiltAgainFromTheNewRecords) {
  SimNode& a = add_node("node-1");
  ASSERT_TRUE(write_rollout(a, false, 500).ok);
  // Another writer changes the rollout record between node-1's read and its txn (from its own io thread,
  // waited for inside MAKE): node-1's txn fails on the mod revision, MAKE runs again on the new records,
  // and the seq it writes follows the other writer's.
  net::test::IoThread other_io;
  int calls = 0;
  const CommitResult r = wait_call<CommitResult>(io_, [&](auto cb) {
    a.member->commit(
        "ranker", false,
        [&](const ServiceRecords& current) {
          if (++calls == 1) {
            const fleet::RolloutRecord other = fleet::next_rollout_record(current.rollout, "ranker", a.definition, 0,
                                                                          "other", 1, 0, RolloutState{}, {});
            Client c(other_io.io, {server_.url()});
            EXPECT_TRUE(wait_call<Header>(other_io, [&](auto done) {
                          c.put(a.member->keys().rollout("ranker"), fleet::rollout_record_to_string(other), 0, done);
                        }).first.ok);
          }
          Writes w;
          w.rollout = fleet::next_rollout_record(current.rollout, "ranker", a.definition, 0, "racer", 1, 0,
                                                 RolloutState{}, {});
          return w;
        },
        [cb](CommitResult r) { cb(Status{true, {}, {}, false}, std::move(r)); });
  }).second;
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_EQ(calls, 2);
  EXPECT_EQ(r.written.rollout->seq, 3u);
  const auto kv = range("/veer/services/ranker/rollout").second.kvs;
  ASSERT_EQ(kv.size(), 1u);
  EXPECT_EQ(fleet::rollout_record_from_string(kv[0].value).writer, "racer");
}

}  // namespace
}  // namespace veer::etcd
