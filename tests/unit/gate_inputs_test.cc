// Gate inputs of veerd (rollout/gate_inputs.h): kernel windows and their
// metrics, push parsing and accumulation, prometheus and probe measurements.
#include "rollout/gate_inputs.h"

#include <gtest/gtest.h>

namespace veer {
namespace {

// A sample with `responses` answers spread over buckets of the given latency.
void add_responses(KernelSample& s, uint64_t n, uint64_t latency_ns) {
  s.counters.responses += n;
  s.latency[latency_bucket_of(latency_ns)] += n;
}

TEST(KernelWindow, DeltasOfTwoSamples) {
  KernelSample before;
  before.counters.new_flows = 100;
  before.counters.http_5xx = 3;
  before.handshake_timeouts = 1;
  add_responses(before, 50, 10'000'000);
  KernelSample after = before;  // then, during the window:
  after.counters.new_flows += 60;
  after.counters.http_5xx += 2;
  after.handshake_timeouts += 3;
  add_responses(after, 80, 10'000'000);
  const KernelWindow w = kernel_window(before, after, 2.0);
  EXPECT_EQ(w.flows, 60u);
  EXPECT_EQ(w.http_5xx, 2u);
  EXPECT_EQ(w.handshake_timeouts, 3u);
  EXPECT_EQ(w.responses, 80u);
  EXPECT_EQ(latency_count(w.latency), 80u);
  EXPECT_DOUBLE_EQ(w.seconds, 2.0);
}

TEST(KernelWindow, CounterThatWentDownCountsFromZero) {
  KernelSample before, after;
  before.counters.new_flows = 1000;
  after.counters.new_flows = 7;  // maps recreated
  EXPECT_EQ(kernel_window(before, after, 1).flows, 7u);
}

TEST(KernelMeasurement, P95OfTheWindowNotOfTheTotal) {
  // Before: 1000 fast answers (5 ms). In the window: 90 at 5 ms and 10 at 300 ms.
  KernelSample before;
  add_responses(before, 1000, 5'000'000);
  KernelSample after = before;
  add_responses(after, 90, 5'000'000);
  add_responses(after, 10, 300'000'000);
  const KernelWindow w = kernel_window(before, after, 5);
  const Measurement p95 = kernel_measurement(w, "latency_p95_ms");
  ASSERT_EQ(p95.status, Measurement::Status::Value);
  EXPECT_EQ(p95.samples, 100u);
  // Within the 300 ms bucket (buckets are at most 6.25 % wide).
  EXPECT_GE(p95.value, 300.0 * 0.93);
  EXPECT_LE(p95.value, 300.0 * 1.07);
  // Over the cumulative counts the slow answers are < 1 %: p95 would be ~5 ms.
  const Measurement p50 = kernel_measurement(w, "latency_p50_ms");
  EXPECT_LT(p50.value, 6.0);
}

TEST(KernelMeasurement, ErrorRateDefinition) {
  KernelSample before, after;
  add_responses(after, 96, 1'000'000);
  after.counters.http_5xx = 2;  // 2 of the 96 answers were 5xx
  after.counters.backend_resets = 3;
  after.handshake_timeouts = 1;
  const KernelWindow w = kernel_window(before, after, 1);
  const Measurement e = kernel_measurement(w, "error_rate");
  ASSERT_EQ(e.status, Measurement::Status::Value);
  EXPECT_EQ(e.samples, 100u);  // 96 + 3 + 1
  EXPECT_DOUBLE_EQ(e.value, 6.0 / 100.0);
  const Measurement r = kernel_measurement(w, "reset_rate");
  EXPECT_EQ(r.samples, 99u);
  EXPECT_DOUBLE_EQ(r.value, 3.0 / 99.0);
  const Measurement h = kernel_measurement(w, "handshake_timeout_rate");
  EXPECT_EQ(h.samples, 97u);
  EXPECT_DOUBLE_EQ(h.value, 1.0 / 97.0);
}

TEST(KernelMeasurement, EmptyWindowIsInconclusive) {
  KernelSample s;
  const KernelWindow w = kernel_window(s, s, 5);
  EXPECT_EQ(kernel_measurement(w, "latency_p95_ms").status, Measurement::Status::Inconclusive);
  EXPECT_EQ(kernel_measurement(w, "error_rate").status, Measurement::Status::Inconclusive);
  EXPECT_EQ(kernel_measurement(w, "conversion").status, Measurement::Status::Error);
}

TEST(KernelWindow, StatusJson) {
  KernelSample before, after;
  after.counters.new_flows = 50;
  add_responses(after, 10, 2'000'000);
  const auto j = to_json(kernel_window(before, after, 5));
  EXPECT_DOUBLE_EQ(j["flows_per_s"].get<double>(), 10.0);
  EXPECT_EQ(j["responses"], 10);
  EXPECT_TRUE(j["latency_p95_ms"].is_number());
  EXPECT_DOUBLE_EQ(j["error_rate"].get<double>(), 0.0);
  EXPECT_TRUE(to_json(kernel_window(before, before, 5))["latency_p95_ms"].is_null());
}

TEST(Push, RepeatedValue) {
  const PushItem i = parse_push_item("conversion", "1*130");
  EXPECT_EQ(i.name, "conversion");
  EXPECT_FALSE(i.label);
  EXPECT_DOUBLE_EQ(i.value, 1);
  EXPECT_EQ(i.count, 130u);
  const PushItem j = parse_push_item("revenue", "12.5");
  EXPECT_DOUBLE_EQ(j.value, 12.5);
  EXPECT_EQ(j.count, 1u);
}

TEST(Push, LabelCount) {
  const PushItem i = parse_push_item("prediction.cat", "12");
  EXPECT_EQ(i.name, "prediction");
  ASSERT_TRUE(i.label);
  EXPECT_EQ(*i.label, "cat");
  EXPECT_DOUBLE_EQ(i.value, 12);
}

TEST(Push, BadItemsRefused) {
  for (const auto& [name, value] : std::vector<std::pair<std::string, std::string>>{
           {"conversion", "x"}, {"conversion", "1*0"}, {"conversion", "1*"}, {"conversion", "*3"},
           {"conversion", "1*2.5"}, {"conversion", "nan"}, {"conversion", "inf"}, {"conversion", ""},
           {"bad name", "1"}, {"", "1"}, {"prediction.", "3"}, {"prediction.cat", "-1"},
           {"prediction.cat", "2*3"}, {"conversion", "1*99999999999"}}) {
    EXPECT_THROW(parse_push_item(name, value), PushError) << name << "=" << value;
  }
}

TEST(Push, NamesAndLabelsAreBounded) {
  PushData d;
  std::vector<PushItem> items;
  for (size_t i = 0; i + 1 < kMaxPushedNames; ++i) items.push_back(parse_push_item("m" + std::to_string(i), "1"));
  items.push_back(parse_push_item("prediction.cat", "1"));  // a label series counts as one name
  EXPECT_NO_THROW(d.check_room_for(items));
  for (const auto& i : items) d.add(i);
  // known names and new labels of a known series still fit; one new name does not
  EXPECT_NO_THROW(d.check_room_for({parse_push_item("m0", "2"), parse_push_item("prediction.dog", "3")}));
  try {
    d.check_room_for({parse_push_item("m0", "2"), parse_push_item("brand_new", "1")});
    ADD_FAILURE() << "a 65th name was accepted";
  } catch (const PushError& e) {
    EXPECT_NE(std::string(e.what()).find("at most 64"), std::string::npos) << e.what();
  }
  // labels of one series: up to kMaxPushedLabels, counting those already held and repeats once
  std::vector<PushItem> labels;
  for (size_t i = 1; i < kMaxPushedLabels; ++i) labels.push_back(parse_push_item("prediction.c" + std::to_string(i), "1"));
  labels.push_back(parse_push_item("prediction.cat", "1"));
  EXPECT_NO_THROW(d.check_room_for(labels));
  labels.push_back(parse_push_item("prediction.one_too_many", "1"));
  EXPECT_THROW(d.check_room_for(labels), PushError);
}

TEST(Push, ValuesObjectAllOrNothing) {
  const auto items = parse_push_values(nlohmann::json{{"conversion", "1*3"}, {"revenue", 2.5}, {"n", 4}});
  ASSERT_EQ(items.size(), 3u);
  EXPECT_THROW(parse_push_values(nlohmann::json{{"conversion", "1*3"}, {"revenue", true}}), PushError);
  EXPECT_THROW(parse_push_values(nlohmann::json::object()), PushError);
  EXPECT_THROW(parse_push_values(nlohmann::json::array()), PushError);
}

TEST(Push, AccumulationAndMeasurement) {
  PushData d;
  for (const auto& item : parse_push_values(nlohmann::json{{"conversion", "1*30"}, {"prediction.cat", "5"}}))
    d.add(item);
  d.add(parse_push_item("conversion", "0*70"));
  d.add(parse_push_item("prediction.dog", "7"));
  d.add(parse_push_item("prediction.cat", "1"));
  EXPECT_EQ(d.metrics["conversion"].n, 100u);
  EXPECT_DOUBLE_EQ(d.metrics["conversion"].mean(), 0.3);
  // Sample variance of 30 ones and 70 zeros: 0.3 * 0.7 * 100 / 99.
  EXPECT_NEAR(d.metrics["conversion"].variance(), 0.21 * 100 / 99, 1e-12);

  GateConfig g;
  g.name = g.metric = "conversion";
  g.source = GateSource::Push;
  const Measurement m = push_measurement(d, g);
  ASSERT_EQ(m.status, Measurement::Status::Value);
  EXPECT_DOUBLE_EQ(m.value, 0.3);
  EXPECT_EQ(m.samples, 100u);

  GateConfig kl;
  kl.name = kl.metric = "prediction_kl";
  kl.source = GateSource::Push;
  kl.series = "prediction";
  const Measurement l = push_measurement(d, kl);
  ASSERT_EQ(l.status, Measurement::Status::Value);
  EXPECT_DOUBLE_EQ(l.labels.at("cat"), 6);
  EXPECT_DOUBLE_EQ(l.labels.at("dog"), 7);
  EXPECT_EQ(l.samples, 13u);

  g.metric = "revenue";
  EXPECT_EQ(push_measurement(d, g).status, Measurement::Status::Inconclusive);
}

TEST(Prometheus, HistogramQuantileOfTheWindow) {
  const auto before = prom::parse_prometheus_text(
      "# TYPE req_seconds histogram\n"
      "req_seconds_bucket{le=\"0.1\"} 1000\nreq_seconds_bucket{le=\"0.5\"} 1000\n"
      "req_seconds_bucket{le=\"+Inf\"} 1000\nreq_seconds_count 1000\nreq_seconds_sum 20\n");
  // In the window: 100 new observations, all between 0.1 and 0.5 s.
  const auto after = prom::parse_prometheus_text(
      "# TYPE req_seconds histogram\n"
      "req_seconds_bucket{le=\"0.1\"} 1000\nreq_seconds_bucket{le=\"0.5\"} 1100\n"
      "req_seconds_bucket{le=\"+Inf\"} 1100\nreq_seconds_count 1100\nreq_seconds_sum 50\n");
  GateConfig g;
  g.name = g.metric = "latency_p95_ms";
  g.source = GateSource::Prometheus;
  g.histogram = "req_seconds";
  const Measurement m = prometheus_measurement(before, after, g, 5);
  ASSERT_EQ(m.status, Measurement::Status::Value) << m.reason;
  EXPECT_EQ(m.samples, 100u);
  EXPECT_NEAR(m.value, 480.0, 1e-6);  // 0.1 + 0.95 * 0.4 s
  g.histogram = "absent_seconds";
  EXPECT_EQ(prometheus_measurement(before, after, g, 5).status, Measurement::Status::Error);
  g.histogram = "req_seconds";
  EXPECT_EQ(prometheus_measurement(after, after, g, 5).status, Measurement::Status::Inconclusive);
}

TEST(Prometheus, LabelDistributionAndCounterRate) {
  const auto before = prom::parse_prometheus_text(
      "# TYPE model_predictions_total counter\n"
      "model_predictions_total{class=\"cat\"} 100\nmodel_predictions_total{class=\"dog\"} 100\n");
  const auto after = prom::parse_prometheus_text(
      "# TYPE model_predictions_total counter\n"
      "model_predictions_total{class=\"cat\"} 130\nmodel_predictions_total{class=\"dog\"} 110\n");
  GateConfig kl;
  kl.name = kl.metric = "prediction_kl";
  kl.source = GateSource::Prometheus;
  kl.series = "model_predictions_total";
  kl.label = "class";
  const Measurement m = prometheus_measurement(before, after, kl, 5);
  ASSERT_EQ(m.status, Measurement::Status::Value) << m.reason;
  EXPECT_DOUBLE_EQ(m.labels.at("cat"), 30);
  EXPECT_DOUBLE_EQ(m.labels.at("dog"), 10);

  GateConfig rate;
  rate.name = rate.metric = "predictions_per_s";
  rate.source = GateSource::Prometheus;
  rate.series = "model_predictions_total";
  const Measurement r = prometheus_measurement(before, after, rate, 4);
  ASSERT_EQ(r.status, Measurement::Status::Value);
  EXPECT_DOUBLE_EQ(r.value, 10.0);  // 40 in 4 s
}

TEST(Probe, ErrorRateAndLatency) {
  std::vector<ProbeOutcome> o;
  for (int i = 1; i <= 9; ++i) o.push_back({true, i * 10.0});
  o.push_back({false, 2000});
  const Measurement e = probe_measurement(o, "error_rate");
  EXPECT_DOUBLE_EQ(e.value, 0.1);
  EXPECT_EQ(e.samples, 10u);
  const Measurement p = probe_measurement(o, "latency_p50_ms");
  EXPECT_DOUBLE_EQ(p.value, 50.0);  // nearest rank 5 of 9
  EXPECT_EQ(p.samples, 9u);
  EXPECT_EQ(probe_measurement({}, "error_rate").status, Measurement::Status::Inconclusive);
  EXPECT_EQ(probe_measurement({{false, 1}}, "latency_p95_ms").status, Measurement::Status::Inconclusive);
}

}  // namespace
}  // namespace veer
