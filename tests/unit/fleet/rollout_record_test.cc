// The rollout record the fleet keeps in etcd: what a new leader restores its
// engine from. It must round-trip exactly, refuse anything malformed (it is
// outside input to every node), and order itself by seq so that a duplicate
// or an old record from etcd's watch is never mirrored.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "fleet/rollout_record.h"

namespace veer::fleet {
namespace {

using nlohmann::json;

RolloutState paused_state() {
  RolloutState s;
  s.phase = RolloutPhase::Paused;
  s.step = 1;
  s.step_started = Millis{1'700'000'000'000};
  s.pause_spent = Millis{2500};
  s.last_update = Millis{1'700'000'002'500};
  s.desired_weights_bp = {9000, 0, 1000};
  GateStatus g;
  g.result = GateResult::Successful;
  g.value = 41.5;
  g.at = Millis{1'700'000'002'500};
  s.gates["latency"] = g;
  return s;
}

RolloutRecord record(uint64_t seq = 7) {
  RolloutRecord r = next_rollout_record(std::nullopt, "ranker", "0123456789abcdef", 42, "node-1", 1'700'000'002'600,
                                        12, paused_state(),
                                        {RolloutEvent{Millis{1'700'000'002'500}, "step", "step 2/4: pause 6s",
                                                      {{"step", 1}, {"weight.canary", 10}}}});
  r.seq = seq;
  return r;
}

TEST(RolloutRecord, RoundTripsExactly) {
  const RolloutRecord r = record();
  const RolloutRecord back = rollout_record_from_string(rollout_record_to_string(r));
  EXPECT_EQ(back, r);
  EXPECT_EQ(back.state.pause_spent, Millis{2500});
  EXPECT_EQ(back.state.gates.at("latency").value, 41.5);
  ASSERT_EQ(back.events.size(), 1u);
  EXPECT_EQ(back.events[0].values.at("weight.canary"), 10);
}

TEST(RolloutRecord, SuccessorsCountUpAndKeepTheLastEvents) {
  const RolloutRecord first = record(1);
  std::vector<RolloutEvent> many;
  for (int i = 0; i < 100; ++i)
    many.push_back(RolloutEvent{Millis{i}, "gate", std::string(3000, 'x'),
                                {{"value", i}, {"nan", std::nan("")}}});
  const RolloutRecord next =
      next_rollout_record(first, "ranker", first.definition, 42, "node-2", 5, 0, first.state, many);
  EXPECT_EQ(next.seq, 2u);
  EXPECT_EQ(next.writer, "node-2");
  ASSERT_EQ(next.events.size(), kMaxRecordEvents);
  EXPECT_EQ(next.events.front().time, Millis{100 - static_cast<int>(kMaxRecordEvents)});  // the last ones
  EXPECT_EQ(next.events.front().message.size(), kMaxEventMessage);
  EXPECT_FALSE(next.events.front().values.count("nan"));  // JSON has no NaN: the record stays readable
  EXPECT_NO_THROW(rollout_record_from_string(rollout_record_to_string(next)));
}

TEST(RolloutRecord, OnlyANewerSeqIsMirrored) {
  const RolloutRecord held = record(7);
  EXPECT_TRUE(newer(record(1), std::nullopt));
  EXPECT_TRUE(newer(record(8), held));
  EXPECT_FALSE(newer(record(7), held));  // the watch delivered it twice
  EXPECT_FALSE(newer(record(3), held));  // an old event replayed
}

TEST(RolloutRecord, MalformedRecordsAreRefusedNamingTheProblem) {
  const json good = to_json(record());
  auto refused = [&](const std::function<void(json&)>& mangle, const std::string& says) {
    json j = good;
    mangle(j);
    try {
      rollout_record_from_json(j);
      ADD_FAILURE() << "accepted: " << j.dump().substr(0, 200);
    } catch (const RolloutRecordError& e) {
      EXPECT_NE(std::string(e.what()).find(says), std::string::npos) << e.what();
    }
  };
  refused([](json& j) { j["format"] = 2; }, "format");
  refused([](json& j) { j["seq"] = 0; }, "seq");
  refused([](json& j) { j["seq"] = -3; }, "seq");
  refused([](json& j) { j["term"] = -1; }, "term");
  refused([](json& j) { j.erase("writer"); }, "writer");
  refused([](json& j) { j["service"] = ""; }, "service");
  refused([](json& j) { j["table_version"] = "12"; }, "table_version");
  refused([](json& j) { j["state"]["phase"] = "Flying"; }, "state");
  refused([](json& j) { j["state"] = 5; }, "state");
  refused([](json& j) { j["events"] = json::object(); }, "events");
  refused([](json& j) { j["events"][0]["values"]["x"] = "high"; }, "value");
  refused([](json& j) { j["events"] = json::array(); for (size_t i = 0; i <= kMaxRecordEvents; ++i) j["events"].push_back(j["format"]); }, "events");
  EXPECT_THROW(rollout_record_from_string("{\"format\":1,"), RolloutRecordError);
  EXPECT_THROW(rollout_record_from_string("[]"), RolloutRecordError);
}

}  // namespace
}  // namespace veer::fleet
