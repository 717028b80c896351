// A private network namespace with a small routed topology, so that
// bpf_fib_lookup() inside BPF_PROG_TEST_RUN finds real routes and neighbours.
//
//   clients 198.51.100.0/24, 2001:db8:c::/64   on "vcli" (peer "vcli-p")
//   backends 192.0.2.0/24,   2001:db8:b::/64   on "vbk"  (peer "vbk-p")
//
// Every address listed in kNeighbours gets a PERMANENT neighbour entry with a
// fixed MAC (so a lookup returns SUCCESS and tests can assert the MACs);
// kNoNeighbour* are routed but have no neighbour entry (BPF_FIB_LKUP_RET_NO_NEIGH);
// kUnreachable* sit in blackhole routes. Forwarding is on (bpf_fib_lookup
// refuses with FWD_DISABLED otherwise).
//
// enter() unshares the network namespace of the calling process (call it
// before any thread starts): everything, including the `ip` commands it runs,
// then happens in a namespace that disappears with the process, so nothing
// leaks to the host even on a crash.
#pragma once
#include <net/if.h>
#include <sched.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <stdexcept>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "packet.h"

namespace veer::test {

struct Topology {
  static constexpr const char* kClientIf = "vcli";
  static constexpr const char* kBackendIf = "vbk";
  static constexpr const char* kClientIfMac = "02:00:00:00:0c:01";
  static constexpr const char* kBackendIfMac = "02:00:00:00:0b:01";

  static constexpr const char* kNoNeighbour4 = "192.0.2.99";
  static constexpr const char* kNoNeighbour6 = "2001:db8:b::99";
  static constexpr const char* kUnreachable4 = "10.99.0.5";
  static constexpr const char* kUnreachable6 = "2001:db8:dead::5";

  // (address, MAC) of every neighbour with a PERMANENT entry, and its interface.
  struct Neighbour {
    const char* ip;
    const char* mac;
    const char* dev;
  };
  static inline const std::vector<Neighbour> kNeighbours = {
      {"198.51.100.10", "02:00:00:00:0c:10", kClientIf},
      {"198.51.100.11", "02:00:00:00:0c:11", kClientIf},
      {"198.51.100.12", "02:00:00:00:0c:12", kClientIf},
      {"198.51.100.50", "02:00:00:00:0c:50", kClientIf},  // a backend on the client side
      {"2001:db8:c::10", "02:00:00:00:0c:10", kClientIf},
      {"2001:db8:c::11", "02:00:00:00:0c:11", kClientIf},
      {"192.0.2.11", "02:00:00:00:0b:11", kBackendIf},
      {"192.0.2.12", "02:00:00:00:0b:12", kBackendIf},
      {"192.0.2.21", "02:00:00:00:0b:21", kBackendIf},
      {"192.0.2.22", "02:00:00:00:0b:22", kBackendIf},
      {"2001:db8:b::11", "02:00:00:00:0b:11", kBackendIf},
      {"2001:db8:b::12", "02:00:00:00:0b:12", kBackendIf},
      {"2001:db8:b::21", "02:00:00:00:0b:21", kBackendIf},
  };

  int client_ifindex = 0;
  int backend_ifindex = 0;

  static Mac neighbour_mac(const Ip& ip) {
    for (const auto& n : kNeighbours)
      if (Ip::parse(n.ip) == ip) return mac(n.mac);
    throw std::invalid_argument("no neighbour " + ip.str());
  }

  static void run(const std::string& cmd) {
    std::string full = cmd + " 2>&1";
    FILE* p = popen(full.c_str(), "r");
    if (!p) throw std::runtime_error("popen failed: " + cmd);
    std::string out;
    char buf[256];
    while (fgets(buf, sizeof buf, p)) out += buf;
    int rc = pclose(p);
    if (rc != 0) throw std::runtime_error("command failed (" + std::to_string(rc) + "): " + cmd + "\n" + out);
  }

  static void write_sysctl(const std::string& path, const std::string& value) {
    std::ofstream f(path);
    f << value;
    f.close();
    if (!f) throw std::runtime_error("cannot write " + path);
  }

  // Unshares the network namespace and builds the topology. Throws on failure.
  static Topology enter() {
    if (unshare(CLONE_NEWNET) != 0)
      throw std::runtime_error(std::string("unshare(CLONE_NEWNET): ") + strerror(errno) + " (needs root)");
    run("ip link set lo up");
    for (auto [dev, peer, devmac, v4, v6] :
         {std::tuple{kClientIf, "vcli-p", kClientIfMac, "198.51.100.1/24", "2001:db8:c::1/64"},
          std::tuple{kBackendIf, "vbk-p", kBackendIfMac, "192.0.2.1/24", "2001:db8:b::1/64"}}) {
      run(std::string("ip link add ") + dev + " address " + devmac + " type veth peer name " + peer);
      run(std::string("ip link set ") + dev + " up");
      run(std::string("ip link set ") + peer + " up");
      run(std::string("ip addr add ") + v4 + " dev " + dev);
      run(std::string("ip addr add ") + v6 + " dev " + dev + " nodad");
    }
    for (const auto& n : kNeighbours)
      run(std::string("ip neigh replace ") + n.ip + " lladdr " + n.mac + " dev " + n.dev + " nud permanent");
    run("ip route add blackhole 10.99.0.0/16");
    run("ip -6 route add blackhole 2001:db8:dead::/48");
    write_sysctl("/proc/sys/net/ipv4/ip_forward", "1");
    write_sysctl("/proc/sys/net/ipv6/conf/all/forwarding", "1");

    Topology t;
    t.client_ifindex = static_cast<int>(if_nametoindex(kClientIf));
    t.backend_ifindex = static_cast<int>(if_nametoindex(kBackendIf));
    if (!t.client_ifindex || !t.backend_ifindex) throw std::runtime_error("topology interfaces missing");
    return t;
  }
};

}  // namespace veer::test
