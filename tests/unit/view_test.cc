// The live view's history and documents (view/history.h, view/documents.h).
#include <gtest/gtest.h>

#include "veer/view_assets.h"
#include "view/documents.h"
#include "view/history.h"

namespace veer::view {
namespace {

using nlohmann::json;

// A service status object in Daemon::service_status's shape.
json status(const std::string& desired_canary, const std::string& applied_canary, uint64_t blue_flows,
            uint64_t canary_flows, json gate_value = 12.5, const std::string& result = "Successful") {
  auto pct = [](const std::string& canary) {
    const double c = std::stod(canary);
    char buf[16];
    std::snprintf(buf, sizeof buf, "%.2f", 100.0 - c);
    return std::string(buf);
  };
  return json{{"name", "ranker"},
              {"vip", "10.0.0.100"},
              {"port", 80},
              {"protocol", "tcp"},
              {"stable", "blue"},
              {"variants",
               {{{"name", "blue"},
                 {"weight_desired", pct(desired_canary)},
                 {"weight_applied", pct(applied_canary)},
                 {"flows", blue_flows},
                 {"window", {{"latency_p95_ms", 3.5}, {"error_rate", 0.0}}}},
                {{"name", "canary"},
                 {"weight_desired", desired_canary},
                 {"weight_applied", applied_canary},
                 {"flows", canary_flows},
                 {"window", {{"latency_p95_ms", nullptr}, {"error_rate", nullptr}}}}}},
              {"rollout",
               {{"strategy", "canary"},
                {"phase", "Progressing"},
                {"step", 2},
                {"steps", 7},
                {"canary", "canary"},
                {"stable", "blue"},
                {"gates",
                 {{{"name", "latency_p95_ms"},
                   {"metric", "latency_p95_ms"},
                   {"max", 200},
                   {"value", gate_value},
                   {"last_result", result},
                   {"failures", result == "Failed" ? 1 : 0}}}}}}};
}

TEST(ViewSample, ReadsWeightsWindowAndGatesOfAStatusObject) {
  const Sample s = sample_of_status(status("5.00", "5.00", 100, 7), 1000);
  EXPECT_EQ(s.time_ms, 1000);
  EXPECT_EQ(s.phase, "Progressing");
  EXPECT_EQ(s.step, 2u);
  ASSERT_EQ(s.variants.size(), 2u);
  EXPECT_EQ(s.variants[0].name, "blue");
  EXPECT_DOUBLE_EQ(s.variants[0].desired_pct, 95.0);
  EXPECT_DOUBLE_EQ(s.variants[1].applied_pct, 5.0);
  EXPECT_EQ(s.variants[1].flows, 7u);
  EXPECT_EQ(s.variants[0].latency_p95_ms, 3.5);
  EXPECT_FALSE(s.variants[1].latency_p95_ms);
  ASSERT_EQ(s.gates.size(), 1u);
  EXPECT_EQ(s.gates[0].key, "latency_p95_ms");
  EXPECT_EQ(s.gates[0].max, 200.0);
  EXPECT_FALSE(s.gates[0].min);
  EXPECT_EQ(s.gates[0].value, 12.5);
  EXPECT_EQ(s.gates[0].result, "Successful");
}

TEST(ViewSample, NoRolloutMeansNoPhaseAndNoGates) {
  json st = status("0.00", "0.00", 1, 0);
  st["rollout"] = nullptr;
  const Sample s = sample_of_status(st, 5);
  EXPECT_EQ(s.phase, "");
  EXPECT_TRUE(s.gates.empty());
  EXPECT_EQ(s.variants.size(), 2u);
}

TEST(ViewSample, MalformedStatusNamesTheField) {
  json st = status("5.00", "5.00", 1, 1);
  st["variants"][1]["weight_desired"] = "lots";
  try {
    sample_of_status(st, 1);
    FAIL() << "accepted a bad weight";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("variants[1].weight_desired"), std::string::npos) << e.what();
  }
  EXPECT_THROW(sample_of_status(json::array(), 1), std::invalid_argument);
  json no_flows = status("5.00", "5.00", 1, 1);
  no_flows["variants"][0].erase("flows");
  EXPECT_THROW(sample_of_status(no_flows, 1), std::invalid_argument);
}

TEST(ViewHistory, ColumnsAlignAndFlowsPerSecondComeFromCounterDeltas) {
  History h(10);
  h.add(sample_of_status(status("5.00", "5.00", 100, 10), 1000));
  h.add(sample_of_status(status("20.00", "20.00", 180, 30), 3000));  // +80, +20 over 2 s
  h.add(sample_of_status(status("20.00", "20.00", 5, 1), 4000));      // counters reset
  const json j = h.to_json();
  EXPECT_EQ(j["t"], json({1000, 3000, 4000}));
  EXPECT_EQ(j["variants"]["canary"]["desired"], json({5.0, 20.0, 20.0}));
  EXPECT_EQ(j["variants"]["blue"]["applied"], json({95.0, 80.0, 80.0}));
  EXPECT_EQ(j["variants"]["blue"]["flows_per_s"], json({nullptr, 40.0, nullptr}));
  EXPECT_EQ(j["variants"]["canary"]["flows_per_s"], json({nullptr, 10.0, nullptr}));
  EXPECT_EQ(j["variants"]["blue"]["latency_p95_ms"], json({3.5, 3.5, 3.5}));
  EXPECT_EQ(j["variants"]["canary"]["error_rate"], json({nullptr, nullptr, nullptr}));
  EXPECT_EQ(j["gates"]["latency_p95_ms"]["max"], 200.0);
  EXPECT_EQ(j["gates"]["latency_p95_ms"]["value"], json({12.5, 12.5, 12.5}));
  EXPECT_EQ(j["phase"], json({"Progressing", "Progressing", "Progressing"}));
}

TEST(ViewHistory, BoundedOldestFirstOutAndClockStepsBackIgnored) {
  History h(3);
  for (int i = 1; i <= 5; ++i) h.add(sample_of_status(status("5.00", "5.00", i, i), i * 1000));
  EXPECT_EQ(h.size(), 3u);
  h.add(sample_of_status(status("5.00", "5.00", 9, 9), 4500));  // earlier than the last
  EXPECT_EQ(h.to_json()["t"], json({3000, 4000, 5000}));
  EXPECT_EQ(History(0).capacity(), 2u);
}

TEST(ViewHistory, AnotherVariantSetStartsAfresh) {
  History h(10);
  h.add(sample_of_status(status("5.00", "5.00", 1, 1), 1000));
  h.add(sample_of_status(status("5.00", "5.00", 2, 2), 2000));
  json renamed = status("5.00", "5.00", 3, 3);
  renamed["variants"][1]["name"] = "green";
  h.add(sample_of_status(renamed, 3000));
  EXPECT_EQ(h.size(), 1u);
  const json j = h.to_json();
  EXPECT_TRUE(j["variants"].contains("green"));
  EXPECT_FALSE(j["variants"].contains("canary"));
}

Event ev(int64_t t, const std::string& service, const std::string& kind, const std::string& message,
         std::map<std::string, double> values = {}) {
  return Event{0, t, service, kind, message, std::move(values)};
}

std::vector<Event> aborted_rollout() {
  return {
      ev(1, "ranker", "started", "canary rollout of 'ranker' started"),  // an earlier rollout
      ev(2, "ranker", "completed", "all 7 steps done: 'canary' is the new stable"),
      ev(10, "other", "started", "canary rollout of 'other' started"),
      ev(100, "ranker", "started", "canary rollout of 'ranker' started"),
      ev(100, "ranker", "step", "step 1/7: set_weight 5.00", {{"step", 0}, {"weight", 5}}),
      ev(100, "ranker", "weights", "step 1/7: blue=95.00 canary=5.00", {{"weight.blue", 95}, {"weight.canary", 5}}),
      ev(1100, "ranker", "gate", "gate latency_p95_ms: Successful (12.5 <= 200)",
         {{"value", 12.5}, {"max", 200}, {"failures", 0}}),
      ev(1200, "other", "gate", "gate error_rate: Failed (1 > 0)", {{"value", 1}, {"max", 0}}),
      ev(2100, "ranker", "weights", "step 3/7: blue=80.00 canary=20.00",
         {{"weight.blue", 80}, {"weight.canary", 20}}),
      ev(3100, "ranker", "gate", "gate latency_p95_ms: Failed (301.2 > 200)",
         {{"value", 301.2}, {"max", 200}, {"failures", 1}}),
      ev(4100, "ranker", "gate", "gate latency_p95_ms: Failed (305 > 200)",
         {{"value", 305}, {"max", 200}, {"failures", 2}}),
      ev(4100, "ranker", "weights", "abort: blue=100.00 canary=0.00", {{"weight.blue", 100}, {"weight.canary", 0}}),
      ev(4100, "ranker", "abort", "aborted: gate latency_p95_ms failed 2 time(s), failure_limit 1",
         {{"value", 305}, {"max", 200}}),
  };
}

TEST(ViewRollout, LastRolloutStartsAtItsLastStartedEventAndKeepsOnlyItsService) {
  const auto events = last_rollout_events(aborted_rollout(), "ranker");
  ASSERT_EQ(events.size(), 9u);
  EXPECT_EQ(events.front().time_ms, 100);
  for (const auto& e : events) EXPECT_EQ(e.service, "ranker");
  EXPECT_TRUE(last_rollout_events(aborted_rollout(), "nobody").empty());
  EXPECT_EQ(rollout_document({}), json(nullptr));
}

TEST(ViewRollout, StepsGatesAndTheAbortOutOfTheEvents) {
  const json doc = rollout_document(last_rollout_events(aborted_rollout(), "ranker"));
  EXPECT_EQ(doc["started_at_ms"], 100);
  ASSERT_EQ(doc["steps"].size(), 3u);
  EXPECT_EQ(doc["steps"][0]["weights"], json({{"blue", 95.0}, {"canary", 5.0}}));
  EXPECT_EQ(doc["steps"][1]["t"], 2100);
  EXPECT_EQ(doc["steps"][2]["weights"]["canary"], 0.0);
  EXPECT_EQ(doc["steps"][2]["reason"], "abort");
  const json& gate = doc["gates"]["latency_p95_ms"];
  EXPECT_EQ(gate["max"], 200.0);
  EXPECT_EQ(gate["min"], nullptr);
  ASSERT_EQ(gate["points"].size(), 3u);
  EXPECT_EQ(gate["points"][1]["value"], 301.2);
  EXPECT_EQ(gate["points"][1]["result"], "Failed");
  EXPECT_FALSE(doc["gates"].contains("error_rate"));  // the other service's gate
  EXPECT_EQ(doc["outcome"]["kind"], "abort");
  EXPECT_EQ(doc["outcome"]["t"], 4100);
  EXPECT_EQ(doc["outcome"]["values"]["value"], 305.0);
  EXPECT_EQ(doc["events"].size(), 9u);
  EXPECT_EQ(doc["events_dropped"], 0);
}

TEST(ViewRollout, RetryClearsTheOutcomeAndEventsAreBounded) {
  auto events = last_rollout_events(aborted_rollout(), "ranker");
  events.push_back(ev(5000, "ranker", "retry", "retry from the first step"));
  const json doc = rollout_document(events, 4);
  EXPECT_EQ(doc["outcome"], nullptr);
  EXPECT_EQ(doc["events"].size(), 4u);
  EXPECT_EQ(doc["events_dropped"], 6);
  EXPECT_EQ(doc["events"].back()["kind"], "retry");
  EXPECT_EQ(doc["steps"].size(), 3u);  // the steps are drawn from all of them
}

TEST(ViewRollout, GateNamesWithColonsAndUnknownMessagesAreHandled) {
  const json doc = rollout_document({ev(1, "s", "started", "x"),
                                     ev(2, "s", "gate", "gate p95: slow: Failed (3 > 2)", {{"value", 3}, {"max", 2}}),
                                     ev(3, "s", "gate", "something else", {{"value", 1}})});
  ASSERT_TRUE(doc["gates"].contains("p95: slow"));
  EXPECT_EQ(doc["gates"].size(), 1u);
  EXPECT_EQ(doc["gates"]["p95: slow"]["points"][0]["result"], "Failed");
}

TEST(ViewServices, OneLinePerServiceWithItsPhase) {
  json idle = status("0.00", "0.00", 1, 0);
  idle["name"] = "idle";
  idle["rollout"] = nullptr;
  const json doc = services_document(json{{"services", {status("5.00", "5.00", 1, 1), idle}}, {"fleet", nullptr}});
  ASSERT_EQ(doc["services"].size(), 2u);
  EXPECT_EQ(doc["services"][0]["phase"], "Progressing");
  EXPECT_EQ(doc["services"][0]["canary"], "canary");
  EXPECT_EQ(doc["services"][0]["weights"]["canary"], json({{"desired", 5.0}, {"applied", 5.0}}));
  EXPECT_EQ(doc["services"][1]["phase"], nullptr);
  EXPECT_EQ(doc["fleet"], false);
  EXPECT_THROW(services_document(json::object()), std::invalid_argument);
}

TEST(ViewReport, InlinesTheAssetsAndEmbedsTheDocumentSafely) {
  const std::string page =
      "<html><head><link rel=\"stylesheet\" href=\"/assets/veer-view.css\"></head><body><main></main>"
      "<script src=\"/assets/veer-view.js\"></script></body></html>";
  const json doc{{"service", "x</script><script>alert(1)</script>"}};
  const std::string html = report_html(page, "main{color:red}", "render();", doc);
  EXPECT_EQ(html.find("/assets/"), std::string::npos);
  EXPECT_NE(html.find("<style>\nmain{color:red}</style>"), std::string::npos);
  EXPECT_NE(html.find("render();</script></body></html>"), std::string::npos);
  EXPECT_EQ(html.find("alert(1)</script>"), std::string::npos);
  const size_t at = html.find("window.VEER_REPORT = ") + 21;
  const std::string embedded = html.substr(at, html.find(";</script>", at) - at);
  EXPECT_EQ(json::parse(embedded), doc);  // the same document back
  EXPECT_THROW(report_html("<html></html>", "", "", doc), std::invalid_argument);
}

}  // namespace
}  // namespace veer::view

namespace veer::view {
namespace {

TEST(ViewRoutes, PathsOfThePageTheAssetsAndTheApi) {
  using Kind = Route::Kind;
  EXPECT_EQ(route_of("/")->kind, Kind::Page);
  EXPECT_EQ(route_of("/index.html")->kind, Kind::Page);
  EXPECT_EQ(route_of("/assets/veer-view.js")->kind, Kind::Script);
  EXPECT_EQ(route_of("/assets/veer-view.css")->kind, Kind::Stylesheet);
  EXPECT_EQ(route_of("/api/v1/services")->kind, Kind::Services);
  EXPECT_EQ(route_of("/api/v1/nodes")->kind, Kind::Nodes);
  const auto svc = route_of("/api/v1/services/ranker%2Dv2");
  ASSERT_TRUE(svc);
  EXPECT_EQ(svc->kind, Kind::Service);
  EXPECT_EQ(svc->service, "ranker-v2");
  for (const char* bad : {"/api/v1/services/", "/api/v1/services/a/b", "/api/v1/services/a%2Fb", "/api/v1/services/a%",
                          "/api/v1/services/a%4", "/api/v1/services/%zz", "/api/v1", "/assets/other.js", "/metrics2",
                          "", "/api/v2/services"})
    EXPECT_FALSE(route_of(bad)) << bad;
}

}  // namespace
}  // namespace veer::view

namespace veer::view {
namespace {

// The files compiled into veerd and veerctl: a report made of them inlines both assets, and neither can end
// the element it is inlined into or reach for anything outside the file.
TEST(ViewAssets, TheRealPageMakesASelfContainedReport) {
  const auto page = view_assets::get("index.html");
  const auto css = view_assets::get("veer-view.css");
  const auto js = view_assets::get("veer-view.js");
  ASSERT_TRUE(page && css && js);
  EXPECT_FALSE(view_assets::get("other.js"));
  auto count = [](std::string_view text, std::string_view what) {
    size_t n = 0;
    for (size_t at = text.find(what); at != std::string_view::npos; at = text.find(what, at + 1)) ++n;
    return n;
  };
  for (const std::string_view text : {*css, *js}) {
    EXPECT_EQ(text.find("</"), std::string_view::npos) << "an inlined asset must not hold \"</\"";
    EXPECT_EQ(count(text, "http://"), count(text, "http://www.w3.org/2000/svg")) << "only the SVG namespace";
    EXPECT_EQ(text.find("https://"), std::string_view::npos);
  }
  const nlohmann::json doc{{"service", "ranker"}, {"rollout", nullptr}};
  const std::string html = report_html(*page, *css, *js, doc);
  EXPECT_EQ(html.find("/assets/"), std::string::npos);
  EXPECT_NE(html.find("window.VEER_REPORT = {"), std::string::npos);
  EXPECT_NE(html.find(std::string(*js)), std::string::npos);
}

}  // namespace
}  // namespace veer::view
