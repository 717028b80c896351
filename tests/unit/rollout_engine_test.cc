// The rollout engine (SPEC §5): every transition of canary and blue-green,
// gate evaluation, persistence and resume, and the A/B report. Services come
// from real YAML through parse_config, time is an input.
#include <gtest/gtest.h>

#include <cmath>
#include <nlohmann/json.hpp>

#include "config/config.h"
#include "rollout/gate_inputs.h"
#include "rollout/rollout_engine.h"
#include "stats/stats.h"

namespace veer {
namespace {

Millis sec(double s) { return Millis{static_cast<int64_t>(s * 1000)}; }

ServiceConfig service_from(const std::string& rollout, const std::string& weights = "{ blue: 100 }",
                           const std::string& affinity = "connection") {
  const std::string text =
      "node:\n"
      "  interfaces: [eth0]\n"
      "services:\n"
      "  - name: ranker\n"
      "    vip: 10.0.0.100\n"
      "    port: 80\n"
      "    affinity: " + affinity + "\n"
      "    stable: blue\n"
      "    variants:\n"
      "      blue:   { backends: [\"10.1.1.2:8080\"], metrics_url: \"http://10.1.1.2:8080/metrics\" }\n"
      "      canary: { backends: [\"10.1.3.2:8080\"], metrics_url: \"http://10.1.3.2:8080/metrics\" }\n"
      "      green:  { backends: [\"10.1.2.2:8080\"] }\n"
      "    weights: " + weights + "\n"
      "    rollout:\n" + rollout;
  return parse_config(text, "veer.yaml").services.at(0);
}

const std::string kSteps =
    "      steps: [ {set_weight: 5}, {pause: 10m}, {set_weight: 20}, {pause: 10m}, {set_weight: 50}, {pause: {}}, "
    "{set_weight: 100} ]\n";

std::string canary_rollout(int failure_limit = 0, const std::string& extra_gates = "") {
  return "      strategy: canary\n"
         "      canary: canary\n"
         "      interval: 5s\n" + kSteps +
         "      gates:\n"
         "        - { metric: latency_p95_ms, source: kernel, max: 200 }\n"
         "        - { metric: error_rate, source: kernel, max: 0.001, min_samples: 1000 }\n" + extra_gates +
         "      failure_limit: " + std::to_string(failure_limit) + "\n";
}

// Weights in variant order blue, canary, green.
std::vector<uint32_t> w(uint32_t blue, uint32_t canary, uint32_t green = 0) { return {blue, canary, green}; }

MetricsSnapshot snapshot(double p95, double error_rate, uint64_t samples = 5000) {
  MetricsSnapshot m;
  m.gates["latency_p95_ms"] = {Measurement::of(p95, samples), Measurement::of(80, samples)};
  m.gates["error_rate"] = {Measurement::of(error_rate, samples), Measurement::of(0, samples)};
  return m;
}
MetricsSnapshot healthy() { return snapshot(80, 0); }

bool has_event(const Decision& d, const std::string& kind, const std::string& text = "") {
  for (const auto& e : d.events)
    if (e.kind == kind && e.message.find(text) != std::string::npos) return true;
  return false;
}
const RolloutEvent* find_event(const Decision& d, const std::string& kind) {
  for (const auto& e : d.events)
    if (e.kind == kind) return &e;
  return nullptr;
}

// Ticks every 5 s from `from` (exclusive) to `to` (inclusive) with `m`;
// returns the last decision and fails if any decision moved weights.
Decision tick_quietly(RolloutEngine& e, Millis from, Millis to, const MetricsSnapshot& m) {
  Decision last;
  for (Millis t = from + sec(5); t <= to; t += sec(5)) {
    last = e.tick(t, m);
    EXPECT_FALSE(last.weights_bp.has_value()) << "weights moved at t=" << t.count();
  }
  return last;
}

// ---------------------------------------------------------------------------
// Canary

TEST(RolloutEngine, HealthyCanaryWalksEveryStepAndBecomesStable) {
  RolloutEngine e(service_from(canary_rollout()));
  EXPECT_EQ(e.state().phase, RolloutPhase::Idle);
  EXPECT_FALSE(e.active());

  Decision d = e.start(sec(0));
  EXPECT_EQ(d.phase, RolloutPhase::Progressing);
  EXPECT_EQ(d.weights_bp, w(9500, 500));
  EXPECT_TRUE(has_event(d, "started"));
  EXPECT_TRUE(has_event(d, "weights", "canary=5.00"));
  EXPECT_TRUE(e.active());

  // The set_weight step ends at the next tick: the 10 m pause starts.
  d = e.tick(sec(5), healthy());
  EXPECT_EQ(d.phase, RolloutPhase::Paused);
  EXPECT_EQ(e.state().step, 1u);
  EXPECT_FALSE(d.weights_bp);

  // More than a twentieth of the interval (250 ms) short of 10 minutes:
  // still paused; at 10 minutes: next step.
  tick_quietly(e, sec(5), sec(600), healthy());
  d = e.tick(sec(605) - Millis{251}, healthy());
  EXPECT_EQ(d.phase, RolloutPhase::Paused);
  d = e.tick(sec(605), healthy());
  EXPECT_EQ(d.phase, RolloutPhase::Progressing);
  EXPECT_EQ(d.weights_bp, w(8000, 2000));
  EXPECT_EQ(e.state().step, 2u);

  d = e.tick(sec(610), healthy());
  EXPECT_EQ(d.phase, RolloutPhase::Paused);
  d = e.tick(sec(1210), healthy());
  EXPECT_EQ(d.weights_bp, w(5000, 5000));
  d = e.tick(sec(1215), healthy());
  EXPECT_EQ(d.phase, RolloutPhase::WaitingForPromotion);  // pause: {}

  // pause: {} never ends on its own.
  d = tick_quietly(e, sec(1215), sec(5000), healthy());
  EXPECT_EQ(d.phase, RolloutPhase::WaitingForPromotion);

  d = e.promote(sec(5001), false);
  EXPECT_TRUE(has_event(d, "promote"));
  EXPECT_EQ(d.phase, RolloutPhase::Progressing);
  EXPECT_EQ(d.weights_bp, w(0, 10000));
  EXPECT_FALSE(d.new_stable);

  // After the last step the canary is the new stable.
  d = e.tick(sec(5006), healthy());
  EXPECT_EQ(d.phase, RolloutPhase::Completed);
  EXPECT_EQ(d.new_stable, "canary");
  EXPECT_TRUE(has_event(d, "completed", "'canary' is the new stable"));
  EXPECT_FALSE(e.active());
  EXPECT_EQ(e.state().desired_weights_bp, w(0, 10000));

  // Completed: ticks do nothing, commands are refused.
  d = e.tick(sec(5011), snapshot(9999, 1));
  EXPECT_TRUE(d.events.empty());
  EXPECT_THROW(e.promote(sec(5012), false), RolloutCommandError);
  EXPECT_THROW(e.abort(sec(5012), "x"), RolloutCommandError);
  EXPECT_THROW(e.start(sec(5012)), RolloutCommandError);
}

TEST(RolloutEngine, PromoteSkipsATimedPause) {
  RolloutEngine e(service_from(canary_rollout()));
  e.start(sec(0));
  e.tick(sec(5), healthy());
  ASSERT_EQ(e.state().phase, RolloutPhase::Paused);
  const Decision d = e.promote(sec(30), false);
  EXPECT_EQ(d.phase, RolloutPhase::Progressing);
  EXPECT_EQ(d.weights_bp, w(8000, 2000));
  EXPECT_EQ(e.state().step, 2u);
}

TEST(RolloutEngine, TimedPauseEndsOnTheTickThatCompletesItDespiteJitter) {
  // Ticks a hair under the interval apart (4.999 s for 5 s): the 10-minute
  // pause is over at the 120th tick, not one interval later.
  RolloutEngine e(service_from(canary_rollout()));
  e.start(sec(0));
  e.tick(sec(5), healthy());
  ASSERT_EQ(e.state().phase, RolloutPhase::Paused);
  Millis t = sec(5);
  for (int i = 0; i < 119; ++i) ASSERT_EQ(e.tick(t += Millis{4999}, healthy()).phase, RolloutPhase::Paused) << i;
  const Decision d = e.tick(t += Millis{4999}, healthy());
  EXPECT_EQ(d.phase, RolloutPhase::Progressing);
  EXPECT_EQ(d.weights_bp, w(8000, 2000));
}

TEST(RolloutEngine, PromoteFullGoesTo100AndCompletes) {
  RolloutEngine e(service_from(canary_rollout()));
  e.start(sec(0));
  e.tick(sec(5), healthy());
  const Decision d = e.promote(sec(6), true);
  EXPECT_EQ(d.phase, RolloutPhase::Completed);
  EXPECT_EQ(d.weights_bp, w(0, 10000));
  EXPECT_EQ(d.new_stable, "canary");
  EXPECT_EQ(e.state().step, 7u);
}

TEST(RolloutEngine, OperatorPauseStopsTheClockUntilPromote) {
  RolloutEngine e(service_from(canary_rollout()));
  e.start(sec(0));
  e.tick(sec(5), healthy());
  Decision d = e.pause(sec(10));
  EXPECT_EQ(d.phase, RolloutPhase::WaitingForPromotion);
  EXPECT_TRUE(has_event(d, "pause", "operator"));
  // Long past the 10 minutes: still waiting.
  d = tick_quietly(e, sec(10), sec(2000), healthy());
  EXPECT_EQ(d.phase, RolloutPhase::WaitingForPromotion);
  // Pausing again is refused and changes nothing.
  const RolloutState before = e.state();
  EXPECT_THROW(e.pause(sec(2001)), RolloutCommandError);
  EXPECT_EQ(e.state(), before);
  d = e.promote(sec(2002), false);
  EXPECT_EQ(d.weights_bp, w(8000, 2000));
  // Gates still run while paused: a bad canary is rolled back anyway.
  e.tick(sec(2007), healthy());
  e.pause(sec(2008));
  d = e.tick(sec(2013), snapshot(500, 0));
  EXPECT_EQ(d.phase, RolloutPhase::Aborted);
  EXPECT_EQ(d.weights_bp, w(10000, 0));
}

TEST(RolloutEngine, OperatorAbortAndRetryFromStepZero) {
  RolloutEngine e(service_from(canary_rollout()));
  e.start(sec(0));
  e.tick(sec(5), healthy());
  e.promote(sec(6), false);  // 20 %
  Decision d = e.abort(sec(7), "operator saw a bad dashboard");
  EXPECT_EQ(d.phase, RolloutPhase::Aborted);
  EXPECT_EQ(d.weights_bp, w(10000, 0));  // one decision, canary 0
  EXPECT_TRUE(has_event(d, "abort", "operator saw a bad dashboard"));
  EXPECT_EQ(e.state().abort_reason, "operator saw a bad dashboard");
  EXPECT_THROW(e.abort(sec(8), ""), RolloutCommandError);
  EXPECT_THROW(e.promote(sec(8), false), RolloutCommandError);
  EXPECT_THROW(e.pause(sec(8)), RolloutCommandError);
  d = e.tick(sec(12), healthy());
  EXPECT_TRUE(d.events.empty());
  EXPECT_EQ(d.phase, RolloutPhase::Aborted);

  d = e.retry(sec(20));
  EXPECT_TRUE(has_event(d, "retry"));
  EXPECT_EQ(d.phase, RolloutPhase::Progressing);
  EXPECT_EQ(e.state().step, 0u);
  EXPECT_EQ(d.weights_bp, w(9500, 500));
  EXPECT_TRUE(e.state().abort_reason.empty());
  EXPECT_THROW(e.retry(sec(21)), RolloutCommandError);
}

TEST(RolloutEngine, RetryReportsWeightsEvenWhenTheConfigAlreadyHadThem) {
  // The config starts with canary at 5 %: after an abort (canary 0) the
  // retry's first step (5 %) must be sent again.
  RolloutEngine e(service_from(canary_rollout(), "{ blue: 95, canary: 5 }"));
  Decision d = e.start(sec(0));
  EXPECT_FALSE(d.weights_bp);  // already 95/5
  d = e.abort(sec(1), "x");
  EXPECT_EQ(d.weights_bp, w(10000, 0));
  d = e.retry(sec(2));
  EXPECT_EQ(d.weights_bp, w(9500, 500));
}

TEST(RolloutEngine, FailedGateAbortsAtOnceWithFailureLimitZero) {
  RolloutEngine e(service_from(canary_rollout(0)));
  e.start(sec(0));
  e.tick(sec(5), healthy());
  e.promote(sec(6), false);  // 20 %
  const Decision d = e.tick(sec(11), snapshot(312.5, 0));
  EXPECT_EQ(d.phase, RolloutPhase::Aborted);
  EXPECT_EQ(d.weights_bp, w(10000, 0));
  const RolloutEvent* ev = find_event(d, "abort");
  ASSERT_NE(ev, nullptr);
  EXPECT_NE(ev->message.find("latency_p95_ms"), std::string::npos) << ev->message;
  EXPECT_NE(ev->message.find("312.5 > max 200"), std::string::npos) << ev->message;
  EXPECT_EQ(ev->values.at("value"), 312.5);
  EXPECT_EQ(ev->values.at("max"), 200);
  EXPECT_EQ(e.state().gates.at("latency_p95_ms").result, GateResult::Failed);
  EXPECT_EQ(e.state().gates.at("latency_p95_ms").failures, 1u);
}

TEST(RolloutEngine, FailuresAreCumulativeAndAbortBeyondTheLimit) {
  RolloutEngine e(service_from(canary_rollout(2)));
  e.start(sec(0));
  e.tick(sec(5), healthy());  // paused
  // Two failures, not in a row: within the limit; the pause does not end
  // while a gate fails.
  EXPECT_EQ(e.tick(sec(10), snapshot(80, 0.01)).phase, RolloutPhase::Paused);
  EXPECT_EQ(e.tick(sec(15), healthy()).phase, RolloutPhase::Paused);
  EXPECT_EQ(e.tick(sec(605), snapshot(80, 0.01)).phase, RolloutPhase::Paused);  // pause over, but failing
  EXPECT_EQ(e.state().gates.at("error_rate").failures, 2u);
  // The third failure is beyond failure_limit 2.
  const Decision d = e.tick(sec(610), snapshot(80, 0.02));
  EXPECT_EQ(d.phase, RolloutPhase::Aborted);
  EXPECT_EQ(d.weights_bp, w(10000, 0));
  EXPECT_TRUE(has_event(d, "abort", "failed 3 time(s), failure_limit 2"));
}

TEST(RolloutEngine, FailingGateHoldsATimedPauseUntilItRecovers) {
  RolloutEngine e(service_from(canary_rollout(5)));
  e.start(sec(0));
  e.tick(sec(5), healthy());
  EXPECT_EQ(e.tick(sec(605), snapshot(250, 0)).phase, RolloutPhase::Paused);
  const Decision d = e.tick(sec(610), healthy());
  EXPECT_EQ(d.phase, RolloutPhase::Progressing);
  EXPECT_EQ(d.weights_bp, w(8000, 2000));
}

TEST(RolloutEngine, FiveConsecutiveErrorsAbort) {
  RolloutEngine e(service_from(canary_rollout()));
  e.start(sec(0));
  e.tick(sec(5), healthy());
  MetricsSnapshot broken = healthy();
  broken.gates["error_rate"].test = Measurement::error("connection refused");
  Millis t = sec(5);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(e.tick(t += sec(5), broken).phase, RolloutPhase::Paused);
  EXPECT_EQ(e.state().gates.at("error_rate").consecutive_errors, 4u);
  // A good measurement resets the run.
  e.tick(t += sec(5), healthy());
  EXPECT_EQ(e.state().gates.at("error_rate").consecutive_errors, 0u);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(e.tick(t += sec(5), broken).phase, RolloutPhase::Paused);
  const Decision d = e.tick(t += sec(5), broken);
  EXPECT_EQ(d.phase, RolloutPhase::Aborted);
  EXPECT_EQ(d.weights_bp, w(10000, 0));
  EXPECT_TRUE(has_event(d, "abort", "5 errors in a row (connection refused)"));
}

TEST(RolloutEngine, InconclusivePastThePauseHoldsForAnOperator) {
  RolloutEngine e(service_from(canary_rollout()));
  e.start(sec(0));
  e.tick(sec(5), healthy());
  // Below min_samples during the pause: fine, the pause goes on.
  const MetricsSnapshot few = snapshot(80, 0, 500);
  EXPECT_EQ(e.tick(sec(300), few).phase, RolloutPhase::Paused);
  EXPECT_EQ(e.state().gates.at("error_rate").result, GateResult::Inconclusive);
  EXPECT_NE(e.state().gates.at("error_rate").reason.find("below min_samples 1000"), std::string::npos);
  // Past the pause, still inconclusive: hold.
  Decision d = e.tick(sec(605), few);
  EXPECT_EQ(d.phase, RolloutPhase::Holding);
  EXPECT_TRUE(has_event(d, "hold", "error_rate Inconclusive"));
  EXPECT_FALSE(d.weights_bp);
  // Holding waits for the operator even when the data arrives.
  d = tick_quietly(e, sec(605), sec(900), healthy());
  EXPECT_EQ(d.phase, RolloutPhase::Holding);
  // A failure while holding still aborts.
  RolloutEngine e2(service_from(canary_rollout()));
  e2.start(sec(0));
  e2.tick(sec(5), healthy());
  e2.tick(sec(605), few);
  EXPECT_EQ(e2.tick(sec(610), snapshot(999, 0)).phase, RolloutPhase::Aborted);
  // The operator moves on.
  d = e.promote(sec(901), false);
  EXPECT_EQ(d.weights_bp, w(8000, 2000));
}

TEST(RolloutEngine, MissingMeasurementIsInconclusive) {
  RolloutEngine e(service_from(canary_rollout()));
  e.start(sec(0));
  e.tick(sec(5), healthy());
  MetricsSnapshot partial = healthy();
  partial.gates.erase("latency_p95_ms");
  EXPECT_EQ(e.tick(sec(605), partial).phase, RolloutPhase::Holding);
  EXPECT_EQ(e.state().gates.at("latency_p95_ms").reason, "no data");
}

TEST(RolloutEngine, OtherVariantsKeepTheirWeight) {
  // green holds 40 %: the canary moves within blue's 60 %.
  RolloutEngine e(service_from(
      "      strategy: canary\n      canary: canary\n      steps: [ {set_weight: 5}, {pause: {}}, {set_weight: 60} ]\n",
      "{ blue: 60, green: 40 }"));
  EXPECT_EQ(e.start(sec(0)).weights_bp, w(5500, 500, 4000));
  EXPECT_EQ(e.tick(sec(5), {}).phase, RolloutPhase::WaitingForPromotion);  // no gates: nothing to wait for
  EXPECT_EQ(e.promote(sec(6), false).weights_bp, w(0, 6000, 4000));
  const Decision d = e.abort(sec(7), "x");
  EXPECT_EQ(d.weights_bp, w(6000, 0, 4000));
  e.retry(sec(8));
  EXPECT_EQ(e.promote(sec(9), true).weights_bp, w(0, 6000, 4000));
}

TEST(RolloutEngine, PersistedStateResumesMidPauseWithTimeAlreadySpent) {
  const ServiceConfig svc = service_from(canary_rollout(3));
  RolloutEngine e(svc);
  e.start(sec(0));
  e.tick(sec(5), healthy());
  e.tick(sec(10), snapshot(250, 0));  // one failure, within the limit: must survive the restart
  e.tick(sec(305), healthy());         // 5 minutes of the 10 spent
  ASSERT_EQ(e.state().phase, RolloutPhase::Paused);
  EXPECT_EQ(e.state().pause_spent, sec(300));

  const std::string json = rollout_state_to_json(e.state());
  const RolloutState loaded = rollout_state_from_json(json);
  EXPECT_EQ(loaded, e.state());

  // veerd is down for an hour; the new engine resumes at the same step.
  RolloutEngine resumed(svc, loaded);
  EXPECT_EQ(resumed.state().phase, RolloutPhase::Paused);
  EXPECT_EQ(resumed.state().step, 1u);
  EXPECT_EQ(resumed.state().gates.at("latency_p95_ms").failures, 1u);
  Millis t = sec(305) + sec(3600);
  Decision d = resumed.tick(t, healthy());
  EXPECT_EQ(d.phase, RolloutPhase::Paused);  // the downtime does not count
  d = resumed.tick(t + sec(295), healthy());
  EXPECT_EQ(d.phase, RolloutPhase::Paused);  // 9 m 55 s spent
  d = resumed.tick(t + sec(300), healthy());  // 10 m spent
  EXPECT_EQ(d.phase, RolloutPhase::Progressing);
  EXPECT_EQ(d.weights_bp, w(8000, 2000));
}

TEST(RolloutEngine, StateJsonRefusesGarbageAndMismatchedStates) {
  const ServiceConfig svc = service_from(canary_rollout());
  RolloutEngine e(svc);
  e.start(sec(0));
  nlohmann::json good = nlohmann::json::parse(rollout_state_to_json(e.state()));
  EXPECT_THROW(rollout_state_from_json("{"), RolloutStateError);
  EXPECT_THROW(rollout_state_from_json("[]"), RolloutStateError);
  auto broken = [&](const char* key, nlohmann::json value) {
    nlohmann::json j = good;
    if (value.is_null()) j.erase(key);
    else j[key] = value;
    return j.dump();
  };
  EXPECT_THROW(rollout_state_from_json(broken("phase", "Sleeping")), RolloutStateError);
  EXPECT_THROW(rollout_state_from_json(broken("step", nullptr)), RolloutStateError);
  EXPECT_THROW(rollout_state_from_json(broken("step", "two")), RolloutStateError);
  EXPECT_THROW(rollout_state_from_json(broken("pause_spent_ms", -5)), RolloutStateError);
  EXPECT_THROW(rollout_state_from_json(broken("gates", 7)), RolloutStateError);

  RolloutState far = e.state();
  far.step = 99;
  EXPECT_THROW(RolloutEngine(svc, far), std::invalid_argument);
  RolloutState wrong = e.state();
  wrong.desired_weights_bp = {10000};
  EXPECT_THROW(RolloutEngine(svc, wrong), std::invalid_argument);
  wrong.desired_weights_bp = {5000, 4000, 0};
  EXPECT_THROW(RolloutEngine(svc, wrong), std::invalid_argument);
  // A phase the config cannot be in: Paused on a set_weight step, a
  // blue-green phase in a canary rollout.
  RolloutState odd = e.state();
  odd.phase = RolloutPhase::Paused;
  odd.step = 0;
  EXPECT_THROW(RolloutEngine(svc, odd), std::invalid_argument);
  odd.step = 1;
  EXPECT_NO_THROW(RolloutEngine(svc, odd));
  odd.phase = RolloutPhase::PostPromotion;
  EXPECT_THROW(RolloutEngine(svc, odd), std::invalid_argument);
}

TEST(RolloutEngine, CommandsOutOfPhaseAreRefusedAndChangeNothing) {
  RolloutEngine e(service_from(canary_rollout()));
  const RolloutState idle = e.state();
  EXPECT_THROW(e.promote(sec(0), false), RolloutCommandError);
  EXPECT_THROW(e.pause(sec(0)), RolloutCommandError);
  EXPECT_THROW(e.abort(sec(0), "x"), RolloutCommandError);
  EXPECT_THROW(e.retry(sec(0)), RolloutCommandError);
  EXPECT_EQ(e.state(), idle);
  EXPECT_TRUE(e.tick(sec(5), healthy()).events.empty());
  e.start(sec(10));
  const RolloutState started = e.state();
  EXPECT_THROW(e.start(sec(11)), RolloutCommandError);
  EXPECT_THROW(e.retry(sec(11)), RolloutCommandError);
  EXPECT_EQ(e.state(), started);
  ServiceConfig without = service_from(canary_rollout());
  without.rollout.reset();
  EXPECT_THROW(RolloutEngine{without}, std::invalid_argument);
}

TEST(RolloutEngine, RelativeGateComparesWithStable) {
  const std::string gate = "        - { name: rel, metric: latency_p95_ms, max: 1.2, relative: true }\n";
  const GateConfig g = service_from(canary_rollout(0, gate)).rollout->gates.at(2);
  auto eval = [&](std::optional<GateMeasurement> m) { return evaluate_gate(g, m, sec(1), GateStatus{}); };
  GateStatus s = eval(GateMeasurement{Measurement::of(110, 100), Measurement::of(100, 100)});
  EXPECT_EQ(s.result, GateResult::Successful);
  EXPECT_DOUBLE_EQ(*s.compared, 1.1);
  EXPECT_EQ(s.baseline, 100.0);
  s = eval(GateMeasurement{Measurement::of(130, 100), Measurement::of(100, 100)});
  EXPECT_EQ(s.result, GateResult::Failed);
  EXPECT_EQ(s.failures, 1u);
  EXPECT_NE(s.reason.find("1.3 x stable (130 vs 100) > max 1.2"), std::string::npos) << s.reason;
  // Absolute values that would pass an absolute bound of 200 still fail relatively.
  s = eval(GateMeasurement{Measurement::of(50, 100), Measurement::of(20, 100)});
  EXPECT_EQ(s.result, GateResult::Failed);
  // No stable data: inconclusive; stable source down: error.
  EXPECT_EQ(eval(GateMeasurement{Measurement::of(50, 100), std::nullopt}).result, GateResult::Inconclusive);
  EXPECT_EQ(eval(GateMeasurement{Measurement::of(50, 100), Measurement::inconclusive("no flows")}).result,
            GateResult::Inconclusive);
  s = eval(GateMeasurement{Measurement::of(50, 100), Measurement::error("timeout")});
  EXPECT_EQ(s.result, GateResult::Error);
  EXPECT_EQ(s.consecutive_errors, 1u);
  // Zero baseline: equal zeros pass, anything above zero fails, never a NaN.
  EXPECT_EQ(eval(GateMeasurement{Measurement::of(0, 100), Measurement::of(0, 100)}).result, GateResult::Successful);
  EXPECT_EQ(eval(GateMeasurement{Measurement::of(1, 100), Measurement::of(0, 100)}).result, GateResult::Failed);

  // In the engine: a relative breach aborts.
  RolloutEngine e(service_from(canary_rollout(0, gate)));
  e.start(sec(0));
  MetricsSnapshot m = healthy();
  m.gates["rel"] = {Measurement::of(130, 5000), Measurement::of(100, 5000)};
  const Decision d = e.tick(sec(5), m);
  EXPECT_EQ(d.phase, RolloutPhase::Aborted);
  EXPECT_EQ(find_event(d, "abort")->values.at("baseline"), 100);
}

TEST(RolloutEngine, GateBoundsMinAndMax) {
  const std::string gate = "        - { metric: conversion_rate, source: push, min: 0.02, max: 0.5, min_samples: 10 }\n";
  const GateConfig g = service_from(canary_rollout(0, gate)).rollout->gates.at(2);
  auto result = [&](double v, uint64_t n) {
    return evaluate_gate(g, GateMeasurement{Measurement::of(v, n), std::nullopt}, sec(1), GateStatus{}).result;
  };
  EXPECT_EQ(result(0.03, 10), GateResult::Successful);
  EXPECT_EQ(result(0.02, 10), GateResult::Successful);  // bounds are inclusive
  EXPECT_EQ(result(0.019, 10), GateResult::Failed);
  EXPECT_EQ(result(0.6, 10), GateResult::Failed);
  EXPECT_EQ(result(0.6, 9), GateResult::Inconclusive);
  EXPECT_EQ(result(std::nan(""), 10), GateResult::Inconclusive);
  EXPECT_EQ(evaluate_gate(g, std::nullopt, sec(1), GateStatus{}).result, GateResult::Inconclusive);
}

TEST(RolloutEngine, PredictionKlGateComputesTheDivergenceFromLabelCounts) {
  const std::string gate =
      "        - { metric: prediction_kl, source: prometheus, series: model_predictions_total, label: class, max: 0.1 }\n";
  const GateConfig g = service_from(canary_rollout(0, gate)).rollout->gates.at(2);
  auto eval = [&](std::map<std::string, double> test, std::map<std::string, double> stable) {
    return evaluate_gate(g, GateMeasurement{Measurement::of_labels(test), Measurement::of_labels(stable)}, sec(1),
                         GateStatus{});
  };
  GateStatus s = eval({{"cat", 500}, {"dog", 500}}, {{"cat", 5000}, {"dog", 5000}});
  EXPECT_EQ(s.result, GateResult::Successful);
  EXPECT_NEAR(*s.value, 0.0, 1e-9);
  // 99/1 vs 1/99 with smoothing 1: p = (100, 2)/102, q = (2, 100)/102,
  // KL = (100/102) ln 50 + (2/102) ln(1/50) = (98/102) ln 50.
  s = eval({{"cat", 99}, {"dog", 1}}, {{"cat", 1}, {"dog", 99}});
  EXPECT_EQ(s.result, GateResult::Failed);
  EXPECT_NEAR(*s.value, 98.0 / 102.0 * std::log(50.0), 1e-9);
  EXPECT_EQ(eval({}, {{"cat", 1}}).result, GateResult::Inconclusive);
}

// ---------------------------------------------------------------------------
// Blue-green

const std::string kBlueGreen = R"(      strategy: blue-green
      preview: green
      interval: 2s
      pre_promotion:
        requests: 20
        path: /healthz
        gates:
          - { metric: error_rate, max: 0 }
          - { metric: latency_p95_ms, max: 150 }
      auto_promote: true
      post_promotion:
        duration: 1m
        gates:
          - { metric: error_rate, source: kernel, max: 0.01, min_samples: 100 }
)";

MetricsSnapshot probes(double error_rate, double p95) {
  MetricsSnapshot m;
  m.gates["error_rate"] = {Measurement::of(error_rate, 20), std::nullopt};
  m.gates["latency_p95_ms"] = {Measurement::of(p95, 20), std::nullopt};
  return m;
}
MetricsSnapshot watch(double error_rate) {
  MetricsSnapshot m;
  m.gates["error_rate"] = {Measurement::of(error_rate, 1000), std::nullopt};
  return m;
}

TEST(BlueGreen, FailedPrePromotionNeverMovesTraffic) {
  RolloutEngine e(service_from(kBlueGreen));
  std::vector<Decision> ds;
  ds.push_back(e.start(sec(0)));
  EXPECT_EQ(ds.back().phase, RolloutPhase::PrePromotion);
  ds.push_back(e.tick(sec(2), probes(0, 900)));  // too slow
  EXPECT_EQ(ds.back().phase, RolloutPhase::Aborted);
  EXPECT_TRUE(has_event(ds.back(), "abort", "latency_p95_ms"));
  ds.push_back(e.tick(sec(4), probes(0, 10)));
  for (const auto& d : ds) EXPECT_FALSE(d.weights_bp) << "traffic moved";
  EXPECT_EQ(e.state().desired_weights_bp, w(10000, 0, 0));
  EXPECT_FALSE(e.state().switched);
  // retry probes again.
  EXPECT_EQ(e.retry(sec(6)).phase, RolloutPhase::PrePromotion);
}

TEST(BlueGreen, HealthyPreviewIsSwitchedToWatchedAndCompleted) {
  RolloutEngine e(service_from(kBlueGreen));
  e.start(sec(0));
  // Probes not answered yet: keep probing.
  EXPECT_EQ(e.tick(sec(2), MetricsSnapshot{}).phase, RolloutPhase::PrePromotion);
  Decision d = e.tick(sec(4), probes(0, 40));
  EXPECT_EQ(d.phase, RolloutPhase::PostPromotion);
  EXPECT_EQ(d.weights_bp, w(0, 0, 10000));  // the atomic switch
  EXPECT_TRUE(has_event(d, "switch", "green"));
  for (Millis t = sec(6); t < sec(64); t += sec(2)) EXPECT_EQ(e.tick(t, watch(0.001)).phase, RolloutPhase::PostPromotion);
  d = e.tick(sec(64), watch(0.001));
  EXPECT_EQ(d.phase, RolloutPhase::Completed);
  EXPECT_EQ(d.new_stable, "green");
  EXPECT_FALSE(d.weights_bp);  // already there
}

TEST(BlueGreen, PostPromotionBreachSwitchesBack) {
  RolloutEngine e(service_from(kBlueGreen));
  e.start(sec(0));
  e.tick(sec(2), probes(0, 40));
  EXPECT_EQ(e.tick(sec(4), watch(0)).phase, RolloutPhase::PostPromotion);
  const Decision d = e.tick(sec(6), watch(0.05));
  EXPECT_EQ(d.phase, RolloutPhase::Aborted);
  EXPECT_EQ(d.weights_bp, w(10000, 0, 0));
  EXPECT_TRUE(has_event(d, "weights", "switch back"));
  EXPECT_EQ(find_event(d, "abort")->values.at("value"), 0.05);
  EXPECT_FALSE(e.state().switched);
}

TEST(BlueGreen, SameNamedGatesOfPreAndPostPromotionKeepApartStatuses) {
  // error_rate is in both lists (probe source before the switch, kernel after): the watch's failure
  // count starts afresh and the state says which list its statuses belong to.
  std::string cfg = kBlueGreen;
  cfg.replace(cfg.find("      auto_promote"), 0, "      failure_limit: 1\n");
  RolloutEngine e(service_from(cfg));
  e.start(sec(0));
  EXPECT_EQ(e.tick(sec(2), probes(0.5, 40)).phase, RolloutPhase::PrePromotion);  // one failure of two allowed
  EXPECT_EQ(e.state().gates_stage, "pre_promotion");
  EXPECT_EQ(e.state().gates.at("error_rate").failures, 1u);
  EXPECT_EQ(e.tick(sec(4), probes(0, 40)).phase, RolloutPhase::PostPromotion);
  EXPECT_EQ(e.state().gates_stage, "post_promotion");
  EXPECT_TRUE(e.state().gates.empty());
  EXPECT_EQ(e.tick(sec(6), watch(0.05)).phase, RolloutPhase::PostPromotion);  // the watch's first failure
  EXPECT_EQ(e.state().gates.at("error_rate").failures, 1u);
  EXPECT_EQ(e.state().gates.count("latency_p95_ms"), 0u);  // a pre-promotion gate: not carried over
  // The stage goes through state.json; an unknown one is refused.
  const RolloutState back = rollout_state_from_json(rollout_state_to_json(e.state()));
  EXPECT_EQ(back, e.state());
  auto j = nlohmann::json::parse(rollout_state_to_json(e.state()));
  j["gates_stage"] = "mid_promotion";
  EXPECT_THROW(rollout_state_from_json(j.dump()), RolloutStateError);
  j.erase("gates_stage");  // a file from before gates_stage: ""
  const RolloutState old_file = rollout_state_from_json(j.dump());
  EXPECT_EQ(old_file.gates_stage, "");
  // ... which the engine reads as the list its phase evaluates, keeping the watch's failure count
  RolloutEngine resumed(service_from(cfg), old_file);
  EXPECT_EQ(resumed.state().gates_stage, "post_promotion");
  EXPECT_EQ(resumed.state().gates.at("error_rate").failures, 1u);
  // retry: the probes' list again, counted from zero
  EXPECT_EQ(e.tick(sec(8), watch(0.05)).phase, RolloutPhase::Aborted);
  e.retry(sec(10));
  EXPECT_EQ(e.tick(sec(12), probes(0.5, 40)).phase, RolloutPhase::PrePromotion);
  EXPECT_EQ(e.state().gates_stage, "pre_promotion");
  EXPECT_EQ(e.state().gates.at("error_rate").failures, 1u);
}

TEST(BlueGreen, WithoutAutoPromoteWaitsForPromote) {
  std::string cfg = kBlueGreen;
  cfg.replace(cfg.find("auto_promote: true"), 18, "auto_promote: false");
  RolloutEngine e(service_from(cfg));
  e.start(sec(0));
  Decision d = e.tick(sec(2), probes(0, 40));
  EXPECT_EQ(d.phase, RolloutPhase::WaitingForPromotion);
  EXPECT_FALSE(d.weights_bp);
  d = e.tick(sec(4), probes(1, 900));  // nothing is watched while waiting
  EXPECT_EQ(d.phase, RolloutPhase::WaitingForPromotion);
  EXPECT_THROW(e.pause(sec(5)), RolloutCommandError);
  d = e.promote(sec(6), false);
  EXPECT_EQ(d.phase, RolloutPhase::PostPromotion);
  EXPECT_EQ(d.weights_bp, w(0, 0, 10000));
  d = e.promote(sec(8), false);  // ends the watch early
  EXPECT_EQ(d.phase, RolloutPhase::Completed);
  EXPECT_EQ(d.new_stable, "green");
}

TEST(BlueGreen, PromoteFullSkipsProbesAndWatch) {
  RolloutEngine e(service_from(kBlueGreen));
  e.start(sec(0));
  const Decision d = e.promote(sec(1), true);
  EXPECT_EQ(d.phase, RolloutPhase::Completed);
  EXPECT_EQ(d.weights_bp, w(0, 0, 10000));
  EXPECT_EQ(d.new_stable, "green");
}

TEST(BlueGreen, InconclusiveWatchHoldsAndAbortSwitchesBack) {
  RolloutEngine e(service_from(kBlueGreen));
  e.start(sec(0));
  e.tick(sec(2), probes(0, 40));
  MetricsSnapshot few;
  few.gates["error_rate"] = {Measurement::of(0, 10), std::nullopt};  // below min_samples 100
  EXPECT_EQ(e.tick(sec(62), few).phase, RolloutPhase::Holding);
  const Decision d = e.abort(sec(70), "not sure");
  EXPECT_EQ(d.weights_bp, w(10000, 0, 0));
  EXPECT_EQ(d.phase, RolloutPhase::Aborted);
}

TEST(BlueGreen, WithoutPrePromotionAutoPromoteSwitchesAtStart) {
  RolloutEngine e(service_from("      strategy: blue-green\n      preview: green\n      auto_promote: true\n"));
  const Decision d = e.start(sec(0));
  EXPECT_EQ(d.weights_bp, w(0, 0, 10000));
  EXPECT_EQ(d.phase, RolloutPhase::Completed);
  EXPECT_EQ(d.new_stable, "green");
}

// ---------------------------------------------------------------------------
// A/B report

const std::string kAbProportion = R"(      strategy: ab
      metric: { name: conversion, kind: proportion }
      min_detectable_effect: 0.01
)";

AbSnapshot proportions(uint64_t flows_a, uint64_t flows_b, uint64_t n, uint64_t succ_a, uint64_t succ_b) {
  AbSnapshot s;
  s.variants = {{flows_a, n, succ_a, 0, 0}, {flows_b, n, succ_b, 0, 0}, {0, 0, 0, 0, 0}};
  return s;
}

TEST(AbReport, SignificantOnceTheSampleIsLargeEnough) {
  const ServiceConfig svc = service_from(kAbProportion, "{ blue: 50, canary: 50 }", "client-ip");
  // 10 % vs 13 %, 20,000 per arm: beyond the ~14,750 needed, clearly different.
  AbReport r = ab_report(svc, proportions(20000, 20000, 20000, 2000, 2600));
  EXPECT_EQ(r.test, "chi-square");
  ASSERT_EQ(r.variants.size(), 3u);
  EXPECT_DOUBLE_EQ(r.variants[0].estimate, 0.10);
  EXPECT_DOUBLE_EQ(r.variants[1].estimate, 0.13);
  EXPECT_LT(r.variants[0].ci_low, 0.10);
  EXPECT_GT(r.variants[0].ci_high, 0.10);
  EXPECT_NEAR(*r.variants[1].difference, 0.03, 1e-12);
  EXPECT_LT(*r.variants[1].p_value, 1e-6);
  EXPECT_FALSE(r.variants[0].p_value.has_value());  // the stable is the reference
  EXPECT_NEAR(static_cast<double>(r.sample_size_per_arm), 14750, 60);
  EXPECT_EQ(r.samples_still_needed, 0u);
  EXPECT_FALSE(r.srm_mismatch);
  EXPECT_TRUE(r.significant);
  EXPECT_EQ(r.verdict.rfind("significant: canary above blue", 0), 0u) << r.verdict;
  EXPECT_EQ(to_json(r).at("verdict"), r.verdict);

  // The same rates on 5,000 per arm: still collecting, however small p is.
  r = ab_report(svc, proportions(5000, 5000, 5000, 500, 650));
  EXPECT_FALSE(r.significant);
  EXPECT_EQ(r.samples_still_needed, r.sample_size_per_arm - 5000);
  EXPECT_EQ(r.verdict, "collecting: " + std::to_string(r.sample_size_per_arm - 5000) + " more per arm");

  // A tiny difference on a large sample: not significant.
  r = ab_report(svc, proportions(20000, 20000, 20000, 2000, 2010));
  EXPECT_FALSE(r.significant);
  EXPECT_EQ(r.verdict, "no significant difference");

  // Nothing yet.
  r = ab_report(svc, proportions(0, 0, 0, 0, 0));
  EXPECT_EQ(r.verdict, "collecting: no data yet");
}

TEST(AbReport, SampleRatioMismatchHoldsTheVerdict) {
  const ServiceConfig svc = service_from(kAbProportion, "{ blue: 50, canary: 50 }", "client-ip");
  AbReport r = ab_report(svc, proportions(5200, 4800, 20000, 2000, 2600));
  EXPECT_TRUE(r.srm_mismatch);
  EXPECT_LT(r.srm_p_value, 0.001);
  EXPECT_FALSE(r.significant);
  EXPECT_EQ(r.verdict.rfind("hold: sample ratio mismatch", 0), 0u) << r.verdict;
  r = ab_report(svc, proportions(5050, 4950, 20000, 2000, 2600));
  EXPECT_FALSE(r.srm_mismatch);
  EXPECT_GT(r.srm_p_value, 0.001);
  EXPECT_TRUE(r.significant);
}

TEST(AbReport, TheSnapshotTakesFlowsInVariantOrderAndThePushedMetricByVariantName) {
  // One node's totals or the fleet's: the same function reads both.
  const ServiceConfig svc = service_from(kAbProportion, "{ blue: 50, canary: 50 }", "client-ip");
  std::map<std::string, PushData> pushed;
  for (int i = 0; i < 40; ++i) pushed["canary"].add(PushItem{"conversion", std::nullopt, i < 10 ? 1.0 : 0.0, 1});
  pushed["blue"].add(PushItem{"conversion", std::nullopt, 1.0, 30});
  pushed["blue"].add(PushItem{"conversion", std::nullopt, 0.0, 70});
  pushed["blue"].add(PushItem{"other", std::nullopt, 5.0, 3});
  const AbSnapshot s = ab_snapshot_of(svc, {1200, 400}, pushed);
  ASSERT_EQ(s.variants.size(), 3u);
  EXPECT_EQ(s.variants[0].flows, 1200u);
  EXPECT_EQ(s.variants[0].n, 100u);
  EXPECT_EQ(s.variants[0].successes, 30u);
  EXPECT_EQ(s.variants[1].flows, 400u);
  EXPECT_EQ(s.variants[1].n, 40u);
  EXPECT_EQ(s.variants[1].successes, 10u);
  EXPECT_EQ(s.variants[2].flows, 0u);  // green: no flows given, nothing pushed
  EXPECT_EQ(s.variants[2].n, 0u);
}

TEST(AbReport, MeansUseWelch) {
  const ServiceConfig svc = service_from(R"(      strategy: ab
      metric: { name: basket, kind: mean }
      min_detectable_effect: 5
)", "{ blue: 50, canary: 50 }", "client-ip");
  AbSnapshot s;
  s.variants = {{1000, 1000, 0, 100, 400}, {1000, 1000, 0, 105, 400}, {0, 0, 0, 0, 0}};
  AbReport r = ab_report(svc, s);
  EXPECT_EQ(r.test, "welch-t");
  // t = 5 / sqrt(400/1000 + 400/1000) = 5.59, df ~ 1998.
  EXPECT_NEAR(*r.variants[1].statistic, 5.0 / std::sqrt(0.8), 1e-9);
  EXPECT_LT(*r.variants[1].p_value, 1e-6);
  // n = 2 (1.96 + 0.8416)^2 * 400 / 25 ~ 251.2 -> 252.
  EXPECT_NEAR(static_cast<double>(r.sample_size_per_arm), 252, 1);
  EXPECT_TRUE(r.significant);
  EXPECT_LT(r.variants[0].ci_low, 100);
  EXPECT_GT(r.variants[0].ci_high, 100);
}

TEST(AbReport, RefusesBadInput) {
  const ServiceConfig svc = service_from(kAbProportion, "{ blue: 50, canary: 50 }", "client-ip");
  AbSnapshot s = proportions(10, 10, 10, 1, 1);
  s.variants.pop_back();
  EXPECT_THROW(ab_report(svc, s), std::invalid_argument);
  EXPECT_THROW(ab_report(svc, proportions(10, 10, 10, 11, 1)), std::invalid_argument);
  EXPECT_THROW(ab_report(service_from(canary_rollout()), proportions(10, 10, 10, 1, 1)), std::invalid_argument);
}

TEST(AbReport, EngineForAbOnlyRunsAndAborts) {
  RolloutEngine e(service_from(kAbProportion, "{ blue: 50, canary: 50 }", "client-ip"));
  Decision d = e.start(sec(0));
  EXPECT_EQ(d.phase, RolloutPhase::Progressing);
  EXPECT_FALSE(d.weights_bp);
  EXPECT_THROW(e.promote(sec(1), false), RolloutCommandError);
  d = e.abort(sec(2), "stop the experiment");
  EXPECT_EQ(d.weights_bp, w(10000, 0));
}

}  // namespace
}  // namespace veer
