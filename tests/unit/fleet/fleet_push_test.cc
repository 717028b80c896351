// Pushed values and A/B counts across a fleet: each node's reports carry what
// `veerctl push` gave it in its epoch as running sums, the leader takes their
// growth per interval like the kernel counters (a restart by epoch, a drop is
// refused), a push gate is judged on the sum of every node's pushes, and an
// A/B rollout's totals (flows and pushed values since the start) grow in the
// rollout record interval by interval, so any node can report them.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>

#include "fleet/fleet_window.h"
#include "fleet/node_report.h"
#include "fleet/rollout_record.h"
#include "rollout/gate_inputs.h"

namespace veer::fleet {
namespace {

using nlohmann::json;

const std::string kDefinition = "00112233445566ff";
const std::vector<std::string> kLive = {"node-1", "node-2", "node-3"};
constexpr int64_t kMaxAge = 2000;
constexpr int64_t T0 = 1765000000000;

PushData conversions(uint64_t converted, uint64_t not_converted) {
  PushData d;
  if (converted) d.add(PushItem{"conversion", std::nullopt, 1.0, converted});
  if (not_converted) d.add(PushItem{"conversion", std::nullopt, 0.0, not_converted});
  return d;
}

KernelSample flows(uint64_t n) {
  KernelSample s;
  s.counters.new_flows = n;
  return s;
}

NodeReport report(const std::string& node, const std::string& epoch, uint64_t seq, int64_t at, uint64_t blue_flows,
                  uint64_t canary_flows, std::map<std::string, PushData> pushed = {}) {
  NodeReport r{node, epoch, seq, at, {}};
  ServiceReport s{kDefinition, 1, {{"blue", flows(blue_flows)}, {"canary", flows(canary_flows)}}};
  s.pushed = std::move(pushed);
  r.services["ranker"] = std::move(s);
  return r;
}

GateConfig push_gate(const std::string& metric) {
  GateConfig g;
  g.name = metric;
  g.source = GateSource::Push;
  g.metric = metric;
  return g;
}

TEST(FleetPushData, GrowthIsTheDifferenceOfRunningSumsAndADropIsNamed) {
  PushData before = conversions(3, 7);
  before.add(PushItem{"prediction", std::string("cat"), 4, 1});
  PushData after = before;
  after.merge(conversions(5, 5));
  after.add(PushItem{"prediction", std::string("cat"), 2, 1});
  after.add(PushItem{"prediction", std::string("dog"), 6, 1});
  after.add(PushItem{"latency", std::nullopt, 12.5, 2});
  std::string drop = "x";
  const PushData g = push_growth(before, after, &drop);
  EXPECT_EQ(drop, "");
  EXPECT_EQ(g.metrics.at("conversion").n, 10u);
  EXPECT_DOUBLE_EQ(g.metrics.at("conversion").sum, 5);
  EXPECT_EQ(g.metrics.at("latency").n, 2u);
  EXPECT_DOUBLE_EQ(g.metrics.at("latency").sum, 25);
  EXPECT_DOUBLE_EQ(g.labels.at("prediction").at("cat"), 2);
  EXPECT_DOUBLE_EQ(g.labels.at("prediction").at("dog"), 6);
  // Nothing new: nothing in the growth.
  EXPECT_TRUE(push_growth(after, after, &drop).empty());
  EXPECT_EQ(drop, "");
  // Running sums only grow: fewer observations, a label gone, a metric gone.
  push_growth(after, before, &drop);
  EXPECT_NE(drop.find("fewer observations"), std::string::npos) << drop;
  PushData no_dog = after;
  no_dog.labels["prediction"].erase("dog");
  push_growth(after, no_dog, &drop);
  EXPECT_NE(drop.find("prediction.dog"), std::string::npos) << drop;
  PushData no_latency = after;
  no_latency.metrics.erase("latency");
  push_growth(after, no_latency, &drop);
  EXPECT_NE(drop.find("'latency' is gone"), std::string::npos) << drop;
}

TEST(FleetPushData, AReportCarriesPushedValuesAndRefusesBadOnes) {
  const NodeReport r = report("node-2", "e1", 3, T0, 100, 10, {{"canary", conversions(2, 8)}});
  EXPECT_EQ(node_report_from_string(node_report_to_string(r)), r);
  const json good = to_json(r);
  ASSERT_TRUE(good["services"]["ranker"].contains("pushed"));
  // Nothing pushed: no "pushed" at all (reports of nodes without pushes stay as they were).
  EXPECT_FALSE(to_json(report("node-1", "e1", 3, T0, 100, 10))["services"]["ranker"].contains("pushed"));

  auto refused = [&](const json& j, const std::string& expect) {
    try {
      node_report_from_json(j);
      ADD_FAILURE() << "accepted: " << j.dump();
    } catch (const NodeReportError& e) {
      EXPECT_NE(std::string(e.what()).find(expect), std::string::npos) << e.what();
    }
  };
  json j = good;
  j["services"]["ranker"]["pushed"] = json::array();
  refused(j, "\"pushed\" must be an object");
  j = good;
  j["services"]["ranker"]["pushed"]["green"] = to_json(conversions(1, 1));
  refused(j, "a variant without telemetry");
  j = good;
  j["services"]["ranker"]["pushed"]["canary"]["metrics"]["conversion"]["n"] = -1;
  refused(j, "pushed to 'canary'");
  j = good;
  for (int i = 0; i < 70; ++i)
    j["services"]["ranker"]["pushed"]["canary"]["metrics"]["m" + std::to_string(i)] = {
        {"n", 1u}, {"sum", 1}, {"sum_squares", 1}};
  refused(j, "more than 64");
}

TEST(FleetPushData, ThePushGateReadsEveryNodesPushesSummedAndARestartCountsItsNewEpoch) {
  FleetAggregator agg("ranker", {"blue", "canary"}, kDefinition);
  std::map<std::string, NodeReport> latest;
  for (const auto& n : kLive) latest[n] = report(n, "e1", 1, T0, 0, 0);
  FleetWindow w = agg.step(latest, kLive, T0 + 100, kMaxAge, 1.0);  // baselines
  EXPECT_EQ(fleet_push_measurement(w, "canary", push_gate("conversion"), 0).status, Measurement::Status::Inconclusive);

  // Only node 2 (not the leader) was pushed to: its values decide the gate.
  latest["node-1"] = report("node-1", "e1", 2, T0 + 1000, 10, 1);
  latest["node-2"] = report("node-2", "e1", 2, T0 + 1000, 10, 1, {{"canary", conversions(1, 9)}});
  latest["node-3"] = report("node-3", "e1", 2, T0 + 1000, 10, 1);
  w = agg.step(latest, kLive, T0 + 1100, kMaxAge, 1.0);
  Measurement m = fleet_push_measurement(w, "canary", push_gate("conversion"), 0);
  ASSERT_EQ(m.status, Measurement::Status::Value) << m.reason;
  EXPECT_DOUBLE_EQ(m.value, 0.1);
  EXPECT_EQ(m.samples, 10u);
  EXPECT_EQ(fleet_push_measurement(w, "blue", push_gate("conversion"), 0).status,
            Measurement::Status::Inconclusive);  // nothing pushed for blue

  // Next interval: node 2 grew by 10 more (running sums 2/20), node 3 restarted with 3 pushes in its
  // new epoch; the window is the growth: 1 + 3 converted of 10 + 3.
  latest["node-1"] = report("node-1", "e1", 3, T0 + 2000, 20, 2);
  latest["node-2"] = report("node-2", "e1", 3, T0 + 2000, 20, 2, {{"canary", conversions(2, 18)}});
  latest["node-3"] = report("node-3", "e2", 1, T0 + 2000, 1, 1, {{"canary", conversions(3, 0)}});
  w = agg.step(latest, kLive, T0 + 2100, kMaxAge, 1.0);
  EXPECT_EQ(w.contributing, 3u);
  m = fleet_push_measurement(w, "canary", push_gate("conversion"), 0);
  ASSERT_EQ(m.status, Measurement::Status::Value) << m.reason;
  EXPECT_EQ(m.samples, 13u);
  EXPECT_DOUBLE_EQ(m.value, 4.0 / 13.0);

  // A node whose pushed sums went down within its epoch is left out, with the reason.
  latest["node-2"] = report("node-2", "e1", 4, T0 + 3000, 30, 3, {{"canary", conversions(1, 1)}});
  latest["node-1"] = report("node-1", "e1", 4, T0 + 3000, 30, 3);
  latest["node-3"] = report("node-3", "e2", 2, T0 + 3000, 2, 2, {{"canary", conversions(3, 0)}});
  w = agg.step(latest, kLive, T0 + 3100, kMaxAge, 1.0);
  EXPECT_EQ(w.contributing, 2u);
  bool named = false;
  for (const auto& c : w.nodes)
    if (c.node == "node-2") {
      EXPECT_EQ(c.state, NodeState::Invalid);
      named = c.reason.find("fewer observations") != std::string::npos;
    }
  EXPECT_TRUE(named);
  // Below min_nodes (every live node): Inconclusive, never the smaller sum.
  m = fleet_push_measurement(w, "canary", push_gate("conversion"), 0);
  EXPECT_EQ(m.status, Measurement::Status::Inconclusive);
  EXPECT_NE(m.reason.find("2 of 3 live nodes"), std::string::npos) << m.reason;
  EXPECT_EQ(fleet_push_measurement(w, "canary", push_gate("conversion"), 2).status,
            Measurement::Status::Inconclusive);  // node 1 and 3 pushed nothing new: no data either
}

TEST(FleetAbTotals, GrowIntervalByIntervalAndTravelInTheRolloutRecord) {
  FleetAggregator agg("ranker", {"blue", "canary"}, kDefinition);
  std::map<std::string, NodeReport> latest;
  for (const auto& n : kLive) latest[n] = report(n, "e1", 1, T0, 5, 5);
  FleetTotals totals;
  totals.add(agg.step(latest, kLive, T0 + 100, kMaxAge, 1.0));  // baselines: nothing counts
  EXPECT_EQ(totals.flows["blue"], 0u);
  latest["node-1"] = report("node-1", "e1", 2, T0 + 1000, 105, 55, {{"blue", conversions(4, 6)}});
  latest["node-2"] = report("node-2", "e1", 2, T0 + 1000, 25, 15);
  latest["node-3"] = report("node-3", "e1", 2, T0 + 1000, 5, 5, {{"canary", conversions(1, 1)}});
  totals.add(agg.step(latest, kLive, T0 + 1100, kMaxAge, 1.0));
  latest["node-2"] = report("node-2", "e1", 3, T0 + 2000, 45, 25, {{"canary", conversions(2, 0)}});
  totals.add(agg.step(latest, kLive, T0 + 2100, kMaxAge, 1.0));
  EXPECT_EQ(totals.flows.at("blue"), 100u + 20 + 20);
  EXPECT_EQ(totals.flows.at("canary"), 50u + 10 + 10);
  EXPECT_EQ(totals.pushed.at("blue").metrics.at("conversion").n, 10u);
  EXPECT_EQ(totals.pushed.at("canary").metrics.at("conversion").n, 4u);
  EXPECT_DOUBLE_EQ(totals.pushed.at("canary").metrics.at("conversion").sum, 3);

  RolloutState st;
  st.phase = RolloutPhase::Progressing;
  const RolloutRecord r = next_rollout_record(std::nullopt, "ranker", kDefinition, 9, "node-1", T0, 0, st, {}, totals);
  const RolloutRecord back = rollout_record_from_string(rollout_record_to_string(r));
  EXPECT_EQ(back, r);
  EXPECT_EQ(back.totals.flows.at("blue"), 140u);

  const json good = to_json(r);
  auto refused = [&](const json& j, const std::string& expect) {
    try {
      rollout_record_from_json(j);
      ADD_FAILURE() << "accepted: " << j.dump();
    } catch (const RolloutRecordError& e) {
      EXPECT_NE(std::string(e.what()).find(expect), std::string::npos) << e.what();
    }
  };
  json j = good;
  j["totals"]["flows"]["blue"] = -3;
  refused(j, "totals.flows.blue");
  j = good;
  j["totals"] = "x";
  refused(j, "\"totals\" must be an object");
  j = good;
  j["totals"]["pushed"]["canary"]["metrics"]["conversion"]["sum_squares"] = -1;
  refused(j, "totals.pushed.canary");
  // Without totals (canary and blue-green records): no "totals" key, read back empty.
  const RolloutRecord plain = next_rollout_record(std::nullopt, "ranker", kDefinition, 9, "node-1", T0, 0, st, {});
  EXPECT_FALSE(to_json(plain).contains("totals"));
  EXPECT_TRUE(rollout_record_from_json(to_json(plain)).totals.empty());
}

TEST(FleetPushData, LimitsOfDataReadFromOutside) {
  PushData d = conversions(1, 1);
  EXPECT_NO_THROW(check_push_limits(d));
  d.metrics["conversion"].sum = std::numeric_limits<double>::infinity();
  EXPECT_THROW(check_push_limits(d), PushError);
  PushData labels;
  for (int i = 0; i < 1025; ++i) labels.labels["prediction"]["c" + std::to_string(i)] = 1;
  EXPECT_THROW(check_push_limits(labels), PushError);
}

}  // namespace
}  // namespace veer::fleet
