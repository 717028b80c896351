// veerd's state and command handlers. Owns the config, the data plane, the
// service tables and state.json; turns typed requests into map changes.
// Every handler validates everything before it changes anything, so an
// error answer means nothing changed.
#pragma once
// Boost 1.74 asio (awaitable.hpp) uses std::exchange without including <utility>.
#include <utility>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <functional>
#include <optional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.h"
#include "veer/dataplane.h"
#include "control/events.h"
#include "rollout/gate_inputs.h"
#include "metrics/prom_text.h"
#include "rollout/rollout_engine.h"
#include "control/protocol.h"
#include "tables/service_tables.h"
#include "control/state_file.h"
#include "view/history.h"

namespace veer {
namespace fleet {
struct TableVersion;
struct RolloutRecord;
struct FleetWindow;
struct FleetTotals;
struct BaseTable;
}
namespace metrics {
class Registry;
}

class Daemon {
 public:
  // `config_path` is re-read by reload. `state` is what read_state_file gave.
  Daemon(std::string config_path, Config config, std::unique_ptr<Dataplane> dataplane, StateLoad state);

  // Installs every service (ids and runtime weights/drains from state.json),
  // attaches to the interfaces, persists state. Throws on failure.
  void start();

  // One request line, answered through DONE (exactly once, on the io
  // thread, never throws): at once, or in fleet mode, for a change of a
  // table, once etcd has it and this node applied it.
  void handle_line_async(std::string_view line, std::function<void(std::string)> done);

  // reload as the SIGHUP handler runs it; returns the answer line.
  std::string reload_now();

  const Config& config() const { return config_; }

  // True once a shutdown request was answered ok: the caller stops serving
  // after writing that answer, and veerd exits.
  bool stop_requested() const { return stop_requested_; }

  // One line for systemd's STATUS=: services and where the programs sit.
  std::string summary() const;

  // Starts the timers on the event loop (after daemonize): each service's
  // window / gate interval, and the collection of handshake timeouts every
  // second. Call once.
  void run_on(boost::asio::io_context& io);

  // veer's own metrics (SPEC §7) in the Prometheus text format.
  std::string render_metrics() const;

  // The live view (daemon_view.cc, docs/view.md): what GET PATH on
  // metrics_listen answers (the page, its assets, the /api/v1/ documents), or
  // nullopt for a 404. Reads only; nothing a request does changes state.
  struct ViewPage {
    unsigned status = 200;
    std::string content_type;
    std::string body;
  };
  std::optional<ViewPage> view_page(std::string_view path);

  // Fleet mode: leaves the fleet before veerd exits (revokes the lease: the
  // report and, on the leader, the leader key go at once, so another node
  // takes over without waiting for the TTL); THEN runs when that is done or
  // after a second, whichever comes first. Without a fleet THEN runs at once.
  void leave_fleet(std::function<void()> then);

 private:
  // What a service has at run time besides its config: the rollout engine,
  // the window timer, the kernel window, pushed data, the previous scrapes.
  // Held by shared_ptr so timer and scrape callbacks can tell (weak_ptr)
  // whether the service still exists after a reload.
  struct Runtime {
    std::unique_ptr<RolloutEngine> engine;
    std::unique_ptr<boost::asio::steady_timer> timer;
    std::chrono::steady_clock::time_point next_tick{};
    std::chrono::steady_clock::time_point window_start{};
    std::vector<KernelSample> base;      // per variant, at window_start
    std::vector<KernelWindow> window;    // per variant, the last complete window
    std::vector<PushData> push_window;   // per variant, pushed since the window began
    // What the rollout gathered since it started (pushed values, flow bases:
    // the A/B report) lives in state_.services[name].totals, not here.
    std::map<int, std::shared_ptr<prom::ParseResult>> last_scrape;  // per variant, last good scrape
    std::map<int, std::chrono::steady_clock::time_point> last_scrape_at;
    // (stage, gate) -> result -> evaluations; stage as RolloutState::gates_stage
    std::map<std::pair<std::string, std::string>, std::map<std::string, uint64_t>> gate_results;
    bool tick_running = false;  // scrapes/probes of the last tick still out
  };
  struct Service {
    ServiceConfig config;
    uint32_t id = 0;
    std::vector<uint32_t> desired_bp{};  // per variant, what was last asked for
    std::string stable{};                // the stable variant now (a completed rollout changes it)
    std::shared_ptr<Runtime> rt = std::make_shared<Runtime>();
  };

  // LINE's answer, or nullopt if fleet mode took it to answer through LATER.
  std::optional<std::string> answer_now(std::string_view line, const std::function<void(std::string)>& later);
  nlohmann::json dispatch(const protocol::Request& request);
  nlohmann::json ping();
  nlohmann::json status(const protocol::StatusRequest& r);
  nlohmann::json weights(const protocol::WeightsRequest& r);
  nlohmann::json switch_variant(const protocol::SwitchRequest& r);
  nlohmann::json which(const protocol::WhichRequest& r);
  nlohmann::json drain(const protocol::DrainRequest& r);
  nlohmann::json reload();
  nlohmann::json shutdown(const protocol::ShutdownRequest& r);
  nlohmann::json rollout(const protocol::RolloutRequest& r);
  nlohmann::json push(const protocol::PushRequest& r);
  nlohmann::json events(const protocol::EventsRequest& r);
  nlohmann::json ab(const protocol::AbRequest& r);
  nlohmann::json view(const protocol::ViewRequest& r);

  Service& service_named(const std::string& name);  // throws not_found
  // What a table command asks for, validated (throws ProtocolError).
  std::vector<uint32_t> requested_weights(const Service& s, const protocol::WeightsRequest& r) const;
  std::vector<uint32_t> requested_switch(const Service& s, const protocol::SwitchRequest& r) const;
  std::vector<std::pair<unsigned, unsigned>> requested_drain(const Service& s, const protocol::DrainRequest& r) const;
  // A push's variant index (throws not_found) and its items, checked against what INTO holds already
  // (throws bad_request).
  int push_variant(const Service& s, const protocol::PushRequest& r) const;
  static std::vector<PushItem> push_items(const protocol::PushRequest& r, const PushData& into);
  nlohmann::json service_status(const Service& s) const;
  nlohmann::json node_status() const;
  void apply_weights(Service& s, const std::vector<uint32_t>& weights_bp);
  void install_service(Service& s, const ServiceState* saved);
  // Writes state.json; logs and returns false on failure, does not throw
  // (for most callers the change already happened in the kernel).
  bool persist();

  // Rollouts (daemon_rollout.cc).
  void setup_runtime(Service& s, std::optional<RolloutState> persisted);
  // The rollout's totals in state_: from now (reset: nothing pushed, flows
  // counted from the counters' present values) or, for a resumed rollout, as
  // state.json had them (restore).
  void reset_totals(Service& s);
  void restore_totals(Service& s);
  const RolloutTotals& totals_of(const Service& s) const;  // empty if none
  void arm_timer(const std::string& name, const std::shared_ptr<Runtime>& rt);
  void on_window(const std::string& name, const std::shared_ptr<Runtime>& rt);
  void finish_tick(const std::string& name, const std::shared_ptr<Runtime>& rt, MetricsSnapshot snapshot);
  void apply_decision(Service& s, const Decision& d);
  void refuse_during_rollout(const Service& s, bool force, const char* what) const;
  Service* find_service(const std::string& name, const std::shared_ptr<Runtime>& rt);
  int test_variant(const Service& s) const;
  int stable_variant(const Service& s) const;
  nlohmann::json rollout_status(const Service& s) const;
  // The engine's answer to an operator's command (throws RolloutCommandError); on one node and in the fleet.
  static Decision run_rollout_command(RolloutEngine& engine, const protocol::RolloutRequest& r, Millis now,
                                      const std::string& abort_reason);
  AbSnapshot ab_snapshot(const Service& s) const;
  KernelSample kernel_sample(const Service& s, unsigned variant) const;
  void record_event(const std::string& service, const std::string& kind, const std::string& message,
                    const std::map<std::string, double>& values, int64_t time_ms = 0);
  void collect_handshakes();

  // The live view (daemon_view.cc): a sample of every service into its
  // history each second, and the documents of the API and of `view`.
  void sample_views();
  nlohmann::json view_document(const Service& s) const;
  nlohmann::json view_nodes();  // fleet mode: the last nodes answer, refreshed when older than a second

  // Fleet mode (daemon_fleet.cc): the node's etcd membership, the version
  // fence of each service, its reports.
  struct Fleet;
  struct FleetDeleter {
    void operator()(Fleet* f) const;  // where Fleet is complete (daemon_fleet.cc)
  };
  void fleet_setup();
  void fleet_run(boost::asio::io_context& io);
  // Takes a weights/switch/drain request in fleet mode (true), else false.
  bool fleet_request(const protocol::Request& request, const std::function<void(std::string)>& done);
  void fleet_on_version(const fleet::TableVersion& v);
  void fleet_on_rollout(const fleet::RolloutRecord& r, int64_t revision);
  void fleet_on_leader(int64_t ended_term);  // ENDED_TERM: this node's term that just ended (0: none)
  // Whether this node's rollout engine of S ticks: always on a single node; in fleet mode only on the
  // leader, and not while its last decision is still being written.
  bool ticks_here(const Service& s) const;
  // The leader's view of the fleet's telemetry over the last interval (one read of every node's report);
  // DONE's flag: this was the leader's first read for the service (baselines only, nothing to judge).
  void fleet_window(const Service& s, double seconds, std::function<void(fleet::FleetWindow, bool)> done);
  // The leader writes the decision its engine took (rollout record and, if the weights or the stable
  // variant changed, the next table version) in one txn guarded by its term; every node applies it
  // from etcd. A write that fails undoes the decision (the engine goes back to the fleet's record).
  void fleet_commit_decision(Service& s, const Decision& d);
  // An operator's rollout command on any node: the engine of the fleet's record takes it, the result
  // is written in one txn guarded by the record's mod revision.
  void fleet_rollout_command(const protocol::RolloutRequest& r, const std::function<void(std::string)>& done);
  // The engine of S rebuilt from the fleet's record (Idle without one).
  void fleet_restore_engine(Service& s);
  // What S has before the fleet has a version: its active table, stable variant and drains (version 1).
  fleet::BaseTable fleet_base_table(const Service& s) const;
  void fleet_record_events(const Service& s, const fleet::RolloutRecord& r);
  // Publishes this node's report now; DONE (optional) hears whether it reached etcd (and why not).
  void fleet_report(std::function<void(bool, const std::string&)> done = {});
  // veerctl push in fleet mode: the values join this node's epoch totals, which its reports carry to
  // the leader; answered once the report that holds them is in etcd.
  void fleet_push(const protocol::PushRequest& r, const std::function<void(std::string)>& done);
  // The fleet's A/B totals of S (flows and pushed values since the start) from the mirrored record.
  fleet::FleetTotals fleet_ab_totals(const Service& s) const;
  // veerctl nodes: every node's report under the prefix (live nodes only: reports live under leases).
  void fleet_nodes(const std::function<void(std::string)>& done);
  void fleet_answer_waiters(const std::string& service);
  nlohmann::json fleet_status() const;
  void fleet_metrics(metrics::Registry& m) const;

  std::string config_path_;
  Config config_;
  std::unique_ptr<Fleet, FleetDeleter> fleet_;
  std::unique_ptr<Dataplane> dataplane_;
  std::unique_ptr<ServiceTables> tables_;
  NodeState state_;
  std::vector<Service> services_;  // config order
  std::vector<Attachment> attachments_;
  std::string persist_problem_;   // last state.json write error, "" if none
  bool stop_requested_ = false;

  boost::asio::io_context* io_ = nullptr;  // set by run_on
  std::unique_ptr<boost::asio::steady_timer> handshake_timer_;
  EventLog events_;
  std::unique_ptr<boost::asio::steady_timer> view_timer_;
  std::map<std::string, view::History> histories_;  // per service name
  nlohmann::json view_nodes_ = nullptr;                // fleet mode: last `nodes` result (or its error)
  int64_t view_nodes_at_ms_ = 0;
  bool view_nodes_pending_ = false;
  std::unique_ptr<EventFile> event_file_;
  std::string event_file_problem_;
};

}  // namespace veer
