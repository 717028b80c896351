// veerd's rollout wiring: the daemon is a thin adapter around RolloutEngine.
// Every interval it measures (kernel window, scrapes, probes, pushed data),
// hands the snapshot to the engine, and applies what the engine decides:
// weights in one table flip, a new stable variant, events, state.json.
// Also: events, push, the A/B report, veer's own /metrics.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <set>

#include "daemon.h"
#include "fleet/fleet_window.h"
#include "fleet/rollout_record.h"
#include "unix_time.h"
#include "metrics/metrics_registry.h"
#include "veer/http_scraper.h"
#include "rollout/promql.h"

namespace veer {

using nlohmann::json;
using protocol::ErrorCode;
using protocol::ProtocolError;
using SteadyClock = std::chrono::steady_clock;

namespace {

constexpr Millis kWindowWithoutRollout{2000};  // status windows of services without a rollout
constexpr size_t kDefaultEventsLimit = 1000;

Millis interval_of(const ServiceConfig& c) { return c.rollout ? c.rollout->interval : kWindowWithoutRollout; }

json optional_number(const std::optional<double>& v) {
  return v && std::isfinite(*v) ? json(*v) : json(nullptr);
}

// The gate lists a rollout evaluates, with the stage they belong to.
std::vector<std::pair<std::string, const GateConfig*>> all_gates(const RolloutConfig& r) {
  std::vector<std::pair<std::string, const GateConfig*>> out;
  for (const auto& g : r.gates) out.emplace_back("", &g);
  if (r.pre_promotion)
    for (const auto& g : r.pre_promotion->gates) out.emplace_back("pre_promotion", &g);
  if (r.post_promotion)
    for (const auto& g : r.post_promotion->gates) out.emplace_back("post_promotion", &g);
  return out;
}

// The gates the engine evaluates in its current phase (mirrors
// RolloutEngine::current_gates, which is private).
const std::vector<GateConfig>* gates_now(const RolloutEngine& e) {
  const RolloutConfig& r = e.config();
  const RolloutPhase p = e.state().phase;
  if (r.strategy == RolloutStrategy::Canary) return &r.gates;
  if (r.strategy == RolloutStrategy::BlueGreen) {
    if (p == RolloutPhase::PrePromotion && r.pre_promotion) return &r.pre_promotion->gates;
    if ((p == RolloutPhase::PostPromotion || p == RolloutPhase::Holding) && r.post_promotion)
      return &r.post_promotion->gates;
  }
  return nullptr;
}

bool needs_stable(const GateConfig& g) { return g.relative || is_label_metric(g.metric); }

const std::vector<std::string>& phase_names() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> out;
    for (auto p : {RolloutPhase::Idle, RolloutPhase::Progressing, RolloutPhase::Paused,
                   RolloutPhase::WaitingForPromotion, RolloutPhase::Holding, RolloutPhase::Aborted,
                   RolloutPhase::Completed, RolloutPhase::PrePromotion, RolloutPhase::PostPromotion})
      out.push_back(to_string(p));
    return out;
  }();
  return names;
}

}  // namespace

// ---------------------------------------------------------------------------
// Set-up and timers

void Daemon::setup_runtime(Service& s, std::optional<RolloutState> persisted) {
  auto rt = std::make_shared<Runtime>();
  const size_t n = s.config.variants.size();
  rt->window.assign(n, KernelWindow{});
  rt->push_window.assign(n, PushData{});
  rt->window_start = SteadyClock::now();
  for (unsigned v = 0; v < n; ++v) rt->base.push_back(kernel_sample(s, v));
  ServiceState& st = state_.services[s.config.name];
  bool resumed = false;
  if (s.config.rollout) {
    try {
      rt->engine = std::make_unique<RolloutEngine>(s.config, persisted);
      resumed = persisted.has_value();
      if (persisted) {
        spdlog::info("service {}: rollout resumed: {} at step {}", s.config.name, to_string(persisted->phase),
                     persisted->step);
      }
    } catch (const std::invalid_argument& e) {
      spdlog::warn("service {}: saved rollout state not resumed ({}); the rollout starts afresh", s.config.name,
                   e.what());
      rt->engine = std::make_unique<RolloutEngine>(s.config);
    }
    st.rollout = rt->engine->state();
  } else {
    st.rollout.reset();
  }
  s.rt = rt;
  if (resumed) {
    restore_totals(s);
  } else {
    reset_totals(s);
  }
  if (io_) {
    rt->timer = std::make_unique<boost::asio::steady_timer>(*io_);
    rt->next_tick = SteadyClock::now() + interval_of(s.config);
    arm_timer(s.config.name, rt);
  }
}

void Daemon::reset_totals(Service& s) {
  RolloutTotals& totals = state_.services[s.config.name].totals;
  totals = RolloutTotals{};
  if (!s.config.rollout) return;
  for (unsigned v = 0; v < s.config.variants.size(); ++v)
    totals.flows_base[s.config.variants[v].name] = dataplane_->variant_counters(s.id, v).new_flows;
}

void Daemon::restore_totals(Service& s) {
  const RolloutTotals saved = state_.services[s.config.name].totals;
  reset_totals(s);  // the variants the service has now, flows from now where nothing was saved
  RolloutTotals& totals = state_.services[s.config.name].totals;
  for (unsigned v = 0; v < s.config.variants.size(); ++v) {
    const std::string& name = s.config.variants[v].name;
    if (auto p = saved.pushed.find(name); p != saved.pushed.end()) totals.pushed[name] = p->second;
    // A counter below its saved base was reset (the pinned maps were created
    // anew, e.g. after a reboot): the flows count from the reset.
    if (auto f = saved.flows_base.find(name); f != saved.flows_base.end()) {
      const uint64_t base = f->second <= totals.flows_base[name] ? f->second : 0;
      if (base != f->second)
        spdlog::warn("service {}: variant {}'s flow counter is below the rollout's base: counting from its reset",
                     s.config.name, name);
      totals.flows_base[name] = base;
    }
  }
}

const RolloutTotals& Daemon::totals_of(const Service& s) const {
  static const RolloutTotals none;
  const auto it = state_.services.find(s.config.name);
  return it == state_.services.end() ? none : it->second.totals;
}

void Daemon::run_on(boost::asio::io_context& io) {
  io_ = &io;
  for (auto& s : services_) {
    s.rt->timer = std::make_unique<boost::asio::steady_timer>(io);
    s.rt->window_start = SteadyClock::now();
    for (unsigned v = 0; v < s.config.variants.size(); ++v) s.rt->base[v] = kernel_sample(s, v);
    s.rt->next_tick = SteadyClock::now() + interval_of(s.config);
    arm_timer(s.config.name, s.rt);
  }
  handshake_timer_ = std::make_unique<boost::asio::steady_timer>(io);
  collect_handshakes();
  view_timer_ = std::make_unique<boost::asio::steady_timer>(io);
  sample_views();
  fleet_run(io);
}

void Daemon::collect_handshakes() {
  try {
    const uint64_t timeout_ns = static_cast<uint64_t>(config_.node.handshake_timeout.count()) * 1'000'000ull;
    if (const uint64_t n = dataplane_->collect_handshake_timeouts(timeout_ns)) {
      spdlog::debug("{} handshake(s) timed out", n);
    }
  } catch (const std::exception& e) {
    spdlog::warn("collecting handshake timeouts: {}", e.what());
  }
  handshake_timer_->expires_after(std::chrono::seconds(1));
  handshake_timer_->async_wait([this](const boost::system::error_code& ec) {
    if (!ec) collect_handshakes();
  });
}

void Daemon::arm_timer(const std::string& name, const std::shared_ptr<Runtime>& rt) {
  rt->timer->expires_at(rt->next_tick);
  std::weak_ptr<Runtime> weak = rt;
  rt->timer->async_wait([this, name, weak](const boost::system::error_code& ec) {
    if (ec) return;
    if (auto rt = weak.lock()) on_window(name, rt);
  });
}

Daemon::Service* Daemon::find_service(const std::string& name, const std::shared_ptr<Runtime>& rt) {
  for (auto& s : services_)
    if (s.config.name == name && s.rt == rt) return &s;
  return nullptr;  // removed or replaced by a reload
}

KernelSample Daemon::kernel_sample(const Service& s, unsigned variant) const {
  const VariantTelemetry t = dataplane_->telemetry(s.id, variant);
  return KernelSample{t.counters, t.latency, t.handshake_timeouts};
}

int Daemon::test_variant(const Service& s) const {
  if (!s.config.rollout) return -1;
  const RolloutConfig& r = *s.config.rollout;
  if (r.strategy == RolloutStrategy::Canary) return s.config.variant_index(r.canary);
  if (r.strategy == RolloutStrategy::BlueGreen) return s.config.variant_index(r.preview);
  return -1;
}

int Daemon::stable_variant(const Service& s) const {
  // The engine's stable: the config's (or blue-green's active), whatever a
  // completed rollout made stable since (that rollout is over).
  if (s.config.rollout && s.config.rollout->strategy == RolloutStrategy::BlueGreen &&
      !s.config.rollout->active.empty())
    return s.config.variant_index(s.config.rollout->active);
  return s.config.stable_index();
}

// ---------------------------------------------------------------------------
// One interval

void Daemon::on_window(const std::string& name, const std::shared_ptr<Runtime>& rt) {
  Service* sp = find_service(name, rt);
  if (!sp) return;
  Service& s = *sp;
  const auto now = SteadyClock::now();
  const Millis interval = interval_of(s.config);
  // Deadlines follow a fixed grid (no drift); a loop that fell behind skips ahead.
  rt->next_tick += interval;
  if (rt->next_tick <= now) rt->next_tick = now + interval;
  arm_timer(name, rt);

  const double seconds = std::chrono::duration<double>(now - rt->window_start).count();
  for (unsigned v = 0; v < s.config.variants.size(); ++v) {
    try {
      const KernelSample sample = kernel_sample(s, v);
      rt->window[v] = kernel_window(rt->base[v], sample, seconds);
      rt->base[v] = sample;
    } catch (const std::exception& e) {
      spdlog::warn("service {}: telemetry of variant {}: {}", name, s.config.variants[v].name, e.what());
    }
  }
  rt->window_start = now;
  std::vector<PushData> pushed(s.config.variants.size());
  pushed.swap(rt->push_window);

  if (!rt->engine) return;
  if (!ticks_here(s)) return;  // fleet mode: the leader runs the fleet's rollouts
  RolloutEngine& engine = *rt->engine;
  const RolloutConfig& rc = engine.config();
  const int test = test_variant(s);
  const int stable = stable_variant(s);

  // Prometheus scrapes are taken every interval while the rollout has such
  // gates (also before it starts), so the first window after `start`
  // already has a baseline.
  std::set<int> scrape;
  for (const auto& [stage, g] : all_gates(rc)) {
    if (g->source != GateSource::Prometheus) continue;
    if (test >= 0) scrape.insert(test);
    if (needs_stable(*g) && stable >= 0) scrape.insert(stable);
  }
  const std::vector<GateConfig>* gates = gates_now(engine);
  const bool probe = engine.state().phase == RolloutPhase::PrePromotion && rc.pre_promotion && test >= 0 &&
                     gates && std::any_of(gates->begin(), gates->end(),
                                 [](const GateConfig& g) { return g.source == GateSource::Probe; });
  if (!engine.active() && scrape.empty()) return;
  if (rt->tick_running) {
    spdlog::warn("service {}: the previous interval's scrapes/probes are still out; skipping a tick", name);
    return;
  }

  // What the gates get, gathered asynchronously; the tick runs when the
  // last scrape or probe is back.
  struct Gather {
    int pending = 1;
    std::map<int, net::ScrapeResult> scrapes;
    std::map<std::pair<std::string, int>, net::ScrapeResult> promql;  // (gate, variant) -> the query's answer
    std::vector<ProbeOutcome> probes;
    std::vector<KernelWindow> windows;
    std::vector<PushData> pushed;
    double seconds = 0;
    std::optional<fleet::FleetWindow> fleet;  // fleet mode: the kernel telemetry of every node, summed
    bool fleet_baseline = false;              // the leader's first read of the nodes: baselines only
  };
  auto gather = std::make_shared<Gather>();
  gather->windows = rt->window;
  gather->pushed = std::move(pushed);
  gather->seconds = seconds;
  rt->tick_running = true;

  std::weak_ptr<Runtime> weak = rt;
  auto done = [this, name, weak, gather, test, stable]() {
    if (--gather->pending > 0) return;
    auto rt = weak.lock();
    if (!rt) return;
    rt->tick_running = false;
    Service* sp = find_service(name, rt);
    if (!sp || !rt->engine) return;
    const auto now = SteadyClock::now();
    // Scrapes: parse, measure against the previous good scrape, keep this one.
    std::map<int, std::shared_ptr<prom::ParseResult>> parsed;
    std::map<int, std::string> scrape_error;
    for (auto& [v, result] : gather->scrapes) {
      if (!result.ok()) {
        scrape_error[v] = std::string("scrape of ") + sp->config.variants[v].metrics_url + ": " + result.message;
        continue;
      }
      auto p = std::make_shared<prom::ParseResult>(prom::parse_prometheus_text(result.body));
      if (!p->ok) {
        scrape_error[v] = "metrics_url of '" + sp->config.variants[v].name + "' rejected: " +
                          (p->errors.empty() ? std::string("limits exceeded") : p->errors.front().message);
        continue;
      }
      parsed[v] = p;
    }
    auto prom_measure = [&](int v, const GateConfig& g) -> Measurement {
      if (auto e = scrape_error.find(v); e != scrape_error.end()) return Measurement::error(e->second);
      auto cur = parsed.find(v);
      if (cur == parsed.end()) return Measurement::error("no scrape");
      auto prev = rt->last_scrape.find(v);
      if (prev == rt->last_scrape.end()) return Measurement::inconclusive("first scrape; no window yet");
      const double secs = std::chrono::duration<double>(now - rt->last_scrape_at[v]).count();
      return prometheus_measurement(*prev->second, *cur->second, g, secs);
    };
    MetricsSnapshot snapshot;
    if (const auto* gates = gates_now(*rt->engine)) {
      for (const GateConfig& g : *gates) {
        auto measure = [&](int v) -> Measurement {
          if (v < 0) return Measurement::error("no such variant");
          switch (g.source) {
            case GateSource::Kernel:
              if (gather->fleet)
                return fleet::fleet_measurement(*gather->fleet, sp->config.variants[static_cast<size_t>(v)].name,
                                                g.metric, config_.cluster ? config_.cluster->min_nodes : 0);
              return kernel_measurement(gather->windows[v], g.metric);
            case GateSource::Push:
              // Fleet mode: the values pushed to any node, summed from their reports.
              if (gather->fleet)
                return fleet::fleet_push_measurement(*gather->fleet, sp->config.variants[static_cast<size_t>(v)].name,
                                                     g, config_.cluster ? config_.cluster->min_nodes : 0);
              return push_measurement(gather->pushed[v], g);
            case GateSource::Prometheus: return prom_measure(v, g);
            case GateSource::Probe: return probe_measurement(gather->probes, g.metric);
            case GateSource::PromQL: {
              auto r = gather->promql.find({g.name, v});
              if (r == gather->promql.end()) return Measurement::error("no query was sent");
              // An HTTP error still carries Prometheus's own JSON explanation in its body.
              if (r->second.ok() || r->second.error == net::ScrapeError::HttpStatus)
                return promql::read_answer(r->second.status, r->second.body, g);
              return Measurement::error("no answer from Prometheus: " + r->second.message);
            }
          }
          return Measurement::error("unknown source");
        };
        GateMeasurement gm{measure(test), std::nullopt};
        if (needs_stable(g) && g.source != GateSource::Probe) gm.stable = measure(stable);
        snapshot.gates[g.name] = std::move(gm);
      }
    }
    for (auto& [v, p] : parsed) {
      rt->last_scrape[v] = p;
      rt->last_scrape_at[v] = now;
    }
    // A new leader's first interval only takes every node's baseline: no gate can be read yet, and an
    // Inconclusive that ends a pause would hold the rollout. The engine waits for the next interval.
    if (gather->fleet_baseline) return;
    finish_tick(name, rt, std::move(snapshot));
  };

  for (int v : scrape) {
    const std::string& url = s.config.variants[static_cast<size_t>(v)].metrics_url;
    if (url.empty()) {
      gather->scrapes[v] = net::ScrapeResult{net::ScrapeError::BadUrl, "variant has no metrics_url", 0, {}, {}, {}};
      continue;
    }
    ++gather->pending;
    net::ScrapeOptions options;
    // A scrape must be back well within the interval: the tick waits for it.
    options.timeout = std::clamp(Millis(interval.count() / 2), Millis{100}, Millis{5000});
    net::http_get(*io_, url, options, [gather, v, done](net::ScrapeResult r) {
      gather->scrapes[v] = std::move(r);
      done();
    });
  }
  // promql gates: one instant query per gate and variant measured, with the scrapes' deadline.
  static const std::vector<GateConfig> kNoGates;
  for (const GateConfig& g : gates ? *gates : kNoGates) {
    if (g.source != GateSource::PromQL || !engine.active()) continue;
    std::set<int> variants{test};
    if (needs_stable(g)) variants.insert(stable);
    for (int v : variants) {
      if (v < 0) continue;
      const promql::QueryVars vars{name, s.config.variants[static_cast<size_t>(v)].name,
                                   stable >= 0 ? s.config.variants[static_cast<size_t>(stable)].name : "", interval};
      net::ScrapeOptions options;
      options.timeout = std::clamp(Millis(interval.count() / 2), Millis{100}, Millis{5000});
      options.max_body_bytes = promql::kMaxAnswerBytes;
      options.accept = "application/json";
      ++gather->pending;
      net::http_get(*io_, promql::query_url(g.address, promql::render(g.query, vars), options.timeout), options,
                    [gather, key = std::make_pair(g.name, v), done](net::ScrapeResult r) {
                      gather->promql[key] = std::move(r);
                      done();
                    });
    }
  }
  if (probe) {
    const PrePromotion& pre = *rc.pre_promotion;
    const auto& backends = s.config.variants[static_cast<size_t>(test)].backends;
    for (uint32_t i = 0; i < pre.requests && !backends.empty(); ++i) {
      const Endpoint& b = backends[i % backends.size()];
      const std::string url = "http://" + b.to_string() + pre.path;
      net::ScrapeOptions options;
      options.timeout = std::min(pre.timeout, Millis(std::max<int64_t>(interval.count() * 8 / 10, 100)));
      ++gather->pending;
      net::http_get(*io_, url, options, [gather, done](net::ScrapeResult r) {
        gather->probes.push_back(
            ProbeOutcome{r.ok(), std::chrono::duration<double, std::milli>(r.elapsed).count()});
        done();
      });
    }
  }
  if (fleet_ && engine.active()) {
    ++gather->pending;
    fleet_window(s, seconds, [gather, done](fleet::FleetWindow w, bool baseline) {
      gather->fleet = std::move(w);
      gather->fleet_baseline = baseline;
      done();
    });
  }
  done();  // the initial count of 1: runs the tick now if nothing went out
}

void Daemon::finish_tick(const std::string& name, const std::shared_ptr<Runtime>& rt, MetricsSnapshot snapshot) {
  Service* sp = find_service(name, rt);
  if (!sp || !rt->engine || !rt->engine->active()) return;
  Service& s = *sp;
  if (!ticks_here(s)) return;  // leadership went while the measurements were out
  const Millis now{unix_ms()};
  Decision d;
  try {
    d = rt->engine->tick(now, snapshot);
  } catch (const std::exception& e) {
    spdlog::error("service {}: rollout tick: {}", name, e.what());
    return;
  }
  const RolloutState& state = rt->engine->state();
  for (const auto& [gate, st] : state.gates)
    if (st.at == now) ++rt->gate_results[{state.gates_stage, gate}][to_string(st.result)];
  if (fleet_) return fleet_commit_decision(s, d);  // every node applies it from etcd
  apply_decision(s, d);
}

void Daemon::apply_decision(Service& s, const Decision& d) {
  ServiceState& st = state_.services[s.config.name];
  if (d.weights_bp) {
    try {
      tables_->set_weights(s.id, *d.weights_bp);  // one atomic table flip
      s.desired_bp = *d.weights_bp;
      st.weights_bp = weights_by_name(s.config, *d.weights_bp);
      spdlog::info("service {}: rollout weights {}", s.config.name, [&] {
        std::string out;
        for (size_t i = 0; i < d.weights_bp->size(); ++i)
          out += (out.empty() ? "" : " ") + s.config.variants[i].name + "=" + format_weight((*d.weights_bp)[i]);
        return out;
      }());
    } catch (const std::exception& e) {
      spdlog::error("service {}: applying the rollout's weights failed: {}", s.config.name, e.what());
      record_event(s.config.name, "error", std::string("applying the rollout's weights failed: ") + e.what(), {});
    }
  }
  if (d.new_stable) {
    s.stable = *d.new_stable;
    st.stable = s.stable == s.config.stable ? std::string() : s.stable;
  }
  for (const auto& e : d.events) {
    if (e.kind == "abort" || e.kind == "completed" || e.kind == "hold")
      spdlog::warn("service {}: {}", s.config.name, e.message);
    else
      spdlog::info("service {}: {}", s.config.name, e.message);
    record_event(s.config.name, e.kind, e.message, e.values, e.time.count());
  }
  st.rollout = s.rt->engine->state();
  persist();
}

void Daemon::refuse_during_rollout(const Service& s, bool force, const char* what) const {
  if (force || !s.rt->engine || !s.rt->engine->active()) return;
  // An A/B test has no steps: `weights` is how the operator ends it with the
  // winner (the engine says so on promote), so it is not refused.
  if (s.rt->engine->config().strategy == RolloutStrategy::Ab) return;
  throw ProtocolError(ErrorCode::Refused, std::string(what) + " refused: the rollout of service \"" + s.config.name +
                                              "\" is " + to_string(s.rt->engine->state().phase) +
                                              " (abort it first, or use force)");
}

void Daemon::record_event(const std::string& service, const std::string& kind, const std::string& message,
                          const std::map<std::string, double>& values, int64_t time_ms) {
  const Event& e = events_.append(Event{0, time_ms ? time_ms : unix_ms(), service, kind, message, values});
  try {
    event_file_->append(e);
    event_file_problem_.clear();
  } catch (const std::exception& ex) {
    if (event_file_problem_.empty()) spdlog::error("events file: {}", ex.what());
    event_file_problem_ = ex.what();
  }
}

// ---------------------------------------------------------------------------
// Requests

Decision Daemon::run_rollout_command(RolloutEngine& engine, const protocol::RolloutRequest& r, Millis now,
                                     const std::string& abort_reason) {
  switch (r.action) {
    case protocol::RolloutAction::Start: return engine.start(now);
    case protocol::RolloutAction::Promote: return engine.promote(now, r.full);
    case protocol::RolloutAction::Pause: return engine.pause(now);
    case protocol::RolloutAction::Abort: return engine.abort(now, abort_reason);
    case protocol::RolloutAction::Retry: return engine.retry(now);
  }
  throw RolloutCommandError("unknown rollout action");
}

json Daemon::rollout(const protocol::RolloutRequest& r) {
  Service& s = service_named(r.service);
  if (!s.rt->engine) {
    throw ProtocolError(ErrorCode::Refused, "service \"" + s.config.name + "\" has no rollout section");
  }
  Decision d;
  try {
    d = run_rollout_command(*s.rt->engine, r, Millis{unix_ms()}, "by the operator");
  } catch (const RolloutCommandError& e) {
    throw ProtocolError(ErrorCode::Refused, e.what());
  }
  // A fresh rollout: the A/B data starts from here (apply_decision persists it).
  if (r.action == protocol::RolloutAction::Start || r.action == protocol::RolloutAction::Retry) reset_totals(s);
  apply_decision(s, d);
  return rollout_status(s);
}

int Daemon::push_variant(const Service& s, const protocol::PushRequest& r) const {
  const int v = s.config.variant_index(r.variant);
  if (v < 0) {
    std::string known;
    for (const auto& vc : s.config.variants) known += (known.empty() ? "" : ", ") + vc.name;
    throw ProtocolError(ErrorCode::NotFound,
                        "service \"" + s.config.name + "\" has no variant \"" + r.variant + "\" (variants: " + known + ")");
  }
  return v;
}

std::vector<PushItem> Daemon::push_items(const protocol::PushRequest& r, const PushData& into) {
  try {
    std::vector<PushItem> items = parse_push_values(r.values);
    into.check_room_for(items);
    return items;
  } catch (const PushError& e) {
    throw ProtocolError(ErrorCode::BadRequest, e.what());
  }
}

json Daemon::push(const protocol::PushRequest& r) {
  Service& s = service_named(r.service);
  const int v = push_variant(s, r);
  auto& pushed = state_.services[s.config.name].totals.pushed;
  const bool had = pushed.count(r.variant) > 0;
  PushData total = had ? pushed.at(r.variant) : PushData{};
  const std::vector<PushItem> items = push_items(r, total);
  for (const auto& item : items) total.add(item);
  // Acknowledged pushes survive a crash: on disk before the answer. If they
  // cannot be written, none is kept and the client hears why.
  std::swap(pushed[r.variant], total);
  if (!persist()) {
    if (had) {
      std::swap(pushed[r.variant], total);
    } else {
      pushed.erase(r.variant);
    }
    throw ProtocolError(ErrorCode::Internal, "push not kept: cannot write state.json: " + persist_problem_);
  }
  for (const auto& item : items) s.rt->push_window[static_cast<size_t>(v)].add(item);
  return json{{"accepted", items.size()}};
}

json Daemon::events(const protocol::EventsRequest& r) {
  if (r.service) service_named(*r.service);  // not_found for an unknown service
  const auto page = events_.since(r.since, r.service, r.limit.value_or(kDefaultEventsLimit));
  json list = json::array();
  for (const auto& e : page.events) list.push_back(to_json(e));
  return json{{"events", list}, {"next", page.next}};
}

AbSnapshot Daemon::ab_snapshot(const Service& s) const {
  std::vector<uint64_t> flows;
  if (fleet_) {
    // The fleet's totals, as the leader summed them into the rollout record every node mirrors.
    const fleet::FleetTotals totals = fleet_ab_totals(s);
    for (const auto& v : s.config.variants) {
      const auto f = totals.flows.find(v.name);
      flows.push_back(f == totals.flows.end() ? 0 : f->second);
    }
    return ab_snapshot_of(s.config, flows, totals.pushed);
  }
  const RolloutTotals& totals = totals_of(s);
  for (unsigned v = 0; v < s.config.variants.size(); ++v) {
    const uint64_t now = dataplane_->variant_counters(s.id, v).new_flows;
    const auto f = totals.flows_base.find(s.config.variants[v].name);
    const uint64_t base = f != totals.flows_base.end() ? f->second : 0;
    flows.push_back(now >= base ? now - base : now);
  }
  return ab_snapshot_of(s.config, flows, totals.pushed);
}

json Daemon::ab(const protocol::AbRequest& r) {
  const Service& s = service_named(r.service);
  if (!s.config.rollout || s.config.rollout->strategy != RolloutStrategy::Ab) {
    throw ProtocolError(ErrorCode::Refused, "service \"" + s.config.name + "\" has no ab rollout");
  }
  try {
    return to_json(ab_report(s.config, ab_snapshot(s)));
  } catch (const std::invalid_argument& e) {
    throw ProtocolError(ErrorCode::Internal, e.what());
  }
}

json Daemon::rollout_status(const Service& s) const {
  if (!s.rt->engine) return nullptr;
  const RolloutEngine& e = *s.rt->engine;
  const RolloutConfig& rc = e.config();
  const RolloutState& st = e.state();
  json out{{"strategy", to_string(rc.strategy)},
           {"phase", to_string(st.phase)},
           {"step", st.step},
           {"steps", rc.steps.size()},
           {"interval_ms", rc.interval.count()},
           {"failure_limit", rc.failure_limit},
           {"events_next", events_.next_seq()}};
  out["step_kind"] = nullptr;
  if (rc.strategy == RolloutStrategy::Canary && st.step < rc.steps.size())
    out["step_kind"] = rc.steps[st.step].kind == CanaryStep::Kind::SetWeight ? "set_weight" : "pause";
  const int test = test_variant(s);
  const int stable = stable_variant(s);
  out["canary"] = test >= 0 ? json(s.config.variants[static_cast<size_t>(test)].name) : json(nullptr);
  out["stable"] = stable >= 0 ? json(s.config.variants[static_cast<size_t>(stable)].name) : json(nullptr);
  // Time left in a timed pause or the post-promotion watch, counted the way the engine counts it.
  std::optional<Millis> total;
  if (st.phase == RolloutPhase::Paused && st.step < rc.steps.size()) total = rc.steps[st.step].pause;
  if (st.phase == RolloutPhase::PostPromotion && rc.post_promotion) total = rc.post_promotion->duration;
  out["pause_remaining_ms"] = nullptr;
  if (total) {
    // Right after a restart the engine has not counted anything since
    // last_update (that was downtime): nothing has run off the pause yet.
    const Millis since = s.rt->engine->resumed_without_input()
                             ? Millis{0}
                             : std::max(Millis{0}, Millis{unix_ms()} - st.last_update);
    out["pause_remaining_ms"] = std::max<int64_t>(0, (*total - st.pause_spent - since).count());
  }
  json weights = json::object();
  for (size_t i = 0; i < st.desired_weights_bp.size() && i < s.config.variants.size(); ++i)
    weights[s.config.variants[i].name] = format_weight(st.desired_weights_bp[i]);
  out["desired_weights"] = weights;
  out["abort_reason"] = st.abort_reason.empty() ? json(nullptr) : json(st.abort_reason);
  json gates = json::array();
  for (const auto& [stage, g] : all_gates(rc)) {
    json gj{{"name", g->name},     {"metric", g->metric}, {"source", to_string(g->source)},
            {"last_result", "none"}, {"value", nullptr},    {"baseline", nullptr},
            {"compared", nullptr},   {"samples", nullptr},  {"failures", 0},
            {"consecutive_errors", 0}, {"reason", nullptr}};
    if (!stage.empty()) gj["stage"] = stage;
    if (g->max) gj["max"] = *g->max;
    if (g->min) gj["min"] = *g->min;
    // Only the list the statuses belong to shows them (blue-green's pre- and
    // post-promotion lists may both have a latency_p95_ms).
    if (auto it = st.gates.find(g->name); it != st.gates.end() && stage == st.gates_stage) {
      const GateStatus& gs = it->second;
      gj["last_result"] = to_string(gs.result);
      gj["value"] = optional_number(gs.value);
      gj["baseline"] = optional_number(gs.baseline);
      gj["compared"] = optional_number(gs.compared);
      gj["failures"] = gs.failures;
      gj["consecutive_errors"] = gs.consecutive_errors;
      gj["reason"] = gs.reason;
      gj["at"] = format_rfc3339_ms(gs.at.count());
    }
    // samples: what the last window gave the test variant (kernel gates).
    if (g->source == GateSource::Kernel && test >= 0 && static_cast<size_t>(test) < s.rt->window.size()) {
      gj["samples"] = kernel_measurement(s.rt->window[static_cast<size_t>(test)], g->metric).samples;
    }
    gates.push_back(std::move(gj));
  }
  out["gates"] = gates;
  return out;
}

// ---------------------------------------------------------------------------
// /metrics

std::string Daemon::render_metrics() const {
  metrics::Registry registry;
  metrics::VeerMetrics m(registry);
  for (const auto& s : services_) {
    const std::vector<uint32_t> applied = tables_->applied_weights(s.id);
    for (unsigned v = 0; v < s.config.variants.size(); ++v) {
      const VariantTelemetry t = dataplane_->telemetry(s.id, v);
      metrics::VariantTelemetry mt;
      mt.service = s.config.name;
      mt.variant = s.config.variants[v].name;
      mt.packets_in = t.counters.packets_in;
      mt.bytes_in = t.counters.bytes_in;
      mt.packets_out = t.counters.packets_out;
      mt.bytes_out = t.counters.bytes_out;
      mt.flows = t.counters.new_flows;
      mt.backend_resets = t.counters.backend_resets;
      mt.client_resets = t.counters.client_resets;
      mt.handshake_timeouts = t.handshake_timeouts;
      mt.http_2xx = t.counters.http_2xx;
      mt.http_3xx = t.counters.http_3xx;
      mt.http_4xx = t.counters.http_4xx;
      mt.http_5xx = t.counters.http_5xx;
      mt.latency = metrics::latency_histogram_seconds(t.latency);
      m.variant_telemetry(mt);
      m.weight(s.config.name, s.config.variants[v].name, (v < s.desired_bp.size() ? s.desired_bp[v] : 0) / 100.0,
               (v < applied.size() ? applied[v] : 0) / 100.0);
    }
    if (s.rt->engine) {
      const RolloutState& st = s.rt->engine->state();
      m.rollout_phase(s.config.name, to_string(st.phase), phase_names());
      m.rollout_step(s.config.name, st.step);
      for (const auto& [gate, gs] : st.gates)
        if (gs.value && std::isfinite(*gs.value)) m.gate_value(s.config.name, st.gates_stage, gate, *gs.value);
      for (const auto& [key, counts] : s.rt->gate_results)
        for (const auto& [result, n] : counts) m.gate_result_count(s.config.name, key.first, key.second, result, n);
      if (s.config.rollout->strategy == RolloutStrategy::Ab) {
        try {
          m.srm_p_value(s.config.name, ab_report(s.config, ab_snapshot(s)).srm_p_value);
        } catch (const std::exception& e) {
          spdlog::debug("service {}: no SRM p-value: {}", s.config.name, e.what());
        }
      }
    }
  }
  const auto reasons = dataplane_->reason_counters();
  std::vector<std::pair<int, std::string>> drops;
#define VEER_DROP_REASON(name, value, kind, desc) \
  if (std::string_view(#kind) == "drop") drops.emplace_back(value, #name);
  VEER_REASONS(VEER_DROP_REASON)
#undef VEER_DROP_REASON
  for (auto& [value, name] : drops) {
    std::string n = name.substr(5);  // without "DROP_"
    std::transform(n.begin(), n.end(), n.begin(), [](unsigned char c) { return std::tolower(c); });
    m.drops(n, reasons[static_cast<size_t>(value)]);
  }
  fleet_metrics(registry);
  return registry.render();
}

}  // namespace veer
