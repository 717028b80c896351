// state.json: round trip, atomic write, corrupt files, id assignment, weights.
#include "control/state_file.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

using namespace veer;
namespace fs = std::filesystem;

namespace {

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "veer-state-test-XXXXXX").string();
    path_ = ::mkdtemp(tmpl.data());
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

std::string read_all(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

NodeState sample_state() {
  NodeState s;
  s.service_ids = {{"ranker", 0}, {"embedder", 3}};
  s.services["ranker"].weights_bp = {{"blue", 9000}, {"green", 500}, {"canary", 500}};
  s.services["ranker"].draining = {"10.1.1.2:8080", "[fd00:1::2]:8080"};
  s.services["embedder"].weights_bp = {{"v1", 9999}, {"v2", 1}};
  s.services["embedder"].fleet_version = 42;  // fleet mode: the last version applied
  return s;
}

ServiceConfig three_variant_service() {
  ServiceConfig svc;
  svc.name = "ranker";
  svc.variants = {{"blue", {}, ""}, {"green", {}, ""}, {"canary", {}, ""}};
  svc.weights_bp = {10000, 0, 0};
  svc.stable = "blue";
  return svc;
}

}  // namespace

TEST(StateFile, JsonRoundTrip) {
  const NodeState s = sample_state();
  EXPECT_EQ(state_from_json(state_to_json(s)), s);
  EXPECT_EQ(state_from_json(state_to_json(NodeState{})), NodeState{});
}

TEST(StateFile, AFleetVersionThatIsNotACountIsRefused) {
  auto text = [](const std::string& value) {
    return std::string(R"({"version": 1, "service_ids": {"a": 0}, "services": {"a": {"weights": {}, )") +
           R"("draining": [], "fleet_version": )" + value + "}}}";
  };
  EXPECT_EQ(state_from_json(text("5")).services.at("a").fleet_version, 5u);
  for (const char* bad : {"-1", "\"7\"", "1.5"}) EXPECT_THROW(state_from_json(text(bad)), StateFileError) << bad;
}

TEST(StateFile, WeightsAreStoredAsTwoDecimalStrings) {
  const std::string text = state_to_json(sample_state());
  EXPECT_NE(text.find("\"99.99\""), std::string::npos);
  EXPECT_NE(text.find("\"0.01\""), std::string::npos);
}

TEST(StateFile, FileRoundTripCreatesFolder) {
  TempDir dir;
  const std::string path = (dir.path() / "nested" / "state.json").string();
  write_state_file(path, sample_state());
  auto load = read_state_file(path);
  EXPECT_FALSE(load.problem.has_value());
  EXPECT_EQ(load.state, sample_state());
}

TEST(StateFile, AtomicWriteLeavesNoTempFileAndReplacesWhole) {
  TempDir dir;
  const std::string path = (dir.path() / "state.json").string();
  write_state_file(path, sample_state());
  struct stat before {};
  ASSERT_EQ(::stat(path.c_str(), &before), 0);

  NodeState smaller;
  smaller.service_ids = {{"ranker", 0}};
  write_state_file(path, smaller);
  struct stat after {};
  ASSERT_EQ(::stat(path.c_str(), &after), 0);
  // rename() swaps in a new inode: the old file was never rewritten in place.
  EXPECT_NE(before.st_ino, after.st_ino);
  // The new content is complete (no tail of the longer old content).
  EXPECT_EQ(read_all(path), state_to_json(smaller));
  int files = 0;
  for (const auto& e : fs::directory_iterator(dir.path())) {
    ++files;
    EXPECT_EQ(e.path().filename(), "state.json");
  }
  EXPECT_EQ(files, 1);
}

TEST(StateFile, FailedWriteKeepsOldFileAndLeavesNoTemp) {
  if (::geteuid() == 0) {
    // root ignores directory permissions; use a path whose parent is a file instead.
    TempDir dir;
    const std::string path = (dir.path() / "state.json").string();
    write_state_file(path, sample_state());
    const fs::path blocker = dir.path() / "file";
    std::ofstream(blocker) << "x";
    EXPECT_THROW(write_state_file((blocker / "state.json").string(), NodeState{}), StateFileError);
    EXPECT_EQ(read_state_file(path).state, sample_state());
    return;
  }
  TempDir dir;
  const std::string path = (dir.path() / "state.json").string();
  write_state_file(path, sample_state());
  fs::permissions(dir.path(), fs::perms::owner_read | fs::perms::owner_exec);
  EXPECT_THROW(write_state_file(path, NodeState{}), StateFileError);
  fs::permissions(dir.path(), fs::perms::owner_all);
  EXPECT_EQ(read_state_file(path).state, sample_state());
  int files = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(dir.path())) ++files;
  EXPECT_EQ(files, 1);
}

TEST(StateFile, MissingFileIsEmptyWithoutProblem) {
  TempDir dir;
  auto load = read_state_file((dir.path() / "absent.json").string());
  EXPECT_FALSE(load.problem.has_value());
  EXPECT_EQ(load.state, NodeState{});
}

TEST(StateFile, CorruptFileIsReportedNotFatal) {
  TempDir dir;
  const std::string path = (dir.path() / "state.json").string();
  const std::string full = state_to_json(sample_state());
  // A truncated file (what a non-atomic writer leaves after a crash).
  std::ofstream(path, std::ios::binary) << full.substr(0, full.size() / 2);
  auto load = read_state_file(path);
  ASSERT_TRUE(load.problem.has_value());
  EXPECT_NE(load.problem->find(path), std::string::npos);
  EXPECT_EQ(load.state, NodeState{});
}

TEST(StateFile, SemanticallyBadFilesAreRefused) {
  EXPECT_THROW(state_from_json("[]"), StateFileError);
  EXPECT_THROW(state_from_json(R"({"service_ids":{}})"), StateFileError);            // no version
  EXPECT_THROW(state_from_json(R"({"version":99})"), StateFileError);                // future version
  EXPECT_THROW(state_from_json(R"({"version":1,"service_ids":{"a":64}})"), StateFileError);
  EXPECT_THROW(state_from_json(R"({"version":1,"service_ids":{"a":-1}})"), StateFileError);
  EXPECT_THROW(state_from_json(R"({"version":1,"service_ids":{"a":1,"b":1}})"), StateFileError);
  EXPECT_THROW(state_from_json(R"({"version":1,"services":{"a":{"weights":{"x":"abc"}}}})"), StateFileError);
  EXPECT_THROW(state_from_json(R"({"version":1,"services":{"a":{"weights":{"x":50}}}})"), StateFileError);
  EXPECT_THROW(state_from_json(R"({"version":1,"services":{"a":{"draining":["nope"]}}})"), StateFileError);
  EXPECT_NO_THROW(state_from_json(R"({"version":1})"));
}

TEST(ServiceIds, StableAcrossReorderAndRemoval) {
  auto first = assign_service_ids({"a", "b", "c"}, {});
  EXPECT_EQ(first, (std::map<std::string, uint32_t>{{"a", 0}, {"b", 1}, {"c", 2}}));
  // b removed, d added, order changed: a and c keep their ids, d takes the freed 1.
  auto second = assign_service_ids({"d", "c", "a"}, first);
  EXPECT_EQ(second, (std::map<std::string, uint32_t>{{"a", 0}, {"c", 2}, {"d", 1}}));
  // Ids out of range or duplicated in a previous map are not trusted.
  auto third = assign_service_ids({"x", "y"}, {{"x", 5}, {"y", 5}});
  EXPECT_EQ(third.at("x"), 5u);
  EXPECT_EQ(third.at("y"), 0u);
  auto fourth = assign_service_ids({"x"}, {{"x", 1000}});
  EXPECT_EQ(fourth.at("x"), 0u);
}

TEST(ServiceIds, TooManyServices) {
  std::vector<std::string> names;
  for (int i = 0; i <= VEER_MAX_SERVICES; ++i) names.push_back("s" + std::to_string(i));
  EXPECT_THROW(assign_service_ids(names, {}), StateFileError);
  names.pop_back();
  EXPECT_EQ(assign_service_ids(names, {}).size(), size_t{VEER_MAX_SERVICES});
}

TEST(EffectiveWeights, RuntimeWeightsWinWhenTheyFit) {
  const ServiceConfig svc = three_variant_service();
  ServiceState st;
  st.weights_bp = {{"blue", 9000}, {"green", 500}, {"canary", 500}};
  EXPECT_EQ(effective_weights(svc, &st), (std::vector<uint32_t>{9000, 500, 500}));
  EXPECT_EQ(weights_by_name(svc, {9000, 500, 500}), st.weights_bp);
}

TEST(EffectiveWeights, ConfigWeightsWhenStateDoesNotFit) {
  const ServiceConfig svc = three_variant_service();
  EXPECT_EQ(effective_weights(svc, nullptr), svc.weights_bp);
  ServiceState none;
  EXPECT_EQ(effective_weights(svc, &none), svc.weights_bp);
  ServiceState other_variants;
  other_variants.weights_bp = {{"blue", 9000}, {"green", 500}, {"beta", 500}};
  EXPECT_EQ(effective_weights(svc, &other_variants), svc.weights_bp);
  ServiceState fewer;
  fewer.weights_bp = {{"blue", 9500}, {"green", 500}};
  EXPECT_EQ(effective_weights(svc, &fewer), svc.weights_bp);
  ServiceState bad_sum;
  bad_sum.weights_bp = {{"blue", 9000}, {"green", 500}, {"canary", 400}};
  EXPECT_EQ(effective_weights(svc, &bad_sum), svc.weights_bp);
}

TEST(StateFileIssue4, RolloutStateAndStableRoundTrip) {
  NodeState s;
  s.service_ids["m"] = 0;
  ServiceState& m = s.services["m"];
  m.weights_bp = {{"blue", 8000}, {"canary", 2000}};
  m.stable = "canary";
  RolloutState r;
  r.phase = RolloutPhase::Paused;
  r.step = 2;
  r.pause_spent = Millis{1500};
  r.desired_weights_bp = {8000, 2000};
  r.gates["p95"].result = GateResult::Failed;
  r.gates["p95"].value = 312.5;
  r.gates["p95"].failures = 1;
  m.rollout = r;
  const NodeState back = state_from_json(state_to_json(s));
  EXPECT_EQ(back, s);
  ASSERT_TRUE(back.services.at("m").rollout);
  EXPECT_EQ(back.services.at("m").rollout->step, 2u);
  // A service without either stays without.
  NodeState plain;
  plain.services["x"].weights_bp = {{"a", 10000}};
  EXPECT_EQ(state_from_json(state_to_json(plain)), plain);
  // A damaged rollout state makes the file unusable (reported, never fatal).
  EXPECT_THROW(state_from_json(R"({"version":1,"services":{"m":{"rollout":{"phase":"Flying"}}}})"), StateFileError);
}

TEST(StateFileRolloutTotals, PushedValuesAndFlowBasesRoundTripExactly) {
  NodeState s;
  s.service_ids["m"] = 0;
  ServiceState& m = s.services["m"];
  PushItem conversions{"conversion", std::nullopt, 1, 390};
  PushItem misses{"conversion", std::nullopt, 0, 9610};
  PushItem revenue{"revenue", std::nullopt, 0.1, 3};  // 0.1 has no exact binary form: must still round-trip
  PushItem cats{"prediction", std::string("cat"), 12.5, 1};
  m.totals.pushed["a"].add(conversions);
  m.totals.pushed["a"].add(misses);
  m.totals.pushed["b"].add(revenue);
  m.totals.pushed["b"].add(cats);
  m.totals.flows_base = {{"a", 123456789012ULL}, {"b", 0}};
  const std::string text = state_to_json(s);
  const NodeState back = state_from_json(text);
  EXPECT_EQ(back, s);
  const Observations& a = back.services.at("m").totals.pushed.at("a").metrics.at("conversion");
  EXPECT_EQ(a.n, 10000u);
  EXPECT_EQ(a.sum, 390.0);
  EXPECT_EQ(back.services.at("m").totals.pushed.at("b").metrics.at("revenue").sum, 0.1 * 3);
  EXPECT_EQ(back.services.at("m").totals.pushed.at("b").labels.at("prediction").at("cat"), 12.5);
  EXPECT_EQ(back.services.at("m").totals.flows_base.at("a"), 123456789012ULL);
  // Nothing gathered: no "rollout_totals" key at all.
  NodeState plain;
  plain.services["x"].weights_bp = {{"a", 10000}};
  EXPECT_EQ(state_to_json(plain).find("rollout_totals"), std::string::npos);
  EXPECT_NE(text.find("rollout_totals"), std::string::npos);
}

TEST(StateFileRolloutTotals, DamagedTotalsAreRefusedNamingThePlace) {
  auto problem = [](const std::string& totals) {
    try {
      state_from_json(R"({"version":1,"services":{"m":{"rollout_totals":)" + totals + "}}}");
    } catch (const StateFileError& e) {
      return std::string(e.what());
    }
    return std::string("accepted");
  };
  EXPECT_EQ(problem("[]"), "services.m.rollout_totals must be an object");
  EXPECT_EQ(problem(R"({"flows_base":{"a":-1}})"), "services.m.rollout_totals.flows_base.a must be a count");
  EXPECT_EQ(problem(R"({"flows_base":{"a":"7"}})"), "services.m.rollout_totals.flows_base.a must be a count");
  EXPECT_NE(problem(R"({"pushed":{"a":{"metrics":{"c":{"n":1,"sum":1}}}}})").find("services.m.rollout_totals.pushed.a: metrics.c"),
            std::string::npos);
  EXPECT_NE(problem(R"({"pushed":{"a":{"metrics":{"c":{"n":-2,"sum":1,"sum_squares":1}}}}})").find("metrics.c"),
            std::string::npos);
  EXPECT_NE(problem(R"({"pushed":{"a":{"labels":{"prediction":{"cat":-1}}}}})").find("labels.prediction.cat"),
            std::string::npos);
  EXPECT_NE(problem(R"({"pushed":{"a":7}})").find("pushed.a: must be an object"), std::string::npos);
  EXPECT_EQ(problem(R"({"pushed":{"a":{"metrics":{},"labels":{}}},"flows_base":{"a":3}})"), "accepted");
}
