// The YAML config of SPEC §4: parsing and validation. Pure: no kernel, no root.
// A config is accepted or refused as a whole; a refusal names file, line and reason.
#pragma once
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "config/net.h"
#include "config/rollout_config.h"

namespace veer {

// Tc: tcx where the kernel has it (6.6+), else cls_bpf; ClsBpf: cls_bpf under clsact even where tcx exists.
enum class AttachMode { Auto, Xdp, XdpGeneric, Tc, ClsBpf };
enum class Protocol { Tcp, Udp };
enum class Affinity { Connection, ClientIp };

std::string to_string(AttachMode);
std::string to_string(Protocol);
std::string to_string(Affinity);

struct NodeConfig {
  std::vector<std::string> interfaces;
  AttachMode attach = AttachMode::Auto;
  uint32_t hash_seed = 0x5eed;
  uint32_t flow_table_size = 1048576;
  std::string socket = "/run/veer/veer.sock";
  std::string pin_path = "/sys/fs/bpf/veer";
  std::string state_dir = "/var/lib/veer";
  std::string metrics_listen = "127.0.0.1:9469";
  // A SYN with no SYN-ACK within this time counts as a handshake timeout
  // (kernel telemetry); veerd collects them every second.
  Millis handshake_timeout{3000};
  // A UDP flow entry idle (no datagram either way) for longer than this
  // selects again on its next datagram (as conntrack's UDP timeout); a live
  // exchange keeps its backend. Applied by reload.
  Millis udp_idle_timeout{30000};
};

// `cluster.tls`: etcd's gateway over https://. Absolute paths of PEM files,
// read and checked at load (a file veerd cannot use refuses the config).
struct ClusterTlsConfig {
  std::string ca;           // the CA(s) etcd's server certificate must chain to
  std::string cert;         // the client certificate (etcd's --client-cert-auth); empty: none
  std::string key;          // its private key; set with cert or not at all
  std::string server_name;  // the name checked in the server certificate; empty: each endpoint's host
};

// The optional `cluster:` section (fleet mode): many veerd's run one table
// per service through etcd. Absent: a single node, as without it.
struct ClusterConfig {
  // "http://HOST:PORT" of etcd members (its v3 JSON gateway); all "https://HOST:PORT" with tls.
  std::vector<std::string> endpoints;
  std::optional<ClusterTlsConfig> tls;
  std::string node_name;               // default: the host name
  std::string prefix = "/veer";        // every key of the fleet starts with it
  Millis lease_ttl{5000};              // the node's etcd lease; the leader's too
  // A fleet-wide gate measurement needs fresh reports of this many nodes
  // (0: every live node), else it is Inconclusive.
  uint32_t min_nodes = 0;
};

struct VariantConfig {
  std::string name;
  std::vector<Endpoint> backends;  // config order; the index is the backend id
  std::string metrics_url;         // optional
};

struct ServiceConfig {
  std::string name;
  IpAddress vip;
  uint16_t port = 0;  // host order
  Protocol protocol = Protocol::Tcp;  // `protocol` may be omitted: tcp
  Affinity affinity = Affinity::Connection;
  std::string stable;                    // name of a variant
  std::vector<VariantConfig> variants;   // config order; the index is the variant id
  std::vector<uint32_t> weights_bp;      // per variant (same order), basis points, sum 10000;
                                         // variants absent from `weights` get 0; no `weights`
                                         // key at all means stable = 100
  std::optional<RolloutConfig> rollout;  // the `rollout:` section, validated against this service

  int variant_index(std::string_view name) const;  // -1 if absent
  int stable_index() const { return variant_index(stable); }
};

struct Config {
  NodeConfig node;
  std::optional<ClusterConfig> cluster;
  std::vector<ServiceConfig> services;
  std::vector<std::string> warnings;  // accepted but noteworthy

  const ServiceConfig* find_service(std::string_view name) const;
};

// what() is "FILE:LINE:COLUMN: REASON" (line and column 1-based), or
// "FILE: REASON" with line() == column() == 0 when there is no position (the
// file cannot be read). Non-fatal remarks go to Config::warnings, formatted
// the same way.
class ConfigError : public std::runtime_error {
 public:
  ConfigError(std::string file, int line, int column, std::string reason);
  const std::string& file() const { return file_; }
  int line() const { return line_; }
  int column() const { return column_; }
  const std::string& reason() const { return reason_; }

 private:
  std::string file_;
  int line_;
  int column_;
  std::string reason_;
};

Config load_config_file(const std::string& path);                     // throws ConfigError
Config parse_config(std::string_view yaml_text, const std::string& file_name);  // throws ConfigError

// Weights: "5" "5.5" "99.50" "0.01" -> basis points; nullopt if not 0..100 with at most 2 decimals.
std::optional<uint32_t> parse_weight_bp(std::string_view text);
std::string format_weight(uint32_t bp);  // 9950 -> "99.50"

}  // namespace veer
