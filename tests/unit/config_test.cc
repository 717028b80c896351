// Config parsing and validation (SPEC §4): a good file is read whole with the
// right values; each kind of bad file is refused with its line and reason.
#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "config/config.h"
#include "test_pki.h"  // tests/etcd: the PEM files of the TLS tests

namespace veer {
namespace {

// The SPEC §4 example (rollout shortened) plus an IPv6 UDP service.
const std::string kGood = R"(node:
  interfaces: [eth0, eth1]
  attach: auto
  hash_seed: 0x5eed
  flow_table_size: 1048576
  socket: /run/veer/veer.sock
  pin_path: /sys/fs/bpf/veer
  state_dir: /var/lib/veer
  metrics_listen: 127.0.0.1:9469
services:
  - name: ranker
    vip: 10.0.0.100
    port: 80
    protocol: tcp
    affinity: connection
    stable: blue
    variants:
      blue:   { backends: ["10.1.1.2:8080"] }
      canary: { backends: ["10.1.3.2:8080", "10.1.3.3:8080"], metrics_url: "http://10.1.3.2:8080/metrics" }
    weights: { blue: 95, canary: 5 }
    rollout:
      strategy: canary
      canary: canary
      interval: 5s
      steps: [ {set_weight: 5}, {pause: 10m}, {set_weight: 100} ]
  - name: embed-v6
    vip: "fd00::100"
    port: 5353
    protocol: udp
    affinity: client-ip
    stable: v1
    variants:
      v1: { backends: ["[fd00:1::2]:5353", "[fd00:1::3]:5353"] }
      v2: { backends: ["[fd00:2::2]:5353"] }
      v3:
        backends:
          - "[fd00:3::2]:5353"
    weights: { v1: "99.50", v2: 0.5 }
)";

// kGood with exactly one occurrence of `from` replaced by `to`.
std::string with(const std::string& from, const std::string& to, const std::string& base = kGood) {
  const auto pos = base.find(from);
  EXPECT_NE(pos, std::string::npos) << "test bug: '" << from << "' not in the config";
  EXPECT_EQ(base.find(from, pos + 1), std::string::npos) << "test bug: '" << from << "' is ambiguous";
  std::string out = base;
  out.replace(pos, from.size(), to);
  return out;
}

// Parses `text` expecting a refusal; returns the error.
ConfigError refusal(const std::string& text) {
  try {
    parse_config(text, "veer.yaml");
  } catch (const ConfigError& e) {
    return e;
  }
  ADD_FAILURE() << "config was accepted:\n" << text;
  return ConfigError("none", 0, 0, "accepted");
}

#define EXPECT_REFUSED(text, line_, reason_substring)                                                   \
  do {                                                                                                 \
    const ConfigError e = refusal(text);                                                               \
    EXPECT_EQ(e.file(), "veer.yaml");                                                                  \
    EXPECT_EQ(e.line(), line_) << e.what();                                                            \
    EXPECT_NE(e.reason().find(reason_substring), std::string::npos) << "reason: " << e.reason();     \
    EXPECT_EQ(std::string(e.what()).rfind("veer.yaml:" + std::to_string(line_) + ":", 0), 0u) << e.what(); \
  } while (0)

TEST(Config, GoodConfigParsesWithTheRightValues) {
  const Config c = parse_config(kGood, "veer.yaml");
  EXPECT_EQ(c.node.interfaces, (std::vector<std::string>{"eth0", "eth1"}));
  EXPECT_EQ(c.node.attach, AttachMode::Auto);
  EXPECT_EQ(c.node.hash_seed, 0x5eedu);
  EXPECT_EQ(c.node.flow_table_size, 1048576u);
  EXPECT_EQ(c.node.socket, "/run/veer/veer.sock");
  EXPECT_EQ(c.node.pin_path, "/sys/fs/bpf/veer");
  EXPECT_EQ(c.node.state_dir, "/var/lib/veer");
  EXPECT_EQ(c.node.metrics_listen, "127.0.0.1:9469");
  ASSERT_EQ(c.services.size(), 2u);

  const ServiceConfig& r = c.services[0];
  EXPECT_EQ(r.name, "ranker");
  EXPECT_EQ(r.vip, *IpAddress::parse("10.0.0.100"));
  EXPECT_EQ(r.port, 80);
  EXPECT_EQ(r.protocol, Protocol::Tcp);
  EXPECT_EQ(r.affinity, Affinity::Connection);
  EXPECT_EQ(r.stable, "blue");
  EXPECT_EQ(r.stable_index(), 0);
  ASSERT_EQ(r.variants.size(), 2u);
  EXPECT_EQ(r.variants[0].name, "blue");
  EXPECT_EQ(r.variants[1].name, "canary");
  EXPECT_EQ(r.variants[0].backends, (std::vector<Endpoint>{*Endpoint::parse("10.1.1.2:8080")}));
  EXPECT_EQ(r.variants[1].backends,
            (std::vector<Endpoint>{*Endpoint::parse("10.1.3.2:8080"), *Endpoint::parse("10.1.3.3:8080")}));
  EXPECT_EQ(r.variants[0].metrics_url, "");
  EXPECT_EQ(r.variants[1].metrics_url, "http://10.1.3.2:8080/metrics");
  EXPECT_EQ(r.weights_bp, (std::vector<uint32_t>{9500, 500}));

  const ServiceConfig& e = c.services[1];
  EXPECT_EQ(e.name, "embed-v6");
  EXPECT_EQ(e.vip.family, VEER_AF_INET6);
  EXPECT_EQ(e.vip.to_string(), "fd00::100");
  EXPECT_EQ(e.port, 5353);
  EXPECT_EQ(e.protocol, Protocol::Udp);
  EXPECT_EQ(e.affinity, Affinity::ClientIp);
  EXPECT_EQ(e.stable_index(), 0);
  ASSERT_EQ(e.variants.size(), 3u);
  EXPECT_EQ(e.variants[2].name, "v3");  // config order kept
  EXPECT_EQ(e.variants[0].backends.size(), 2u);
  EXPECT_EQ(e.variants[2].backends[0].to_string(), "[fd00:3::2]:5353");
  EXPECT_EQ(e.weights_bp, (std::vector<uint32_t>{9950, 50, 0}));  // absent from weights -> 0

  EXPECT_EQ(c.find_service("embed-v6"), &c.services[1]);
  EXPECT_EQ(c.find_service("nope"), nullptr);
  EXPECT_EQ(r.variant_index("canary"), 1);
  EXPECT_EQ(r.variant_index("green"), -1);

  // `rollout` is parsed (its details: rollout_config_test.cc); no warnings.
  EXPECT_TRUE(c.warnings.empty());
  ASSERT_TRUE(r.rollout.has_value());
  EXPECT_EQ(r.rollout->strategy, RolloutStrategy::Canary);
  EXPECT_EQ(r.rollout->canary, "canary");
  EXPECT_EQ(r.rollout->steps.size(), 3u);
  EXPECT_FALSE(e.rollout.has_value());
}

TEST(Config, MinimalConfigGetsDefaults) {
  const Config c = parse_config(R"(node:
  interfaces: [lo]
services:
  - name: s
    vip: 10.0.0.1
    port: 8080
    stable: a
    variants: { a: { backends: ["10.0.1.1:80"] } }
)",
                                "min.yaml");
  const NodeConfig defaults;
  EXPECT_EQ(c.node.attach, AttachMode::Auto);
  EXPECT_EQ(c.node.hash_seed, defaults.hash_seed);
  EXPECT_EQ(c.node.socket, "/run/veer/veer.sock");
  EXPECT_EQ(c.node.pin_path, "/sys/fs/bpf/veer");
  EXPECT_EQ(c.node.state_dir, "/var/lib/veer");
  EXPECT_EQ(c.node.metrics_listen, "127.0.0.1:9469");
  EXPECT_EQ(c.node.udp_idle_timeout, Millis{30000});
  ASSERT_EQ(c.services.size(), 1u);
  EXPECT_EQ(c.services[0].protocol, Protocol::Tcp);
  EXPECT_EQ(c.services[0].affinity, Affinity::Connection);
  EXPECT_EQ(c.services[0].weights_bp, (std::vector<uint32_t>{10000}));  // no weights: all to stable
  EXPECT_TRUE(c.warnings.empty());
}

TEST(Config, OtherValidValues) {
  const Config c = parse_config(with("hash_seed: 0x5eed", "hash_seed: 4294967295",
                                     with("attach: auto", "attach: xdp-generic",
                                          with("127.0.0.1:9469", "\"[::1]:9100\""))),
                                "veer.yaml");
  EXPECT_EQ(c.node.hash_seed, 4294967295u);
  EXPECT_EQ(c.node.attach, AttachMode::XdpGeneric);
  EXPECT_EQ(c.node.metrics_listen, "[::1]:9100");
  EXPECT_EQ(parse_config(with("attach: auto", "attach: tc"), "f").node.attach, AttachMode::Tc);
  EXPECT_EQ(parse_config(with("attach: auto", "attach: cls_bpf"), "f").node.attach, AttachMode::ClsBpf);
  EXPECT_EQ(parse_config(with("attach: auto", "attach: xdp"), "f").node.attach, AttachMode::Xdp);
  EXPECT_EQ(parse_config(with("127.0.0.1:9469", "localhost:9469"), "f").node.metrics_listen, "localhost:9469");
  const std::string udp = "metrics_listen: 127.0.0.1:9469\n  udp_idle_timeout: ";
  EXPECT_EQ(parse_config(with("metrics_listen: 127.0.0.1:9469", udp + "2m"), "f").node.udp_idle_timeout, Millis{120000});
  EXPECT_EQ(parse_config(with("metrics_listen: 127.0.0.1:9469", udp + "100ms"), "f").node.udp_idle_timeout,
            Millis{100});
}

TEST(Config, RefusesUnknownKeys) {
  EXPECT_REFUSED(with("    affinity: connection", "    colour: red"), 15, "unknown key 'colour' in service");
  EXPECT_REFUSED(with("  attach: auto", "  atach: auto"), 3, "unknown key 'atach' in node");
  EXPECT_REFUSED(with("metrics_url: \"http://10.1.3.2:8080/metrics\"", "metric_url: \"http://x\""), 19,
                 "unknown key 'metric_url' in variant 'canary'");
  EXPECT_REFUSED(kGood + "extra: 1\n", 39, "unknown key 'extra' in the config");
  const ConfigError e = refusal(with("    affinity: connection", "    colour: red"));
  EXPECT_EQ(e.column(), 5);
}

TEST(Config, RefusesBadVip) {
  EXPECT_REFUSED(with("vip: 10.0.0.100", "vip: 10.0.0.300"), 12, "vip '10.0.0.300' is not an IPv4 or IPv6 address");
  EXPECT_EQ(refusal(with("vip: 10.0.0.100", "vip: 10.0.0.300")).column(), 10);
  EXPECT_REFUSED(with("vip: 10.0.0.100", "vip:"), 12, "vip needs a value");
}

TEST(Config, RefusesBadPort) {
  EXPECT_REFUSED(with("port: 80", "port: 70000"), 13, "port must be an integer 1..65535, got '70000'");
  EXPECT_REFUSED(with("port: 80", "port: 0"), 13, "got '0'");
  EXPECT_REFUSED(with("port: 80", "port: http"), 13, "got 'http'");
}

TEST(Config, RefusesWeightsNotSummingTo100) {
  EXPECT_REFUSED(with("{ blue: 95, canary: 5 }", "{ blue: 90, canary: 5 }"), 20,
                 "weights of service 'ranker' sum to 95.00, not 100");
  EXPECT_REFUSED(with("{ blue: 95, canary: 5 }", "{ blue: 95, canary: 5.01 }"), 20, "sum to 100.01, not 100");
}

TEST(Config, RefusesBadWeightValues) {
  EXPECT_REFUSED(with("{ blue: 95, canary: 5 }", "{ blue: 94.995, canary: 5.005 }"), 20,
                 "weight of 'blue' must be a number 0..100 with at most two decimals, got '94.995'");
  EXPECT_REFUSED(with("{ blue: 95, canary: 5 }", "{ blue: 100.001, canary: 0 }"), 20, "got '100.001'");
  EXPECT_REFUSED(with("{ blue: 95, canary: 5 }", "{ blue: 101, canary: -1 }"), 20, "got '101'");
  EXPECT_REFUSED(with("{ blue: 95, canary: 5 }", "{ blue: 100, canary: -1 }"), 20, "got '-1'");
  EXPECT_REFUSED(with("{ blue: 95, canary: 5 }", "{ blue: abc, canary: 5 }"), 20, "got 'abc'");
  EXPECT_REFUSED(with("{ blue: 95, canary: 5 }", "{ blue: 95, green: 5 }"), 20,
                 "weights: 'green' is not a variant of service 'ranker'");
  EXPECT_REFUSED(with("{ blue: 95, canary: 5 }", "{ blue: 95, blue: 5 }"), 20, "duplicate key 'blue'");
}

TEST(Config, RefusesStableThatIsNotAVariant) {
  EXPECT_REFUSED(with("stable: blue", "stable: green"), 16, "stable 'green' is not a variant of service 'ranker'");
}

TEST(Config, RefusesBackendOfTheOtherFamily) {
  EXPECT_REFUSED(with("\"10.1.3.3:8080\"", "\"[fd00::3]:8080\""), 19,
                 "backend '[fd00::3]:8080' is IPv6 but vip 10.0.0.100 is IPv4");
  EXPECT_REFUSED(with("\"[fd00:2::2]:5353\"", "\"10.2.2.2:5353\""), 34, "is IPv4 but vip fd00::100 is IPv6");
}

TEST(Config, RefusesBadBackends) {
  EXPECT_REFUSED(with("blue:   { backends: [\"10.1.1.2:8080\"] }", "blue:   { backends: [] }"), 18,
                 "variant 'blue' needs 1 to 64 backends, has 0");
  EXPECT_REFUSED(with("\"10.1.3.3:8080\"", "\"10.1.1.2:8080\""), 19,
                 "backend '10.1.1.2:8080' appears twice in service 'ranker' (first at line 18)");
  EXPECT_REFUSED(with("\"10.1.3.3:8080\"", "\"10.1.3.3\""), 19, "backend '10.1.3.3' is not ip:port");
  std::string many = "[";
  for (int i = 0; i < 65; ++i) many += (i ? ", \"10.1.1." : "\"10.1.1.") + std::to_string(i + 1) + ":80\"";
  many += "]";
  EXPECT_REFUSED(with("[\"10.1.1.2:8080\"]", many), 18, "needs 1 to 64 backends, has 65");
  EXPECT_REFUSED(with("metrics_url: \"http://10.1.3.2:8080/metrics\"", "metrics_url: ftp://x"), 19,
                 "metrics_url must be an http:// or https:// URL");
}

TEST(Config, RefusesABackendInTwoServices) {
  // The data plane tells a backend's replies by the backend alone, so one
  // backend (address, port, protocol) may serve one service only.
  const std::string third = R"(  - name: ranker2
    vip: 10.0.0.101
    port: 80
    stable: a
    variants: { a: { backends: ["10.2.0.1:80", "10.1.3.3:8080"] } }
)";
  const ConfigError e = refusal(kGood + third);
  EXPECT_EQ(e.line(), 43) << e.what();
  EXPECT_EQ(e.column(), 48) << e.what();
  EXPECT_EQ(e.reason(),
            "backend '10.1.3.3:8080' (tcp) is already a backend of service 'ranker' (line 19): a backend may belong "
            "to one service only");
  EXPECT_NE(std::string(e.what()).find("veer.yaml:43:48: backend '10.1.3.3:8080' (tcp)"), std::string::npos)
      << e.what();
  // The same address on another port, or the same backend under the other
  // protocol, is another backend.
  EXPECT_NO_THROW(parse_config(kGood + with("\"10.1.3.3:8080\"] } }", "\"10.1.3.3:8081\"] } }", third), "f"));
  EXPECT_NO_THROW(parse_config(kGood + with("    port: 80\n", "    port: 80\n    protocol: udp\n", third), "f"));
}

TEST(Config, RefusesDuplicateServiceName) {
  EXPECT_REFUSED(with("name: embed-v6", "name: ranker"), 26, "duplicate service name 'ranker' (first at line 11)");
}

TEST(Config, RefusesDuplicateVipPortProtocol) {
  const std::string third = R"(  - name: ranker2
    vip: 10.0.0.100
    port: 80
    stable: a
    variants: { a: { backends: ["10.2.0.1:80"] } }
)";
  EXPECT_REFUSED(kGood + third, 39,
                 "service 'ranker2' has the same vip, port and protocol as service 'ranker' (10.0.0.100:80/tcp)");
  // Same vip and port with the other protocol is a different service.
  EXPECT_NO_THROW(parse_config(kGood + with("    port: 80\n", "    port: 80\n    protocol: udp\n", third), "f"));
}

TEST(Config, RefusesTooManyVariants) {
  std::string nine = "    variants: {";
  for (char c = 'a'; c <= 'i'; ++c)
    nine += std::string(c == 'a' ? "" : ", ") + c + ": { backends: [\"10.1.1." + std::to_string(c - 'a' + 2) + ":80\"] }";
  nine += "}\n";
  const std::string block =
      "    variants:\n      blue:   { backends: [\"10.1.1.2:8080\"] }\n"
      "      canary: { backends: [\"10.1.3.2:8080\", \"10.1.3.3:8080\"], metrics_url: "
      "\"http://10.1.3.2:8080/metrics\" }\n";
  EXPECT_REFUSED(with(block, nine), 17, "too many variants in service 'ranker': at most 8");
}

TEST(Config, RefusesBadVariantName) {
  EXPECT_REFUSED(with("      blue:   {", "      blue!:   {"), 18, "variant name 'blue!' is invalid");
}

TEST(Config, RefusesBadAttach) {
  EXPECT_REFUSED(with("attach: auto", "attach: ebpf"), 3, "attach must be one of auto, xdp, xdp-generic, tc, cls_bpf; got 'ebpf'");
  EXPECT_EQ(refusal(with("attach: auto", "attach: ebpf")).column(), 11);
}

TEST(Config, RefusesBadInterfaces) {
  EXPECT_REFUSED(with("[eth0, eth1]", "[eth0, eth0/1]"), 2, "interface name 'eth0/1' is invalid");
  EXPECT_REFUSED(with("[eth0, eth1]", "[eth0, averyveryverylongname]"), 2, "interface name 'averyveryverylongname'");
  EXPECT_REFUSED(with("[eth0, eth1]", "[eth0, \"eth 1\"]"), 2, "interface name 'eth 1' is invalid");
  EXPECT_REFUSED(with("[eth0, eth1]", "[eth0, eth0]"), 2, "interface 'eth0' is listed twice");
  EXPECT_REFUSED(with("[eth0, eth1]", "[]"), 2, "node.interfaces must be a non-empty list");
  EXPECT_REFUSED(with("  interfaces: [eth0, eth1]\n", ""), 1, "node.interfaces is required");
}

TEST(Config, RefusesBadNodeValues) {
  EXPECT_REFUSED(with("hash_seed: 0x5eed", "hash_seed: 0x100000000"), 4, "hash_seed must be an integer 0..4294967295");
  EXPECT_REFUSED(with("hash_seed: 0x5eed", "hash_seed: -1"), 4, "got '-1'");
  EXPECT_REFUSED(with("flow_table_size: 1048576", "flow_table_size: 512"), 5,
                 "flow_table_size must be an integer 1024..134217728, got '512'");
  EXPECT_REFUSED(with("flow_table_size: 1048576", "flow_table_size: 134217729"), 5, "got '134217729'");
  EXPECT_REFUSED(with("socket: /run/veer/veer.sock", "socket: run/veer.sock"), 6,
                 "socket must be an absolute path, got 'run/veer.sock'");
  EXPECT_REFUSED(with("pin_path: /sys/fs/bpf/veer", "pin_path: bpf"), 7, "pin_path must be an absolute path");
  EXPECT_REFUSED(with("state_dir: /var/lib/veer", "state_dir: [a]"), 8, "state_dir must be a single value");
  EXPECT_REFUSED(with("metrics_listen: 127.0.0.1:9469", "metrics_listen: 9469"), 9,
                 "metrics_listen must be host:port");
  EXPECT_REFUSED(with("metrics_listen: 127.0.0.1:9469", "metrics_listen: 127.0.0.1:99999"), 9,
                 "metrics_listen must be host:port");
  const std::string udp = "metrics_listen: 127.0.0.1:9469\n  udp_idle_timeout: ";
  EXPECT_REFUSED(with("metrics_listen: 127.0.0.1:9469", udp + "50ms"), 10,
                 "node.udp_idle_timeout must be between 100ms and 24h");
  EXPECT_REFUSED(with("metrics_listen: 127.0.0.1:9469", udp + "25h"), 10, "between 100ms and 24h");
  EXPECT_REFUSED(with("metrics_listen: 127.0.0.1:9469", udp + "soon"), 10, "udp_idle_timeout");
}

// kGood with a cluster section (lines 10..) after the node section.
std::string with_cluster(const std::string& cluster) {
  return with("services:\n", "cluster:\n" + cluster + "services:\n");
}

TEST(Config, WithoutAClusterSectionTheNodeIsAlone) { EXPECT_FALSE(parse_config(kGood, "veer.yaml").cluster); }

TEST(Config, ClusterSectionParsesWithDefaults) {
  const Config c = parse_config(with_cluster("  endpoints: [\"http://127.0.0.1:2379\", \"http://etcd-2:2379\"]\n"),
                                "veer.yaml");
  ASSERT_TRUE(c.cluster);
  EXPECT_EQ(c.cluster->endpoints, (std::vector<std::string>{"http://127.0.0.1:2379", "http://etcd-2:2379"}));
  EXPECT_EQ(c.cluster->prefix, "/veer");
  EXPECT_EQ(c.cluster->lease_ttl, Millis{5000});
  EXPECT_EQ(c.cluster->min_nodes, 0u);
  char host[256] = {};
  ASSERT_EQ(::gethostname(host, sizeof host - 1), 0);
  EXPECT_EQ(c.cluster->node_name, host);  // default: the host name

  const Config d = parse_config(with_cluster("  endpoints: [\"http://10.9.0.1:2379\"]\n  node_name: lb-2.zone_a\n"
                                             "  prefix: /prod/veer\n  lease_ttl: 3s\n  min_nodes: 2\n"),
                                "veer.yaml");
  EXPECT_EQ(d.cluster->node_name, "lb-2.zone_a");
  EXPECT_EQ(d.cluster->prefix, "/prod/veer");
  EXPECT_EQ(d.cluster->lease_ttl, Millis{3000});
  EXPECT_EQ(d.cluster->min_nodes, 2u);
}

TEST(Config, RefusesBadClusterValues) {
  const std::string ep = "  endpoints: [\"http://127.0.0.1:2379\"]\n";
  EXPECT_REFUSED(with_cluster("  node_name: a\n"), 10, "cluster.endpoints is required");
  EXPECT_REFUSED(with_cluster("  endpoints: []\n"), 11, "list of 1 to 16 etcd endpoints");
  EXPECT_REFUSED(with_cluster("  endpoints: http://127.0.0.1:2379\n"), 11, "list of 1 to 16 etcd endpoints");
  EXPECT_REFUSED(with_cluster("  endpoints: [\"https://127.0.0.1:2379\"]\n"), 11,
                 "cluster.endpoints are https:// but cluster.tls is missing");
  EXPECT_REFUSED(with_cluster("  endpoints: [\"127.0.0.1:2379\"]\n"), 11, "is not http://HOST:PORT");
  EXPECT_REFUSED(with_cluster("  endpoints: [\"http://127.0.0.1\"]\n"), 11, "is not http://HOST:PORT");
  EXPECT_REFUSED(with_cluster("  endpoints: [\"https://127.0.0.1\"]\n"), 11, "or https://HOST:PORT");
  EXPECT_REFUSED(with_cluster("  endpoints: [\"http://a:1\", \"http://a:1\"]\n"), 11, "listed twice");
  EXPECT_REFUSED(with_cluster(ep + "  node_name: \"lb 1\"\n"), 12, "cluster.node_name must be");
  EXPECT_REFUSED(with_cluster(ep + "  node_name: " + std::string(64, 'a') + "\n"), 12, "1 to 63 characters");
  EXPECT_REFUSED(with_cluster(ep + "  node_name: a/b\n"), 12, "got 'a/b'");
  EXPECT_REFUSED(with_cluster(ep + "  prefix: veer\n"), 12, "cluster.prefix must start with '/'");
  EXPECT_REFUSED(with_cluster(ep + "  prefix: /veer/\n"), 12, "not end with '/'");
  EXPECT_REFUSED(with_cluster(ep + "  prefix: /a//b\n"), 12, "cluster.prefix");
  EXPECT_REFUSED(with_cluster(ep + "  prefix: /\n"), 12, "cluster.prefix");
  EXPECT_REFUSED(with_cluster(ep + "  lease_ttl: 1s\n"), 12, "between 2s and 10m");
  EXPECT_REFUSED(with_cluster(ep + "  lease_ttl: 2500ms\n"), 12, "whole seconds");
  EXPECT_REFUSED(with_cluster(ep + "  min_nodes: -1\n"), 12, "cluster.min_nodes must be an integer");
  EXPECT_REFUSED(with_cluster(ep + "  tls: {ca: /x}\n"), 12, "cluster.tls.ca: cannot read '/x': No such file");
  EXPECT_REFUSED(with_cluster("  - http://127.0.0.1:2379\n"), 11, "cluster must be a mapping");
}

// cluster.tls against real PEM files (made by openssl, as the etcd tests' are).
class ClusterTlsSection : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    char tmpl[] = "/tmp/veer-config-tls-XXXXXX";
    ASSERT_TRUE(::mkdtemp(tmpl));
    dir_ = tmpl;
    pki_ = test::make_test_pki(dir_);
    std::ofstream(dir_ + "/not-pem.txt") << "hello\n";
  }
  static void TearDownTestSuite() { std::filesystem::remove_all(dir_); }
  static std::string tls_cluster(const std::string& tls) {
    return with_cluster("  endpoints: [\"https://10.9.0.1:2379\", \"https://etcd-2:2379\"]\n  tls:\n" + tls);
  }
  static inline std::string dir_;
  static inline test::TestPki pki_;
};

TEST_F(ClusterTlsSection, HttpsEndpointsWithACaAndAClientCertificateParse) {
  const Config c = parse_config(tls_cluster("    ca: " + pki_.ca + "\n    cert: " + pki_.client_cert +
                                            "\n    key: " + pki_.client_key + "\n    server_name: etcd.internal\n"),
                                "veer.yaml");
  ASSERT_TRUE(c.cluster && c.cluster->tls);
  EXPECT_EQ(c.cluster->endpoints, (std::vector<std::string>{"https://10.9.0.1:2379", "https://etcd-2:2379"}));
  EXPECT_EQ(c.cluster->tls->ca, pki_.ca);
  EXPECT_EQ(c.cluster->tls->cert, pki_.client_cert);
  EXPECT_EQ(c.cluster->tls->key, pki_.client_key);
  EXPECT_EQ(c.cluster->tls->server_name, "etcd.internal");

  const Config ca_only = parse_config(tls_cluster("    ca: " + pki_.ca + "\n"), "veer.yaml");
  ASSERT_TRUE(ca_only.cluster->tls);
  EXPECT_TRUE(ca_only.cluster->tls->cert.empty());
  EXPECT_TRUE(ca_only.cluster->tls->server_name.empty()) << "default: each endpoint's host";
  EXPECT_FALSE(parse_config(with_cluster("  endpoints: [\"http://127.0.0.1:2379\"]\n"), "veer.yaml").cluster->tls);
}

TEST_F(ClusterTlsSection, SchemesMustAgreeWithTlsAndEachOther) {
  const std::string ca = "    ca: " + pki_.ca + "\n";
  EXPECT_REFUSED(with_cluster("  endpoints: [\"https://a:1\", \"http://b:1\"]\n  tls:\n" + ca), 11,
                 "'http://b:1' and 'https://a:1' mix http and https");
  EXPECT_REFUSED(with_cluster("  endpoints: [\"http://a:1\", \"https://b:1\"]\n"), 11, "mix http and https");
  EXPECT_REFUSED(with_cluster("  endpoints: [\"http://a:1\"]\n  tls:\n" + ca), 12,
                 "cluster.tls is set but cluster.endpoints are http://");
  EXPECT_REFUSED(with_cluster("  tls:\n" + ca + "  endpoints: [\"http://a:1\"]\n"), 11,
                 "TLS to etcd needs https:// endpoints");
}

TEST_F(ClusterTlsSection, FilesThatCannotBeUsedRefuseTheConfigWithTheReason) {
  const std::string ca = "    ca: " + pki_.ca + "\n";
  EXPECT_REFUSED(tls_cluster("    cert: " + pki_.client_cert + "\n    key: " + pki_.client_key + "\n"), 12,
                 "cluster.tls.ca is required");
  EXPECT_REFUSED(tls_cluster(ca + "    cert: " + pki_.client_cert + "\n"), 14,
                 "cluster.tls.cert and cluster.tls.key go together");
  EXPECT_REFUSED(tls_cluster(ca + "    key: " + pki_.client_key + "\n"), 14, "set both or neither");
  EXPECT_REFUSED(tls_cluster("    ca: /nonexistent/ca.pem\n"), 13,
                 "cluster.tls.ca: cannot read '/nonexistent/ca.pem': No such file or directory");
  EXPECT_REFUSED(tls_cluster("    ca: " + dir_ + "\n"), 13, "cluster.tls.ca: cannot read '" + dir_ + "': Is a directory");
  EXPECT_REFUSED(tls_cluster("    ca: ca.pem\n"), 13, "cluster.tls.ca must be an absolute path, got 'ca.pem'");
  EXPECT_REFUSED(tls_cluster("    ca: " + dir_ + "/not-pem.txt\n"), 13, "holds no PEM certificate");
  EXPECT_REFUSED(tls_cluster(ca + "    cert: " + pki_.client_key + "\n    key: " + pki_.client_key + "\n"), 14,
                 "cluster.tls.cert: '" + pki_.client_key + "' holds no PEM certificate");
  EXPECT_REFUSED(tls_cluster(ca + "    cert: " + pki_.client_cert + "\n    key: " + pki_.client_cert + "\n"), 15,
                 "holds no PEM private key");
  EXPECT_REFUSED(tls_cluster(ca + "    cert: " + pki_.client_cert + "\n    key: " + pki_.server_key + "\n"), 15,
                 "is not the key of the certificate '" + pki_.client_cert + "'");
  EXPECT_REFUSED(tls_cluster(ca + "    server_name: \"a b\"\n"), 14, "cluster.tls.server_name must be");
  EXPECT_REFUSED(tls_cluster(ca + "    sni: x\n"), 14, "unknown key 'sni' in cluster.tls");
  EXPECT_REFUSED(with_cluster("  endpoints: [\"https://a:1\"]\n  tls: " + pki_.ca + "\n"), 12,
                 "cluster.tls must be a mapping");
}

TEST(Config, RefusesBadServiceValues) {
  EXPECT_REFUSED(with("name: ranker", "name: Ranker"), 11, "service name 'Ranker' is invalid");
  EXPECT_REFUSED(with("protocol: tcp", "protocol: sctp"), 14, "protocol must be tcp or udp, got 'sctp'");
  EXPECT_REFUSED(with("affinity: connection", "affinity: sticky"), 15,
                 "affinity must be connection or client-ip, got 'sticky'");
  EXPECT_REFUSED(with("    port: 80\n", ""), 11, "service is missing required key 'port'");
  EXPECT_REFUSED(with("services:\n", "services: []\nx:\n"), 11, "unknown key 'x' in the config");
}

TEST(Config, RefusesEmptyServiceList) {
  const std::string only_node = kGood.substr(0, kGood.find("services:"));
  EXPECT_REFUSED(only_node + "services: []\n", 10, "services must be a list of 1 to 64 services");
  EXPECT_REFUSED(only_node, 1, "missing required key 'services'");
}

TEST(Config, RefusesYamlSyntaxErrors) {
  // Mis-indented key: the parser stops at line 13.
  EXPECT_REFUSED(with("    port: 80", "   port: 80"), 13, "YAML syntax error");
  EXPECT_REFUSED(with("[eth0, eth1]", "[eth0, eth1"), 3, "YAML syntax error: end of sequence flow not found");
  EXPECT_REFUSED("", 1, "the config is empty");
}

TEST(Config, LoadsAFileAndNamesItInErrors) {
  const std::string dir = testing::TempDir();
  const std::string good_path = dir + "/veer_h3_good.yaml";
  const std::string bad_path = dir + "/veer_h3_bad.yaml";
  std::ofstream(good_path) << kGood;
  std::ofstream(bad_path) << with("port: 80", "port: 99999");
  const Config c = load_config_file(good_path);
  EXPECT_EQ(c.services.size(), 2u);
  try {
    load_config_file(bad_path);
    ADD_FAILURE() << "bad file accepted";
  } catch (const ConfigError& e) {
    EXPECT_EQ(e.file(), bad_path);
    EXPECT_EQ(e.line(), 13);
    EXPECT_EQ(std::string(e.what()).rfind(bad_path + ":13:", 0), 0u) << e.what();
  }
  std::remove(good_path.c_str());
  std::remove(bad_path.c_str());
}

TEST(Config, RefusesMissingFile) {
  try {
    load_config_file("/nonexistent/veer-h3/veer.yaml");
    ADD_FAILURE() << "missing file accepted";
  } catch (const ConfigError& e) {
    EXPECT_EQ(e.file(), "/nonexistent/veer-h3/veer.yaml");
    EXPECT_EQ(e.line(), 0);
    EXPECT_NE(e.reason().find("cannot read config file: No such file or directory"), std::string::npos) << e.what();
    EXPECT_EQ(std::string(e.what()), "/nonexistent/veer-h3/veer.yaml: " + e.reason());
  }
  EXPECT_THROW(load_config_file(testing::TempDir()), ConfigError);  // a directory
}

TEST(Weights, ParseAcceptsUpToTwoDecimals) {
  EXPECT_EQ(parse_weight_bp("5"), 500u);
  EXPECT_EQ(parse_weight_bp("5.5"), 550u);
  EXPECT_EQ(parse_weight_bp("99.50"), 9950u);
  EXPECT_EQ(parse_weight_bp("0.01"), 1u);
  EXPECT_EQ(parse_weight_bp("0"), 0u);
  EXPECT_EQ(parse_weight_bp("100"), 10000u);
  EXPECT_EQ(parse_weight_bp("100.00"), 10000u);
  for (const char* bad : {"100.01", "100.001", "0.001", "-1", "abc", "", ".5", "5.", "1e2", " 5", "5 ", "5%", "1000",
                          "5.5.5", "+5"})
    EXPECT_FALSE(parse_weight_bp(bad)) << "'" << bad << "'";
}

TEST(Weights, FormatRoundTrips) {
  EXPECT_EQ(format_weight(9950), "99.50");
  EXPECT_EQ(format_weight(5), "0.05");
  EXPECT_EQ(format_weight(10000), "100.00");
  for (uint32_t bp = 0; bp <= VEER_WEIGHT_TOTAL; ++bp) ASSERT_EQ(parse_weight_bp(format_weight(bp)), bp);
}

}  // namespace
}  // namespace veer
