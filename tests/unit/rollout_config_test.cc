// The `rollout:` section of SPEC §4/§5: good sections are read with the right
// values, bad ones are refused with the line of the offending node.
#include <gtest/gtest.h>

#include "config/config.h"
#include "config/rollout_config.h"

namespace veer {
namespace {

// A service with three variants (blue stable, canary and green with
// metrics_url except green) and the given weights, affinity, protocol and
// rollout section (already indented by 6 spaces).
std::string service_with(const std::string& rollout, const std::string& weights = "{ blue: 100 }",
                         const std::string& affinity = "connection", const std::string& protocol = "tcp") {
  return "node:\n"
         "  interfaces: [eth0]\n"
         "services:\n"
         "  - name: ranker\n"
         "    vip: 10.0.0.100\n"
         "    port: 80\n"
         "    protocol: " + protocol + "\n"
         "    affinity: " + affinity + "\n"
         "    stable: blue\n"
         "    variants:\n"
         "      blue:   { backends: [\"10.1.1.2:8080\"], metrics_url: \"http://10.1.1.2:8080/metrics\" }\n"
         "      canary: { backends: [\"10.1.3.2:8080\"], metrics_url: \"http://10.1.3.2:8080/metrics\" }\n"
         "      green:  { backends: [\"10.1.2.2:8080\"] }\n"
         "    weights: " + weights + "\n"
         "    rollout:\n" + rollout;
}

// The SPEC §4 example's rollout.
const std::string kCanary = R"(      strategy: canary
      canary: canary
      interval: 5s
      steps: [ {set_weight: 5}, {pause: 10m}, {set_weight: 20}, {pause: 10m}, {set_weight: 50}, {pause: {}}, {set_weight: 100} ]
      gates:
        - { metric: latency_p95_ms, source: kernel, max: 200 }
        - { metric: error_rate, source: kernel, max: 0.001, min_samples: 1000 }
        - { metric: prediction_kl, source: prometheus, series: model_predictions_total, label: class, max: 0.1 }
        - { metric: conversion_rate, source: push, min: 0.02 }
      failure_limit: 0
)";

const std::string kBlueGreen = R"(      strategy: blue-green
      preview: green
      interval: 2s
      pre_promotion:
        requests: 20
        path: /healthz
        timeout: 500ms
        gates:
          - { metric: error_rate, max: 0 }
          - { metric: latency_p95_ms, max: 150 }
      auto_promote: true
      post_promotion:
        duration: 1m
        gates:
          - { metric: error_rate, source: kernel, max: 0.01, min_samples: 100 }
      failure_limit: 1
)";

const std::string kAb = R"(      strategy: ab
      metric: { name: conversion, kind: proportion }
      alpha: 0.01
      power: 0.9
      min_detectable_effect: 0.01
)";

// 1-based line of the only line containing `needle`.
int line_of(const std::string& text, const std::string& needle) {
  const auto pos = text.find(needle);
  EXPECT_NE(pos, std::string::npos) << "test bug: '" << needle << "' not in the config";
  EXPECT_EQ(text.find(needle, pos + 1), std::string::npos) << "test bug: '" << needle << "' is ambiguous";
  int line = 1;
  for (size_t i = 0; i < pos; ++i) line += text[i] == '\n';
  return line;
}

std::string replaced(const std::string& base, const std::string& from, const std::string& to) {
  const auto pos = base.find(from);
  EXPECT_NE(pos, std::string::npos) << "test bug: '" << from << "' not in the text";
  std::string out = base;
  if (pos != std::string::npos) out.replace(pos, from.size(), to);
  return out;
}

ConfigError refusal_of(const std::string& text) {
  try {
    parse_config(text, "veer.yaml");
  } catch (const ConfigError& e) {
    return e;
  }
  ADD_FAILURE() << "config was accepted:\n" << text;
  return ConfigError("none", 0, 0, "accepted");
}

// Refused, at the line holding `at`, with `reason` in the message.
#define EXPECT_ROLLOUT_REFUSED(text, at, reason_substring)                                          \
  do {                                                                                               \
    const std::string t_ = (text);                                                                  \
    const ConfigError e_ = refusal_of(t_);                                                          \
    EXPECT_EQ(e_.line(), line_of(t_, at)) << e_.what();                                             \
    EXPECT_NE(e_.reason().find(reason_substring), std::string::npos) << "reason: " << e_.reason(); \
    EXPECT_EQ(std::string(e_.what()).rfind("veer.yaml:" + std::to_string(e_.line()) + ":", 0), 0u); \
  } while (0)

TEST(RolloutConfig, SpecCanaryExampleParses) {
  const Config c = parse_config(service_with(kCanary), "veer.yaml");
  ASSERT_TRUE(c.services[0].rollout);
  const RolloutConfig& r = *c.services[0].rollout;
  EXPECT_EQ(r.strategy, RolloutStrategy::Canary);
  EXPECT_EQ(r.canary, "canary");
  EXPECT_EQ(r.interval, Millis{5000});
  EXPECT_EQ(r.failure_limit, 0u);
  ASSERT_EQ(r.steps.size(), 7u);
  EXPECT_EQ(r.steps[0].kind, CanaryStep::Kind::SetWeight);
  EXPECT_EQ(r.steps[0].weight_bp, 500u);
  EXPECT_EQ(r.steps[1].kind, CanaryStep::Kind::Pause);
  EXPECT_EQ(r.steps[1].pause, Millis{600000});
  EXPECT_EQ(r.steps[4].weight_bp, 5000u);
  EXPECT_EQ(r.steps[5].kind, CanaryStep::Kind::Pause);
  EXPECT_FALSE(r.steps[5].pause.has_value());  // pause: {} waits for promote
  EXPECT_EQ(r.steps[6].weight_bp, 10000u);
  ASSERT_EQ(r.gates.size(), 4u);
  EXPECT_EQ(r.gates[0].name, "latency_p95_ms");
  EXPECT_EQ(r.gates[0].source, GateSource::Kernel);
  EXPECT_EQ(r.gates[0].max, 200.0);
  EXPECT_FALSE(r.gates[0].min);
  EXPECT_EQ(r.gates[1].min_samples, 1000u);
  EXPECT_EQ(r.gates[1].max, 0.001);
  EXPECT_EQ(r.gates[2].source, GateSource::Prometheus);
  EXPECT_EQ(r.gates[2].series, "model_predictions_total");
  EXPECT_EQ(r.gates[2].label, "class");
  EXPECT_EQ(r.gates[2].smoothing, 1.0);
  EXPECT_EQ(r.gates[3].source, GateSource::Push);
  EXPECT_EQ(r.gates[3].min, 0.02);
  EXPECT_FALSE(r.gates[3].max);
}

TEST(RolloutConfig, DefaultsAndOptionalKeys) {
  const std::string rollout = R"(      strategy: canary
      canary: canary
      steps: [ {set_weight: 12.34} ]
      gates:
        - { metric: latency_p99_ms, max: 1.2, relative: true }
        - { name: p99-abs, metric: latency_p99_ms, max: 500 }
        - { metric: prediction_kl, source: push, max: 0.2, smoothing: 0.5 }
)";
  const RolloutConfig r = *parse_config(service_with(rollout), "f").services[0].rollout;
  EXPECT_EQ(r.interval, Millis{5000});
  EXPECT_EQ(r.failure_limit, 0u);
  EXPECT_EQ(r.steps[0].weight_bp, 1234u);
  ASSERT_EQ(r.gates.size(), 3u);
  EXPECT_EQ(r.gates[0].source, GateSource::Kernel);  // kernel metric: kernel by default
  EXPECT_TRUE(r.gates[0].relative);
  EXPECT_EQ(r.gates[1].name, "p99-abs");
  EXPECT_EQ(r.gates[1].metric, "latency_p99_ms");
  EXPECT_EQ(r.gates[2].series, "prediction");  // pushed label counts: prediction.<class>=N
  EXPECT_EQ(r.gates[2].smoothing, 0.5);
}

TEST(RolloutConfig, BlueGreenParses) {
  const RolloutConfig r =
      *parse_config(service_with(kBlueGreen), "f").services[0].rollout;
  EXPECT_EQ(r.strategy, RolloutStrategy::BlueGreen);
  EXPECT_EQ(r.active, "blue");  // defaults to stable
  EXPECT_EQ(r.preview, "green");
  EXPECT_EQ(r.interval, Millis{2000});
  EXPECT_EQ(r.failure_limit, 1u);
  ASSERT_TRUE(r.pre_promotion);
  EXPECT_EQ(r.pre_promotion->requests, 20u);
  EXPECT_EQ(r.pre_promotion->path, "/healthz");
  EXPECT_EQ(r.pre_promotion->timeout, Millis{500});
  ASSERT_EQ(r.pre_promotion->gates.size(), 2u);
  EXPECT_EQ(r.pre_promotion->gates[0].source, GateSource::Probe);
  EXPECT_EQ(r.pre_promotion->gates[0].max, 0.0);
  EXPECT_TRUE(r.auto_promote);
  ASSERT_TRUE(r.post_promotion);
  EXPECT_EQ(r.post_promotion->duration, Millis{60000});
  EXPECT_EQ(r.post_promotion->gates[0].source, GateSource::Kernel);
  EXPECT_EQ(r.post_promotion->gates[0].min_samples, 100u);

  // Everything optional but the preview.
  const RolloutConfig m = *parse_config(service_with("      strategy: blue-green\n      preview: canary\n"), "f")
                               .services[0]
                               .rollout;
  EXPECT_FALSE(m.pre_promotion);
  EXPECT_FALSE(m.post_promotion);
  EXPECT_FALSE(m.auto_promote);
}

TEST(RolloutConfig, AbParses) {
  const RolloutConfig r =
      *parse_config(service_with(kAb, "{ blue: 50, canary: 50 }", "client-ip"), "f").services[0].rollout;
  EXPECT_EQ(r.strategy, RolloutStrategy::Ab);
  EXPECT_EQ(r.metric.name, "conversion");
  EXPECT_EQ(r.metric.kind, AbMetricKind::Proportion);
  EXPECT_EQ(r.alpha, 0.01);
  EXPECT_EQ(r.power, 0.9);
  EXPECT_EQ(r.min_detectable_effect, 0.01);
  const RolloutConfig d = *parse_config(service_with(R"(      strategy: ab
      metric: { name: latency, kind: mean }
      min_detectable_effect: 5
)", "{ blue: 50, canary: 50 }", "client-ip"), "f").services[0].rollout;
  EXPECT_EQ(d.metric.kind, AbMetricKind::Mean);
  EXPECT_EQ(d.alpha, 0.05);
  EXPECT_EQ(d.power, 0.8);
}

TEST(RolloutConfig, RefusesBadStrategyAndKeys) {
  EXPECT_ROLLOUT_REFUSED(replaced(service_with(kCanary), "strategy: canary", "strategy: linear"), "strategy:",
                         "canary, blue-green or ab");
  EXPECT_ROLLOUT_REFUSED(replaced(service_with(kCanary), "      strategy: canary\n", ""), "    rollout:",
                         "'strategy'");
  // A key of another strategy.
  EXPECT_ROLLOUT_REFUSED(replaced(service_with(kCanary), "      failure_limit: 0\n", "      preview: green\n"),
                         "preview:", "unknown key 'preview' in a canary rollout");
  EXPECT_ROLLOUT_REFUSED(service_with("      - strategy: canary\n"), "- strategy", "must be a mapping");
  EXPECT_ROLLOUT_REFUSED(replaced(service_with(kCanary), "interval: 5s", "interval: 5"), "interval:", "duration");
  EXPECT_ROLLOUT_REFUSED(replaced(service_with(kCanary), "interval: 5s", "interval: 50ms"), "interval:",
                         "between 100ms and 1h");
  EXPECT_ROLLOUT_REFUSED(replaced(service_with(kCanary), "failure_limit: 0", "failure_limit: -1"), "failure_limit",
                         "integer");
}

TEST(RolloutConfig, RefusesBadCanaryVariant) {
  EXPECT_ROLLOUT_REFUSED(replaced(service_with(kCanary), "canary: canary", "canary: purple"), "canary: purple",
                         "not a variant");
  EXPECT_ROLLOUT_REFUSED(replaced(service_with(kCanary), "canary: canary", "canary: blue"), "canary: blue",
                         "must differ");
  EXPECT_ROLLOUT_REFUSED(replaced(service_with(kCanary), "      canary: canary\n", ""), "    rollout:",
                         "'canary'");
}

TEST(RolloutConfig, RefusesBadSteps) {
  const std::string steps = "{set_weight: 5}, {pause: 10m}, {set_weight: 20}";
  auto bad_steps = [&](const std::string& to) { return replaced(service_with(kCanary), steps, to); };
  EXPECT_ROLLOUT_REFUSED(bad_steps("{set_weight: 101}"), "steps:", "0..100");
  EXPECT_ROLLOUT_REFUSED(bad_steps("{set_weight: 5.555}"), "steps:", "two decimals");
  EXPECT_ROLLOUT_REFUSED(bad_steps("{set_weight: half}"), "steps:", "0..100");
  EXPECT_ROLLOUT_REFUSED(bad_steps("{pause: 10}"), "steps:", "duration");
  EXPECT_ROLLOUT_REFUSED(bad_steps("{pause: 0s}"), "steps:", "duration");
  EXPECT_ROLLOUT_REFUSED(bad_steps("{pause: {until: promote}}"), "steps:", "{} to wait for promote");
  EXPECT_ROLLOUT_REFUSED(bad_steps("{set_weight: 5, pause: 1m}"), "steps:", "exactly one");
  EXPECT_ROLLOUT_REFUSED(bad_steps("{wait: 1m}"), "steps:", "unknown key 'wait'");
  EXPECT_ROLLOUT_REFUSED(bad_steps("7"), "steps:", "must be a mapping");
  const std::string empty = replaced(service_with(kCanary),
                                     "[ {set_weight: 5}, {pause: 10m}, {set_weight: 20}, {pause: 10m}, {set_weight: "
                                     "50}, {pause: {}}, {set_weight: 100} ]",
                                     "[]");
  EXPECT_ROLLOUT_REFUSED(empty, "steps:", "non-empty list");
  // green holds 30 %: the canary can have at most 70 %.
  const std::string three = service_with(kCanary, "{ blue: 70, green: 30 }");
  EXPECT_ROLLOUT_REFUSED(three, "steps:", "other variants hold 30.00 %");
  EXPECT_NO_THROW(parse_config(
      replaced(three, "{set_weight: 50}, {pause: {}}, {set_weight: 100}", "{set_weight: 70}"), "f"));
}

TEST(RolloutConfig, RefusesBadGates) {
  const std::string gate = "- { metric: latency_p95_ms, source: kernel, max: 200 }";
  auto bad_gate = [&](const std::string& to) { return replaced(service_with(kCanary), gate, to); };
  EXPECT_ROLLOUT_REFUSED(bad_gate("- { metric: latency_p95_ms, source: kernel }"), "latency_p95_ms",
                         "needs max, min or both");
  EXPECT_ROLLOUT_REFUSED(bad_gate("- { metric: latency_p95_ms, min: 300, max: 200 }"), "latency_p95_ms",
                         "min 300 is above max 200");
  EXPECT_ROLLOUT_REFUSED(bad_gate("- { metric: latency_p95_ms, max: fast }"), "latency_p95_ms", "must be a number");
  EXPECT_ROLLOUT_REFUSED(bad_gate("- { metric: gpu_util, source: kernel, max: 1 }"), "gpu_util",
                         "kernel does not measure 'gpu_util'");
  EXPECT_ROLLOUT_REFUSED(bad_gate("- { metric: gpu_util, max: 1 }"), "gpu_util", "needs a source");
  EXPECT_ROLLOUT_REFUSED(bad_gate("- { metric: latency_p95_ms, source: statsd, max: 1 }"), "statsd",
                         "source must be kernel, prometheus, promql, push or probe");
  EXPECT_ROLLOUT_REFUSED(bad_gate("- { metric: latency_p95_ms, source: probe, max: 1 }"), "source: probe",
                         "only in blue-green pre_promotion");
  EXPECT_ROLLOUT_REFUSED(bad_gate("- { metric: latency_p95_ms, max: 1, relative: yes }"), "relative",
                         "true or false");
  EXPECT_ROLLOUT_REFUSED(bad_gate("- { metric: latency_p95_ms, max: 0, relative: true }"), "relative",
                         "must be positive");
  EXPECT_ROLLOUT_REFUSED(bad_gate("- { metric: latency_p95_ms, max: 1, colour: red }"), "colour",
                         "unknown key 'colour'");
  EXPECT_ROLLOUT_REFUSED(bad_gate("- { metric: latency_p95_ms, max: 1, min_samples: many }"), "many",
                         "min_samples");
  EXPECT_ROLLOUT_REFUSED(bad_gate("- { metric: latency_p95_ms, max: 1, series: x }"), "series: x",
                         "applies only to source prometheus");
  EXPECT_ROLLOUT_REFUSED(bad_gate("- { metric: latency_p95_ms, source: prometheus, max: 1 }"), "source: prometheus, max",
                         "needs 'histogram'");
  EXPECT_ROLLOUT_REFUSED(bad_gate("- { metric: \"bad metric\", source: push, max: 1 }"), "bad metric", "invalid");
  // Two gates on one metric need distinct names.
  EXPECT_ROLLOUT_REFUSED(bad_gate("- { metric: error_rate, max: 0.5 }"), "metric: error_rate, source: kernel",
                         "two gates are named 'error_rate'");
  EXPECT_ROLLOUT_REFUSED(service_with("      strategy: canary\n      canary: canary\n      steps: [ {set_weight: 5} ]\n"
                                      "      gates: 7\n"),
                         "gates: 7", "must be a list");
}

TEST(RolloutConfig, RefusesBadPredictionKlGates) {
  const std::string kl = "- { metric: prediction_kl, source: prometheus, series: model_predictions_total, label: class, "
                         "max: 0.1 }";
  auto bad = [&](const std::string& to) { return replaced(service_with(kCanary), kl, to); };
  EXPECT_ROLLOUT_REFUSED(bad("- { metric: prediction_kl, source: prometheus, series: m, max: 0.1 }"),
                         "prediction_kl", "needs 'label'");
  EXPECT_ROLLOUT_REFUSED(bad("- { metric: prediction_kl, source: prometheus, label: class, max: 0.1 }"),
                         "prediction_kl", "needs 'series'");
  EXPECT_ROLLOUT_REFUSED(bad("- { metric: prediction_kl, source: push, max: 0.1, relative: true }"), "prediction_kl",
                         "relative does not apply");
  EXPECT_ROLLOUT_REFUSED(bad("- { metric: prediction_kl, source: push, max: -1 }"), "prediction_kl",
                         "never negative");
  EXPECT_ROLLOUT_REFUSED(bad("- { metric: prediction_kl, source: push, max: 1, smoothing: -1 }"), "prediction_kl",
                         "smoothing must be >= 0");
  EXPECT_ROLLOUT_REFUSED(bad("- { metric: prediction_kl, source: prometheus, series: \"1x\", label: class, max: 1 }"),
                         "prediction_kl", "not a valid Prometheus metric name");
  EXPECT_ROLLOUT_REFUSED(bad("- { metric: error_rate, name: e2, max: 1, smoothing: 1 }"), "name: e2",
                         "smoothing applies only to prediction_kl");
  // The canary has no metrics_url: nothing to scrape, refused.
  const std::string no_url = replaced(service_with(kCanary), ", metrics_url: \"http://10.1.3.2:8080/metrics\"", "");
  EXPECT_ROLLOUT_REFUSED(no_url, "series: model_predictions_total", "variant 'canary' has no metrics_url");
}

// SPEC §4 verbatim: the stable variant has no metrics_url, so its
// prediction_kl gate can never be conclusive; accepted with a warning at the
// gate's line.
TEST(RolloutConfig, SpecExampleVerbatimLoadsWithAWarning) {
  const std::string spec = R"(node:
  interfaces: [eth0, eth1]      # every interface where client packets for a VIP or backend replies arrive
  attach: auto                  # auto | xdp | xdp-generic | tc
  hash_seed: 0x5eed             # same seed on every node -> same decisions
  flow_table_size: 1048576
  socket: /run/veer/veer.sock   # these four have the defaults of §3
  pin_path: /sys/fs/bpf/veer
  state_dir: /var/lib/veer
  metrics_listen: 127.0.0.1:9469
services:
  - name: ranker
    vip: 10.0.0.100
    port: 80
    protocol: tcp
    affinity: connection        # connection | client-ip
    stable: blue
    variants:
      blue:   { backends: ["10.1.1.2:8080"] }
      canary: { backends: ["10.1.3.2:8080", "10.1.3.3:8080"], metrics_url: "http://10.1.3.2:8080/metrics" }
    weights: { blue: 100 }
    rollout:
      strategy: canary          # canary | blue-green | ab
      canary: canary
      interval: 5s
      steps: [ {set_weight: 5}, {pause: 10m}, {set_weight: 20}, {pause: 10m}, {set_weight: 50}, {pause: {}}, {set_weight: 100} ]
      gates:
        - { metric: latency_p95_ms, source: kernel, max: 200 }
        - { metric: error_rate, source: kernel, max: 0.001, min_samples: 1000 }
        - { metric: prediction_kl, source: prometheus, series: model_predictions_total, label: class, max: 0.1 }
        - { metric: conversion_rate, source: push, min: 0.02 }
      failure_limit: 0
)";
  const Config c = parse_config(spec, "veer.yaml");
  ASSERT_TRUE(c.services[0].rollout);
  EXPECT_EQ(c.services[0].rollout->steps.size(), 7u);
  EXPECT_EQ(c.services[0].rollout->gates.size(), 4u);
  ASSERT_EQ(c.warnings.size(), 1u);
  EXPECT_EQ(c.warnings[0].rfind("veer.yaml:" + std::to_string(line_of(spec, "metric: prediction_kl")) + ":", 0), 0u)
      << c.warnings[0];
  EXPECT_NE(c.warnings[0].find("stable variant 'blue', which has no metrics_url"), std::string::npos);
  // With both URLs: no warning.
  EXPECT_TRUE(parse_config(service_with(kCanary), "veer.yaml").warnings.empty());
}

TEST(RolloutConfig, RefusesBadBlueGreen) {
  const std::string bg = service_with(kBlueGreen);
  EXPECT_ROLLOUT_REFUSED(replaced(bg, "preview: green", "preview: blue"), "preview: blue", "must differ");
  EXPECT_ROLLOUT_REFUSED(replaced(bg, "preview: green", "preview: grey"), "preview: grey", "not a variant");
  EXPECT_ROLLOUT_REFUSED(replaced(bg, "      preview: green\n", ""), "    rollout:", "'preview'");
  EXPECT_ROLLOUT_REFUSED(replaced(bg, "preview: green", "preview: green\n      active: canary"), "active: canary",
                         "must be the stable variant 'blue'");
  EXPECT_ROLLOUT_REFUSED(replaced(bg, "auto_promote: true", "auto_promote: yes"), "auto_promote", "true or false");
  EXPECT_ROLLOUT_REFUSED(replaced(bg, "requests: 20", "requests: 0"), "requests: 0", "1..100000");
  EXPECT_ROLLOUT_REFUSED(replaced(bg, "path: /healthz", "path: healthz"), "path: healthz", "start with '/'");
  EXPECT_ROLLOUT_REFUSED(replaced(bg, "timeout: 500ms", "timeout: soon"), "timeout: soon", "duration");
  EXPECT_ROLLOUT_REFUSED(replaced(bg, "- { metric: error_rate, max: 0 }", "- { metric: error_rate, source: kernel, max: 0 }"),
                         "source: kernel, max: 0 }", "no traffic reaches the preview");
  EXPECT_ROLLOUT_REFUSED(replaced(bg, "- { metric: error_rate, max: 0 }", "- { metric: accuracy, source: probe, max: 0 }"),
                         "accuracy", "probes measure");
  EXPECT_ROLLOUT_REFUSED(replaced(bg,
                                  "        gates:\n          - { metric: error_rate, max: 0 }\n          - { metric: "
                                  "latency_p95_ms, max: 150 }\n",
                                  ""),
                         "pre_promotion:", "pre_promotion needs gates");
  EXPECT_ROLLOUT_REFUSED(replaced(bg, "        duration: 1m\n", ""), "post_promotion:", "needs a duration");
  EXPECT_ROLLOUT_REFUSED(replaced(bg, "max: 0.01, min_samples: 100", "max: 2, relative: true"), "relative: true",
                         "exist only for canary");
  EXPECT_ROLLOUT_REFUSED(replaced(bg, "      auto_promote: true\n", "      steps: [ {pause: 1m} ]\n"), "steps:",
                         "unknown key 'steps' in a blue-green rollout");
  // Probes are HTTP: not for udp services.
  EXPECT_ROLLOUT_REFUSED(service_with(kBlueGreen, "{ blue: 100 }", "connection", "udp"), "pre_promotion:",
                         "udp");
}

TEST(RolloutConfig, RefusesBadAb) {
  const std::string ab = service_with(kAb, "{ blue: 50, canary: 50 }", "client-ip");
  EXPECT_NO_THROW(parse_config(ab, "f"));
  EXPECT_ROLLOUT_REFUSED(service_with(kAb, "{ blue: 50, canary: 50 }", "connection"), "strategy: ab",
                         "affinity: client-ip");
  EXPECT_ROLLOUT_REFUSED(service_with(kAb, "{ blue: 100 }", "client-ip"), "strategy: ab", "at least two variants");
  EXPECT_ROLLOUT_REFUSED(replaced(ab, "kind: proportion", "kind: median"), "kind: median", "proportion or mean");
  EXPECT_ROLLOUT_REFUSED(replaced(ab, "name: conversion, ", ""), "metric:", "needs a name");
  EXPECT_ROLLOUT_REFUSED(replaced(ab, "      metric: { name: conversion, kind: proportion }\n", ""), "    rollout:",
                         "'metric'");
  EXPECT_ROLLOUT_REFUSED(replaced(ab, "alpha: 0.01", "alpha: 1.5"), "alpha", "between 0 and 1");
  EXPECT_ROLLOUT_REFUSED(replaced(ab, "power: 0.9", "power: 0"), "power", "between 0 and 1");
  EXPECT_ROLLOUT_REFUSED(replaced(ab, "min_detectable_effect: 0.01", "min_detectable_effect: 2"),
                         "min_detectable_effect", "between 0 and 1");
  EXPECT_ROLLOUT_REFUSED(replaced(ab, "      min_detectable_effect: 0.01\n", ""), "    rollout:",
                         "'min_detectable_effect'");
}

TEST(RolloutConfig, Durations) {
  EXPECT_EQ(parse_duration("500ms"), Millis{500});
  EXPECT_EQ(parse_duration("5s"), Millis{5000});
  EXPECT_EQ(parse_duration("10m"), Millis{600000});
  EXPECT_EQ(parse_duration("1h"), Millis{3600000});
  EXPECT_EQ(parse_duration("1m30s"), Millis{90000});
  EXPECT_EQ(parse_duration("1h0m1s250ms"), Millis{3601250});
  for (const char* bad : {"", "5", "s", "5x", "-5s", "1.5s", "0s", "30s1m", "1s1s", "5 s", "99999999999h", "31d"})
    EXPECT_FALSE(parse_duration(bad).has_value()) << bad;
  EXPECT_EQ(format_duration(Millis{90000}), "1m30s");
  EXPECT_EQ(format_duration(Millis{500}), "500ms");
  EXPECT_EQ(format_duration(Millis{3600000}), "1h");
  for (int64_t ms : {1, 999, 1000, 61001, 7322004})
    EXPECT_EQ(parse_duration(format_duration(Millis{ms})), Millis{ms}) << ms;
}

TEST(RolloutConfig, MetricNames) {
  EXPECT_EQ(latency_quantile("latency_p95_ms"), 0.95);
  EXPECT_EQ(latency_quantile("latency_p5_ms"), 0.05);
  for (const char* bad : {"latency_p100_ms", "latency_p0_ms", "latency_p_ms", "latency_p95", "latency_pxx_ms"})
    EXPECT_FALSE(is_latency_metric(bad)) << bad;
  EXPECT_TRUE(is_kernel_metric("error_rate"));
  EXPECT_FALSE(is_kernel_metric("prediction_kl"));
}

}  // namespace
}  // namespace veer
