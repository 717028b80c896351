// veerd in fleet mode (the `cluster:` section, issue 11): the adapter between
// the node's tables and the fleet's table versions in etcd. What is decided
// (the next version, the fence, definition digests, reports) lives in
// veer_core's fleet/ room; etcd is reached through veer_etcd's FleetMember.
//
// - A weights/switch/drain request becomes the next table version of the
//   service, written in etcd from this node (compare-and-swap on the record);
//   it is answered once this node applied it (or after kAnswerWait, saying
//   it is written and not applied yet).
// - Every node (the writer too) applies a version when it arrives, through
//   its fence: never one at or below the version it applied (state.json
//   keeps it across restarts), never one built for another definition of
//   the service (the service is shown as diverged and applies nothing).
// - Every second the node publishes its report under its lease: per service
//   its definition digest, the version applied and the kernel counters since
//   its epoch began.
// The data plane never waits for etcd: without it the node keeps its last
// applied tables, and table requests are refused with the reason.
#include <spdlog/spdlog.h>

#include <random>
#include <set>

#include "daemon.h"
#include "fleet/definition_digest.h"
#include "fleet/fleet_window.h"
#include "fleet/node_report.h"
#include "fleet/rollout_record.h"
#include "fleet/table_change.h"
#include "fleet/version_fence.h"
#include "metrics/metrics_registry.h"
#include "service_text.h"
#include "unix_time.h"
#include "veer/fleet_member.h"
#include "veer/tls.h"

namespace veer {

using nlohmann::json;
using protocol::ErrorCode;
using protocol::ProtocolError;

namespace {

constexpr auto kAnswerWait = std::chrono::seconds(2);
constexpr auto kLeaveWait = std::chrono::seconds(1);

std::string new_epoch() {
  std::random_device rd;
  char out[17];
  std::snprintf(out, sizeof out, "%08x%08x", rd(), rd());
  return out;
}

}  // namespace

struct Daemon::Fleet {
  ClusterConfig cluster;
  std::shared_ptr<const net::TlsClient> tls;  // cluster.tls's context; null for http:// endpoints
  std::shared_ptr<etcd::FleetMember> member;
  std::map<std::string, fleet::VersionFence> fences;  // by service
  std::map<std::string, std::string> diverged;        // service -> why it applies nothing
  std::string epoch = new_epoch();
  uint64_t seq = 0;
  // Per service, per variant: the kernel's counters when this epoch began.
  std::map<std::string, std::vector<KernelSample>> epoch_base;
  bool connected = false;
  std::string connection = "not started";
  std::unique_ptr<boost::asio::steady_timer> report_timer;
  struct Waiter {
    std::string service;
    uint64_t version = 0;
    std::function<void(bool applied)> answer;
    std::shared_ptr<boost::asio::steady_timer> deadline;
  };
  std::vector<Waiter> waiters;
  // Reports go out four times a gate interval (the shortest of the node's
  // rollouts, 250 ms .. 1 s), so the leader finds a fresh one from every node
  // in every interval.
  std::chrono::milliseconds report_every{1000};
  etcd::LeaderView leader;
  // Per service: the fleet's rollout record as this node last read (or wrote) it.
  struct Mirror {
    std::optional<fleet::RolloutRecord> record;
    int64_t revision = 0;
  };
  std::map<std::string, Mirror> rollouts;
  std::map<std::string, fleet::FleetAggregator> aggregators;  // the leader's, per service
  std::map<std::string, fleet::FleetWindow> last_window;      // the leader's last, per service
  std::set<std::string> committing;                           // the leader's writes in flight
  // Per service, per variant: what veerctl push gave this node in this epoch (its reports carry it).
  std::map<std::string, std::vector<PushData>> pushed;
};

void Daemon::FleetDeleter::operator()(Fleet* f) const { delete f; }

void Daemon::fleet_setup() {
  if (!config_.cluster) return;
  fleet_.reset(new Fleet());
  fleet_->cluster = *config_.cluster;
  if (const auto& t = fleet_->cluster.tls) {
    try {
      fleet_->tls = net::make_tls_client(net::TlsConfig{t->ca, t->cert, t->key, t->server_name});
    } catch (const net::TlsSetupError& e) {
      throw std::runtime_error(std::string("cluster.tls: ") + e.what());
    }
  }
  for (const auto& s : services_) {
    if (s.rt->engine && s.rt->engine->active())
      throw std::runtime_error("service " + s.config.name + ": a rollout of this node alone is " +
                               to_string(s.rt->engine->state().phase) +
                               ": finish or abort it before the node joins a fleet");
    // Without adopted pins the tables were just built from the weights: the
    // fleet's version is applied again, whatever state.json remembers.
    const uint64_t applied = dataplane_->adopted() ? state_.services[s.config.name].fleet_version : 0;
    fleet_->fences.emplace(s.config.name, fleet::VersionFence(s.config.name,
                                                              fleet::definition_digest(s.config, config_.node.hash_seed),
                                                              applied));
  }
  for (const auto& s : services_)
    if (s.config.rollout)
      fleet_->report_every = std::min(fleet_->report_every, std::max(std::chrono::milliseconds(250),
                                                                     s.config.rollout->interval / 4));
  spdlog::info("fleet: node {} of {} at {}{}", fleet_->cluster.node_name, fleet_->cluster.prefix,
               fmt::join(fleet_->cluster.endpoints, ","), fleet_->tls ? " (TLS)" : "");
}

void Daemon::fleet_run(boost::asio::io_context& io) {
  if (!fleet_) return;
  for (const auto& s : services_) {
    auto& base = fleet_->epoch_base[s.config.name];
    for (unsigned v = 0; v < s.config.variants.size(); ++v) base.push_back(kernel_sample(s, v));
  }
  etcd::MemberOptions options;
  options.node = fleet_->cluster.node_name;
  options.prefix = fleet_->cluster.prefix;
  options.lease_ttl_seconds = fleet_->cluster.lease_ttl.count() / 1000;
  etcd::MemberCallbacks callbacks;
  callbacks.on_version = [this](const fleet::TableVersion& v) { fleet_on_version(v); };
  callbacks.on_bad_record = [this](const std::string& key, const std::string& why) {
    spdlog::warn("fleet: {}: not a table version: {}", key, why);
    record_event("", "fleet", "etcd holds a record this node cannot read (" + key + "): " + why, {});
  };
  callbacks.on_rollout = [this](const fleet::RolloutRecord& r, int64_t revision) { fleet_on_rollout(r, revision); };
  callbacks.on_leader = [this](const etcd::LeaderView& l) {
    const bool was_leader = fleet_->leader.self;
    const int64_t was_term = fleet_->leader.term;
    fleet_->leader = l;
    fleet_on_leader(was_leader ? was_term : 0);
  };
  callbacks.on_connection = [this](bool connected, const std::string& why) {
    fleet_->connected = connected;
    fleet_->connection = why;
    if (connected) {
      spdlog::info("fleet: connected to etcd ({})", why);
    } else {
      spdlog::warn("fleet: etcd unreachable, the applied tables stay: {}", why);
    }
    record_event("", "fleet", std::string(connected ? "connected to etcd: " : "etcd unreachable (tables kept): ") + why,
                 {});
  };
  etcd::ClientOptions client_options;
  client_options.tls = fleet_->tls;
  fleet_->member = std::make_shared<etcd::FleetMember>(io, fleet_->cluster.endpoints, options, callbacks,
                                                       client_options);
  fleet_->member->start();
  fleet_->report_timer = std::make_unique<boost::asio::steady_timer>(io);
  fleet_report();
}

void Daemon::fleet_on_version(const fleet::TableVersion& v) {
  Service* found = nullptr;
  for (auto& s : services_)
    if (s.config.name == v.service) found = &s;
  if (!found) return;  // a service of the fleet this node does not run
  Service& s = *found;
  fleet::VersionFence& fence = fleet_->fences.at(s.config.name);
  const fleet::FenceDecision d = fence.consider(v);
  if (d.verdict == fleet::FenceVerdict::DefinitionMismatch) {
    if (fleet_->diverged[s.config.name] != d.reason) {
      spdlog::error("fleet: service {}: {}", s.config.name, d.reason);
      record_event(s.config.name, "fleet", "diverged: " + d.reason, {{"version", static_cast<double>(v.version)}});
    }
    fleet_->diverged[s.config.name] = d.reason;
    return;
  }
  if (!d.apply()) {
    spdlog::debug("fleet: service {}: {}", s.config.name, d.reason);
    return;
  }
  try {
    const SlotTable table = fleet::build_table_from_version(v, fleet::variant_backends(s.config), config_.node.hash_seed);
    tables_->set_table(s.id, table, v.draining);
  } catch (const std::exception& e) {
    const std::string why = "version " + std::to_string(v.version) + " does not fit this node: " + e.what();
    spdlog::error("fleet: service {}: {}", s.config.name, why);
    fleet_->diverged[s.config.name] = why;
    record_event(s.config.name, "fleet", "diverged: " + why, {{"version", static_cast<double>(v.version)}});
    return;
  }
  fence.applied(v);
  fleet_->diverged.erase(s.config.name);
  s.desired_bp = v.weights_bp;
  s.stable = s.config.variants.at(v.stable).name;
  ServiceState& st = state_.services[s.config.name];
  st.weights_bp = weights_by_name(s.config, v.weights_bp);
  st.stable = s.stable == s.config.stable ? "" : s.stable;
  st.draining.clear();
  for (size_t var = 0; var < v.draining.size(); ++var)
    for (uint8_t b : v.draining[var]) st.draining.insert(s.config.variants[var].backends.at(b).to_string());
  st.fleet_version = v.version;
  spdlog::info("fleet: service {}: applied version {} ({}, by {}): {}", s.config.name, v.version, v.cause, v.writer,
               weights_text(s.config, v.weights_bp));
  std::map<std::string, double> values{{"version", static_cast<double>(v.version)}};
  for (size_t i = 0; i < v.weights_bp.size(); ++i)
    values["weight." + s.config.variants[i].name] = v.weights_bp[i] / 100.0;
  record_event(s.config.name, "fleet",
               "applied version " + std::to_string(v.version) + " (" + v.cause + ", by " + v.writer +
                   "): " + weights_text(s.config, v.weights_bp),
               values);
  persist();
  fleet_answer_waiters(s.config.name);
  // The fleet learns at once that this node applied it (`nodes`, the leader's lag), not at the next tick.
  if (fleet_->report_timer) fleet_report();
}

void Daemon::fleet_answer_waiters(const std::string& service) {
  const uint64_t applied = fleet_->fences.at(service).applied_version();
  auto& ws = fleet_->waiters;
  for (auto it = ws.begin(); it != ws.end();) {
    if (it->service == service && it->version <= applied) {
      auto answer = std::move(it->answer);
      it->deadline->cancel();
      it = ws.erase(it);
      answer(true);
    } else {
      ++it;
    }
  }
}

bool Daemon::fleet_request(const protocol::Request& request, const std::function<void(std::string)>& done) {
  if (const auto* r = std::get_if<protocol::RolloutRequest>(&request)) {
    fleet_rollout_command(*r, done);
    return true;
  }
  if (std::holds_alternative<protocol::ReloadRequest>(request))
    throw ProtocolError(ErrorCode::Refused,
                        "reload in fleet mode: the fence of each service holds its definition; restart veerd to "
                        "change the config (its pinned tables stay, it catches up with the fleet)");
  if (std::holds_alternative<protocol::NodesRequest>(request)) {
    fleet_nodes(done);
    return true;
  }
  if (const auto* r = std::get_if<protocol::PushRequest>(&request)) {
    fleet_push(*r, done);
    return true;
  }
  const std::string* name = nullptr;
  fleet::TableChange change;
  std::visit(
      [&](const auto& r) {
        using T = std::decay_t<decltype(r)>;
        if constexpr (std::is_same_v<T, protocol::WeightsRequest>) {
          name = &r.service;
          change.weights_bp = requested_weights(service_named(r.service), r);
          change.cause = "weights";
        } else if constexpr (std::is_same_v<T, protocol::SwitchRequest>) {
          name = &r.service;
          const Service& s = service_named(r.service);
          change.weights_bp = requested_switch(s, r);
          change.cause = "switch to " + r.variant;
        } else if constexpr (std::is_same_v<T, protocol::DrainRequest>) {
          name = &r.service;
          for (const auto& [v, b] : requested_drain(service_named(r.service), r))
            change.drains.push_back({v, b, !r.undo});
          change.cause = (r.undo ? "undrain " : "drain ") + r.backend.to_string();
        }
      },
      request);
  if (!name) return false;
  Service& s = service_named(*name);
  const auto* weights = std::get_if<protocol::WeightsRequest>(&request);
  const bool adopt = weights && weights->adopt;
  if (const auto it = fleet_->diverged.find(s.config.name); it != fleet_->diverged.end() && !adopt)
    throw ProtocolError(ErrorCode::Refused, "service \"" + s.config.name +
                                                "\": this node's definition differs from the fleet's, it writes and "
                                                "applies nothing for it: " + it->second +
                                                " (veerctl weights --adopt makes this node's definition the fleet's)");
  if (adopt) change.cause = "weights, adopting " + fleet_->fences.at(s.config.name).definition();
  // --adopt: the next version carries this node's definition, built from this node's table (the current
  // one was built for the old variants and backends); nodes of the old definition then apply nothing.
  auto make = [svc = s.config, definition = fleet_->fences.at(s.config.name).definition(),
               seed = config_.node.hash_seed, base = fleet_base_table(s), change, writer = fleet_->cluster.node_name,
               adopt](const std::optional<fleet::TableVersion>& current) {
    return adopt ? fleet::adopted_table_version(current, base, svc, definition, seed, change, writer, unix_ms())
                 : fleet::next_table_version(current, base, svc, definition, seed, change, writer, unix_ms());
  };
  const std::string service = s.config.name;
  fleet_->member->propose(service, make, [this, service, done](etcd::ProposeResult r) {
    if (!r.ok) {
      spdlog::warn("fleet: service {}: not written: {}", service, r.error);
      return done(protocol::error_answer(ErrorCode::Refused,
                                         std::string(r.unreachable ? "etcd unreachable, nothing changed: "
                                                                   : "the fleet's table was not written: ") +
                                             r.error));
    }
    const uint64_t version = r.version.version;
    auto answer = [this, service, version, done](bool applied) {
      Service* s = nullptr;
      for (auto& x : services_)
        if (x.config.name == service) s = &x;
      if (!s) return done(protocol::error_answer(ErrorCode::NotFound, "service \"" + service + "\" is gone"));
      json out = service_status(*s);
      out["fleet"] = json{{"version", version}, {"applied", applied}};
      done(protocol::ok_answer(out));
    };
    auto deadline = std::make_shared<boost::asio::steady_timer>(*io_);
    fleet_->waiters.push_back({service, version, answer, deadline});
    deadline->expires_after(kAnswerWait);
    deadline->async_wait([this, deadline](const boost::system::error_code& ec) {
      if (ec) return;
      auto& ws = fleet_->waiters;
      for (auto it = ws.begin(); it != ws.end(); ++it)
        if (it->deadline == deadline) {
          auto late = std::move(it->answer);
          ws.erase(it);
          return late(false);  // written, not applied here yet: status says when it is
        }
    });
    fleet_answer_waiters(service);
  });
  return true;
}

// ---------------------------------------------------------------------------
// The leader and the fleet's rollouts

namespace {

// The table version's cause for a rollout decision: what its events say.
std::string decision_cause(const Decision& d) {
  std::string cause = "rollout";
  for (const auto& e : d.events)
    if (e.kind == "abort") cause = "rollout: abort: " + e.message;
  if (cause == "rollout" && !d.events.empty()) cause = "rollout: " + d.events.back().message;
  if (cause.size() > fleet::kMaxCauseLength) cause.resize(fleet::kMaxCauseLength);
  return cause;
}


// What a rollout decision writes: the rollout record of STATE and, when the weights or the stable variant
// changed, the next table version (from the fleet's current one, or version 1 from BASE).
struct DecisionWriter {
  ServiceConfig svc;
  std::string definition;
  uint32_t seed = 0;
  fleet::BaseTable base;
  std::string writer;

  // ADDED: the fleet's growth of the interval this decision was taken on (A/B totals add it); RESET: a
  // rollout that starts (again) counts from zero.
  etcd::Writes operator()(const etcd::ServiceRecords& cur, const Decision& d, const RolloutState& state,
                          int64_t term, int64_t now, const fleet::FleetWindow* added = nullptr,
                          bool reset = false) const {
    etcd::Writes w;
    fleet::FleetTotals totals;
    if (cur.rollout && !reset && cur.rollout->definition == definition) totals = cur.rollout->totals;
    if (added && svc.rollout && svc.rollout->strategy == RolloutStrategy::Ab) totals.add(*added);
    if (d.weights_bp || d.new_stable) {
      fleet::TableChange change;
      change.weights_bp = d.weights_bp;
      if (d.new_stable) change.stable = static_cast<unsigned>(std::max(0, svc.variant_index(*d.new_stable)));
      change.cause = decision_cause(d);
      w.table = fleet::next_table_version(cur.table, base, svc, definition, seed, change, writer, now);
    }
    w.rollout = fleet::next_rollout_record(cur.rollout, svc.name, definition, term, writer, now,
                                           w.table ? w.table->version : 0, state, d.events, std::move(totals));
    return w;
  }
};

}  // namespace

fleet::BaseTable Daemon::fleet_base_table(const Service& s) const {
  // Version 1 (a fleet never written) starts from this node's table, stable variant and drains.
  fleet::BaseTable base;
  base.table = tables_->active_table(s.id);
  base.stable = static_cast<unsigned>(std::max(0, s.config.variant_index(s.stable)));
  base.draining.resize(s.config.variants.size());
  const auto st = state_.services.find(s.config.name);
  if (st == state_.services.end()) return base;
  for (size_t v = 0; v < s.config.variants.size(); ++v)
    for (size_t b = 0; b < s.config.variants[v].backends.size(); ++b)
      if (st->second.draining.count(s.config.variants[v].backends[b].to_string()))
        base.draining[v].push_back(static_cast<uint8_t>(b));
  return base;
}

bool Daemon::ticks_here(const Service& s) const {
  if (!fleet_) return true;
  return fleet_->leader.self && !fleet_->committing.count(s.config.name) && !fleet_->diverged.count(s.config.name);
}

void Daemon::fleet_restore_engine(Service& s) {
  if (!s.config.rollout) return;
  const auto& m = fleet_->rollouts[s.config.name];
  try {
    s.rt->engine = m.record ? std::make_unique<RolloutEngine>(s.config, m.record->state)
                            : std::make_unique<RolloutEngine>(s.config);
  } catch (const std::invalid_argument& e) {
    spdlog::error("fleet: service {}: the fleet's rollout record does not fit this node: {}", s.config.name, e.what());
    s.rt->engine = std::make_unique<RolloutEngine>(s.config);
  }
}

void Daemon::fleet_record_events(const Service& s, const fleet::RolloutRecord& r) {
  for (const auto& e : r.events) {
    std::map<std::string, double> values = e.values;
    if (r.table_version) values["version"] = static_cast<double>(r.table_version);
    const std::string where = " [" + r.writer + (r.table_version ? ", version " + std::to_string(r.table_version) : "") + "]";
    if (e.kind == "abort" || e.kind == "completed" || e.kind == "hold")
      spdlog::warn("service {}: {}{}", s.config.name, e.message, where);
    else
      spdlog::info("service {}: {}{}", s.config.name, e.message, where);
    record_event(s.config.name, e.kind, e.message + where, values, e.time.count());
  }
}

void Daemon::fleet_on_rollout(const fleet::RolloutRecord& r, int64_t revision) {
  Service* found = nullptr;
  for (auto& s : services_)
    if (s.config.name == r.service) found = &s;
  if (!found || !found->config.rollout) return;
  Service& s = *found;
  if (r.definition != fleet_->fences.at(s.config.name).definition()) return;  // diverged: shown by the table's fence
  auto& m = fleet_->rollouts[s.config.name];
  if (!fleet::newer(r, m.record)) return;  // a duplicate, an old event, or this node's own write
  m.record = r;
  m.revision = revision;
  // This leader's own write, seen by the watch before the txn's answer: the engine already holds that
  // state, and rebuilding it would drop the time since (a restored engine counts no pause time at its
  // first tick).
  const bool own = fleet_->leader.self && r.term == fleet_->leader.term && r.writer == fleet_->cluster.node_name;
  // Anything else (an operator's command from any node, another leader's step) replaces what the engine holds.
  if (!own) fleet_restore_engine(s);
  fleet_record_events(s, r);
}

void Daemon::fleet_on_leader(int64_t ended_term) {
  const etcd::LeaderView& l = fleet_->leader;
  std::string message;
  if (l.self) {
    message = "this node leads the fleet (term " + std::to_string(l.term) + ")";
  } else {
    message = l.leader.empty() ? "no node leads the fleet" : l.leader + " leads the fleet";
    if (ended_term)
      message = "no longer the fleet's leader (term " + std::to_string(ended_term) + " ended): " + message;
  }
  spdlog::info("fleet: {}", message);
  record_event("", "leader", message, {{"term", static_cast<double>(l.term)}});
  // A new term starts from the fleet's records: the engines as etcd has them (the time since their last
  // write did not count as pause time: no gate watched it), baselines of every node's counters anew.
  fleet_->aggregators.clear();
  fleet_->last_window.clear();
  for (auto& s : services_) fleet_restore_engine(s);
}

void Daemon::fleet_window(const Service& s, double seconds, std::function<void(fleet::FleetWindow, bool)> done) {
  const std::string name = s.config.name;
  std::vector<std::string> variants;
  for (const auto& v : s.config.variants) variants.push_back(v.name);
  const Millis interval = s.config.rollout ? s.config.rollout->interval : Millis{2000};
  fleet_->member->client().range(
      fleet_->member->keys().nodes_prefix(), true,
      [this, name, variants, seconds, interval, done](etcd::Status st, etcd::RangeAnswer a) {
        std::map<std::string, fleet::NodeReport> latest;
        std::vector<std::string> live;
        if (st.ok) {
          for (const auto& kv : a.kvs) {
            const auto node = fleet_->member->keys().node_of(kv.key);
            if (!node) continue;
            live.push_back(*node);  // a report key lives under its node's lease
            try {
              fleet::NodeReport r = fleet::node_report_from_string(kv.value);
              if (r.node == *node) latest.emplace(*node, std::move(r));
            } catch (const std::exception& e) {
              spdlog::debug("fleet: the report of {} is unreadable: {}", *node, e.what());
            }
          }
        } else {
          spdlog::warn("fleet: service {}: the nodes' reports cannot be read: {}", name, st.error);
        }
        auto it = fleet_->aggregators.find(name);
        const bool first = it == fleet_->aggregators.end();
        if (first)
          it = fleet_->aggregators
                   .emplace(name, fleet::FleetAggregator(name, variants, fleet_->fences.at(name).definition()))
                   .first;
        // A report older than two intervals and two report periods is stale: the node is cut off or stuck.
        const int64_t max_age = 2 * interval.count() + 2 * fleet_->report_every.count();
        fleet::FleetWindow w = it->second.step(latest, live, unix_ms(), max_age, seconds);
        fleet_->last_window[name] = w;
        done(std::move(w), first);
      });
}

void Daemon::fleet_commit_decision(Service& s, const Decision& d) {
  const std::string name = s.config.name;
  const int64_t term = fleet_->leader.term;
  const int64_t based_on = fleet_->rollouts[name].revision;
  const RolloutState state = s.rt->engine->state();
  // The interval this tick judged (fleet_window keeps it): an A/B rollout's totals grow by it.
  std::optional<fleet::FleetWindow> window;
  if (const auto w = fleet_->last_window.find(name); w != fleet_->last_window.end()) window = w->second;
  auto make = [write = DecisionWriter{s.config, fleet_->fences.at(name).definition(), config_.node.hash_seed,
                                             fleet_base_table(s), fleet_->cluster.node_name}, d, state, term, based_on,
               window](const etcd::ServiceRecords& cur) {
    if (cur.rollout_revision != based_on)
      throw std::runtime_error("the fleet's rollout record changed since this node read it (revision " +
                               std::to_string(based_on) + ", now " + std::to_string(cur.rollout_revision) + ")");
    return write(cur, d, state, term, unix_ms(), window ? &*window : nullptr);
  };
  fleet_->committing.insert(name);
  std::weak_ptr<Runtime> weak = s.rt;
  fleet_->member->commit(name, true, make, [this, name, weak](etcd::CommitResult r) {
    fleet_->committing.erase(name);
    auto rt = weak.lock();
    Service* sp = rt ? find_service(name, rt) : nullptr;
    if (!sp) return;
    if (!r.ok) {
      spdlog::warn("fleet: service {}: the rollout's decision was not written, so not taken: {}", name, r.error);
      if (r.deposed) record_event(name, "leader", "no longer the fleet's leader: " + r.error, {});
      fleet_restore_engine(*sp);  // back to the fleet's record: the decision did not happen
      return;
    }
    auto& m = fleet_->rollouts[name];
    if (r.written.rollout && fleet::newer(*r.written.rollout, m.record)) {
      m.record = *r.written.rollout;
      m.revision = r.revision;
      fleet_record_events(*sp, *r.written.rollout);
    }
  });
}

void Daemon::fleet_rollout_command(const protocol::RolloutRequest& req, const std::function<void(std::string)>& done) {
  Service& s = service_named(req.service);
  if (!s.config.rollout)
    throw ProtocolError(ErrorCode::Refused, "service \"" + s.config.name + "\" has no rollout section");
  if (const auto it = fleet_->diverged.find(s.config.name); it != fleet_->diverged.end())
    throw ProtocolError(ErrorCode::Refused, "service \"" + s.config.name +
                                                "\": this node's definition differs from the fleet's: " + it->second);
  const std::string name = s.config.name;
  auto refused = std::make_shared<std::string>();  // a command the rollout's phase does not allow
  auto make = [write = DecisionWriter{s.config, fleet_->fences.at(name).definition(), config_.node.hash_seed,
                                             fleet_base_table(s), fleet_->cluster.node_name}, req, refused](const etcd::ServiceRecords& cur) {
    // A record of another definition (before a weights --adopt) is not this rollout's: start from Idle.
    const bool ours = cur.rollout && cur.rollout->definition == write.definition;
    RolloutEngine engine = ours ? RolloutEngine(write.svc, cur.rollout->state) : RolloutEngine(write.svc);
    const Millis now{unix_ms()};
    Decision d;
    try {
      d = run_rollout_command(engine, req, now, "by the operator on " + write.writer);
    } catch (const RolloutCommandError& e) {
      *refused = e.what();
      throw;
    }
    const bool fresh = req.action == protocol::RolloutAction::Start || req.action == protocol::RolloutAction::Retry;
    return write(cur, d, engine.state(), 0, now.count(), nullptr, fresh);
  };
  std::weak_ptr<Runtime> weak = s.rt;
  fleet_->member->commit(name, false, make, [this, name, weak, refused, done](etcd::CommitResult r) {
    if (!r.ok) {
      if (!refused->empty()) return done(protocol::error_answer(ErrorCode::Refused, *refused));
      return done(protocol::error_answer(ErrorCode::Refused,
                                         std::string(r.unreachable ? "etcd unreachable, nothing changed: "
                                                                   : "the fleet's rollout was not written: ") +
                                             r.error));
    }
    auto rt = weak.lock();
    Service* sp = rt ? find_service(name, rt) : nullptr;
    if (!sp) return done(protocol::error_answer(ErrorCode::NotFound, "service \"" + name + "\" is gone"));
    auto& m = fleet_->rollouts[name];
    if (r.written.rollout && fleet::newer(*r.written.rollout, m.record)) {
      m.record = *r.written.rollout;
      m.revision = r.revision;
      fleet_restore_engine(*sp);
      fleet_record_events(*sp, *r.written.rollout);
    }
    json out = rollout_status(*sp);
    if (r.written.table) out["fleet_version"] = r.written.table->version;
    done(protocol::ok_answer(out));
  });
}

void Daemon::fleet_push(const protocol::PushRequest& r, const std::function<void(std::string)>& done) {
  Service& s = service_named(r.service);
  const auto v = static_cast<size_t>(push_variant(s, r));
  auto& pushed = fleet_->pushed[s.config.name];
  pushed.resize(s.config.variants.size());
  const std::vector<PushItem> items = push_items(r, pushed[v]);
  for (const auto& item : items) pushed[v].add(item);
  // The leader reads them from this node's report; answered when that report is in etcd. If etcd is
  // away the node keeps them (its next report carries them): accepted, and the answer says so.
  const size_t accepted = items.size();
  fleet_report([done, accepted](bool ok, const std::string& why) {
    json out{{"accepted", accepted}, {"in_etcd", ok}};
    if (!ok) out["pending"] = "kept by this node, in its next report once etcd answers: " + why;
    done(protocol::ok_answer(out));
  });
}

fleet::FleetTotals Daemon::fleet_ab_totals(const Service& s) const {
  const auto m = fleet_->rollouts.find(s.config.name);
  if (m == fleet_->rollouts.end() || !m->second.record) return {};
  return m->second.record->totals;
}

void Daemon::leave_fleet(std::function<void()> then) {
  if (!fleet_ || !fleet_->member) return then();
  auto once = std::make_shared<std::function<void()>>(std::move(then));
  auto fire = [once] {
    if (!*once) return;
    auto f = std::move(*once);
    *once = nullptr;
    f();
  };
  auto timer = std::make_shared<boost::asio::steady_timer>(*io_);
  timer->expires_after(kLeaveWait);
  timer->async_wait([timer, fire](const boost::system::error_code&) { fire(); });
  fleet_->member->stop([timer, fire] {
    timer->cancel();
    fire();
  });
}

void Daemon::fleet_nodes(const std::function<void(std::string)>& done) {
  const std::string prefix = fleet_->member->keys().nodes_prefix();
  fleet_->member->client().range(prefix, true, [this, done](etcd::Status s, etcd::RangeAnswer a) {
    if (!s.ok)
      return done(protocol::error_answer(ErrorCode::Refused, "etcd unreachable, the fleet's nodes are unknown: " +
                                                                 s.error));
    const int64_t now = unix_ms();
    json nodes = json::array();
    for (const auto& kv : a.kvs) {
      const auto name = fleet_->member->keys().node_of(kv.key);
      if (!name) continue;
      json n{{"node", *name}};
      try {
        const fleet::NodeReport r = fleet::node_report_from_string(kv.value);
        if (r.node != *name) throw fleet::NodeReportError("the report names node " + r.node);
        n["epoch"] = r.epoch;
        n["seq"] = r.seq;
        n["report_age_ms"] = now - r.at_ms;
        json services = json::object();
        for (const auto& [svc, sr] : r.services) {
          const auto fence = fleet_->fences.find(svc);
          const auto latest = fleet_->member->latest(svc);
          const uint64_t current = latest ? latest->version : 0;
          json sv{{"applied_version", sr.applied_version},
                  {"behind", current > sr.applied_version ? current - sr.applied_version : 0},
                  {"definition", sr.definition}};
          if (fence != fleet_->fences.end()) sv["same_definition"] = fence->second.definition() == sr.definition;
          services[svc] = sv;
        }
        n["services"] = services;
      } catch (const std::exception& e) {
        n["error"] = e.what();  // a report this node cannot read: shown, never used
      }
      nodes.push_back(n);
    }
    json current = json::object();
    for (const auto& [svc, fence] : fleet_->fences) {
      const auto latest = fleet_->member->latest(svc);
      current[svc] = latest ? latest->version : 0;
    }
    done(protocol::ok_answer(json{{"self", fleet_->cluster.node_name}, {"nodes", nodes}, {"current", current}}));
  });
}

void Daemon::fleet_report(std::function<void(bool, const std::string&)> done) {
  fleet::NodeReport report;
  report.node = fleet_->cluster.node_name;
  report.epoch = fleet_->epoch;
  report.seq = ++fleet_->seq;
  report.at_ms = unix_ms();
  for (const auto& s : services_) {
    fleet::ServiceReport& sr = report.services[s.config.name];
    const auto& fence = fleet_->fences.at(s.config.name);
    sr.definition = fence.definition();
    sr.applied_version = fence.applied_version();
    const auto& base = fleet_->epoch_base[s.config.name];
    for (unsigned v = 0; v < s.config.variants.size(); ++v)
      sr.variants[s.config.variants[v].name] = fleet::kernel_since(base.at(v), kernel_sample(s, v));
    if (const auto p = fleet_->pushed.find(s.config.name); p != fleet_->pushed.end())
      for (unsigned v = 0; v < s.config.variants.size() && v < p->second.size(); ++v)
        if (!p->second[v].empty()) sr.pushed[s.config.variants[v].name] = p->second[v];
  }
  fleet_->member->publish(fleet::node_report_to_string(report), [done](const etcd::Status& st) {
    if (done) done(st.ok, st.error);
  });
  fleet_->report_timer->expires_after(fleet_->report_every);
  fleet_->report_timer->async_wait([this](const boost::system::error_code& ec) {
    if (!ec) fleet_report();
  });
}

json Daemon::fleet_status() const {
  if (!fleet_) return nullptr;
  json services = json::object();
  for (const auto& [name, fence] : fleet_->fences) {
    const auto latest = fleet_->member ? fleet_->member->latest(name) : std::nullopt;
    const uint64_t current = latest ? latest->version : 0;
    json sv{{"definition", fence.definition()},
            {"applied_version", fence.applied_version()},
            {"current_version", current},
            {"lag", current > fence.applied_version() ? current - fence.applied_version() : 0}};
    if (const auto d = fleet_->diverged.find(name); d != fleet_->diverged.end()) sv["diverged"] = d->second;
    if (const auto m = fleet_->rollouts.find(name); m != fleet_->rollouts.end() && m->second.record) {
      const fleet::RolloutRecord& r = *m->second.record;
      sv["rollout_record"] = json{{"seq", r.seq}, {"writer", r.writer}, {"term", r.term}, {"at_ms", r.at_ms}};
    }
    if (const auto w = fleet_->last_window.find(name); w != fleet_->last_window.end()) {
      json nodes = json::array();
      for (const auto& c : w->second.nodes)
        nodes.push_back(json{{"node", c.node}, {"state", fleet::to_string(c.state)}, {"reason", c.reason},
                             {"report_age_ms", c.report_age_ms}});
      sv["gate_window"] = json{{"contributing", w->second.contributing}, {"nodes", nodes}};
    }
    services[name] = sv;
  }
  return json{{"node", fleet_->cluster.node_name},
              {"prefix", fleet_->cluster.prefix},
              {"endpoints", fleet_->cluster.endpoints},
              {"tls", fleet_->tls != nullptr},
              {"connected", fleet_->connected},
              {"connection", fleet_->connection},
              {"epoch", fleet_->epoch},
              {"leader", fleet_->leader.leader.empty() ? json(nullptr) : json(fleet_->leader.leader)},
              {"is_leader", fleet_->leader.self},
              {"term", fleet_->leader.term},
              {"services", services}};
}

void Daemon::fleet_metrics(metrics::Registry& m) const {
  if (!fleet_) return;
  m.declare("veer_table_version", metrics::MetricType::Gauge,
            "Fleet mode: the service's table version, the fleet's current one (as this node last saw it) and the "
            "one this node applied.",
            {"service", "kind"});
  m.declare("veer_fleet_connected", metrics::MetricType::Gauge,
            "Fleet mode: 1 while this node reads the fleet's versions from etcd, 0 while etcd is unreachable.",
            {});
  m.declare("veer_fleet_diverged", metrics::MetricType::Gauge,
            "Fleet mode: 1 if this node's definition of the service differs from the fleet's (it applies nothing).",
            {"service"});
  for (const auto& [name, fence] : fleet_->fences) {
    const auto latest = fleet_->member ? fleet_->member->latest(name) : std::nullopt;
    m.set("veer_table_version", {{"service", name}, {"kind", "current"}},
          static_cast<double>(latest ? latest->version : 0));
    m.set("veer_table_version", {{"service", name}, {"kind", "applied"}}, static_cast<double>(fence.applied_version()));
    m.set("veer_fleet_diverged", {{"service", name}}, fleet_->diverged.count(name) ? 1.0 : 0.0);
  }
  m.set("veer_fleet_connected", {}, fleet_->connected ? 1.0 : 0.0);
  m.declare("veer_leader", metrics::MetricType::Gauge,
            "Fleet mode: 1 while this node leads the fleet (runs its rollouts), else 0.", {});
  m.set("veer_leader", {}, fleet_->leader.self ? 1.0 : 0.0);
  m.declare("veer_fleet_nodes", metrics::MetricType::Gauge,
            "Fleet mode, on the leader: the live nodes of the service's last gate window by how they counted "
            "(fresh and restarted ones contributed).",
            {"service", "state"});
  for (const auto& [name, w] : fleet_->last_window) {
    std::map<std::string, double> by_state;
    for (auto st : {fleet::NodeState::Fresh, fleet::NodeState::Restarted, fleet::NodeState::FirstSeen,
                    fleet::NodeState::NoNewReport, fleet::NodeState::Stale, fleet::NodeState::Missing,
                    fleet::NodeState::Invalid})
      by_state[fleet::to_string(st)] = 0;
    for (const auto& c : w.nodes) by_state[fleet::to_string(c.state)] += 1;
    for (const auto& [st, n] : by_state) m.set("veer_fleet_nodes", {{"service", name}, {"state", st}}, n);
  }
}

}  // namespace veer
