// veer's etcd adapter against a real etcd: the writes a fleet leader relies on
// (a txn guarded by the election key's create revision writes nothing once
// that key was re-created), leases (keys vanish on revoke), endpoint failover,
// and the JSON gateway codec on answers that are not what they should be.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <optional>
#include <filesystem>
#include <future>
#include <thread>

#include <nlohmann/json.hpp>

#include "etcd_test_support.h"
#include "net_test_support.h"
#include "veer/etcd_client.h"
#include "veer/etcd_watch.h"

namespace veer::etcd {
namespace {

using namespace std::chrono_literals;

class EtcdClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    client_ = std::make_unique<Client>(io_.io, std::vector<std::string>{server_.url()});
    // etcd takes a moment to elect itself: wait until a range answers.
    for (int i = 0; i < 100; ++i) {
      if (range("ready", false).first.ok) return;
      std::this_thread::sleep_for(100ms);
    }
    FAIL() << "etcd on " << server_.url() << " did not answer within 10 s";
  }
  std::pair<Status, RangeAnswer> range(const std::string& key, bool prefix) {
    return wait_call<RangeAnswer>(io_, [&](auto cb) { client_->range(key, prefix, cb); });
  }
  std::pair<Status, Header> put(const std::string& key, const std::string& value, int64_t lease = 0) {
    return wait_call<Header>(io_, [&, key, value, lease](auto cb) { client_->put(key, value, lease, cb); });
  }
  std::pair<Status, TxnAnswer> txn(std::vector<Compare> c, std::vector<Op> ok, std::vector<Op> ko = {}) {
    return wait_call<TxnAnswer>(io_, [&, c, ok, ko](auto cb) { client_->txn(c, ok, ko, cb); });
  }

  EtcdCluster server_;  // one member
  net::test::IoThread io_;
  std::unique_ptr<Client> client_;
};

TEST_F(EtcdClientTest, PutAndRangeRoundTripBinaryKeysAndValuesAndPrefixes) {
  const std::string binary("v\0\xff\x01 table", 10);
  ASSERT_TRUE(put("/veer/services/ranker/version", binary).first.ok);
  ASSERT_TRUE(put("/veer/services/ranker/nodes/n1", "1").first.ok);
  ASSERT_TRUE(put("/veer/services/rankerz", "other").first.ok);
  auto [s, one] = range("/veer/services/ranker/version", false);
  ASSERT_TRUE(s.ok) << s.error;
  ASSERT_EQ(one.kvs.size(), 1u);
  EXPECT_EQ(one.kvs[0].value, binary);
  EXPECT_EQ(one.kvs[0].version, 1);
  EXPECT_GT(one.kvs[0].create_revision, 0);
  EXPECT_GT(one.header.member_id, 0u);
  auto [s2, all] = range("/veer/services/ranker/", true);
  ASSERT_TRUE(s2.ok) << s2.error;
  ASSERT_EQ(all.kvs.size(), 2u) << "the prefix ends at the slash: rankerz is not in it";
  auto [s3, none] = range("/veer/absent", false);
  EXPECT_TRUE(s3.ok);
  EXPECT_TRUE(none.kvs.empty());
}

TEST_F(EtcdClientTest, ATxnGuardedByTheElectionKeysCreateRevisionWritesNothingOnceItWasRecreated) {
  ASSERT_TRUE(put("/veer/leader", "node-1").first.ok);
  const int64_t term_of_node1 = range("/veer/leader", false).second.kvs.at(0).create_revision;
  const Compare held{"/veer/leader", Compare::Target::CreateRevision, Compare::Result::Equal, term_of_node1, {}};
  auto [s, won] = txn({held}, {Op{Op::Kind::Put, "/veer/services/ranker/version", "v1", 0}});
  ASSERT_TRUE(s.ok) << s.error;
  EXPECT_TRUE(won.succeeded);
  // node-1 is deposed: its key goes (lease expiry) and node-2 campaigns.
  ASSERT_TRUE(txn({}, {Op{Op::Kind::Delete, "/veer/leader", {}, 0}}).first.ok);
  ASSERT_TRUE(put("/veer/leader", "node-2").first.ok);
  auto [s2, lost] = txn({held}, {Op{Op::Kind::Put, "/veer/services/ranker/version", "v2 from the deposed", 0}},
                        {Op{Op::Kind::Range, "/veer/leader", {}, 0}});
  ASSERT_TRUE(s2.ok) << s2.error;
  EXPECT_FALSE(lost.succeeded);
  ASSERT_EQ(lost.ranges.size(), 1u);
  ASSERT_EQ(lost.ranges[0].size(), 1u);
  EXPECT_EQ(lost.ranges[0][0].value, "node-2") << "the failure branch tells who holds it now";
  EXPECT_EQ(range("/veer/services/ranker/version", false).second.kvs.at(0).value, "v1");
}

TEST_F(EtcdClientTest, KeysUnderALeaseVanishWhenItIsRevokedAndKeepaliveRenewsIt) {
  auto [g, lease] = wait_call<LeaseAnswer>(io_, [&](auto cb) { client_->lease_grant(5, cb); });
  ASSERT_TRUE(g.ok) << g.error;
  EXPECT_EQ(lease.ttl, 5);
  ASSERT_TRUE(put("/veer/nodes/n1", "report", lease.id).first.ok);
  EXPECT_EQ(range("/veer/nodes/n1", false).second.kvs.at(0).lease, lease.id);
  auto [k, kept] = wait_call<LeaseAnswer>(io_, [&](auto cb) { client_->lease_keepalive(lease.id, cb); });
  ASSERT_TRUE(k.ok) << k.error;
  EXPECT_EQ(kept.id, lease.id);
  EXPECT_EQ(kept.ttl, 5);
  ASSERT_TRUE(wait_call<Header>(io_, [&](auto cb) { client_->lease_revoke(lease.id, cb); }).first.ok);
  EXPECT_TRUE(range("/veer/nodes/n1", false).second.kvs.empty());
  auto [k2, gone] = wait_call<LeaseAnswer>(io_, [&](auto cb) { client_->lease_keepalive(lease.id, cb); });
  EXPECT_TRUE(!k2.ok || gone.ttl <= 0) << "a revoked lease is not renewed";
  // A put under a lease that does not exist is refused, with etcd's reason.
  auto [p, _] = put("/veer/nodes/n2", "x", lease.id);
  EXPECT_FALSE(p.ok);
  EXPECT_NE(p.error.find("lease not found"), std::string::npos) << p.error;
  EXPECT_FALSE(p.unreachable);
}

TEST_F(EtcdClientTest, AnEndpointThatDoesNotAnswerIsSkippedAndNoneAnsweringIsUnreachable) {
  const std::string dead = "http://127.0.0.1:" + std::to_string(free_port());
  Client two(io_.io, {dead, server_.url()});
  auto [s, a] = wait_call<RangeAnswer>(io_, [&](auto cb) { two.range("x", false, cb); });
  EXPECT_TRUE(s.ok) << s.error;
  EXPECT_EQ(s.endpoint, server_.url());
  Client none(io_.io, {dead});
  auto [s2, b] = wait_call<RangeAnswer>(io_, [&](auto cb) { none.range("x", false, cb); });
  EXPECT_FALSE(s2.ok);
  EXPECT_TRUE(s2.unreachable);
  EXPECT_NE(s2.error.find(dead), std::string::npos) << s2.error;
}

// What a watch delivered, collected on the io thread and read by the test thread.
struct WatchLog {
  std::mutex mu;
  std::vector<WatchMessage> messages;
  std::optional<Status> ended;
  std::condition_variable changed;

  template <typename Pred>
  bool wait(Pred pred, std::chrono::milliseconds timeout = 10s) {
    std::unique_lock lock(mu);
    return changed.wait_for(lock, timeout, [&] { return pred(*this); });
  }
  std::vector<std::pair<WatchEvent::Type, std::string>> events() {
    std::vector<std::pair<WatchEvent::Type, std::string>> out;
    for (const auto& m : messages)
      for (const auto& e : m.events) out.push_back({e.type, e.kv.key + "=" + e.kv.value});
    return out;
  }
};

std::shared_ptr<Watch> start_watch(net::test::IoThread& io, const std::string& url, const std::string& key,
                                   bool prefix, int64_t from, std::shared_ptr<WatchLog> log) {
  return io.run([&] {
    return watch(
        io.io, url, key, prefix, from, WatchOptions{},
        [log](const WatchMessage& m) {
          std::lock_guard lock(log->mu);
          log->messages.push_back(m);
          log->changed.notify_all();
        },
        [log](Status s) {
          std::lock_guard lock(log->mu);
          log->ended = s;
          log->changed.notify_all();
        });
  });
}

size_t event_count(WatchLog& l) {
  size_t n = 0;
  for (const auto& m : l.messages) n += m.events.size();
  return n;
}

TEST_F(EtcdClientTest, AWatchFromARevisionReplaysThenFollowsPutsAndDeletesUntilCancelled) {
  ASSERT_TRUE(put("/veer/v/ranker", "1").first.ok);
  const int64_t first = range("/veer/v/ranker", false).second.kvs.at(0).mod_revision;
  ASSERT_TRUE(put("/veer/v/ranker", "2").first.ok);
  auto log = std::make_shared<WatchLog>();
  auto w = start_watch(io_, server_.url(), "/veer/v/", true, first, log);
  ASSERT_TRUE(log->wait([](WatchLog& l) { return event_count(l) >= 2; })) << "the two puts since " << first;
  ASSERT_TRUE(put("/veer/v/ranker", "3").first.ok);
  ASSERT_TRUE(put("/veer/other", "not watched").first.ok);
  ASSERT_TRUE(txn({}, {Op{Op::Kind::Delete, "/veer/v/ranker", {}, 0}}).first.ok);
  ASSERT_TRUE(log->wait([](WatchLog& l) { return event_count(l) >= 4; }));
  {
    std::lock_guard lock(log->mu);
    EXPECT_TRUE(log->messages.at(0).created) << "the first message says the watch exists";
    using T = WatchEvent::Type;
    EXPECT_EQ(log->events(), (std::vector<std::pair<T, std::string>>{
                                 {T::Put, "/veer/v/ranker=1"}, {T::Put, "/veer/v/ranker=2"},
                                 {T::Put, "/veer/v/ranker=3"}, {T::Delete, "/veer/v/ranker="}}));
    EXPECT_FALSE(log->ended.has_value());
  }
  io_.run([&] { w->cancel(); return 0; });
  ASSERT_TRUE(log->wait([](WatchLog& l) { return l.ended.has_value(); }));
  EXPECT_EQ(log->ended->error, "cancelled");
}

TEST_F(EtcdClientTest, AWatchEndsWhenEtcdGoesAwayOrItsStartRevisionWasCompacted) {
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(put("/veer/c", std::to_string(i)).first.ok);
  const int64_t now = range("/veer/c", false).second.header.revision;
  // veer never compacts; an operator (or etcd's auto-compaction) does, as here with etcdctl.
  const std::string compact = "ETCDCTL_API=3 etcdctl --endpoints=" + server_.url() + " compaction " +
                              std::to_string(now) + " > /dev/null 2>&1";
  ASSERT_EQ(std::system(compact.c_str()), 0) << compact;
  auto log = std::make_shared<WatchLog>();
  auto w = start_watch(io_, server_.url(), "/veer/c", false, 2, log);
  ASSERT_TRUE(log->wait([](WatchLog& l) { return l.ended.has_value(); }));
  EXPECT_NE(log->ended->error.find("compacted"), std::string::npos) << log->ended->error;

  auto live = std::make_shared<WatchLog>();
  auto w2 = start_watch(io_, server_.url(), "/veer/c", false, 0, live);
  ASSERT_TRUE(live->wait([](WatchLog& l) { return !l.messages.empty(); }));
  server_.kill();
  ASSERT_TRUE(live->wait([](WatchLog& l) { return l.ended.has_value(); }));
  EXPECT_TRUE(live->ended->unreachable) << live->ended->error;
}

TEST(EtcdGateway, WatchMessagesAreReadStrictly) {
  const WatchMessage m = read_watch_message(
      R"({"result":{"header":{"revision":"9"},"events":[{"kv":{"key":"YQ==","value":"Yg==","mod_revision":"9"}},)"
      R"({"type":"DELETE","kv":{"key":"YQ==","mod_revision":"10"}}]}})");
  EXPECT_EQ(m.header.revision, 9);
  ASSERT_EQ(m.events.size(), 2u);
  EXPECT_EQ(m.events[0].type, WatchEvent::Type::Put);
  EXPECT_EQ(m.events[0].kv.value, "b");
  EXPECT_EQ(m.events[1].type, WatchEvent::Type::Delete);
  for (const char* bad : {"{}", "[]", "x", R"({"result":{"events":{}}})", R"({"result":{"events":[{"type":"PUT"}]}})",
                          R"({"result":{"events":[{"type":"MOVE","kv":{}}]}})", R"({"result":{"created":"yes"}})",
                          R"({"error":"etcdserver: mvcc: required revision has been compacted"})"})
    EXPECT_THROW(read_watch_message(bad), EtcdAnswerError) << bad;
}

// ---------------------------------------------------------------------------
// the codec, without etcd

TEST(EtcdGateway, PrefixRangeEndFollowsClientv3) {
  EXPECT_EQ(prefix_range_end("/veer/"), "/veer0");
  EXPECT_EQ(prefix_range_end(std::string("a\xff", 2)), "b");
  EXPECT_EQ(prefix_range_end(std::string("\xff\xff", 2)), std::string(1, '\0'));
  EXPECT_EQ(prefix_range_end(""), std::string(1, '\0'));
}

TEST(EtcdGateway, AnswersThatAreNotWhatTheyShouldBeAreRefusedWithTheReason) {
  const std::string header = R"("header":{"revision":"7","member_id":"13668033151171901709","raft_term":"2"})";
  const RangeAnswer ok = read_range("{" + header + R"(,"kvs":[{"key":"Zm9v","value":"YmFy","mod_revision":"7"}]})");
  EXPECT_EQ(ok.header.revision, 7);
  EXPECT_EQ(ok.header.member_id, 13668033151171901709ULL);
  EXPECT_EQ(ok.kvs.at(0).key, "foo");
  EXPECT_EQ(ok.kvs.at(0).value, "bar");
  EXPECT_EQ(ok.kvs.at(0).create_revision, 0) << "absent fields are 0";
  for (const std::string& bad : {std::string("not json"), std::string("[]"), std::string("{}"),
                                 "{" + header + R"(,"kvs":{}})",
                                 "{" + header + R"(,"kvs":[{"key":"!!!!"}]})",
                                 "{" + header + R"(,"kvs":[{"key":"Zm9v","mod_revision":"7x"}]})",
                                 "{" + header + R"(,"kvs":[{"key":"Zm9v","mod_revision":true}]})"})
    EXPECT_THROW(read_range(bad), EtcdAnswerError) << bad;
  EXPECT_FALSE(read_txn("{" + header + "}").succeeded) << "etcd leaves out a false succeeded";
  EXPECT_THROW(read_txn("{" + header + R"(,"succeeded":"yes"})"), EtcdAnswerError);
  EXPECT_THROW(read_lease_grant("{" + header + R"(,"ID":"0","TTL":"0","error":"etcdserver: no space"})"),
               EtcdAnswerError);
  EXPECT_EQ(error_message(R"({"error":"etcdserver: requested lease not found","code":5,"message":"etcdserver: requested lease not found"})"),
            "etcdserver: requested lease not found");
  EXPECT_EQ(error_message("not json"), std::nullopt);
}

TEST(EtcdGateway, RequestBodiesCarryBase64KeysAndStringNumbers) {
  const auto txn = nlohmann::json::parse(
      txn_body({Compare{"/veer/leader", Compare::Target::CreateRevision, Compare::Result::Equal, 42, {}}},
               {Op{Op::Kind::Put, "k", "v", 7}}, {}));
  EXPECT_EQ(txn["compare"][0]["key"], "L3ZlZXIvbGVhZGVy");
  EXPECT_EQ(txn["compare"][0]["create_revision"], "42");
  EXPECT_EQ(txn["compare"][0]["target"], "CREATE");
  EXPECT_EQ(txn["success"][0]["request_put"]["lease"], "7");
  const auto range = nlohmann::json::parse(range_body("/veer/", true));
  EXPECT_EQ(range["range_end"], "L3ZlZXIw");
}

}  // namespace
}  // namespace veer::etcd
