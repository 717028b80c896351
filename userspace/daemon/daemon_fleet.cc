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

#include "daemon.h"
#include "fleet/definition_digest.h"
#include "fleet/node_report.h"
#include "fleet/table_change.h"
#include "fleet/version_fence.h"
#include "metrics/metrics_registry.h"
#include "service_text.h"
#include "unix_time.h"
#include "veer/fleet_member.h"

namespace veer {

using nlohmann::json;
using protocol::ErrorCode;
using protocol::ProtocolError;

namespace {

constexpr auto kReportEvery = std::chrono::seconds(1);
constexpr auto kAnswerWait = std::chrono::seconds(2);

std::string new_epoch() {
  std::random_device rd;
  char out[17];
  std::snprintf(out, sizeof out, "%08x%08x", rd(), rd());
  return out;
}

}  // namespace

struct Daemon::Fleet {
  ClusterConfig cluster;
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
};

void Daemon::FleetDeleter::operator()(Fleet* f) const { delete f; }

void Daemon::fleet_setup() {
  if (!config_.cluster) return;
  fleet_.reset(new Fleet());
  fleet_->cluster = *config_.cluster;
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
  spdlog::info("fleet: node {} of {} at {}", fleet_->cluster.node_name, fleet_->cluster.prefix,
               fmt::join(fleet_->cluster.endpoints, ","));
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
  fleet_->member = std::make_shared<etcd::FleetMember>(io, fleet_->cluster.endpoints, options, callbacks);
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
  if (std::holds_alternative<protocol::RolloutRequest>(request))
    throw ProtocolError(ErrorCode::Refused,
                        "rollouts in fleet mode need the fleet's leader, which this veerd does not run yet: "
                        "use weights and switch, which every node of the fleet applies");
  if (std::holds_alternative<protocol::ReloadRequest>(request))
    throw ProtocolError(ErrorCode::Refused,
                        "reload in fleet mode: the fence of each service holds its definition; restart veerd to "
                        "change the config (its pinned tables stay, it catches up with the fleet)");
  if (std::holds_alternative<protocol::NodesRequest>(request)) {
    fleet_nodes(done);
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
  if (const auto it = fleet_->diverged.find(s.config.name); it != fleet_->diverged.end())
    throw ProtocolError(ErrorCode::Refused, "service \"" + s.config.name +
                                                "\": this node's definition differs from the fleet's, it writes and "
                                                "applies nothing for it: " + it->second);
  // Version 1 (a fleet never written) starts from this node's table.
  fleet::BaseTable base;
  base.table = tables_->active_table(s.id);
  base.stable = static_cast<unsigned>(std::max(0, s.config.variant_index(s.stable)));
  base.draining.resize(s.config.variants.size());
  const ServiceState& st = state_.services[s.config.name];
  for (size_t v = 0; v < s.config.variants.size(); ++v)
    for (size_t b = 0; b < s.config.variants[v].backends.size(); ++b)
      if (st.draining.count(s.config.variants[v].backends[b].to_string()))
        base.draining[v].push_back(static_cast<uint8_t>(b));
  auto make = [svc = s.config, definition = fleet_->fences.at(s.config.name).definition(),
               seed = config_.node.hash_seed, base, change, writer = fleet_->cluster.node_name](
                  const std::optional<fleet::TableVersion>& current) {
    return fleet::next_table_version(current, base, svc, definition, seed, change, writer, unix_ms());
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

void Daemon::fleet_report() {
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
  }
  fleet_->member->publish(fleet::node_report_to_string(report));
  fleet_->report_timer->expires_after(kReportEvery);
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
    services[name] = sv;
  }
  return json{{"node", fleet_->cluster.node_name},
              {"prefix", fleet_->cluster.prefix},
              {"endpoints", fleet_->cluster.endpoints},
              {"connected", fleet_->connected},
              {"connection", fleet_->connection},
              {"epoch", fleet_->epoch},
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
}

}  // namespace veer
