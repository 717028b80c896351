// Where a fleet keeps its state in etcd, under cluster.prefix (P):
//   P/leader                 the election key: the leader's node name, under its lease.
//                            Its create revision is the leader's term: every write of
//                            the leader is a txn that compares it (a deposed leader,
//                            whose key was deleted and re-created by another, writes
//                            nothing).
//   P/services/NAME/table    the service's current TableVersion (JSON). Written only by
//                            a txn that compares the key's mod revision with the one the
//                            writer read: two writers never both make version N+1.
//   P/services/NAME/rollout  the service's RolloutRecord (JSON): the rollout engine's state as
//                            the leader (or an operator's command on any node) last wrote it,
//                            in the same txn as the table version of the same decision, guarded
//                            by both keys' mod revisions (and the leader's term).
//   P/nodes/NODE             the node's NodeReport (JSON), under the node's lease: a
//                            node whose lease expired is not live.
// Key names are built and read back here only; the etcd adapter moves bytes.
#pragma once
#include <optional>
#include <string>
#include <string_view>

namespace veer::fleet {

class FleetKeys {
 public:
  explicit FleetKeys(std::string prefix);  // a valid cluster.prefix ("/veer")

  std::string leader() const { return prefix_ + "/leader"; }
  std::string services_prefix() const { return prefix_ + "/services/"; }
  std::string table(std::string_view service) const;
  std::string rollout(std::string_view service) const;
  std::string service_prefix(std::string_view service) const { return services_prefix() + std::string(service) + "/"; }
  std::string nodes_prefix() const { return prefix_ + "/nodes/"; }
  std::string node(std::string_view name) const { return nodes_prefix() + std::string(name); }

  // The service whose table KEY is, or nullopt (another key under the
  // services prefix: the watch sees them too and ignores them).
  std::optional<std::string> table_service(std::string_view key) const;
  // The service whose rollout record KEY is, or nullopt.
  std::optional<std::string> rollout_service(std::string_view key) const;
  // The node KEY reports for, or nullopt.
  std::optional<std::string> node_of(std::string_view key) const;

  const std::string& prefix() const { return prefix_; }

 private:
  std::optional<std::string> service_of(std::string_view key, std::string_view tail) const;
  std::string prefix_;
};

}  // namespace veer::fleet
