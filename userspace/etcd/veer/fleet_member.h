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
// Writes: commit() reads the service's records (table and rollout), asks the
// caller for their successors and writes them in one txn that compares both
// keys' mod revisions with the ones read, so two nodes never both write
// version N+1 and a step never lands without its table; a lost race reads
// again and retries (a few times). A leader's commit also compares the
// leader key's create revision with its term: a deposed leader that is still
// running (paused, cut off, its lease revoked) writes nothing
// (argo-rollouts#2117). propose() is a commit of the table alone. The data
// plane never waits for any of this: what the node applied stays live while
// etcd is away.
//
// Leader election (etcd's recipe on a lease): every member polls P/leader; if
// no one holds it, a txn creates it (compare create revision 0) with this
// node's name under this node's lease. Its create revision is the leader's
// term. The key goes with the lease: a leader that dies or is cut off loses it
// within the lease TTL, and another member takes it at its next poll.
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
#include "fleet/rollout_record.h"
#include "fleet/table_version.h"
#include "veer/etcd_client.h"
#include "veer/etcd_watch.h"

namespace veer::etcd {

struct MemberOptions {
  std::string node;                                // cluster.node_name
  std::string prefix = "/veer";                    // cluster.prefix
  int64_t lease_ttl_seconds = 5;                   // cluster.lease_ttl
  std::chrono::milliseconds retry{500};            // after a failed read, watch or grant
  int propose_attempts = 10;                       // lost CAS races before a commit gives up
  bool campaign = true;                            // stand for leader
  std::chrono::milliseconds leader_poll{250};      // how often P/leader is read (and taken when free)
};

// Who leads the fleet, as this member last read it.
struct LeaderView {
  std::string leader;  // node name; empty: no leader (or not known yet)
  bool self = false;   // this member leads
  int64_t term = 0;    // while self: the create revision of P/leader
};

struct MemberCallbacks {
  // A table record read or watched (maybe again, maybe old: fence it).
  std::function<void(const fleet::TableVersion&)> on_version;
  // A value under a table key that is not a valid record: KEY, why.
  std::function<void(const std::string&, const std::string&)> on_bad_record;
  // Connected (catch-up read done, watch running) or not, with the reason.
  std::function<void(bool, const std::string&)> on_connection;
  // A rollout record read or watched (maybe again, maybe old: compare seq), with its mod revision.
  std::function<void(const fleet::RolloutRecord&, int64_t)> on_rollout;
  // The leader changed (another node, none, this one, or this one deposed).
  std::function<void(const LeaderView&)> on_leader;
};

// A service's records as one read found them (a missing key has revision 0).
struct ServiceRecords {
  std::optional<fleet::TableVersion> table;
  int64_t table_revision = 0;
  std::optional<fleet::RolloutRecord> rollout;
  int64_t rollout_revision = 0;
};
// What a commit writes (either or both).
struct Writes {
  std::optional<fleet::TableVersion> table;
  std::optional<fleet::RolloutRecord> rollout;
};
struct CommitResult {
  bool ok = false;
  std::string error;         // why nothing was written
  bool unreachable = false;  // etcd did not answer
  bool deposed = false;      // a leader's commit: this member no longer leads, nothing written
  Writes written;            // what was written (empty members: nothing of that kind)
  int64_t revision = 0;      // etcd's revision of the write
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
  using MakeWrites = std::function<Writes(const ServiceRecords& current)>;

  FleetMember(boost::asio::io_context& io, std::vector<std::string> endpoints, MemberOptions options,
              MemberCallbacks callbacks, ClientOptions client_options = {});

  void start();
  // Cancels the watch and timers; revokes the lease (its keys go at once) unless etcd is away.
  void stop(std::function<void()> done = {});

  // Puts the node's report under its lease now (and again after a new lease
  // was granted); the latest one is kept for that.
  // DONE (optional) hears whether this report reached etcd.
  void publish(std::string report_json, std::function<void(const Status&)> done = {});

  // Writes the successor of SERVICE's current version, as MAKE builds it
  // (MAKE may throw: the result names why, nothing is written).
  void propose(const std::string& service, Make make, std::function<void(ProposeResult)> done);

  // Writes what MAKE builds from SERVICE's current records, in one txn that
  // compares both records' mod revisions (and, AS_LEADER, the leader key's
  // create revision with this member's term). MAKE may throw: nothing is
  // written, the result names why; it is called again after a lost race.
  void commit(const std::string& service, bool as_leader, MakeWrites make, std::function<void(CommitResult)> done);

  const LeaderView& leader() const { return leader_; }

  // The latest record this member saw of SERVICE (catch-up or watch), if any.
  std::optional<fleet::TableVersion> latest(const std::string& service) const;

  bool connected() const { return connected_; }
  int64_t lease() const { return lease_; }
  const fleet::FleetKeys& keys() const { return keys_; }
  Client& client() { return client_; }

 private:
  void grant();
  void keepalive_later();
  void put_report(std::function<void(const Status&)> done = {});
  void catch_up();
  void watch_from(int64_t revision);
  void take(const KeyValue& kv);
  void set_connected(bool connected, const std::string& why);
  void commit_attempt(std::string service, bool as_leader, MakeWrites make, std::function<void(CommitResult)> done,
                      int attempt);
  void check_leader();
  void set_leader(std::string leader, int64_t term);
  void lease_lost();
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
  std::string away_why_;  // the reason last told while not connected
  bool stopped_ = false;
  std::map<std::string, fleet::TableVersion> latest_;
  LeaderView leader_;
  boost::asio::steady_timer lease_timer_;
  boost::asio::steady_timer sync_timer_;
  boost::asio::steady_timer leader_timer_;
  std::minstd_rand jitter_{std::random_device{}()};
};

}  // namespace veer::etcd
