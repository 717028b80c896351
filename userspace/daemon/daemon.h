// veerd's state and command handlers. Owns the config, the data plane, the
// service tables and state.json; turns typed requests into map changes.
// Every handler validates everything before it changes anything, so an
// error answer means nothing changed.
#pragma once
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "veer/config.h"
#include "veer/dataplane.h"
#include "veer/protocol.h"
#include "veer/service_tables.h"
#include "veer/state_file.h"

namespace veer {

class Daemon {
 public:
  // `config_path` is re-read by reload. `state` is what read_state_file gave.
  Daemon(std::string config_path, Config config, std::unique_ptr<Dataplane> dataplane, StateLoad state);

  // Installs every service (ids and runtime weights/drains from state.json),
  // attaches to the interfaces, persists state. Throws on failure.
  void start();

  // One request line -> one answer line. Never throws.
  std::string handle_line(std::string_view line);

  // reload as the SIGHUP handler runs it; returns the answer line.
  std::string reload_now();

  const Config& config() const { return config_; }

  // True once a shutdown request was answered ok: the caller stops serving
  // after writing that answer, and veerd exits.
  bool stop_requested() const { return stop_requested_; }

  // One line for systemd's STATUS=: services and where the programs sit.
  std::string summary() const;

 private:
  struct Service {
    ServiceConfig config;
    uint32_t id = 0;
    std::vector<uint32_t> desired_bp;  // per variant, what was last asked for
  };

  nlohmann::json dispatch(const protocol::Request& request);
  nlohmann::json ping();
  nlohmann::json status(const protocol::StatusRequest& r);
  nlohmann::json weights(const protocol::WeightsRequest& r);
  nlohmann::json switch_variant(const protocol::SwitchRequest& r);
  nlohmann::json which(const protocol::WhichRequest& r);
  nlohmann::json drain(const protocol::DrainRequest& r);
  nlohmann::json reload();
  nlohmann::json shutdown(const protocol::ShutdownRequest& r);

  Service& service_named(const std::string& name);  // throws not_found
  nlohmann::json service_status(const Service& s) const;
  nlohmann::json node_status() const;
  void apply_weights(Service& s, const std::vector<uint32_t>& weights_bp);
  void install_service(Service& s, const ServiceState* saved);
  void persist();  // logs, does not throw: the change already happened

  std::string config_path_;
  Config config_;
  std::unique_ptr<Dataplane> dataplane_;
  std::unique_ptr<ServiceTables> tables_;
  NodeState state_;
  std::vector<Service> services_;  // config order
  std::vector<Attachment> attachments_;
  std::string persist_problem_;   // last state.json write error, "" if none
  bool stop_requested_ = false;
};

}  // namespace veer
