// bench/fleet: how fast a table version reaches a fleet, with veer's node code
// (FleetMember + VersionFence + the record's decode and table build) and no
// data plane, on a real three-member etcd 3.4 on loopback. Not a test: it
// prints figures.
//
// For N simulated nodes (3, then 50) and R changes written one after another
// by node 1 (as `veerctl weights` does: read, next version, compare-and-swap):
//   commit      the writer's txn round trip (read + txn): the reference,
//               measured in the same run;
//   all_applied from the commit's answer to the last of the N nodes having
//               applied it (decoded, checked, fenced, slot table built);
// p50 and p99 of each, their ratio, and the etcd writes and bytes a change costs.
//
// Then the leader's side of a gate interval with the same N nodes, each
// publishing a report (3 variants, latency buckets, pushed values) under its
// lease before every interval, for I intervals:
//   range       the leader's read of every report (one range over the nodes'
//               prefix): the reference, measured in the same run;
//   aggregate   range + decode and check every report + FleetAggregator.step +
//               the fleet-wide P95 and push measurements of the canary;
// p50 and p99 of each and their ratio, and a report's size.
//
//   build/bench/fleet/veer_fleet_bench [--changes 200] [--nodes 3,50] [--intervals 200]
// Boost 1.74 asio (awaitable.hpp) uses std::exchange without including <utility>.
#include <utility>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <future>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio.hpp>

#include "config/config.h"
#include "fleet/definition_digest.h"
#include "fleet/fleet_window.h"
#include "fleet/node_report.h"
#include "fleet/table_change.h"
#include "fleet/version_fence.h"
#include "etcd_process.h"  // tests/etcd: the same etcd the tests start
#include "veer/fleet_member.h"

namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

const std::string kConfig = R"(node:
  interfaces: [eth0]
services:
  - name: ranker
    vip: 10.0.0.100
    port: 80
    stable: blue
    variants:
      blue:   { backends: ["10.1.1.2:8080", "10.1.1.3:8080", "10.1.1.4:8080", "10.1.1.5:8080"] }
      green:  { backends: ["10.1.2.2:8080", "10.1.2.3:8080"] }
      canary: { backends: ["10.1.3.2:8080", "10.1.3.3:8080"] }
)";
constexpr uint32_t kSeed = 0x5eed;

double percentile(std::vector<double> v, double q) {
  std::sort(v.begin(), v.end());
  if (v.empty()) return 0;
  const size_t i = std::min(v.size() - 1, static_cast<size_t>(q * static_cast<double>(v.size() - 1) + 0.5));
  return v[i];
}

struct Node {
  std::shared_ptr<veer::etcd::FleetMember> member;
  veer::fleet::VersionFence fence{"ranker", ""};
  uint64_t applied = 0;
};

// Stops every member on IO's thread (their leases revoked) and waits for it, at most 10 s.
void stop_members(boost::asio::io_context& io, const std::vector<std::shared_ptr<veer::etcd::FleetMember>>& members) {
  std::promise<void> stopped;
  auto left = std::make_shared<std::atomic<size_t>>(members.size());
  boost::asio::post(io, [&] {
    for (auto& m : members)
      m->stop([&, left] {
        if (--*left == 0) stopped.set_value();
      });
  });
  stopped.get_future().wait_for(10s);
}

struct Run {
  std::vector<double> commit_ms, all_applied_ms;
  size_t record_bytes = 0;
};

Run run(const veer::etcd::EtcdCluster& etcd, size_t n_nodes, size_t changes, const std::string& prefix) {
  const veer::Config config = veer::parse_config(kConfig, "bench.yaml");
  const veer::ServiceConfig& svc = config.services.at(0);
  const std::string definition = veer::fleet::definition_digest(svc, kSeed);
  const veer::VariantBackends backends = veer::fleet::variant_backends(svc);
  boost::asio::io_context io;
  auto guard = boost::asio::make_work_guard(io);
  std::thread thread([&] { io.run(); });

  std::mutex mu;
  std::condition_variable cv;
  std::vector<Clock::time_point> last_applied;  // per version: when the last node applied it
  std::vector<size_t> applied_count;
  last_applied.resize(changes + 2);
  applied_count.resize(changes + 2);
  std::vector<std::unique_ptr<Node>> nodes;
  std::atomic<size_t> connected{0};
  for (size_t i = 0; i < n_nodes; ++i) {
    auto node = std::make_unique<Node>();
    node->fence = veer::fleet::VersionFence("ranker", definition);
    Node* raw = node.get();
    veer::etcd::MemberCallbacks cb;
    cb.on_version = [&, raw](const veer::fleet::TableVersion& v) {
      if (!raw->fence.consider(v).apply()) return;
      // What a node does before it flips: build the slot table from the record.
      const veer::SlotTable table = veer::fleet::build_table_from_version(v, backends, kSeed);
      (void)table;
      raw->fence.applied(v);
      std::lock_guard lock(mu);
      if (v.version < applied_count.size() && ++applied_count[v.version] == n_nodes) {
        last_applied[v.version] = Clock::now();
        cv.notify_all();
      }
    };
    cb.on_connection = [&](bool up, const std::string&) {
      if (up) ++connected;
    };
    veer::etcd::MemberOptions options;
    options.node = "node-" + std::to_string(i + 1);
    options.prefix = prefix;
    options.lease_ttl_seconds = 5;
    // Each node talks to one member, as nodes spread over a cluster do.
    node->member = std::make_shared<veer::etcd::FleetMember>(io, std::vector<std::string>{etcd.url(i % 3)},
                                                             options, cb);
    boost::asio::post(io, [m = node->member] { m->start(); });
    nodes.push_back(std::move(node));
  }
  const auto until = Clock::now() + 30s;
  while (connected < n_nodes && Clock::now() < until) std::this_thread::sleep_for(10ms);
  if (connected < n_nodes) throw std::runtime_error("not every node connected within 30 s");

  Run r;
  const veer::fleet::BaseTable base{veer::build_table({10000, 0, 0}, 0, backends, kSeed), 0, {{}, {}, {}}};
  for (size_t c = 1; c <= changes; ++c) {
    const uint32_t canary = static_cast<uint32_t>(100 + (c * 37) % 4900);
    const uint32_t green = static_cast<uint32_t>((c * 13) % 1000);
    auto make = [&, canary, green](const std::optional<veer::fleet::TableVersion>& current) {
      return veer::fleet::next_table_version(current, base, svc, definition, kSeed,
                                             {std::vector<uint32_t>{10000 - canary - green, green, canary},
                                              std::nullopt, {}, "weights"},
                                             "node-1", 0);
    };
    std::promise<veer::etcd::ProposeResult> done;
    auto answered = done.get_future();
    const auto t0 = Clock::now();
    boost::asio::post(io, [&] {
      nodes[0]->member->propose("ranker", make, [&](veer::etcd::ProposeResult p) { done.set_value(std::move(p)); });
    });
    const veer::etcd::ProposeResult p = answered.get();
    const auto t_commit = Clock::now();
    if (!p.ok || p.version.version != c) throw std::runtime_error("propose failed: " + p.error);
    r.record_bytes = veer::fleet::table_version_to_string(p.version).size();
    std::unique_lock lock(mu);
    if (!cv.wait_for(lock, 10s, [&] { return applied_count[c] == n_nodes; }))
      throw std::runtime_error("version " + std::to_string(c) + " not applied by every node within 10 s");
    const auto t_all = std::max(last_applied[c], t_commit);
    r.commit_ms.push_back(std::chrono::duration<double, std::milli>(t_commit - t0).count());
    r.all_applied_ms.push_back(std::chrono::duration<double, std::milli>(t_all - t_commit).count());
  }
  std::vector<std::shared_ptr<veer::etcd::FleetMember>> members;
  for (auto& n : nodes) members.push_back(n->member);
  stop_members(io, members);
  guard.reset();
  io.stop();
  thread.join();
  return r;
}

// One node's report at interval I: counters and buckets that grow every interval, pushed values too.
veer::fleet::NodeReport bench_report(size_t node, uint64_t interval, const std::string& definition) {
  veer::fleet::NodeReport r;
  r.node = "node-" + std::to_string(node + 1);
  r.epoch = "bench-" + std::to_string(node + 1);
  r.seq = interval;
  r.at_ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
                .count();
  veer::fleet::ServiceReport& s = r.services["ranker"];
  s.definition = definition;
  s.applied_version = 1;
  const char* variants[] = {"blue", "green", "canary"};
  for (size_t v = 0; v < 3; ++v) {
    veer::KernelSample k;
    const uint64_t n = interval * (100 + 10 * node) / (v + 1);
    k.counters.new_flows = n;
    k.counters.responses = n;
    k.counters.http_2xx = n - n / 50;
    k.counters.http_5xx = n / 50;
    k.counters.packets_in = 6 * n;
    k.counters.packets_out = 5 * n;
    for (uint64_t b = 0; b < 20; ++b) k.latency[veer::latency_bucket_of((b + 1) * 1'000'000)] += n / 20;
    s.variants[variants[v]] = k;
    veer::PushData pushed;
    pushed.add(veer::PushItem{"conversion", std::nullopt, 1.0, interval * 3});
    pushed.add(veer::PushItem{"conversion", std::nullopt, 0.0, interval * 27});
    pushed.add(veer::PushItem{"basket", std::nullopt, 42.5, interval * 5});
    s.pushed[variants[v]] = pushed;
  }
  return r;
}

struct AggregateRun {
  std::vector<double> range_ms, aggregate_ms;
  size_t report_bytes = 0;
  size_t contributing_min = SIZE_MAX;
};

AggregateRun aggregate_run(const veer::etcd::EtcdCluster& etcd, size_t n_nodes, size_t intervals,
                           const std::string& prefix) {
  const veer::Config config = veer::parse_config(kConfig, "bench.yaml");
  const std::string definition = veer::fleet::definition_digest(config.services.at(0), kSeed);
  boost::asio::io_context io;
  auto guard = boost::asio::make_work_guard(io);
  std::thread thread([&] { io.run(); });
  std::vector<std::shared_ptr<veer::etcd::FleetMember>> members;
  for (size_t i = 0; i < n_nodes; ++i) {
    veer::etcd::MemberOptions options;
    options.node = "node-" + std::to_string(i + 1);
    options.prefix = prefix;
    options.campaign = false;  // the bench's node 1 plays the leader's part itself
    auto m = std::make_shared<veer::etcd::FleetMember>(io, std::vector<std::string>{etcd.url(i % 3)}, options,
                                                       veer::etcd::MemberCallbacks{});
    boost::asio::post(io, [m] { m->start(); });
    members.push_back(m);
  }
  // Every node publishes its report for INTERVAL; returns once all are in etcd (retries while leases come).
  auto publish_all = [&](uint64_t interval, AggregateRun& r) {
    const auto until = Clock::now() + 30s;
    std::vector<bool> in(n_nodes, false);
    for (;;) {
      std::promise<void> all;
      auto left = std::make_shared<std::atomic<size_t>>(n_nodes);
      auto ok = std::make_shared<std::vector<std::atomic<bool>>>(n_nodes);
      for (size_t i = 0; i < n_nodes; ++i) {
        const std::string text = veer::fleet::node_report_to_string(bench_report(i, interval, definition));
        r.report_bytes = text.size();
        boost::asio::post(io, [&, i, text, left, ok] {
          members[i]->publish(text, [&, i, left, ok](const veer::etcd::Status& s) {
            (*ok)[i] = s.ok;
            if (--*left == 0) all.set_value();
          });
        });
      }
      all.get_future().wait();
      bool every = true;
      for (size_t i = 0; i < n_nodes; ++i) every = every && (*ok)[i];
      if (every) return;
      if (Clock::now() > until) throw std::runtime_error("not every node could publish within 30 s");
      std::this_thread::sleep_for(50ms);
    }
  };
  AggregateRun r;
  veer::fleet::FleetAggregator aggregator("ranker", {"blue", "green", "canary"}, definition);
  veer::GateConfig conversion;
  conversion.name = conversion.metric = "conversion";
  conversion.source = veer::GateSource::Push;
  for (uint64_t interval = 1; interval <= intervals + 1; ++interval) {
    publish_all(interval, r);
    std::promise<std::pair<double, double>> done;
    const auto t0 = Clock::now();
    boost::asio::post(io, [&] {
      members[0]->client().range(
          members[0]->keys().nodes_prefix(), true, [&](veer::etcd::Status st, veer::etcd::RangeAnswer a) {
            const auto t_range = Clock::now();
            try {
              if (!st.ok) throw std::runtime_error("range: " + st.error);
              // What Daemon::fleet_window does with the answer.
              std::map<std::string, veer::fleet::NodeReport> latest;
              std::vector<std::string> live;
              for (const auto& kv : a.kvs) {
                const auto node = members[0]->keys().node_of(kv.key);
                if (!node) continue;
                live.push_back(*node);
                latest.emplace(*node, veer::fleet::node_report_from_string(kv.value));
              }
              const int64_t now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                                         std::chrono::system_clock::now().time_since_epoch()).count();
              const veer::fleet::FleetWindow w = aggregator.step(latest, live, now_ms, 60'000, 1.0);
              const veer::Measurement p95 = veer::fleet::fleet_measurement(w, "canary", "latency_p95_ms", 0);
              const veer::Measurement conv = veer::fleet::fleet_push_measurement(w, "canary", conversion, 0);
              if (interval > 1 && (p95.status != veer::Measurement::Status::Value ||
                                   conv.status != veer::Measurement::Status::Value))
                throw std::runtime_error("interval " + std::to_string(interval) + ": " + p95.reason + conv.reason);
              if (interval > 1) r.contributing_min = std::min(r.contributing_min, w.contributing);
              const auto t_done = Clock::now();
              done.set_value({std::chrono::duration<double, std::milli>(t_range - t0).count(),
                              std::chrono::duration<double, std::milli>(t_done - t0).count()});
            } catch (...) {
              done.set_exception(std::current_exception());  // not out of the io thread
            }
          });
    });
    const auto [range_ms, aggregate_ms] = done.get_future().get();
    if (interval == 1) continue;  // the first interval only takes baselines
    r.range_ms.push_back(range_ms);
    r.aggregate_ms.push_back(aggregate_ms);
  }
  stop_members(io, members);
  guard.reset();
  io.stop();
  thread.join();
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  size_t changes = 200;
  size_t intervals = 200;
  std::vector<size_t> fleet_sizes = {3, 50};
  for (int i = 1; i + 1 < argc; i += 2) {
    if (std::strcmp(argv[i], "--changes") == 0) changes = std::stoul(argv[i + 1]);
    else if (std::strcmp(argv[i], "--intervals") == 0) intervals = std::stoul(argv[i + 1]);
    else if (std::strcmp(argv[i], "--nodes") == 0) {
      fleet_sizes.clear();
      std::stringstream ss(argv[i + 1]);
      for (std::string part; std::getline(ss, part, ',');) fleet_sizes.push_back(std::stoul(part));
    } else {
      std::fprintf(stderr, "usage: %s [--changes N] [--nodes 3,50] [--intervals N]\n", argv[0]);
      return 2;
    }
  }
  try {
    veer::etcd::EtcdCluster etcd(3);
    std::printf("etcd: 3 members on loopback (%s, %s, %s)\n", etcd.url(0).c_str(), etcd.url(1).c_str(),
                etcd.url(2).c_str());
    std::this_thread::sleep_for(2s);  // elect a leader
    std::printf("%-6s %-8s %-24s %-28s %-14s %s\n", "nodes", "changes", "commit p50/p99 ms (ref)",
                "all applied p50/p99 ms", "ratio p99", "etcd per change");
    int run_index = 0;
    for (size_t n : fleet_sizes) {
      const Run r = run(etcd, n, changes, "/bench" + std::to_string(run_index++));
      const double c50 = percentile(r.commit_ms, 0.5), c99 = percentile(r.commit_ms, 0.99);
      const double a50 = percentile(r.all_applied_ms, 0.5), a99 = percentile(r.all_applied_ms, 0.99);
      std::printf("%-6zu %-8zu %6.2f / %-15.2f %8.2f / %-17.2f %6.2fx        1 read + 1 txn, %zu B record\n", n,
                  changes, c50, c99, a50, a99, c99 > 0 ? a99 / c99 : 0.0, r.record_bytes);
    }
    std::printf("targets: 3 nodes live p99 < 50 ms after the commit; 50 nodes apply p99 < 500 ms\n\n");
    std::printf("%-6s %-10s %-24s %-28s %-10s %s\n", "nodes", "intervals", "range p50/p99 ms (ref)",
                "aggregate p50/p99 ms", "ratio p99", "report");
    for (size_t n : fleet_sizes) {
      const AggregateRun r = aggregate_run(etcd, n, intervals, "/bench" + std::to_string(run_index++));
      const double r50 = percentile(r.range_ms, 0.5), r99 = percentile(r.range_ms, 0.99);
      const double a50 = percentile(r.aggregate_ms, 0.5), a99 = percentile(r.aggregate_ms, 0.99);
      std::printf("%-6zu %-10zu %6.2f / %-15.2f %8.2f / %-17.2f %6.2fx   %zu B; every interval on %zu nodes\n", n,
                  intervals, r50, r99, a50, a99, r99 > 0 ? a99 / r99 : 0.0, r.report_bytes, r.contributing_min);
    }
    std::printf("aggregate: the leader's read of every report, decoded and summed, and the canary's P95 and push "
                "gate measured on the sum\n");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "veer_fleet_bench: %s\n", e.what());
    return 1;
  }
  return 0;
}
