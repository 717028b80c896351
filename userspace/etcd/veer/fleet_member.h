// One node's membership of a fleet, on etcd: its lease (granted, kept alive,
// re-granted when it expired while the node was cut off), its report under
// that lease, every service's table versions delivered as they change, and
// the node's own writes of the next version.
//
// Delivery: on start and after every break, the current record of each
// service is read (catch-up), then a watch follows from the revision after
// that read. A record may thus arrive twice, and etcd 3.4's watch has known
// bugs that replay old events: the member hands over every well-formed
// record, and the owner's VersionFence decides (it reads the version in the
// record, never the order). Records that are not table versions are reported,
// never applied.
//
// Writes: propose() reads the service's current record, asks the caller for
// its successor and writes it in a txn that compares the key's mod revision
// with the one read, so two nodes never both write version N+1; a lost race
// reads again and retries (a few times). The data plane never waits for any
// of this: what the node applied stays live while etcd is away.
//
// Everything runs on the caller's io_context; callbacks run on its thread.
#pragma once
#include <utility>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>

#include "fleet/fleet_keys.h"
#include "fleet/table_version.h"
#include "veer/etcd_client.h"
#include "veer/etcd_watch.h"

namespace veer::etcd {

struct MemberOptions {
  std::string node;                                // cluster.node_name
  std::string prefix = "/veer";                    // cluster.prefix
  int64_t lease_ttl_seconds = 5;                   // cluster.lease_ttl
  std::chrono::milliseconds retry{500};            // after a failed read, watch or grant
  int propose_attempts = 10;                       // lost CAS races before a propose gives up
};

struct MemberCallbacks {
  // A table record read or watched (maybe again, maybe old: fence it).
  std::function<void(const fleet::TableVersion&)> on_version;
  // A value under a table key that is not a valid record: KEY, why.
  std::function<void(const std::string&, const std::string&)> on_bad_record;
  // Connected (catch-up read done, watch running) or not, with the reason.
  std::function<void(bool, const std::string&)> on_connection;
};

struct ProposeResult {
  bool ok = false;
  std::string error;        // why nothing was written (etcd away, a bad change, lost races)
  bool unreachable = false; // etcd did not answer: the change can be asked again later
  fleet::TableVersion version;  // the version written
  int64_t revision = 0;     // etcd's revision of the write
};

class FleetMember : public std::enable_shared_from_this<FleetMember> {
 public:
  using Make = std::function<fleet::TableVersion(const std::optional<fleet::TableVersion>& current)>;

  FleetMember(boost::asio::io_context& io, std::vector<std::string> endpoints, MemberOptions options,
              MemberCallbacks callbacks, ClientOptions client_options = {});

  void start();
  // Cancels the watch and timers; revokes the lease (its keys go at once) unless etcd is away.
  void stop(std::function<void()> done = {});

  // Puts the node's report under its lease now (and again after a new lease
  // was granted); the latest one is kept for that.
  void publish(std::string report_json);

  // Writes the successor of SERVICE's current version, as MAKE builds it
  // (MAKE may throw: the result names why, nothing is written).
  void propose(const std::string& service, Make make, std::function<void(ProposeResult)> done);

  // The latest record this member saw of SERVICE (catch-up or watch), if any.
  std::optional<fleet::TableVersion> latest(const std::string& service) const;

  bool connected() const { return connected_; }
  int64_t lease() const { return lease_; }
  const fleet::FleetKeys& keys() const { return keys_; }
  Client& client() { return client_; }

 private:
  void grant();
  void keepalive_later();
  void put_report();
  void catch_up();
  void watch_from(int64_t revision);
  void take(const KeyValue& kv);
  void set_connected(bool connected, const std::string& why);
  void propose_attempt(std::string service, Make make, std::function<void(ProposeResult)> done, int attempt);
  void later(boost::asio::steady_timer& timer, std::chrono::milliseconds after, std::function<void()> then);

  boost::asio::io_context& io_;
  Client client_;
  MemberOptions options_;
  MemberCallbacks callbacks_;
  fleet::FleetKeys keys_;
  int64_t lease_ = 0;
  std::string report_;
  std::shared_ptr<Watch> watch_;
  size_t watch_endpoint_ = 0;
  bool connected_ = false;
  bool stopped_ = false;
  std::map<std::string, fleet::TableVersion> latest_;
  boost::asio::steady_timer lease_timer_;
  boost::asio::steady_timer sync_timer_;
  std::minstd_rand jitter_{std::random_device{}()};
};

}  // namespace veer::etcd
