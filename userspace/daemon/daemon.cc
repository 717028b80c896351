// veerd command handlers: validate fully, then change maps, then persist.
#include "daemon.h"

#include <arpa/inet.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <ctime>

#include "service_notify.h"
#include "service_text.h"
#include "tables/flow_entry.h"
#include "veer/hash.h"

namespace veer {

using nlohmann::json;
using protocol::ErrorCode;
using protocol::ProtocolError;

namespace {

// Counter names as the status answer shows them: "pass_not_service", ...
const std::vector<std::pair<int, std::string>>& reason_names() {
  static const std::vector<std::pair<int, std::string>> names = [] {
    std::vector<std::pair<int, std::string>> out;
#define VEER_REASON_NAME(name, value, kind, desc) out.emplace_back(value, #name);
    VEER_REASONS(VEER_REASON_NAME)
#undef VEER_REASON_NAME
    for (auto& [value, name] : out) {
      std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return std::tolower(c); });
    }
    return out;
  }();
  return names;
}

bool same_variant(const VariantConfig& a, const VariantConfig& b) {
  return a.name == b.name && a.backends == b.backends && a.metrics_url == b.metrics_url;
}

bool same_service(const ServiceConfig& a, const ServiceConfig& b) {
  return a.name == b.name && a.vip == b.vip && a.port == b.port && a.protocol == b.protocol &&
         a.affinity == b.affinity && a.stable == b.stable && a.weights_bp == b.weights_bp && a.rollout == b.rollout &&
         std::equal(a.variants.begin(), a.variants.end(), b.variants.begin(), b.variants.end(), same_variant);
}

}  // namespace

Daemon::Daemon(std::string config_path, Config config, std::unique_ptr<Dataplane> dataplane, StateLoad state)
    : config_path_(std::move(config_path)),
      config_(std::move(config)),
      dataplane_(std::move(dataplane)),
      tables_(std::make_unique<ServiceTables>(dataplane_->writer(), config_.node.hash_seed,
                                              config_.node.udp_idle_timeout)),
      state_(std::move(state.state)),
      event_file_(std::make_unique<EventFile>(config_.node.state_dir + "/events.jsonl")) {
  if (state.problem) {
    spdlog::warn("state file unusable, starting from the config's weights: {}", *state.problem);
  }
  events_.restore(event_file_->read_all());
}

void Daemon::start() {
  std::vector<std::string> names;
  for (const auto& svc : config_.services) names.push_back(svc.name);
  state_.service_ids = assign_service_ids(names, state_.service_ids);
  for (auto it = state_.services.begin(); it != state_.services.end();) {
    it = state_.service_ids.count(it->first) ? std::next(it) : state_.services.erase(it);
  }
  for (const auto& svc : config_.services) {
    Service s{.config = svc, .id = state_.service_ids.at(svc.name)};
    auto saved = state_.services.find(svc.name);
    const std::optional<RolloutState> persisted =
        saved == state_.services.end() ? std::nullopt : saved->second.rollout;
    install_service(s, saved == state_.services.end() ? nullptr : &saved->second);
    setup_runtime(s, persisted);
    spdlog::info("service {} (id {}) {} {}:{} installed: {}", svc.name, s.id, to_string(svc.protocol),
                 svc.vip.to_string(), svc.port, weights_text(svc, s.desired_bp));
    services_.push_back(std::move(s));
  }
  fleet_setup();
  attachments_ = dataplane_->attach(config_.node.interfaces, config_.node.attach);
  for (const auto& a : attachments_) spdlog::info("attached to {} (ifindex {}) as {}", a.interface, a.ifindex, a.mode);
  persist();
}

void Daemon::install_service(Service& s, const ServiceState* saved) {
  const std::vector<uint32_t> weights = effective_weights(s.config, saved);
  ServiceState& st = state_.services[s.config.name];
  // Saved drain marks of backends that are still configured go in with the
  // install, so no table ever names a drained backend (not even for a moment
  // after a restart).
  std::vector<Endpoint> draining;
  std::set<std::string> still_there;
  for (const auto& variant : s.config.variants)
    for (const auto& backend : variant.backends)
      if (const std::string ep = backend.to_string(); st.draining.count(ep)) {
        draining.push_back(backend);
        still_there.insert(ep);
      }
  tables_->install(s.id, s.config, weights, draining);
  s.desired_bp = weights;
  // A completed rollout made its variant the stable one; kept while it exists.
  s.stable = !st.stable.empty() && s.config.variant_index(st.stable) >= 0 ? st.stable : s.config.stable;
  if (s.stable == s.config.stable) st.stable.clear();
  // Runtime weights that no longer fit this service's variants are dropped.
  if (!st.weights_bp.empty() && weights_by_name(s.config, weights) != st.weights_bp) {
    spdlog::warn("service {}: saved weights do not fit its variants ({}); using the config's",
                 s.config.name, variant_list(s.config));
    st.weights_bp.clear();
  }
  st.draining = std::move(still_there);
}

bool Daemon::persist() {
  const std::string path = state_file_path(config_.node.state_dir);
  try {
    write_state_file(path, state_);
    persist_problem_.clear();
    return true;
  } catch (const std::exception& e) {
    persist_problem_ = e.what();
    spdlog::error("cannot persist state: {}", e.what());
    return false;
  }
}

std::optional<std::string> Daemon::answer_now(std::string_view line, const std::function<void(std::string)>& later) {
  try {
    const protocol::Request request = protocol::parse_request(line);
    spdlog::debug("control: {}", protocol::command_name(request));
    if (fleet_ && fleet_request(request, later)) return std::nullopt;
    return protocol::ok_answer(dispatch(request));
  } catch (const ProtocolError& e) {
    spdlog::debug("control: error {}: {}", protocol::to_string(e.code()), e.what());
    return protocol::error_answer(e.code(), e.what());
  } catch (const std::exception& e) {
    spdlog::error("control: internal error: {}", e.what());
    return protocol::error_answer(ErrorCode::Internal, e.what());
  }
}

void Daemon::handle_line_async(std::string_view line, std::function<void(std::string)> done) {
  if (auto answer = answer_now(line, done)) done(std::move(*answer));
}

std::string Daemon::reload_now() {
  // A reload is answered at once in either mode (fleet mode refuses it), never later.
  return answer_now(R"({"cmd":"reload"})", [](std::string) {}).value();
}

json Daemon::dispatch(const protocol::Request& request) {
  return std::visit(
      [this](const auto& r) -> json {
        using T = std::decay_t<decltype(r)>;
        if constexpr (std::is_same_v<T, protocol::PingRequest>) return ping();
        if constexpr (std::is_same_v<T, protocol::StatusRequest>) return status(r);
        if constexpr (std::is_same_v<T, protocol::WeightsRequest>) return weights(r);
        if constexpr (std::is_same_v<T, protocol::SwitchRequest>) return switch_variant(r);
        if constexpr (std::is_same_v<T, protocol::WhichRequest>) return which(r);
        if constexpr (std::is_same_v<T, protocol::DrainRequest>) return drain(r);
        if constexpr (std::is_same_v<T, protocol::ReloadRequest>) {
          // systemd (Type=notify): RELOADING=1 ... READY=1, whatever the outcome.
          service::reloading();
          struct Ready {
            const Daemon& d;
            ~Ready() { service::ready(d.summary()); }
          } ready{*this};
          return reload();
        }
        if constexpr (std::is_same_v<T, protocol::ShutdownRequest>) return shutdown(r);
        if constexpr (std::is_same_v<T, protocol::RolloutRequest>) return rollout(r);
        if constexpr (std::is_same_v<T, protocol::PushRequest>) return push(r);
        if constexpr (std::is_same_v<T, protocol::EventsRequest>) return events(r);
        if constexpr (std::is_same_v<T, protocol::AbRequest>) return ab(r);
        if constexpr (std::is_same_v<T, protocol::ViewRequest>) return view(r);
        if constexpr (std::is_same_v<T, protocol::NodesRequest>)
          throw ProtocolError(ErrorCode::Refused, "nodes: this veerd is not in a fleet (no cluster: section)");
      },
      request);
}

std::string Daemon::summary() const {
  std::string out = std::to_string(services_.size()) + (services_.size() == 1 ? " service" : " services");
  std::string where;
  for (const auto& a : attachments_) where += (where.empty() ? "" : ", ") + a.interface + " (" + a.mode + ")";
  out += where.empty() ? ", attached nowhere" : " on " + where;
  return out;
}

json Daemon::shutdown(const protocol::ShutdownRequest& r) {
  if (r.unload) {
    // Everything goes: programs leave every interface, pins and maps are
    // removed. Traffic for the VIPs is no longer steered from here on.
    // A failure leaves veerd serving (and says what is left).
    try {
      dataplane_->unload();
    } catch (const std::exception& e) {
      throw ProtocolError(ErrorCode::Internal, std::string("unload failed, veerd keeps running: ") + e.what());
    }
    attachments_.clear();
    spdlog::info("shutdown requested with unload: data plane removed from {}", config_.node.pin_path);
  } else {
    spdlog::info("shutdown requested: the data plane stays attached on pinned state");
  }
  stop_requested_ = true;
  return json{{"pid", ::getpid()}, {"unloaded", r.unload}, {"pin_path", config_.node.pin_path}};
}

json Daemon::ping() { return json{{"version", protocol::kVersion}, {"pid", ::getpid()}}; }

Daemon::Service& Daemon::service_named(const std::string& name) {
  for (auto& s : services_) {
    if (s.config.name == name) return s;
  }
  std::string known;
  for (const auto& s : services_) known += (known.empty() ? "" : ", ") + s.config.name;
  throw ProtocolError(ErrorCode::NotFound, "no service \"" + name + "\" (services: " + known + ")");
}

json Daemon::node_status() const {
  json interfaces = json::array();
  for (const auto& a : dataplane_->attachments()) {
    interfaces.push_back(json{{"interface", a.interface}, {"ifindex", a.ifindex}, {"mode", a.mode}});
  }
  json node{{"interfaces", interfaces},
            {"attach", to_string(config_.node.attach)},
            {"hash_seed", config_.node.hash_seed},
            {"pin_path", config_.node.pin_path},
            {"socket", config_.node.socket},
            {"state_dir", config_.node.state_dir},
            {"config", config_path_},
            {"adopted", dataplane_->adopted()},
            {"version", protocol::kVersion}};
  if (!persist_problem_.empty()) node["state_problem"] = persist_problem_;
  return node;
}

json Daemon::service_status(const Service& s) const {
  protocol::ServiceStatus st;
  st.name = s.config.name;
  st.id = s.id;
  st.vip = s.config.vip;
  st.port = s.config.port;
  st.protocol = to_string(s.config.protocol);
  st.affinity = to_string(s.config.affinity);
  st.stable = s.stable;
  if (auto value = dataplane_->writer().get_service(service_key(s.config))) {
    st.generation = value->generation;
    st.active_table = value->active_table;
  }
  const std::vector<uint32_t> applied = tables_->applied_weights(s.id);
  const auto saved = state_.services.find(s.config.name);
  for (size_t v = 0; v < s.config.variants.size(); ++v) {
    const VariantConfig& vc = s.config.variants[v];
    protocol::VariantStatus vs;
    vs.name = vc.name;
    vs.weight_desired_bp = v < s.desired_bp.size() ? s.desired_bp[v] : 0;
    vs.weight_applied_bp = v < applied.size() ? applied[v] : 0;
    for (const auto& ep : vc.backends) {
      const bool draining = saved != state_.services.end() && saved->second.draining.count(ep.to_string()) > 0;
      vs.backends.push_back({ep, draining});
    }
    const veer_variant_counters c = dataplane_->variant_counters(s.id, static_cast<unsigned>(v));
    vs.flows = c.new_flows;
    vs.packets_in = c.packets_in;
    vs.bytes_in = c.bytes_in;
    vs.packets_out = c.packets_out;
    vs.bytes_out = c.bytes_out;
    st.variants.push_back(std::move(vs));
  }
  json out = protocol::to_json(st);
  for (size_t v = 0; v < s.config.variants.size(); ++v) {
    out["variants"][v]["window"] =
        v < s.rt->window.size() ? to_json(s.rt->window[v]) : to_json(KernelWindow{});
  }
  out["rollout"] = rollout_status(s);
  return out;
}

json Daemon::status(const protocol::StatusRequest& r) {
  json services = json::array();
  if (r.service) {
    services.push_back(service_status(service_named(*r.service)));
  } else {
    for (const auto& s : services_) services.push_back(service_status(s));
  }
  json reasons = json::object();
  const auto counters = dataplane_->reason_counters();
  for (const auto& [value, name] : reason_names()) reasons[name] = counters[static_cast<size_t>(value)];
  json out{{"node", node_status()}, {"services", services}, {"reasons", reasons}};
  if (fleet_) out["fleet"] = fleet_status();
  return out;
}

void Daemon::apply_weights(Service& s, const std::vector<uint32_t>& weights_bp) {
  if (sum_of(weights_bp) != VEER_WEIGHT_TOTAL) {
    throw ProtocolError(ErrorCode::BadRequest, "weights of service \"" + s.config.name + "\" sum to " +
                                                   format_weight(sum_of(weights_bp)) + ", not 100.00");
  }
  const bool during_rollout = s.rt->engine && s.rt->engine->active();
  tables_->set_weights(s.id, weights_bp);
  s.desired_bp = weights_bp;
  state_.services[s.config.name].weights_bp = weights_by_name(s.config, weights_bp);
  spdlog::info("service {}: weights {}", s.config.name, weights_text(s.config, weights_bp));
  std::map<std::string, double> values;
  for (size_t i = 0; i < weights_bp.size(); ++i) values["weight." + s.config.variants[i].name] = weights_bp[i] / 100.0;
  record_event(s.config.name, "weights",
               std::string(during_rollout ? "manual (forced during the rollout): " : "manual: ") +
                   weights_text(s.config, weights_bp),
               values);
  persist();
}

std::vector<uint32_t> Daemon::requested_weights(const Service& s, const protocol::WeightsRequest& r) const {
  std::vector<uint32_t> w(s.config.variants.size(), 0);  // variants not named get 0
  for (const auto& [variant, bp] : r.weights_bp) {
    const int idx = s.config.variant_index(variant);
    if (idx < 0) {
      throw ProtocolError(ErrorCode::NotFound, "service \"" + s.config.name + "\" has no variant \"" + variant +
                                                   "\" (variants: " + variant_list(s.config) + ")");
    }
    w[static_cast<size_t>(idx)] = bp;
  }
  if (sum_of(w) != VEER_WEIGHT_TOTAL) {
    throw ProtocolError(ErrorCode::BadRequest, "weights of service \"" + s.config.name + "\" sum to " +
                                                   format_weight(sum_of(w)) + ", not 100.00");
  }
  refuse_during_rollout(s, r.force, "weights");
  return w;
}

std::vector<uint32_t> Daemon::requested_switch(const Service& s, const protocol::SwitchRequest& r) const {
  const int idx = s.config.variant_index(r.variant);
  if (idx < 0) {
    throw ProtocolError(ErrorCode::NotFound, "service \"" + s.config.name + "\" has no variant \"" + r.variant +
                                                 "\" (variants: " + variant_list(s.config) + ")");
  }
  refuse_during_rollout(s, r.force, "switch");
  std::vector<uint32_t> w(s.config.variants.size(), 0);
  w[static_cast<size_t>(idx)] = VEER_WEIGHT_TOTAL;
  return w;
}

json Daemon::weights(const protocol::WeightsRequest& r) {
  Service& s = service_named(r.service);
  if (r.adopt)
    throw ProtocolError(ErrorCode::BadRequest, "--adopt is for a node of a fleet (a cluster: section); this node "
                                               "is alone, its definition is the only one");
  apply_weights(s, requested_weights(s, r));
  return service_status(s);
}

json Daemon::switch_variant(const protocol::SwitchRequest& r) {
  Service& s = service_named(r.service);
  apply_weights(s, requested_switch(s, r));
  return service_status(s);
}

json Daemon::which(const protocol::WhichRequest& r) {
  const Service& s = service_named(r.service);
  const ServiceConfig& svc = s.config;
  if (r.client_ip.family != svc.vip.family) {
    throw ProtocolError(ErrorCode::BadRequest, "field \"client\": " + r.client_ip.to_string() + " is IPv" +
                                                   std::to_string(r.client_ip.family) + ", service \"" + svc.name +
                                                   "\" is IPv" + std::to_string(svc.vip.family));
  }
  if (svc.affinity == Affinity::Connection && !r.client_port) {
    throw ProtocolError(ErrorCode::BadRequest,
                        "field \"client\": service \"" + svc.name + "\" has affinity connection, give IP:PORT");
  }
  // The key exactly as the BPF program builds it from the client's packet.
  veer_flow_key key{};
  key.src = r.client_ip.to_abi();
  key.dst = svc.vip.to_abi();
  key.sport = htons(r.client_port.value_or(0));
  key.dport = htons(svc.port);
  key.proto = svc.protocol == Protocol::Tcp ? VEER_PROTO_TCP : VEER_PROTO_UDP;
  key.family = static_cast<__u8>(svc.vip.family);
  const uint32_t seed = config_.node.hash_seed;
  const uint32_t hash =
      svc.affinity == Affinity::Connection ? veer_hash_connection(&key, seed) : veer_hash_client(&key.src, seed);
  const uint32_t slot_index = veer_slot_of(hash);
  const veer_slot slot = tables_->active_table(s.id).slots.at(slot_index);

  // What a new flow on this key gets now.
  json table_choice{{"variant", nullptr}, {"backend", nullptr}};
  if (slot.variant < svc.variants.size() && slot.backend < svc.variants[slot.variant].backends.size()) {
    table_choice = {{"variant", svc.variants[slot.variant].name},
                    {"backend", svc.variants[slot.variant].backends[slot.backend].to_string()}};
  }
  json result{{"slot", slot_index},
              {"hash", hash},
              {"affinity", to_string(svc.affinity)},
              {"protocol", to_string(svc.protocol)},
              {"new_flow", table_choice},
              {"established", false},
              {"entry", nullptr},
              {"variant", table_choice["variant"]},
              {"backend", table_choice["backend"]}};
  if (!r.client_port) return result;  // client-ip affinity without a port: no entry to look up
  auto flow = dataplane_->lookup_flow(key);
  if (!flow) return result;
  timespec now{};
  clock_gettime(CLOCK_MONOTONIC_COARSE, &now);  // bpf_ktime_get_coarse_ns()'s clock
  const uint64_t now_ns = static_cast<uint64_t>(now.tv_sec) * 1000000000ull + static_cast<uint64_t>(now.tv_nsec);
  const FlowEntryView view = describe_flow_entry(*flow, svc.protocol, static_cast<uint32_t>(now_ns >> VEER_TICK_SHIFT),
                                                 udp_idle_ticks(config_.node.udp_idle_timeout));
  json entry{{"variant", flow->variant < svc.variants.size() ? json(svc.variants[flow->variant].name) : json(nullptr)},
             {"backend", Endpoint{IpAddress::from_abi(flow->backend, svc.vip.family), ntohs(flow->backend_port)}
                             .to_string()},
             {"state", view.state},
             {"request_pending", view.request_pending}};
  if (svc.protocol == Protocol::Tcp) {
    entry["syn_seq"] = view.syn_seq ? json(*view.syn_seq) : json(nullptr);
    entry["syn_retransmit_continues"] = view.syn_retransmit_continues;
  } else {
    entry["idle_ms"] = view.idle_ms.value_or(0);
    entry["idle_timeout_ms"] = config_.node.udp_idle_timeout.count();
    entry["next_datagram_selects_again"] = view.next_datagram_selects_again;
  }
  result["entry"] = entry;
  result["established"] = true;
  // Where the key's next packet goes unless it starts a new flow (a new
  // connection's SYN, or UDP after the idle timeout, gets "new_flow").
  if (!view.next_datagram_selects_again) {
    result["variant"] = entry["variant"];
    result["backend"] = entry["backend"];
  }
  return result;
}

std::vector<std::pair<unsigned, unsigned>> Daemon::requested_drain(const Service& s,
                                                                    const protocol::DrainRequest& r) const {
  std::vector<std::pair<unsigned, unsigned>> matches;
  for (size_t v = 0; v < s.config.variants.size(); ++v) {
    const auto& backends = s.config.variants[v].backends;
    for (size_t b = 0; b < backends.size(); ++b) {
      if (backends[b] == r.backend) matches.emplace_back(static_cast<unsigned>(v), static_cast<unsigned>(b));
    }
  }
  if (matches.empty()) {
    throw ProtocolError(ErrorCode::NotFound, "service \"" + s.config.name + "\" has no backend " +
                                                 r.backend.to_string());
  }
  return matches;
}

json Daemon::drain(const protocol::DrainRequest& r) {
  Service& s = service_named(r.service);
  for (const auto& [v, b] : requested_drain(s, r)) tables_->set_draining(s.id, v, b, !r.undo);
  auto& draining = state_.services[s.config.name].draining;
  if (r.undo) {
    draining.erase(r.backend.to_string());
  } else {
    draining.insert(r.backend.to_string());
  }
  spdlog::info("service {}: backend {} {}", s.config.name, r.backend.to_string(), r.undo ? "undrained" : "draining");
  persist();
  return service_status(s);
}

json Daemon::reload() {
  Config next;
  try {
    next = load_config_file(config_path_);
  } catch (const ConfigError& e) {
    throw ProtocolError(ErrorCode::ConfigInvalid, e.what());
  }
  std::vector<std::string> names;
  for (const auto& svc : next.services) names.push_back(svc.name);
  std::map<std::string, uint32_t> ids;
  try {
    ids = assign_service_ids(names, state_.service_ids);
  } catch (const StateFileError& e) {
    throw ProtocolError(ErrorCode::ConfigInvalid, config_path_ + ": " + e.what());
  }

  // Node settings the running data plane is built on need a restart; the
  // running values stay in effect until then.
  json restart_required = json::array();
  auto keep = [&](auto NodeConfig::*field, const char* name) {
    if (!(next.node.*field == config_.node.*field)) {
      restart_required.push_back(std::string("node.") + name);
      next.node.*field = config_.node.*field;
    }
  };
  keep(&NodeConfig::hash_seed, "hash_seed");
  keep(&NodeConfig::flow_table_size, "flow_table_size");
  keep(&NodeConfig::pin_path, "pin_path");
  keep(&NodeConfig::socket, "socket");
  keep(&NodeConfig::state_dir, "state_dir");
  keep(&NodeConfig::metrics_listen, "metrics_listen");

  // Interfaces first: if attaching fails, the services are still untouched.
  const bool reattach = next.node.interfaces != config_.node.interfaces || next.node.attach != config_.node.attach;
  if (reattach) {
    try {
      attachments_ = dataplane_->attach(next.node.interfaces, next.node.attach);
    } catch (const std::exception& e) {
      try {
        attachments_ = dataplane_->attach(config_.node.interfaces, config_.node.attach);
      } catch (const std::exception& e2) {
        spdlog::error("reload: re-attaching the previous interfaces failed too: {}", e2.what());
      }
      throw ProtocolError(ErrorCode::Refused, std::string("reload not applied: ") + e.what());
    }
  }

  json added = json::array(), removed = json::array(), changed = json::array(), unchanged = json::array();
  // Every service entry, the unchanged ones too, gets the new UDP idle timeout.
  tables_->set_udp_idle_timeout(next.node.udp_idle_timeout);
  for (const auto& s : services_) {
    if (!ids.count(s.config.name)) {
      if (s.rt->timer) s.rt->timer->cancel();
      tables_->remove(s.id);
      state_.services.erase(s.config.name);
      removed.push_back(s.config.name);
    }
  }
  std::vector<Service> next_services;
  for (const auto& svc : next.services) {
    auto old = std::find_if(services_.begin(), services_.end(),
                            [&](const Service& s) { return s.config.name == svc.name; });
    if (old != services_.end() && same_service(old->config, svc)) {
      next_services.push_back(*old);
      unchanged.push_back(svc.name);
      continue;
    }
    Service s{.config = svc, .id = ids.at(svc.name)};
    auto saved = state_.services.find(svc.name);
    // The rollout goes on where it was if its section is the same; a new or
    // edited section starts afresh (Idle).
    std::optional<RolloutState> persisted;
    if (old != services_.end() && old->rt->engine && old->config.rollout == svc.rollout)
      persisted = old->rt->engine->state();
    if (old != services_.end() && old->rt->timer) old->rt->timer->cancel();
    install_service(s, saved == state_.services.end() ? nullptr : &saved->second);
    setup_runtime(s, persisted);
    (old == services_.end() ? added : changed).push_back(svc.name);
    next_services.push_back(std::move(s));
  }
  services_ = std::move(next_services);
  state_.service_ids = std::move(ids);
  config_ = std::move(next);
  persist();
  spdlog::info("reload: added {} removed {} changed {} unchanged {}", added.dump(), removed.dump(), changed.dump(),
               unchanged.dump());
  json interfaces = json::array();
  for (const auto& a : dataplane_->attachments()) {
    interfaces.push_back(json{{"interface", a.interface}, {"ifindex", a.ifindex}, {"mode", a.mode}});
  }
  return json{{"added", added},
              {"removed", removed},
              {"changed", changed},
              {"unchanged", unchanged},
              {"interfaces_changed", reattach},
              {"interfaces", interfaces},
              {"restart_required", restart_required},
              {"warnings", config_.warnings}};
}

}  // namespace veer
