// The drift measures beside prediction_kl (issue 13 part 3): PSI, Jensen-Shannon
// distance and the chi-square p of label counts, against hand-worked values
// (python3 -c with math only, the figures in the comments), with empty and
// unseen labels; and the gates that use them, in the config and the engine.
#include <gtest/gtest.h>

#include <cmath>

#include "config/config.h"
#include "rollout/rollout_engine.h"
#include "stats/stats.h"

namespace veer {
namespace {

using Counts = std::map<std::string, double>;
const Counts k3070{{"cat", 30}, {"dog", 70}};
const Counts k5050{{"cat", 50}, {"dog", 50}};

TEST(Drift, PopulationStabilityIndex) {
  // (0.3-0.5) ln(0.3/0.5) + (0.7-0.5) ln(0.7/0.5)
  EXPECT_NEAR(stats::population_stability_index(k3070, k5050, 0.0), 0.16945957207744072, 1e-12);
  EXPECT_NEAR(stats::population_stability_index(k3070, k3070, 0.0), 0.0, 1e-15);
  // symmetric: KL(p||q) + KL(q||p)
  EXPECT_NEAR(stats::population_stability_index(k5050, k3070, 0.0),
              stats::kl_divergence(k3070, k5050, 0.0) + stats::kl_divergence(k5050, k3070, 0.0), 1e-12);
  // unseen labels: infinite without smoothing; with 1: shares 11/12 and 1/12 -> 2 (10/12) ln 11
  EXPECT_TRUE(std::isinf(stats::population_stability_index({{"cat", 10}}, {{"dog", 10}}, 0.0)));
  EXPECT_NEAR(stats::population_stability_index({{"cat", 10}}, {{"dog", 10}}, 1.0), 3.996492121330618, 1e-12);
  EXPECT_EQ(stats::population_stability_index({}, {}, 0.0), 0.0);
  EXPECT_THROW(stats::population_stability_index({{"cat", -1}}, k5050), std::invalid_argument);
  EXPECT_THROW(stats::population_stability_index(k3070, k5050, -1), std::invalid_argument);
}

TEST(Drift, JensenShannonDistance) {
  EXPECT_NEAR(stats::jensen_shannon_distance(k3070, k5050), 0.14493421163354447, 1e-12);
  EXPECT_NEAR(stats::jensen_shannon_distance(k5050, k3070), 0.14493421163354447, 1e-12);  // symmetric
  EXPECT_NEAR(stats::jensen_shannon_distance(k3070, {{"cat", 3}, {"dog", 7}}), 0.0, 1e-7);  // shares, not counts
  // disjoint supports: the bound sqrt(ln 2), finite
  EXPECT_NEAR(stats::jensen_shannon_distance({{"cat", 10}}, {{"dog", 10}}), 0.8325546111576977, 1e-12);
  EXPECT_NEAR(stats::jensen_shannon_distance({}, k5050), 0.8325546111576977, 1e-12);
  EXPECT_EQ(stats::jensen_shannon_distance({}, {}), 0.0);
  EXPECT_THROW(stats::jensen_shannon_distance({{"cat", NAN}}, k5050), std::invalid_argument);
}

TEST(Drift, LabelChiSquareP) {
  // 2 x 2: x2 = 8.333, df 1
  EXPECT_NEAR(stats::label_chi_square_p(k3070, k5050), 0.003892417122778627, 1e-9);
  // 2 x 3: x2 = 3.111, df 2 -> exp(-x2/2)
  EXPECT_NEAR(stats::label_chi_square_p({{"a", 20}, {"b", 30}, {"c", 50}}, {{"a", 30}, {"b", 30}, {"c", 40}}),
              0.2110720877910902, 1e-9);
  // a label seen on one side only: x2 = 20, df 1
  EXPECT_NEAR(stats::label_chi_square_p({{"cat", 10}}, {{"dog", 10}}), 7.744216431044074e-06, 1e-12);
  // labels with no count on either side do not add a degree of freedom
  EXPECT_NEAR(stats::label_chi_square_p({{"cat", 30}, {"dog", 70}, {"eel", 0}}, {{"cat", 50}, {"dog", 50}, {"eel", 0}}),
              0.003892417122778627, 1e-9);
  EXPECT_EQ(stats::label_chi_square_p(k3070, {}), 1.0);
  EXPECT_EQ(stats::label_chi_square_p({{"cat", 5}}, {{"cat", 9}}), 1.0);
  EXPECT_THROW(stats::label_chi_square_p(k3070, {{"dog", INFINITY}}), std::invalid_argument);
}

GateConfig drift_gate(const std::string& metric) {
  GateConfig g;
  g.name = g.metric = metric;
  g.source = GateSource::Push;
  g.series = "prediction";
  if (metric == "prediction_chi2_p") g.min = 0.001;
  else g.max = 0.1;
  return g;
}

GateStatus judge(const GateConfig& g, const Counts& test, const Counts& stable) {
  GateMeasurement m{Measurement::of_labels(test), Measurement::of_labels(stable)};
  return evaluate_gate(g, m, Millis{1}, GateStatus{});
}

TEST(Drift, GatesJudgeTheMeasure) {
  const Counts drifted{{"cat", 300}, {"dog", 700}}, same{{"cat", 510}, {"dog", 490}}, stable{{"cat", 500}, {"dog", 500}};
  for (const char* metric : {"prediction_psi", "prediction_js", "prediction_chi2_p"}) {
    const GateConfig g = drift_gate(metric);
    EXPECT_EQ(judge(g, drifted, stable).result, GateResult::Failed) << metric;
    EXPECT_EQ(judge(g, same, stable).result, GateResult::Successful) << metric;
  }
  const GateStatus psi = judge(drift_gate("prediction_psi"), drifted, stable);
  EXPECT_NEAR(*psi.value, stats::population_stability_index(drifted, stable, 1.0), 1e-12);
  const GateStatus p = judge(drift_gate("prediction_chi2_p"), drifted, stable);
  EXPECT_LT(*p.value, 1e-10);
  EXPECT_NE(p.reason.find("< min 0.001"), std::string::npos) << p.reason;
}

std::string config_with(const std::string& gate) {
  return "node:\n  interfaces: [eth0]\nservices:\n  - name: ranker\n    vip: 10.0.0.100\n    port: 80\n"
         "    stable: blue\n    variants:\n      blue: { backends: [\"10.1.1.2:8080\"] }\n"
         "      canary: { backends: [\"10.1.3.2:8080\"] }\n    weights: { blue: 100 }\n    rollout:\n"
         "      strategy: canary\n      canary: canary\n      steps: [ {set_weight: 5} ]\n      gates:\n        " +
         gate + "\n";
}

std::string refusal(const std::string& gate) {
  try {
    parse_config(config_with(gate), "veer.yaml");
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "accepted";
}

TEST(Drift, ConfigTakesTheDriftGates) {
  for (const char* gate : {"- { metric: prediction_psi, source: push, max: 0.25, min_samples: 100 }",
                           "- { metric: prediction_psi, source: push, max: 0.25, smoothing: 0.5 }",
                           "- { metric: prediction_js, source: push, series: pred, max: 0.1 }",
                           "- { metric: prediction_chi2_p, source: push, min: 0.001 }"}) {
    const Config c = parse_config(config_with(gate), "veer.yaml");
    EXPECT_TRUE(is_label_metric(c.services[0].rollout->gates[0].metric)) << gate;
  }
  EXPECT_NE(refusal("- { metric: prediction_js, source: push, max: 0.1, smoothing: 1 }").find("smoothing applies only"),
            std::string::npos);
  EXPECT_NE(refusal("- { metric: prediction_js, source: push, max: 0.9 }").find("0.8326"), std::string::npos);
  EXPECT_NE(refusal("- { metric: prediction_chi2_p, source: push, max: 0.5 }").find("p-value"), std::string::npos);
  EXPECT_NE(refusal("- { metric: prediction_chi2_p, source: push, min: 1.5 }").find("p-value"), std::string::npos);
  EXPECT_NE(refusal("- { metric: prediction_psi, source: push, max: 0.2, relative: true }").find("already compares"),
            std::string::npos);
  EXPECT_NE(refusal("- { metric: prediction_psi, source: kernel, max: 0.2 }").find("kernel"), std::string::npos);
  EXPECT_NE(refusal("- { metric: prediction_psi, source: push, max: -1 }").find("never negative"), std::string::npos);
}

}  // namespace
}  // namespace veer
