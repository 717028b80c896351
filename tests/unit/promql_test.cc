// The promql gate source (rollout/promql.h): templates, URLs, and every kind
// of answer Prometheus's query API gives, read into gate measurements; and
// the `source: promql` keys of the config.
#include <gtest/gtest.h>

#include <cmath>

#include "config/config.h"
#include "rollout/promql.h"

namespace veer {
namespace {

using promql::read_answer;

GateConfig gate(std::string metric = "error_ratio") {
  GateConfig g;
  g.name = g.metric = std::move(metric);
  g.source = GateSource::PromQL;
  g.address = "http://127.0.0.1:9090";
  g.query = "x";
  g.max = 0.05;
  return g;
}

std::string vector_of(const std::string& elements) {
  return R"({"status":"success","data":{"resultType":"vector","result":[)" + elements + "]}}";
}

TEST(PromqlTemplate, KnowsItsPlaceholdersOnly) {
  EXPECT_FALSE(promql::template_error("sum(rate(x{variant=\"{{variant}}\",svc=\"{{ service }}\"}[{{interval}}]))"));
  EXPECT_FALSE(promql::template_error("up"));
  auto e = promql::template_error("rate(x{job=\"{{job}}\"}[1m])");
  ASSERT_TRUE(e);
  EXPECT_NE(e->find("unknown placeholder {{job}}"), std::string::npos) << *e;
  e = promql::template_error("rate(x{job=\"{{variant\"}[1m])");
  ASSERT_TRUE(e);
  EXPECT_NE(e->find("not closed"), std::string::npos) << *e;
  EXPECT_TRUE(promql::template_error("   "));
  EXPECT_TRUE(promql::template_error(std::string(promql::kMaxQueryBytes + 1, 'x')));
}

TEST(PromqlTemplate, RendersEveryPlaceholder) {
  const promql::QueryVars vars{"ranker", "canary", "blue", Millis{90000}};
  EXPECT_EQ(promql::render("a{s=\"{{service}}\",v=\"{{ variant }}\",b=\"{{stable}}\"}[{{interval}}] {{variant}}", vars),
            "a{s=\"ranker\",v=\"canary\",b=\"blue\"}[1m30s] canary");
  EXPECT_EQ(promql::render("up", vars), "up");
}

TEST(PromqlUrl, EncodesTheQueryAndKeepsAPrefix) {
  EXPECT_EQ(promql::query_url("http://p:9090/", "sum(rate(x{a=\"b c\"}[5s]))", Millis{2500}),
            "http://p:9090/api/v1/query?query=sum%28rate%28x%7Ba%3D%22b%20c%22%7D%5B5s%5D%29%29&timeout=2s500ms");
  EXPECT_EQ(promql::query_url("http://h/prom", "up+1", Millis{1000}), "http://h/prom/api/v1/query?query=up%2B1&timeout=1s");
}

TEST(PromqlUrl, AddressErrors) {
  EXPECT_FALSE(promql::address_error("http://127.0.0.1:9090"));
  EXPECT_FALSE(promql::address_error("http://prometheus.monitoring/prom"));
  EXPECT_TRUE(promql::address_error("127.0.0.1:9090"));
  EXPECT_TRUE(promql::address_error("http://"));
  EXPECT_TRUE(promql::address_error("http://h:9090/api/v1/query?query=up"));
  EXPECT_NE(promql::address_error("https://h")->find("https"), std::string::npos);
}

TEST(PromqlAnswer, ScalarAndOneElementVectorAreTheValue) {
  auto m = read_answer(200, R"({"status":"success","data":{"resultType":"scalar","result":[1700000000.1,"0.25"]}})",
                       gate());
  ASSERT_EQ(m.status, Measurement::Status::Value) << m.reason;
  EXPECT_DOUBLE_EQ(m.value, 0.25);
  EXPECT_EQ(m.samples, 1u);
  m = read_answer(200, vector_of(R"({"metric":{"job":"canary"},"value":[1700000000,"12.5"]})"), gate());
  ASSERT_EQ(m.status, Measurement::Status::Value) << m.reason;
  EXPECT_DOUBLE_EQ(m.value, 12.5);
  m = read_answer(200, vector_of(R"({"metric":{},"value":[1700000000,"+Inf"]})"), gate());
  ASSERT_EQ(m.status, Measurement::Status::Value) << m.reason;
  EXPECT_TRUE(std::isinf(m.value));
}

TEST(PromqlAnswer, EmptyVectorFollowsNoData) {
  GateConfig g = gate();
  auto m = read_answer(200, vector_of(""), g);
  EXPECT_EQ(m.status, Measurement::Status::Inconclusive);
  EXPECT_NE(m.reason.find("no data"), std::string::npos);
  g.no_data = NoDataPolicy::Fail;
  m = read_answer(200, vector_of(""), g);
  EXPECT_EQ(m.status, Measurement::Status::Fail);
  EXPECT_NE(m.reason.find("no_data: fail"), std::string::npos);
  // The engine reads Fail as a Failed result that counts towards failure_limit.
  GateMeasurement gm{m, std::nullopt};
  const GateStatus st = evaluate_gate(g, gm, Millis{5}, GateStatus{});
  EXPECT_EQ(st.result, GateResult::Failed);
  EXPECT_EQ(st.failures, 1u);
}

TEST(PromqlAnswer, ManySeriesNanAndWrongTypesAreErrors) {
  auto m = read_answer(200, vector_of(R"({"metric":{"job":"a"},"value":[1,"1"]},{"metric":{"job":"b"},"value":[1,"2"]},
                                         {"metric":{"job":"c"},"value":[1,"3"]})"),
                       gate());
  ASSERT_EQ(m.status, Measurement::Status::Error);
  EXPECT_NE(m.reason.find("3 series ({job=\"a\"}, {job=\"b\"}, ...)"), std::string::npos) << m.reason;
  m = read_answer(200, vector_of(R"({"metric":{},"value":[1,"NaN"]})"), gate());
  ASSERT_EQ(m.status, Measurement::Status::Error);
  EXPECT_NE(m.reason.find("NaN"), std::string::npos);
  m = read_answer(200, R"({"status":"success","data":{"resultType":"matrix","result":[]}})", gate());
  ASSERT_EQ(m.status, Measurement::Status::Error);
  EXPECT_NE(m.reason.find("range vector"), std::string::npos);
  m = read_answer(200, R"({"status":"success","data":{"resultType":"string","result":[1,"hi"]}})", gate());
  EXPECT_EQ(m.status, Measurement::Status::Error);
  for (const char* broken : {"", "<html>proxy</html>", R"({"status":"success"})", R"({"status":"success","data":[]})",
                             R"({"status":"success","data":{"resultType":"vector","result":[{"value":[1,2]}]}})",
                             R"({"status":"success","data":{"resultType":"vector","result":[{"value":[1,"1x"]}]}})",
                             R"({"status":"success","data":{"resultType":"scalar","result":"1"}})", "[1,2", "null"}) {
    m = read_answer(200, broken, gate());
    EXPECT_EQ(m.status, Measurement::Status::Error) << broken;
    EXPECT_FALSE(m.reason.empty()) << broken;
  }
}

TEST(PromqlAnswer, ServerErrorsCarryTheServersMessage) {
  auto m = read_answer(400, R"({"status":"error","errorType":"bad_data","error":"1:6: parse error: unexpected \"}\""})",
                       gate());
  ASSERT_EQ(m.status, Measurement::Status::Error);
  EXPECT_EQ(m.reason, "Prometheus answered 400 (bad_data): 1:6: parse error: unexpected \"}\"");
  m = read_answer(503, R"({"status":"error","errorType":"timeout","error":"query timed out in expression evaluation"})",
                  gate());
  EXPECT_NE(m.reason.find("503 (timeout): query timed out"), std::string::npos) << m.reason;
  m = read_answer(302, "", gate());
  EXPECT_NE(m.reason.find("redirects are not followed"), std::string::npos) << m.reason;
  m = read_answer(502, "Bad Gateway\n", gate());
  EXPECT_EQ(m.reason, "Prometheus answered HTTP 502: Bad Gateway ");
}

TEST(PromqlAnswer, PredictionKlReadsOneElementPerClass) {
  GateConfig g = gate("prediction_kl");
  g.label = "class";
  auto m = read_answer(200, vector_of(R"({"metric":{"class":"cat"},"value":[1,"30"]},{"metric":{"class":"dog"},"value":[1,"70"]})"),
                       g);
  ASSERT_EQ(m.status, Measurement::Status::Value) << m.reason;
  EXPECT_EQ(m.labels, (std::map<std::string, double>{{"cat", 30}, {"dog", 70}}));
  EXPECT_EQ(m.samples, 100u);
  m = read_answer(200, vector_of(R"({"metric":{"job":"x"},"value":[1,"30"]})"), g);
  EXPECT_EQ(m.status, Measurement::Status::Error);
  EXPECT_NE(m.reason.find("no label 'class'"), std::string::npos) << m.reason;
  m = read_answer(200, vector_of(R"({"metric":{"class":"cat"},"value":[1,"3"]},{"metric":{"class":"cat"},"value":[1,"4"]})"), g);
  EXPECT_NE(m.reason.find("twice"), std::string::npos) << m.reason;
  m = read_answer(200, vector_of(R"({"metric":{"class":"cat"},"value":[1,"-1"]})"), g);
  EXPECT_EQ(m.status, Measurement::Status::Error);
  m = read_answer(200, R"({"status":"success","data":{"resultType":"scalar","result":[1,"1"]}})", g);
  EXPECT_EQ(m.status, Measurement::Status::Error);
  m = read_answer(200, vector_of(""), g);
  EXPECT_EQ(m.status, Measurement::Status::Inconclusive);
}

// --- the config's keys -------------------------------------------------------

std::string config_with_gate(const std::string& gate_line) {
  return R"(node:
  interfaces: [eth0]
services:
  - name: ranker
    vip: 10.0.0.100
    port: 80
    variants:
      blue:   { backends: ["10.1.1.2:8080"] }
      canary: { backends: ["10.1.3.2:8080"] }
    weights: { blue: 100 }
    stable: blue
    rollout:
      strategy: canary
      canary: canary
      steps: [ {set_weight: 5}, {pause: 1m} ]
      gates:
        )" + gate_line + "\n";
}

std::string refusal(const std::string& gate_line) {
  try {
    parse_config(config_with_gate(gate_line), "veer.yaml");
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "accepted";
}

TEST(PromqlConfig, ParsesAGate) {
  const Config c = parse_config(
      config_with_gate("- { name: errors, metric: error_ratio, source: promql, address: \"http://127.0.0.1:9090\", "
                       "query: 'sum(rate(model_requests_total{job=\"{{variant}}\",code=~\"5..\"}[20s]))', max: 0.05, "
                       "relative: true, no_data: fail }"),
      "veer.yaml");
  const GateConfig& g = c.services[0].rollout->gates[0];
  EXPECT_EQ(g.source, GateSource::PromQL);
  EXPECT_EQ(g.address, "http://127.0.0.1:9090");
  EXPECT_NE(g.query.find("{{variant}}"), std::string::npos);
  EXPECT_EQ(g.no_data, NoDataPolicy::Fail);
  EXPECT_TRUE(g.relative);
  const Config kl = parse_config(
      config_with_gate("- { metric: prediction_kl, source: promql, address: \"http://p:9090\", label: class, "
                       "query: 'sum by (class) (increase(model_predictions_total{job=\"{{variant}}\"}[1m]))', "
                       "max: 0.1, min_samples: 100 }"),
      "veer.yaml");
  EXPECT_EQ(kl.services[0].rollout->gates[0].label, "class");
  EXPECT_EQ(kl.services[0].rollout->gates[0].no_data, NoDataPolicy::Inconclusive);
}

TEST(PromqlConfig, RefusesWhatCannotWork) {
  const std::string ok = "source: promql, address: \"http://p:9090\", query: up, max: 1";
  EXPECT_NE(refusal("- { metric: e, source: promql, query: up, max: 1 }").find("needs 'address'"), std::string::npos);
  EXPECT_NE(refusal("- { metric: e, source: promql, address: \"http://p\", max: 1 }").find("needs 'query'"),
            std::string::npos);
  EXPECT_NE(refusal("- { metric: e, source: promql, address: \"p:9090\", query: up, max: 1 }").find("http:// URL"),
            std::string::npos);
  EXPECT_NE(refusal("- { metric: e, source: promql, address: \"http://p\", query: 'x{a=\"{{job}}\"}', max: 1 }")
                .find("unknown placeholder {{job}}"),
            std::string::npos);
  EXPECT_NE(refusal("- { metric: e, " + ok + ", no_data: maybe }").find("no_data must be inconclusive or fail"),
            std::string::npos);
  EXPECT_NE(refusal("- { metric: e, " + ok + ", min_samples: 10 }").find("carries no sample count"), std::string::npos);
  EXPECT_NE(refusal("- { metric: e, " + ok + ", series: x }").find("applies only to source prometheus"),
            std::string::npos);
  EXPECT_NE(refusal("- { metric: e, " + ok + ", label: class }").find("prediction_* drift"), std::string::npos);
  EXPECT_NE(refusal("- { metric: prediction_kl, " + ok + " }").find("needs 'label'"), std::string::npos);
  EXPECT_NE(refusal("- { metric: error_rate, source: kernel, max: 1, query: up }").find("applies only to source promql"),
            std::string::npos);
  EXPECT_NE(refusal("- { metric: e, source: prometheus, series: x, max: 1, no_data: fail }")
                .find("applies only to source promql"),
            std::string::npos);
}

}  // namespace
}  // namespace veer
