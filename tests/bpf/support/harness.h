// Loads the real data plane (veer.skel.h), fills its maps directly with the
// abi.h structs, and runs frames through veer_xdp / veer_tc with
// BPF_PROG_TEST_RUN. Shared by the BPF tests and the benchmark.
#pragma once
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <linux/types.h>

#include <array>
#include <cstring>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <map>
#include <ostream>
#include <stdexcept>
#include <string>
#include <vector>

extern "C" {
#include "veer/abi.h"
#include "veer/hash.h"
}
#include "packet.h"

// The skeleton is generated with `name veer`: its `struct veer` would clash
// with C++ `namespace veer`, so it lives in a namespace of its own (its own
// includes are already satisfied above, the guards make them no-ops here).
namespace veer_skeleton {
#include "veer.skel.h"
}

namespace veer::test {

enum class Hook { Xdp, Tc };

inline const char* hook_name(Hook h) { return h == Hook::Xdp ? "xdp" : "tc"; }
inline void PrintTo(Hook h, std::ostream* os) { *os << hook_name(h); }  // gtest parameter names

// Verdict values of each hook for the three outcomes the brief names.
inline uint32_t verdict_pass(Hook h) { return h == Hook::Xdp ? XDP_PASS : TC_ACT_OK; }
inline uint32_t verdict_drop(Hook h) { return h == Hook::Xdp ? XDP_DROP : TC_ACT_SHOT; }
inline uint32_t verdict_redirect(Hook h) { return h == Hook::Xdp ? XDP_REDIRECT : TC_ACT_REDIRECT; }

inline veer_addr to_abi(const Ip& ip) {
  veer_addr a{};
  std::memcpy(a.addr, ip.b.data(), ip.size());
  return a;
}

struct BackendDef {
  std::string ip;
  uint16_t port = 0;  // host order
  bool present = true;
};

struct ServiceDef {
  uint32_t id = 0;
  std::string vip;
  uint16_t port = 0;  // host order
  uint8_t proto = VEER_PROTO_TCP;
  uint8_t affinity = VEER_AFFINITY_CONNECTION;
  uint32_t seed = 0x5eed;
  std::vector<std::vector<BackendDef>> variants;
  // veer_service.udp_idle_ticks: veerd's default of 30 s, rounded up to ticks.
  uint32_t udp_idle_ticks = static_cast<uint32_t>((30'000'000'000ull + VEER_TICK_NS - 1) / VEER_TICK_NS);

  uint8_t family() const { return Ip::parse(vip).family == 4 ? VEER_AF_INET : VEER_AF_INET6; }
  veer_service_key key() const {
    veer_service_key k{};
    k.vip = to_abi(Ip::parse(vip));
    k.port = htons(port);
    k.proto = proto;
    k.family = family();
    return k;
  }
};

struct RunResult {
  uint32_t retval = 0;
  Bytes out;
  uint32_t duration_ns = 0;
};

class Dataplane {
 public:
  // flow_entries: size of veer_flows (LRU maps are preallocated: the 1M
  // default costs over 100 MB per load); 0 keeps the object's default.
  explicit Dataplane(uint32_t flow_entries = 4096) {
    skel_ = veer_skeleton::veer__open();
    if (!skel_) throw std::runtime_error("veer__open failed");
    if (flow_entries) bpf_map__set_max_entries(skel_->maps.veer_flows, flow_entries);
    if (int err = veer_skeleton::veer__load(skel_); err) {
      veer_skeleton::veer__destroy(skel_);
      throw std::runtime_error("veer__load failed: " + std::string(strerror(-err)));
    }
    ncpus_ = libbpf_num_possible_cpus();
  }
  ~Dataplane() { veer_skeleton::veer__destroy(skel_); }
  Dataplane(const Dataplane&) = delete;
  Dataplane& operator=(const Dataplane&) = delete;

  veer_skeleton::veer* skel() { return skel_; }
  int prog_fd(Hook h) const {
    return bpf_program__fd(h == Hook::Xdp ? skel_->progs.veer_xdp : skel_->progs.veer_tc);
  }

  static void check(int err, const char* what) {
    if (err) throw std::runtime_error(std::string(what) + ": " + strerror(errno));
  }

  // Writes the service, its backends (with their veer_backend_rev entries,
  // as veerd does) and the port filter bits. Slot tables are written
  // separately (write_table) and active_table is 0.
  void add_service(const ServiceDef& s, uint8_t active_table = 0) {
    for (size_t v = 0; v < s.variants.size(); ++v) {
      for (size_t b = 0; b < s.variants[v].size(); ++b) {
        const BackendDef& bd = s.variants[v][b];
        Ip ip = Ip::parse(bd.ip);
        veer_backend be{};
        be.addr = to_abi(ip);
        be.port = htons(bd.port);
        be.family = ip.family == 4 ? VEER_AF_INET : VEER_AF_INET6;
        be.flags = bd.present ? VEER_BACKEND_F_PRESENT : 0;
        uint32_t key = static_cast<uint32_t>((s.id * VEER_MAX_VARIANTS + v) * VEER_MAX_BACKENDS + b);
        check(bpf_map__update_elem(skel_->maps.veer_backends, &key, sizeof key, &be, sizeof be, BPF_ANY),
              "update veer_backends");
        veer_backend_rev_key rkey{};
        rkey.addr = be.addr;
        rkey.port = be.port;
        rkey.proto = s.proto;
        rkey.family = be.family;
        veer_backend_rev rev{};
        rev.vip = to_abi(Ip::parse(s.vip));
        rev.vport = htons(s.port);
        rev.service_id = static_cast<uint16_t>(s.id);
        check(bpf_map__update_elem(skel_->maps.veer_backend_rev, &rkey, sizeof rkey, &rev, sizeof rev, BPF_ANY),
              "update veer_backend_rev");
        set_port_bits(bd.port, s.proto == VEER_PROTO_TCP ? VEER_PORT_F_BACKEND_TCP : VEER_PORT_F_BACKEND_UDP);
      }
    }
    set_port_bits(s.port, s.proto == VEER_PROTO_TCP ? VEER_PORT_F_SERVICE_TCP : VEER_PORT_F_SERVICE_UDP);
    veer_service_key k = s.key();
    veer_service sv{};
    sv.id = s.id;
    sv.hash_seed = s.seed;
    sv.active_table = active_table;
    sv.affinity = s.affinity;
    sv.n_variants = static_cast<uint8_t>(s.variants.size());
    sv.udp_idle_ticks = s.udp_idle_ticks;
    // As veerd does: the id's key, then the TCP port hint (1 + id when the
    // service is the only TCP one on its port, else 0), then the service.
    check(bpf_map__update_elem(skel_->maps.veer_service_keys, &s.id, sizeof s.id, &k, sizeof k, BPF_ANY),
          "update veer_service_keys");
    if (s.proto == VEER_PROTO_TCP) {
      auto& ids = tcp_port_services_[s.port];
      ids.insert(s.id);
      set_tcp_hint(s.port, ids.size() == 1 ? static_cast<uint8_t>(s.id + 1) : 0);
    }
    check(bpf_map__update_elem(skel_->maps.veer_services, &k, sizeof k, &sv, sizeof sv, BPF_ANY),
          "update veer_services");
  }

  // veer_tcp_port_service[port] (1 + service id, 0: none).
  void set_tcp_hint(uint16_t port, uint8_t hint) {
    uint32_t key = port;
    check(bpf_map__update_elem(skel_->maps.veer_tcp_port_service, &key, sizeof key, &hint, sizeof hint, BPF_ANY),
          "update veer_tcp_port_service");
  }
  uint8_t tcp_hint(uint16_t port) const {
    uint32_t key = port;
    uint8_t hint = 0;
    check(bpf_map__lookup_elem(skel_->maps.veer_tcp_port_service, &key, sizeof key, &hint, sizeof hint, 0),
          "lookup veer_tcp_port_service");
    return hint;
  }
  void delete_service(const ServiceDef& s) {
    veer_service_key k = s.key();
    check(bpf_map__delete_elem(skel_->maps.veer_services, &k, sizeof k, 0), "delete veer_services");
  }

  void set_port_bits(uint16_t port, uint8_t bits) {
    uint32_t key = port;
    uint8_t v = 0;
    check(bpf_map__lookup_elem(skel_->maps.veer_port_filter, &key, sizeof key, &v, sizeof v, 0),
          "lookup veer_port_filter");
    v |= bits;
    check(bpf_map__update_elem(skel_->maps.veer_port_filter, &key, sizeof key, &v, sizeof v, BPF_ANY),
          "update veer_port_filter");
  }

  void write_table(uint32_t service_id, uint32_t table, const std::function<veer_slot(uint32_t)>& slot_of) {
    auto t = std::make_unique<veer_slot_table>();
    for (uint32_t i = 0; i < VEER_SLOTS; ++i) t->slot[i] = slot_of(i);
    uint32_t key = service_id * 2 + table;
    check(bpf_map__update_elem(skel_->maps.veer_slots, &key, sizeof key, t.get(), sizeof *t, BPF_ANY),
          "update veer_slots");
  }

  // The flip of SPEC §2.5: one update of the service entry.
  void flip(const ServiceDef& s, uint8_t active_table) {
    veer_service_key k = s.key();
    veer_service sv{};
    check(bpf_map__lookup_elem(skel_->maps.veer_services, &k, sizeof k, &sv, sizeof sv, 0), "lookup service");
    sv.active_table = active_table;
    sv.generation++;
    check(bpf_map__update_elem(skel_->maps.veer_services, &k, sizeof k, &sv, sizeof sv, BPF_EXIST),
          "update service");
  }

  // A new udp_idle_ticks for a loaded service, nothing else changed.
  void set_udp_idle_ticks(const ServiceDef& s, uint32_t ticks) {
    veer_service_key k = s.key();
    veer_service sv{};
    check(bpf_map__lookup_elem(skel_->maps.veer_services, &k, sizeof k, &sv, sizeof sv, 0), "lookup service");
    sv.udp_idle_ticks = ticks;
    check(bpf_map__update_elem(skel_->maps.veer_services, &k, sizeof k, &sv, sizeof sv, BPF_EXIST),
          "update service");
  }

  std::array<uint64_t, VEER_REASON_MAX> reasons() const {
    std::array<uint64_t, VEER_REASON_MAX> sum{};
    std::vector<uint64_t> per_cpu(ncpus_);
    for (uint32_t r = 0; r < VEER_REASON_MAX; ++r) {
      check(bpf_map__lookup_elem(skel_->maps.veer_reasons, &r, sizeof r, per_cpu.data(),
                                 per_cpu.size() * sizeof(uint64_t), 0),
            "lookup veer_reasons");
      for (uint64_t v : per_cpu) sum[r] += v;
    }
    return sum;
  }

  veer_variant_counters counters(uint32_t service_id, uint32_t variant) const {
    std::vector<veer_variant_counters> per_cpu(ncpus_);
    uint32_t key = service_id * VEER_MAX_VARIANTS + variant;
    check(bpf_map__lookup_elem(skel_->maps.veer_variant_stats, &key, sizeof key, per_cpu.data(),
                               per_cpu.size() * sizeof(veer_variant_counters), 0),
          "lookup veer_variant_stats");
    veer_variant_counters sum{};
    for (const auto& c : per_cpu) {
      sum.packets_in += c.packets_in;
      sum.bytes_in += c.bytes_in;
      sum.packets_out += c.packets_out;
      sum.bytes_out += c.bytes_out;
      sum.new_flows += c.new_flows;
      sum.backend_resets += c.backend_resets;
      sum.client_resets += c.client_resets;
      sum.http_2xx += c.http_2xx;
      sum.http_3xx += c.http_3xx;
      sum.http_4xx += c.http_4xx;
      sum.http_5xx += c.http_5xx;
      sum.responses += c.responses;
    }
    return sum;
  }

  // veer_latency of (service, variant), summed over CPUs.
  std::array<uint64_t, VEER_LAT_BUCKETS> latency(uint32_t service_id, uint32_t variant) const {
    std::vector<veer_latency_hist> per_cpu(ncpus_);
    uint32_t key = service_id * VEER_MAX_VARIANTS + variant;
    check(bpf_map__lookup_elem(skel_->maps.veer_latency, &key, sizeof key, per_cpu.data(),
                               per_cpu.size() * sizeof(veer_latency_hist), 0),
          "lookup veer_latency");
    std::array<uint64_t, VEER_LAT_BUCKETS> sum{};
    for (const auto& h : per_cpu)
      for (uint32_t b = 0; b < VEER_LAT_BUCKETS; ++b) sum[b] += h.bucket[b];
    return sum;
  }

  std::optional<veer_handshake> handshake(const veer_flow_key& reverse_key) const {
    veer_handshake hs{};
    if (bpf_map__lookup_elem(skel_->maps.veer_handshakes, &reverse_key, sizeof reverse_key, &hs, sizeof hs, 0) != 0)
      return std::nullopt;
    return hs;
  }

  // The veer_flows entry of a client's connection tuple (src = client, dst =
  // VIP), found as the program finds it: the service of the VIP, then
  // (client, client port, service).
  bool flow_exists(const veer_flow_key& tuple, veer_flow* out = nullptr) const {
    veer_service_key sk{};
    sk.vip = tuple.dst;
    sk.port = tuple.dport;
    sk.proto = tuple.proto;
    sk.family = tuple.family;
    veer_service svc{};
    if (bpf_map__lookup_elem(skel_->maps.veer_services, &sk, sizeof sk, &svc, sizeof svc, 0) != 0) return false;
    return flow_by_id(flow_id(tuple, static_cast<uint16_t>(svc.id)), out);
  }

  static veer_flow_id flow_id(const veer_flow_key& tuple, uint16_t service_id) {
    veer_flow_id id{};
    id.client = tuple.src;
    id.client_port = tuple.sport;
    id.service_id = service_id;
    id.proto = tuple.proto;
    id.family = tuple.family;
    return id;
  }

  bool flow_by_id(const veer_flow_id& id, veer_flow* out = nullptr) const {
    veer_flow f{};
    int err = bpf_map__lookup_elem(skel_->maps.veer_flows, &id, sizeof id, &f, sizeof f, 0);
    if (out && !err) *out = f;
    return err == 0;
  }

  void put_flow(const veer_flow_id& id, const veer_flow& f) {
    check(bpf_map__update_elem(skel_->maps.veer_flows, &id, sizeof id, &f, sizeof f, BPF_ANY), "update veer_flows");
  }

  // The next-hop cache entry for (dst, ingress ifindex) in CPU `cpu`'s copy
  // of veer_fib_cache, expired or not. Scans every index: where an entry
  // lives is the program's business.
  std::optional<veer_fib_cache_entry> fib_cache_entry(const Ip& dst, int ingress_ifindex, int cpu) const {
    static_assert(sizeof(veer_fib_cache_entry) % 8 == 0, "per-CPU values are laid out 8-byte aligned");
    std::vector<veer_fib_cache_entry> per_cpu(ncpus_);
    veer_addr want = to_abi(dst);
    uint8_t family = dst.family == 4 ? VEER_AF_INET : VEER_AF_INET6;
    for (uint32_t i = 0; i < VEER_FIB_CACHE_ENTRIES; ++i) {
      check(bpf_map__lookup_elem(skel_->maps.veer_fib_cache, &i, sizeof i, per_cpu.data(),
                                 per_cpu.size() * sizeof(veer_fib_cache_entry), 0),
            "lookup veer_fib_cache");
      const veer_fib_cache_entry& e = per_cpu.at(static_cast<size_t>(cpu));
      if (e.family == family && e.ingress_ifindex == static_cast<uint32_t>(ingress_ifindex) &&
          std::memcmp(e.dst, want.addr, sizeof e.dst) == 0)
        return e;
    }
    return std::nullopt;
  }

  // One BPF_PROG_TEST_RUN of `frame` arriving on `ifindex`. Throws if the
  // kernel refuses the run (that is a harness error, not a verdict).
  RunResult run(Hook h, const Bytes& frame, int ifindex, uint32_t repeat = 1) const {
    return run_fd(prog_fd(h), h, frame, ifindex, repeat);
  }

  // The kernel builds no skb for BPF_PROG_TEST_RUN from a frame whose IPv4
  // or IPv6 header is cut short (EINVAL, seen on 6.18), so such frames can only
  // be run through XDP. True for exactly those frames.
  static bool tc_cannot_run(const Bytes& frame) {
    if (frame.size() < 14) return true;
    uint16_t et = get16(frame, 12);
    return (et == kEthIpv4 && frame.size() < 14 + 20) || (et == kEthIpv6 && frame.size() < 14 + 40);
  }

  static RunResult run_fd(int fd, Hook h, const Bytes& frame, int ifindex, uint32_t repeat = 1) {
    RunResult r;
    r.out.resize(frame.size() + 512);
    xdp_md xctx{};
    __sk_buff sctx{};
    bpf_test_run_opts opts{};
    opts.sz = sizeof opts;
    opts.data_in = frame.data();
    opts.data_size_in = static_cast<__u32>(frame.size());
    opts.data_out = r.out.data();
    opts.data_size_out = static_cast<__u32>(r.out.size());
    opts.repeat = static_cast<int>(repeat);
    if (h == Hook::Xdp) {
      xctx.data_end = static_cast<__u32>(frame.size());
      xctx.ingress_ifindex = static_cast<__u32>(ifindex);
      opts.ctx_in = &xctx;
      opts.ctx_size_in = sizeof xctx;
    } else {
      sctx.ifindex = static_cast<__u32>(ifindex);
      sctx.ingress_ifindex = static_cast<__u32>(ifindex);
      opts.ctx_in = &sctx;
      opts.ctx_size_in = sizeof sctx;
    }
    if (bpf_prog_test_run_opts(fd, &opts) != 0)
      throw std::runtime_error(std::string("BPF_PROG_TEST_RUN (") + hook_name(h) + ", " +
                               std::to_string(frame.size()) + " bytes): " + strerror(errno) + "\n" + hex(frame));
    r.retval = opts.retval;
    r.duration_ns = opts.duration;
    r.out.resize(opts.data_size_out);
    return r;
  }

 private:
  veer_skeleton::veer* skel_ = nullptr;
  std::map<uint16_t, std::set<uint32_t>> tcp_port_services_;  // what add_service installed
  int ncpus_ = 1;
};

}  // namespace veer::test
