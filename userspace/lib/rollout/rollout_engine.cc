// The rollout engine of SPEC §5 and the A/B report. See rollout/rollout_engine.h.
//
// Canary step semantics (decided here, documented in the README):
// - entering `set_weight N` emits the weights at once (phase Progressing);
//   the step ends at the next tick unless a gate Failed in that tick, so every
//   weight is watched for at least one interval before the next one;
// - `pause: D` ends at the first tick with D spent in the pause and every gate
//   Successful; a Failed gate keeps it waiting (failure_limit decides about the
//   abort); Inconclusive or Error at that moment -> Holding, which waits for
//   promote or abort;
// - gates run in every live phase, also while waiting for an operator, so a
//   canary that goes bad during `pause: {}` is still rolled back.
#include "rollout/rollout_engine.h"

#include <nlohmann/json.hpp>

#include <cmath>
#include <limits>
#include <numeric>
#include <sstream>
#include <stdexcept>

#include "stats/stats.h"

namespace veer {

namespace {
std::string num(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  std::ostringstream o;
  o.precision(6);
  o << v;
  return o.str();
}

bool is_live(RolloutPhase p) {
  switch (p) {
    case RolloutPhase::Progressing:
    case RolloutPhase::Paused:
    case RolloutPhase::WaitingForPromotion:
    case RolloutPhase::Holding:
    case RolloutPhase::PrePromotion:
    case RolloutPhase::PostPromotion:
      return true;
    default:
      return false;
  }
}
}  // namespace

Measurement Measurement::of_labels(std::map<std::string, double> counts) {
  double total = 0;
  for (const auto& [label, c] : counts) total += c;
  Measurement m;
  m.status = Status::Value;
  m.samples = total > 0 ? static_cast<uint64_t>(total) : 0;
  m.labels = std::move(counts);
  return m;
}

// ---------------------------------------------------------------------------
// Gates

GateStatus evaluate_gate(const GateConfig& gate, const std::optional<GateMeasurement>& m, Millis now,
                         const GateStatus& previous) {
  GateStatus st;
  st.at = now;
  st.failures = previous.failures;
  st.consecutive_errors = 0;
  auto inconclusive = [&](std::string why) {
    st.result = GateResult::Inconclusive;
    st.reason = std::move(why);
    return st;
  };
  auto error = [&](std::string why) {
    st.result = GateResult::Error;
    st.reason = std::move(why);
    st.consecutive_errors = previous.consecutive_errors + 1;
    return st;
  };
  if (!m) return inconclusive("no data");
  const bool kl = is_label_metric(gate.metric);  // a drift measure of label counts against the stable's
  const bool needs_stable = kl || gate.relative;

  if (m->test.status == Measurement::Status::Error) return error(m->test.reason.empty() ? "source error" : m->test.reason);
  if (m->test.status == Measurement::Status::Fail) {
    st.result = GateResult::Failed;
    st.reason = m->test.reason.empty() ? "the source reports a breach" : m->test.reason;
    ++st.failures;
    return st;
  }
  if (needs_stable) {
    if (!m->stable) return inconclusive("no data for the stable variant");
    if (m->stable->status == Measurement::Status::Error)
      return error("stable variant: " + (m->stable->reason.empty() ? std::string("source error") : m->stable->reason));
  }
  if (m->test.status == Measurement::Status::Inconclusive)
    return inconclusive(m->test.reason.empty() ? "no data" : m->test.reason);
  // A stable variant whose query came back empty has no baseline: not the tested variant's breach.
  if (needs_stable && (m->stable->status == Measurement::Status::Inconclusive ||
                       m->stable->status == Measurement::Status::Fail))
    return inconclusive("stable variant: " + (m->stable->reason.empty() ? std::string("no data") : m->stable->reason));
  if (m->test.samples < gate.min_samples)
    return inconclusive(std::to_string(m->test.samples) + " samples, below min_samples " +
                        std::to_string(gate.min_samples));
  if (needs_stable && m->stable->samples < gate.min_samples)
    return inconclusive("stable variant: " + std::to_string(m->stable->samples) + " samples, below min_samples " +
                        std::to_string(gate.min_samples));

  double compared = 0;
  if (kl) {
    if (m->test.labels.empty() || m->stable->labels.empty()) return inconclusive("no label counts");
    try {
      const auto& test = m->test.labels;
      const auto& stable = m->stable->labels;
      if (gate.metric == "prediction_psi") st.value = stats::population_stability_index(test, stable, gate.smoothing);
      else if (gate.metric == "prediction_js") st.value = stats::jensen_shannon_distance(test, stable);
      else if (gate.metric == "prediction_chi2_p") st.value = stats::label_chi_square_p(test, stable);
      else st.value = stats::kl_divergence(test, stable, gate.smoothing);
    } catch (const std::invalid_argument& e) {
      return error(std::string("bad label counts: ") + e.what());
    }
    compared = *st.value;
  } else {
    st.value = m->test.value;
    compared = m->test.value;
    if (gate.relative) {
      st.baseline = m->stable->value;
      const double b = m->stable->value;
      // A zero baseline: equal if the test is zero too, else unboundedly worse
      // (or better); never a division by zero.
      compared = b == 0 ? (m->test.value == 0 ? 1.0 : std::copysign(std::numeric_limits<double>::infinity(), m->test.value))
                        : m->test.value / b;
    }
  }
  if (std::isnan(compared)) return inconclusive("the value is not a number");
  st.compared = compared;
  const std::string shown = gate.relative ? num(compared) + " x stable (" + num(*st.value) + " vs " +
                                                num(*st.baseline) + ")"
                                          : num(compared);
  if (gate.max && compared > *gate.max) {
    st.result = GateResult::Failed;
    st.reason = shown + " > max " + num(*gate.max);
  } else if (gate.min && compared < *gate.min) {
    st.result = GateResult::Failed;
    st.reason = shown + " < min " + num(*gate.min);
  } else {
    st.result = GateResult::Successful;
    st.reason = shown;
  }
  if (st.result == GateResult::Failed) ++st.failures;
  return st;
}

// ---------------------------------------------------------------------------
// Engine

RolloutEngine::RolloutEngine(ServiceConfig service, std::optional<RolloutState> persisted)
    : service_(std::move(service)) {
  if (!service_.rollout) throw std::invalid_argument("service '" + service_.name + "' has no rollout");
  rollout_ = *service_.rollout;
  stable_ = service_.stable_index();
  switch (rollout_.strategy) {
    case RolloutStrategy::Canary: test_ = service_.variant_index(rollout_.canary); break;
    case RolloutStrategy::BlueGreen:
      test_ = service_.variant_index(rollout_.preview);
      stable_ = service_.variant_index(rollout_.active.empty() ? service_.stable : rollout_.active);
      break;
    case RolloutStrategy::Ab: test_ = -1; break;
  }
  if (stable_ < 0 || (rollout_.strategy != RolloutStrategy::Ab && (test_ < 0 || test_ == stable_)))
    throw std::invalid_argument("rollout of service '" + service_.name + "' names unknown variants");
  if (service_.weights_bp.size() != service_.variants.size())
    throw std::invalid_argument("service '" + service_.name + "' has no weights per variant");
  if (persisted) {
    const auto& s = *persisted;
    if (!s.desired_weights_bp.empty()) {
      if (s.desired_weights_bp.size() != service_.variants.size())
        throw std::invalid_argument("persisted rollout state has weights for " +
                                    std::to_string(s.desired_weights_bp.size()) + " variants, the service has " +
                                    std::to_string(service_.variants.size()));
      if (std::accumulate(s.desired_weights_bp.begin(), s.desired_weights_bp.end(), 0u) != VEER_WEIGHT_TOTAL)
        throw std::invalid_argument("persisted rollout state has weights that do not sum to 100");
    }
    if (rollout_.strategy == RolloutStrategy::Canary && s.step > rollout_.steps.size())
      throw std::invalid_argument("persisted rollout state is at step " + std::to_string(s.step) +
                                  " but the rollout has " + std::to_string(rollout_.steps.size()) + " steps");
    // A state written under another config (the rollout was edited between
    // restarts) must not put the engine in a phase its config cannot run.
    const bool canary = rollout_.strategy == RolloutStrategy::Canary;
    const bool blue_green = rollout_.strategy == RolloutStrategy::BlueGreen;
    bool fits = true;
    switch (s.phase) {
      case RolloutPhase::Paused:
        fits = canary && s.step < rollout_.steps.size() && rollout_.steps[s.step].kind == CanaryStep::Kind::Pause &&
               rollout_.steps[s.step].pause.has_value();
        break;
      case RolloutPhase::Progressing:
        fits = !blue_green && (!canary || (s.step < rollout_.steps.size() &&
                                           rollout_.steps[s.step].kind == CanaryStep::Kind::SetWeight));
        break;
      case RolloutPhase::PrePromotion: fits = blue_green && rollout_.pre_promotion.has_value(); break;
      case RolloutPhase::PostPromotion: fits = blue_green && rollout_.post_promotion.has_value(); break;
      case RolloutPhase::WaitingForPromotion:
      case RolloutPhase::Holding:
        fits = canary ? s.step < rollout_.steps.size() : blue_green;
        break;
      default: break;
    }
    if (!fits)
      throw std::invalid_argument("persisted rollout state (" + to_string(s.phase) + " at step " +
                                  std::to_string(s.step) + ") does not fit the configured rollout");
    state_ = s;
    restored_ = true;
    // A state written before gates_stage existed: its gates are those of the
    // list the phase evaluates (so a restart keeps their failure counts).
    if (state_.gates_stage.empty() && !state_.gates.empty())
      if (const auto* gates = current_gates()) state_.gates_stage = stage_of(*gates);
  }
  if (state_.desired_weights_bp.empty()) state_.desired_weights_bp = service_.weights_bp;
}

bool RolloutEngine::active() const { return is_live(state_.phase); }

void RolloutEngine::account_time(Millis now) {
  if (restored_) {
    // The daemon was down between the last persisted input and now: no gate
    // watched that time, so it does not count as pause time.
    restored_ = false;
    state_.last_update = now;
    return;
  }
  const Millis delta = now - state_.last_update;
  if (delta > Millis{0} && (state_.phase == RolloutPhase::Paused || state_.phase == RolloutPhase::PostPromotion))
    state_.pause_spent += delta;
  if (now > state_.last_update) state_.last_update = now;
}

// Ticks come every interval but never exactly: five 1 s ticks may add up to
// 4.996 s. A pause counts as over when less than a twentieth of an interval
// is left, so a 5 s pause ends on the fifth tick, not the sixth.
bool RolloutEngine::pause_over(Millis length) const {
  return state_.pause_spent + rollout_.interval / 20 >= length;
}

void RolloutEngine::event(Decision& d, Millis now, std::string kind, std::string message,
                          std::map<std::string, double> values) const {
  d.events.push_back(RolloutEvent{now, std::move(kind), std::move(message), std::move(values)});
}

Decision RolloutEngine::finish(Decision d) const {
  d.phase = state_.phase;
  return d;
}

std::vector<uint32_t> RolloutEngine::canary_weights(uint32_t canary_bp) const {
  // Variants other than stable and canary keep their configured weight (the
  // config check guarantees that the canary's share fits next to them).
  std::vector<uint32_t> w = service_.weights_bp;
  uint32_t others = 0;
  for (size_t i = 0; i < w.size(); ++i)
    if (static_cast<int>(i) != test_ && static_cast<int>(i) != stable_) others += w[i];
  const uint32_t room = VEER_WEIGHT_TOTAL - others;
  canary_bp = std::min(canary_bp, room);
  w[static_cast<size_t>(test_)] = canary_bp;
  w[static_cast<size_t>(stable_)] = room - canary_bp;
  return w;
}

std::vector<uint32_t> RolloutEngine::all_on(int variant) const {
  std::vector<uint32_t> w(service_.variants.size(), 0);
  w[static_cast<size_t>(variant)] = VEER_WEIGHT_TOTAL;
  return w;
}

void RolloutEngine::set_weights(Millis now, Decision& d, std::vector<uint32_t> w, const std::string& why) {
  if (w == state_.desired_weights_bp) return;
  state_.desired_weights_bp = w;
  d.weights_bp = w;
  std::map<std::string, double> values;
  std::string text;
  for (size_t i = 0; i < w.size(); ++i) {
    values["weight." + service_.variants[i].name] = w[i] / 100.0;
    text += (text.empty() ? "" : " ") + service_.variants[i].name + "=" + format_weight(w[i]);
  }
  event(d, now, "weights", why + ": " + text, std::move(values));
}

std::string RolloutEngine::stage_of(const std::vector<GateConfig>& gates) const {
  if (rollout_.pre_promotion && &gates == &rollout_.pre_promotion->gates) return "pre_promotion";
  if (rollout_.post_promotion && &gates == &rollout_.post_promotion->gates) return "post_promotion";
  return "";
}

const std::vector<GateConfig>* RolloutEngine::current_gates() const {
  if (rollout_.strategy == RolloutStrategy::Canary) return &rollout_.gates;
  if (rollout_.strategy == RolloutStrategy::BlueGreen) {
    if (state_.phase == RolloutPhase::PrePromotion && rollout_.pre_promotion) return &rollout_.pre_promotion->gates;
    if ((state_.phase == RolloutPhase::PostPromotion || state_.phase == RolloutPhase::Holding) &&
        rollout_.post_promotion)
      return &rollout_.post_promotion->gates;
  }
  return nullptr;
}

void RolloutEngine::enter_step(Millis now, Decision& d) {
  state_.step_started = now;
  state_.pause_spent = Millis{0};
  state_.last_update = now;
  const size_t n = rollout_.steps.size();
  if (state_.step >= n) {
    complete(now, d, "all " + std::to_string(n) + " steps done");
    return;
  }
  const CanaryStep& s = rollout_.steps[state_.step];
  const std::string where = "step " + std::to_string(state_.step + 1) + "/" + std::to_string(n);
  if (s.kind == CanaryStep::Kind::SetWeight) {
    state_.phase = RolloutPhase::Progressing;
    event(d, now, "step", where + ": set_weight " + format_weight(s.weight_bp),
          {{"step", state_.step}, {"weight", s.weight_bp / 100.0}});
    set_weights(now, d, canary_weights(s.weight_bp), where);
  } else if (s.pause) {
    state_.phase = RolloutPhase::Paused;
    event(d, now, "step", where + ": pause " + format_duration(*s.pause),
          {{"step", state_.step}, {"pause_s", s.pause->count() / 1000.0}});
  } else {
    state_.phase = RolloutPhase::WaitingForPromotion;
    event(d, now, "step", where + ": pause until promote", {{"step", state_.step}});
  }
}

void RolloutEngine::complete(Millis now, Decision& d, const std::string& why) {
  const std::string& winner = service_.variants[static_cast<size_t>(test_)].name;
  if (rollout_.strategy == RolloutStrategy::Canary) {
    state_.step = static_cast<uint32_t>(rollout_.steps.size());
    set_weights(now, d, canary_weights(VEER_WEIGHT_TOTAL), "completed");
  } else {
    set_weights(now, d, all_on(test_), "completed");
  }
  state_.phase = RolloutPhase::Completed;
  d.new_stable = winner;
  event(d, now, "completed", why + ": '" + winner + "' is the new stable");
}

void RolloutEngine::do_abort(Millis now, Decision& d, const std::string& reason,
                             const std::map<std::string, double>& values) {
  state_.abort_reason = reason;
  switch (rollout_.strategy) {
    case RolloutStrategy::Canary:
      set_weights(now, d, canary_weights(0), "abort");
      break;
    case RolloutStrategy::BlueGreen:
      // Before the switch the traffic never moved: nothing to undo.
      if (state_.switched) {
        set_weights(now, d, all_on(stable_), "switch back");
        state_.switched = false;
      }
      break;
    case RolloutStrategy::Ab:
      set_weights(now, d, all_on(stable_), "abort");
      break;
  }
  state_.phase = RolloutPhase::Aborted;
  event(d, now, "abort", "aborted: " + reason, values);
}

bool RolloutEngine::evaluate(Millis now, const std::vector<GateConfig>& gates, const MetricsSnapshot& m,
                             Decision& d, std::string& abort_why) {
  bool abort = false;
  std::map<std::string, double> abort_values;
  const std::string stage = stage_of(gates);
  if (stage != state_.gates_stage) {
    // Another list (blue-green pre -> post): a same-named gate starts afresh.
    state_.gates.clear();
    state_.gates_stage = stage;
  }
  for (const auto& g : gates) {
    const GateStatus prev = state_.gates.count(g.name) ? state_.gates.at(g.name) : GateStatus{};
    const auto it = m.gates.find(g.name);
    const GateStatus st =
        evaluate_gate(g, it == m.gates.end() ? std::nullopt : std::optional<GateMeasurement>(it->second), now, prev);
    state_.gates[g.name] = st;
    std::map<std::string, double> values;
    if (st.value) values["value"] = *st.value;
    if (st.baseline) values["baseline"] = *st.baseline;
    if (st.compared) values["compared"] = *st.compared;
    if (g.max) values["max"] = *g.max;
    if (g.min) values["min"] = *g.min;
    values["failures"] = st.failures;
    // Every change of result and every Failed or Error is an event; a steady
    // Successful or Inconclusive is not repeated each interval.
    if (st.result != prev.result || st.result == GateResult::Failed || st.result == GateResult::Error ||
        prev.at == Millis{0})
      event(d, now, "gate", "gate " + g.name + ": " + to_string(st.result) + " (" + st.reason + ")", values);
    if (abort) continue;
    if (st.result == GateResult::Failed && st.failures > rollout_.failure_limit) {
      abort = true;
      abort_why = "gate " + g.name + " failed " + std::to_string(st.failures) + " time(s), failure_limit " +
                  std::to_string(rollout_.failure_limit) + ": " + st.reason;
      abort_values = values;
    } else if (st.result == GateResult::Error && st.consecutive_errors >= kConsecutiveErrorsToAbort) {
      abort = true;
      abort_why = "gate " + g.name + ": " + std::to_string(st.consecutive_errors) + " errors in a row (" +
                  st.reason + ")";
      abort_values = values;
    }
  }
  if (abort) do_abort(now, d, abort_why, abort_values);
  return abort;
}

namespace {
// What the gates of `gates` say now: any Failed, all Successful.
struct Verdict {
  bool any_failed = false;
  bool all_successful = true;
  std::string unsure;  // names of Inconclusive/Error gates with reasons
};
Verdict verdict_of(const std::vector<GateConfig>& gates, const std::map<std::string, GateStatus>& status) {
  Verdict v;
  for (const auto& g : gates) {
    const auto it = status.find(g.name);
    const GateResult r = it == status.end() ? GateResult::Inconclusive : it->second.result;
    if (r == GateResult::Failed) v.any_failed = true;
    if (r != GateResult::Successful) v.all_successful = false;
    if (r == GateResult::Inconclusive || r == GateResult::Error)
      v.unsure += (v.unsure.empty() ? "" : "; ") + g.name + " " + to_string(r) + " (" +
                  (it == status.end() ? std::string("no data") : it->second.reason) + ")";
  }
  return v;
}
}  // namespace

Decision RolloutEngine::start(Millis now) {
  if (state_.phase != RolloutPhase::Idle)
    throw RolloutCommandError("the rollout of '" + service_.name + "' is " + to_string(state_.phase) +
                              (state_.phase == RolloutPhase::Aborted ? "; use retry" : "; it can start only once"));
  restored_ = false;
  Decision d;
  // Keep the weights desired now (the config's, or what an abort left) so
  // that the first step's weights are reported whenever they differ.
  const std::vector<uint32_t> current = state_.desired_weights_bp;
  state_ = RolloutState{};
  state_.desired_weights_bp = current;
  state_.last_update = now;
  state_.step_started = now;
  event(d, now, "started", to_string(rollout_.strategy) + " rollout of '" + service_.name + "' started");
  switch (rollout_.strategy) {
    case RolloutStrategy::Canary:
      state_.step = 0;
      enter_step(now, d);
      break;
    case RolloutStrategy::BlueGreen:
      if (rollout_.pre_promotion) {
        state_.phase = RolloutPhase::PrePromotion;
        event(d, now, "step",
              "pre-promotion: " + std::to_string(rollout_.pre_promotion->requests) + " probe requests to '" +
                  rollout_.preview + "' " + rollout_.pre_promotion->path + " per interval; traffic stays on '" +
                  rollout_.active + "'");
      } else if (rollout_.auto_promote) {
        switch_to_preview(now, d, "auto_promote", false);
      } else {
        state_.phase = RolloutPhase::WaitingForPromotion;
        event(d, now, "step", "waiting for promote to switch to '" + rollout_.preview + "'");
      }
      break;
    case RolloutStrategy::Ab:
      state_.phase = RolloutPhase::Progressing;
      set_weights(now, d, service_.weights_bp, "ab");
      break;
  }
  return finish(std::move(d));
}

Decision RolloutEngine::tick(Millis now, const MetricsSnapshot& metrics) {
  account_time(now);
  Decision d;
  if (!is_live(state_.phase)) return finish(std::move(d));
  if (rollout_.strategy == RolloutStrategy::Canary) return finish(canary_tick(now, metrics, std::move(d)));
  if (rollout_.strategy == RolloutStrategy::BlueGreen) return finish(blue_green_tick(now, metrics, std::move(d)));
  return finish(std::move(d));  // ab: nothing moves on its own
}

Decision RolloutEngine::canary_tick(Millis now, const MetricsSnapshot& m, Decision d) {
  std::string why;
  if (evaluate(now, rollout_.gates, m, d, why)) return d;
  const Verdict v = verdict_of(rollout_.gates, state_.gates);
  switch (state_.phase) {
    case RolloutPhase::Progressing:
      if (!v.any_failed) {
        ++state_.step;
        enter_step(now, d);
      }
      break;
    case RolloutPhase::Paused: {
      const CanaryStep& s = rollout_.steps[state_.step];
      if (!pause_over(*s.pause) || v.any_failed) break;
      if (v.all_successful) {
        ++state_.step;
        enter_step(now, d);
      } else {
        state_.phase = RolloutPhase::Holding;
        event(d, now, "hold", "pause over but the gates are not conclusive; waiting for promote or abort: " + v.unsure);
      }
      break;
    }
    default:
      break;  // WaitingForPromotion, Holding: an operator moves on
  }
  return d;
}

Decision RolloutEngine::blue_green_tick(Millis now, const MetricsSnapshot& m, Decision d) {
  const std::vector<GateConfig>* gates = current_gates();
  if (!gates) return d;  // WaitingForPromotion: nothing to watch
  std::string why;
  if (evaluate(now, *gates, m, d, why)) return d;
  const Verdict v = verdict_of(*gates, state_.gates);
  if (state_.phase == RolloutPhase::PrePromotion) {
    if (!v.all_successful) return d;  // failures within the limit or no answer yet: probe again
    event(d, now, "step", "pre-promotion passed");
    if (rollout_.auto_promote) {
      switch_to_preview(now, d, "auto_promote", false);
    } else {
      state_.phase = RolloutPhase::WaitingForPromotion;
      event(d, now, "step", "waiting for promote to switch to '" + rollout_.preview + "'");
    }
  } else if (state_.phase == RolloutPhase::PostPromotion) {
    if (!pause_over(rollout_.post_promotion->duration) || v.any_failed) return d;
    if (v.all_successful) {
      complete(now, d, "post-promotion watch of " + format_duration(rollout_.post_promotion->duration) + " passed");
    } else {
      state_.phase = RolloutPhase::Holding;
      event(d, now, "hold", "post-promotion over but the gates are not conclusive; waiting for promote or abort: " +
                                v.unsure);
    }
  }
  return d;
}

void RolloutEngine::switch_to_preview(Millis now, Decision& d, const std::string& why, bool skip_watch) {
  set_weights(now, d, all_on(test_), "switch to '" + rollout_.preview + "'");
  state_.switched = true;
  event(d, now, "switch", "switched all new flows to '" + rollout_.preview + "' (" + why + ")");
  if (rollout_.post_promotion && !skip_watch) {
    // The watch has its own gates: failure counts start afresh.
    state_.gates.clear();
    state_.gates_stage = "post_promotion";
    state_.phase = RolloutPhase::PostPromotion;
    state_.step_started = now;
    state_.pause_spent = Millis{0};
    state_.last_update = now;
    event(d, now, "step", "post-promotion watch for " + format_duration(rollout_.post_promotion->duration));
  } else {
    complete(now, d, skip_watch && rollout_.post_promotion ? "promoted without post-promotion watch" : "switched");
  }
}

Decision RolloutEngine::promote(Millis now, bool full) {
  const RolloutPhase p = state_.phase;
  if (rollout_.strategy == RolloutStrategy::Ab)
    throw RolloutCommandError("an ab rollout has no steps to promote; set the winner's weight with `weights`");
  if (!is_live(p))
    throw RolloutCommandError("cannot promote: the rollout of '" + service_.name + "' is " + to_string(p));
  account_time(now);
  Decision d;
  if (rollout_.strategy == RolloutStrategy::Canary) {
    if (full) {
      event(d, now, "promote", "promote --full at step " + std::to_string(state_.step + 1));
      complete(now, d, "promoted to 100 %");
    } else {
      event(d, now, "promote", "promote at step " + std::to_string(state_.step + 1) + " (" + to_string(p) + ")");
      ++state_.step;
      enter_step(now, d);
    }
    return finish(std::move(d));
  }
  // blue-green
  if (p == RolloutPhase::PrePromotion || p == RolloutPhase::WaitingForPromotion) {
    event(d, now, "promote", std::string(full ? "promote --full" : "promote") + " in " + to_string(p));
    switch_to_preview(now, d, "promote", full);
  } else {  // PostPromotion, Holding
    event(d, now, "promote", std::string(full ? "promote --full" : "promote") + " in " + to_string(p));
    complete(now, d, "promoted by the operator");
  }
  return finish(std::move(d));
}

Decision RolloutEngine::pause(Millis now) {
  if (rollout_.strategy != RolloutStrategy::Canary)
    throw RolloutCommandError("pause applies to canary rollouts (blue-green waits for promote unless auto_promote)");
  if (state_.phase != RolloutPhase::Progressing && state_.phase != RolloutPhase::Paused)
    throw RolloutCommandError("cannot pause: the rollout of '" + service_.name + "' is " + to_string(state_.phase));
  account_time(now);
  Decision d;
  state_.phase = RolloutPhase::WaitingForPromotion;
  event(d, now, "pause", "paused by the operator at step " + std::to_string(state_.step + 1) + "; promote moves on");
  return finish(std::move(d));
}

Decision RolloutEngine::abort(Millis now, const std::string& reason) {
  if (!is_live(state_.phase))
    throw RolloutCommandError("cannot abort: the rollout of '" + service_.name + "' is " + to_string(state_.phase));
  account_time(now);
  Decision d;
  do_abort(now, d, reason.empty() ? "by the operator" : reason, {});
  return finish(std::move(d));
}

Decision RolloutEngine::retry(Millis now) {
  if (state_.phase != RolloutPhase::Aborted)
    throw RolloutCommandError("cannot retry: the rollout of '" + service_.name + "' is " + to_string(state_.phase) +
                              " (retry restarts an aborted rollout)");
  state_.phase = RolloutPhase::Idle;
  Decision d = start(now);
  d.events.insert(d.events.begin(), RolloutEvent{now, "retry", "retry from the first step", {}});
  return d;
}

// ---------------------------------------------------------------------------
// A/B report

AbReport ab_report(const ServiceConfig& service, const AbSnapshot& snap) {
  if (!service.rollout || service.rollout->strategy != RolloutStrategy::Ab)
    throw std::invalid_argument("service '" + service.name + "' has no ab rollout");
  if (snap.variants.size() != service.variants.size())
    throw std::invalid_argument("ab snapshot has " + std::to_string(snap.variants.size()) +
                                " variants, the service has " + std::to_string(service.variants.size()));
  const RolloutConfig& r = *service.rollout;
  const size_t stable = static_cast<size_t>(service.stable_index());
  const bool proportion = r.metric.kind == AbMetricKind::Proportion;
  constexpr double kConfidence = 0.95;

  AbReport rep;
  rep.metric = r.metric.name;
  rep.kind = r.metric.kind;
  rep.test = proportion ? "chi-square" : "welch-t";
  size_t comparisons = 0;
  for (size_t i = 0; i < service.variants.size(); ++i)
    if (i != stable && service.weights_bp[i] > 0) ++comparisons;
  rep.alpha = r.alpha / static_cast<double>(std::max<size_t>(comparisons, 1));

  auto prop = [&](size_t i) { return stats::ProportionSummary{snap.variants[i].n, snap.variants[i].successes}; };
  auto mean = [&](size_t i) {
    return stats::MeanSummary{snap.variants[i].n, snap.variants[i].mean, snap.variants[i].variance};
  };
  for (size_t i = 0; i < service.variants.size(); ++i) {
    const AbVariantData& v = snap.variants[i];
    if (proportion && v.successes > v.n)
      throw std::invalid_argument("variant '" + service.variants[i].name + "' has more successes than trials");
    AbVariantReport vr;
    vr.variant = service.variants[i].name;
    vr.weight_bp = service.weights_bp[i];
    vr.flows = v.flows;
    vr.n = v.n;
    if (proportion) {
      vr.estimate = v.n ? static_cast<double>(v.successes) / static_cast<double>(v.n) : 0;
      const auto ci = stats::proportion_interval(prop(i), kConfidence);
      vr.ci_low = ci.low, vr.ci_high = ci.high;
    } else {
      vr.estimate = v.mean;
      const auto ci = stats::mean_interval(mean(i), kConfidence);
      vr.ci_low = ci.low, vr.ci_high = ci.high;
    }
    rep.variants.push_back(vr);
  }
  const AbVariantReport& base = rep.variants[stable];
  bool any_significant = false;
  uint64_t smallest_arm = std::numeric_limits<uint64_t>::max();
  for (size_t i = 0; i < rep.variants.size(); ++i) {
    if (service.weights_bp[i] == 0) continue;
    smallest_arm = std::min(smallest_arm, rep.variants[i].n);
    if (i == stable) continue;
    auto& vr = rep.variants[i];
    const stats::TestResult t = proportion ? stats::proportions_chi_square({prop(stable), prop(i)}, rep.alpha)
                                           : stats::welch_t_test(mean(i), mean(stable), rep.alpha);
    vr.difference = vr.estimate - base.estimate;
    vr.statistic = t.statistic;
    vr.p_value = t.p_value;
    vr.significant = t.significant;
    any_significant |= t.significant;
  }

  // Sample size per arm for the configured effect, from the stable arm's
  // observed rate (proportion) or spread (mean); unknown until it has data.
  if (proportion) {
    if (base.n > 0) {
      const double p1 = base.estimate;
      const double p2 = p1 + r.min_detectable_effect <= 1 ? p1 + r.min_detectable_effect : p1 - r.min_detectable_effect;
      rep.sample_size_per_arm = stats::sample_size_proportions(p1, p2, rep.alpha, r.power);
    }
  } else if (base.n >= 2) {
    rep.sample_size_per_arm =
        stats::sample_size_means(std::sqrt(snap.variants[stable].variance), r.min_detectable_effect, rep.alpha, r.power);
  }
  if (smallest_arm == std::numeric_limits<uint64_t>::max()) smallest_arm = 0;
  rep.samples_still_needed = rep.sample_size_per_arm > smallest_arm ? rep.sample_size_per_arm - smallest_arm : 0;

  std::vector<uint64_t> flows;
  std::vector<double> weights;
  for (size_t i = 0; i < service.variants.size(); ++i) {
    flows.push_back(snap.variants[i].flows);
    weights.push_back(service.weights_bp[i]);
  }
  const auto srm = stats::sample_ratio_mismatch(flows, weights, 0.001);
  rep.srm_p_value = srm.p_value;
  rep.srm_mismatch = srm.mismatch;

  // The verdict: SRM first (the split itself is broken, no comparison can be
  // trusted), then the planned sample size (no peeking), then the tests.
  if (rep.srm_mismatch) {
    rep.verdict = "hold: sample ratio mismatch (p=" + num(rep.srm_p_value) + ")";
  } else if (rep.sample_size_per_arm == 0) {
    rep.verdict = "collecting: no data yet";
  } else if (rep.samples_still_needed > 0) {
    rep.verdict = "collecting: " + std::to_string(rep.samples_still_needed) + " more per arm";
  } else if (any_significant) {
    rep.significant = true;
    std::string who;
    for (const auto& vr : rep.variants)
      if (vr.significant)
        who += (who.empty() ? "" : ", ") + vr.variant + " " + (*vr.difference > 0 ? "above" : "below") + " " +
               base.variant + " (p=" + num(*vr.p_value) + ")";
    rep.verdict = "significant: " + who;
  } else {
    rep.verdict = "no significant difference";
  }
  return rep;
}

nlohmann::json to_json(const AbReport& rep) {
  using nlohmann::json;
  auto finite = [](double v) { return std::isfinite(v) ? json(v) : json(nullptr); };
  json vs = json::array();
  for (const auto& v : rep.variants) {
    json j = {{"variant", v.variant}, {"weight", v.weight_bp / 100.0}, {"flows", v.flows}, {"n", v.n},
              {"estimate", v.estimate}, {"ci_low", finite(v.ci_low)}, {"ci_high", finite(v.ci_high)},
              {"significant", v.significant}};
    if (v.difference) j["difference"] = *v.difference;
    if (v.statistic) j["statistic"] = finite(*v.statistic);
    if (v.p_value) j["p_value"] = *v.p_value;
    vs.push_back(std::move(j));
  }
  return {{"metric", rep.metric},
          {"kind", to_string(rep.kind)},
          {"test", rep.test},
          {"alpha", rep.alpha},
          {"variants", vs},
          {"sample_size_per_arm", rep.sample_size_per_arm},
          {"samples_still_needed", rep.samples_still_needed},
          {"srm_p_value", rep.srm_p_value},
          {"srm_mismatch", rep.srm_mismatch},
          {"significant", rep.significant},
          {"verdict", rep.verdict}};
}

}  // namespace veer
