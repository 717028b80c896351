// Dataplane: the BPF object's life in the kernel. Creates or adopts the pinned
// maps, loads the programs, attaches them, and is the MapWriter over the maps.
#include "veer/dataplane.h"

#include <arpa/inet.h>
#include <net/if.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <set>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <spdlog/spdlog.h>

#include "internal.h"

// The skeleton is generated with `name veer`, so it declares `struct veer`,
// which would collide with namespace veer: it lives in its own namespace.
// Its includes (errno.h, stdlib.h, libbpf.h) are already in at global scope,
// so their include guards keep them there.
namespace veer_skeleton {
#include "veer.skel.h"
}

namespace veer {
namespace {

using namespace detail;
using Skeleton = veer_skeleton::veer;

// --- libbpf's messages ---------------------------------------------------------
// Everything libbpf says goes to the log at debug level (the verifier log can
// be thousands of lines); while loading, it is also captured so the error can
// quote the lines that matter.
thread_local std::vector<std::string>* libbpf_capture = nullptr;

int libbpf_print(enum libbpf_print_level level, const char* format, va_list args) {
  va_list copy;
  va_copy(copy, args);
  const int n = vsnprintf(nullptr, 0, format, copy);
  va_end(copy);
  if (n <= 0) return n;
  std::string text(static_cast<size_t>(n), '\0');
  vsnprintf(text.data(), text.size() + 1, format, args);
  while (!text.empty() && text.back() == '\n') text.pop_back();
  if (libbpf_capture) libbpf_capture->push_back(text);
  if (level == LIBBPF_DEBUG)
    spdlog::trace("libbpf: {}", text);
  else
    spdlog::debug("libbpf: {}", text);
  return n;
}

struct LibbpfCapture {
  std::vector<std::string> lines;
  LibbpfCapture() { libbpf_capture = &lines; }
  ~LibbpfCapture() { libbpf_capture = nullptr; }

  // The lines worth an operator's eye: libbpf's own failure lines, and the
  // verifier's verdict (the last lines of its log, before the statistics).
  std::string summary() const {
    std::vector<std::string> all;
    for (const auto& chunk : lines) {
      size_t start = 0;
      while (start <= chunk.size()) {
        size_t end = chunk.find('\n', start);
        if (end == std::string::npos) end = chunk.size();
        all.push_back(chunk.substr(start, end - start));
        start = end + 1;
      }
    }
    std::vector<std::string> picked;
    for (size_t i = 0; i < all.size(); ++i) {
      const std::string& line = all[i];
      if (line.find("-- END PROG LOAD LOG --") != std::string::npos) {
        std::vector<std::string> verdict;
        for (size_t j = i; j-- > 0 && verdict.size() < 2;) {
          const std::string& prev = all[j];
          if (prev.empty() || prev.starts_with("processed ") || prev.starts_with("verification time") ||
              prev.starts_with("stack depth"))
            continue;
          if (prev.find("-- BEGIN PROG LOAD LOG --") != std::string::npos) break;
          verdict.insert(verdict.begin(), prev);
        }
        for (auto& v : verdict) picked.push_back("verifier: " + v);
      } else if (line.find("failed") != std::string::npos || line.find("error") != std::string::npos ||
                 line.find("Error") != std::string::npos) {
        if (line.find("BEGIN PROG LOAD LOG") == std::string::npos) picked.push_back(line);
      }
    }
    std::string out;
    for (const auto& p : picked) out += (out.empty() ? "" : "; ") + p;
    return out;
  }
};

void install_libbpf_print() {
  static std::once_flag once;
  std::call_once(once, [] { libbpf_set_print(libbpf_print); });
}

std::string map_name(const bpf_map* map) { return bpf_map__name(map); }

std::string describe(uint32_t type, uint32_t key, uint32_t value, uint32_t entries, uint32_t flags) {
  return "type " + std::to_string(type) + ", key " + std::to_string(key) + " B, value " + std::to_string(value) +
         " B, " + std::to_string(entries) + " entries, flags 0x" + std::to_string(flags);
}

// The map node.flow_table_size sizes (the only one since ABI 4).
bool is_flow_map(const std::string& name) { return name == "veer_flows"; }

struct FdGuard {
  int fd;
  ~FdGuard() {
    if (fd >= 0) close(fd);
  }
};

class BpfDataplane final : public Dataplane, public MapWriter {
 public:
  explicit BpfDataplane(const DataplaneOptions& options) : options_(options) {
    install_libbpf_print();
    if (options.flow_table_size == 0) throw DataplaneError("flow_table_size must be at least 1");
    if (auto mounted = ensure_bpffs(options.pin_path))
      spdlog::warn("bpffs mounted on {}: pins live as long as this mount (and its mount namespace)", *mounted);
    pin_ = std::filesystem::path(options.pin_path).lexically_normal().string();
    maps_dir_ = pin_ + "/maps";
    links_dir_ = pin_ + "/links";
    make_dirs(maps_dir_, 0700);
    make_dirs(links_dir_, 0700);

    ncpus_ = libbpf_num_possible_cpus();
    if (ncpus_ <= 0) fail("cannot count the possible CPUs", ncpus_);

    LibbpfCapture capture;
    skel_ = Skeleton::open();
    if (!skel_) {
      const int err = errno;
      throw DataplaneError("cannot open the BPF object: " + errno_text(err) + with(capture.summary()));
    }
    try {
      if (path_exists(maps_dir_ + "/veer_meta"))
        adopt_pinned_maps();
      else
        prepare_fresh_maps();
      if (int err = Skeleton::load(skel_); err) {
        throw DataplaneError("cannot load the BPF programs into the kernel: " + errno_text(err) +
                             with(capture.summary()) + " (libbpf's full log, with the verifier's, is at log level debug)");
      }
      if (!adopted_) pin_fresh_maps();
    } catch (...) {
      Skeleton::destroy(skel_);
      skel_ = nullptr;
      throw;
    }
  }

  ~BpfDataplane() override {
    // Closing our fds leaves the pinned maps and links (and so the data
    // plane) in the kernel: that is the point of pinning.
    if (skel_) Skeleton::destroy(skel_);
  }

  bool adopted() const override { return adopted_; }
  MapWriter& writer() override {
    check_loaded();
    return *this;
  }

  // --- attachments -------------------------------------------------------------
  std::vector<Attachment> attach(const std::vector<std::string>& interfaces, AttachMode mode) override {
    check_loaded();
    // Every name is checked before anything changes: a bad list changes nothing.
    std::vector<std::pair<std::string, int>> targets;
    std::set<std::string> wanted;
    for (const auto& name : interfaces) {
      if (name.empty() || name.size() >= IFNAMSIZ || name.find('/') != std::string::npos ||
          name.find_first_of(" \t\n") != std::string::npos)
        throw DataplaneError("invalid interface name '" + name + "'");
      const int ifindex = static_cast<int>(if_nametoindex(name.c_str()));
      if (ifindex == 0) throw DataplaneError("interface '" + name + "' does not exist: " + errno_text(errno));
      if (wanted.insert(name).second) targets.emplace_back(name, ifindex);
    }

    const auto pinned = list_pinned(links_dir_);
    for (const auto& p : pinned) {
      if (!wanted.contains(p.interface)) {
        spdlog::info("detaching from {} ({}): no longer listed", p.interface, hook_tag(p.hook));
        detach_hook(p);
      }
    }
    write_egress_flags(targets);
    std::vector<Attachment> result;
    for (const auto& [name, ifindex] : targets) {
      std::vector<PinnedHook> existing;
      for (const auto& p : pinned)
        if (p.interface == name) existing.push_back(p);
      result.push_back(attach_interface(name, ifindex, mode, existing));
    }
    return result;
  }

  std::vector<Attachment> attachments() const override {
    std::vector<Attachment> out;
    for (const auto& p : list_pinned(links_dir_))
      if (int ifindex = live_ifindex(p); ifindex > 0) out.push_back({p.interface, ifindex, hook_tag(p.hook)});
    return out;
  }

  // --- counters and flows ------------------------------------------------------
  veer_variant_counters variant_counters(uint32_t service_id, unsigned variant) const override {
    check_loaded();
    const uint32_t key = variant_key("variant_counters", service_id, variant);
    const auto per_cpu = read_per_cpu<veer_variant_counters>(skel_->maps.veer_variant_stats, key);
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

  VariantTelemetry telemetry(uint32_t service_id, unsigned variant) const override {
    check_loaded();
    const uint32_t key = variant_key("telemetry", service_id, variant);
    VariantTelemetry t;
    t.counters = variant_counters(service_id, variant);
    for (const auto& h : read_per_cpu<veer_latency_hist>(skel_->maps.veer_latency, key))
      for (size_t b = 0; b < t.latency.size(); ++b) t.latency[b] += h.bucket[b];
    if (!lookup(skel_->maps.veer_handshake_timeouts, &key, &t.handshake_timeouts, "read handshake timeouts"))
      throw DataplaneError("map veer_handshake_timeouts: entry " + std::to_string(key) + " does not exist");
    return t;
  }

  uint64_t collect_handshake_timeouts(uint64_t now_ns, uint64_t timeout_ns) override {
    check_loaded();
    if (timeout_ns == 0) throw DataplaneError("collect_handshake_timeouts: the timeout must be positive");
    const int fd = bpf_map__fd(skel_->maps.veer_handshakes);
    // Keys first, then deletes: deleting while walking with get_next_key
    // would restart the walk. Bounded by the map's size (the kernel may add
    // entries meanwhile: those wait for the next scan).
    const uint32_t max_entries = bpf_map__max_entries(skel_->maps.veer_handshakes);
    std::vector<veer_flow_key> keys;
    veer_flow_key key{};
    const veer_flow_key* prev = nullptr;
    while (keys.size() < max_entries) {
      const int err = bpf_map_get_next_key(fd, prev, &key);
      if (err == -ENOENT) break;
      if (err) fail("map veer_handshakes: cannot walk the keys", err);
      keys.push_back(key);
      prev = &keys.back();
    }
    std::vector<uint64_t> timed_out(VEER_MAX_SERVICES * VEER_MAX_VARIANTS, 0);
    uint64_t counted = 0;
    for (const auto& k : keys) {
      veer_handshake hs{};
      int err = bpf_map_lookup_elem(fd, &k, &hs);
      if (err == -ENOENT) continue;  // answered meanwhile
      if (err) fail("map veer_handshakes: cannot read an entry", err);
      if (hs.syn_ts_ns > now_ns || now_ns - hs.syn_ts_ns < timeout_ns) continue;
      err = bpf_map_delete_elem(fd, &k);
      if (err == -ENOENT) continue;  // the SYN-ACK came first
      if (err) fail("map veer_handshakes: cannot delete an entry", err);
      // Written by the kernel from maps veerd fills: drop what names no
      // counter rather than count it elsewhere.
      if (hs.service_id >= VEER_MAX_SERVICES || hs.variant >= VEER_MAX_VARIANTS) continue;
      ++timed_out[static_cast<size_t>(hs.service_id) * VEER_MAX_VARIANTS + hs.variant];
      ++counted;
    }
    for (uint32_t i = 0; i < timed_out.size(); ++i) {
      if (timed_out[i] == 0) continue;
      uint64_t total = 0;
      lookup(skel_->maps.veer_handshake_timeouts, &i, &total, "read handshake timeouts");
      total += timed_out[i];
      update(skel_->maps.veer_handshake_timeouts, &i, &total, "write handshake timeouts");
    }
    return counted;
  }

  std::array<uint64_t, VEER_REASON_MAX> reason_counters() const override {
    check_loaded();
    std::array<uint64_t, VEER_REASON_MAX> sums{};
    for (uint32_t reason = 0; reason < VEER_REASON_MAX; ++reason)
      for (uint64_t v : read_per_cpu<uint64_t>(skel_->maps.veer_reasons, reason)) sums[reason] += v;
    return sums;
  }

  std::optional<veer_flow> lookup_flow(const veer_flow_key& key) const override {
    check_loaded();
    // As the program does: the service the destination names, then the
    // flow of (client, client port, service).
    veer_service_key skey{};
    skey.vip = key.dst;
    skey.port = key.dport;
    skey.proto = key.proto;
    skey.family = key.family;
    veer_service svc{};
    if (!lookup(skel_->maps.veer_services, &skey, &svc, "look up a service")) return std::nullopt;
    veer_flow_id id{};
    id.client = key.src;
    id.client_port = key.sport;
    id.service_id = static_cast<__u16>(svc.id);
    id.proto = key.proto;
    id.family = key.family;
    veer_flow flow{};
    if (!lookup(skel_->maps.veer_flows, &id, &flow, "look up a flow")) return std::nullopt;
    return flow;
  }

  void unload() override {
    check_loaded();
    unload_pins(pin_);
    Skeleton::destroy(skel_);
    skel_ = nullptr;
    spdlog::info("data plane unloaded: detached everywhere, pins under {} removed", pin_);
  }

  // --- MapWriter -----------------------------------------------------------------
  void put_service(const veer_service_key& key, const veer_service& value) override {
    update(skel_->maps.veer_services, &key, &value, "write a service");
  }
  void delete_service(const veer_service_key& key) override {
    check_loaded();
    const int err = bpf_map_delete_elem(bpf_map__fd(skel_->maps.veer_services), &key);
    if (err && err != -ENOENT) fail("map veer_services: cannot delete a service", err);
  }
  std::optional<veer_service> get_service(const veer_service_key& key) const override {
    veer_service value{};
    if (!lookup(skel_->maps.veer_services, &key, &value, "read a service")) return std::nullopt;
    return value;
  }
  void put_slot_table(uint32_t index, const veer_slot_table& table) override {
    update(skel_->maps.veer_slots, &index, &table, "write slot table " + std::to_string(index));
  }
  std::optional<veer_slot_table> get_slot_table(uint32_t index) const override {
    veer_slot_table table{};
    if (!lookup(skel_->maps.veer_slots, &index, &table, "read slot table " + std::to_string(index)))
      return std::nullopt;
    return table;
  }
  void put_backend(uint32_t index, const veer_backend& backend) override {
    update(skel_->maps.veer_backends, &index, &backend, "write backend " + std::to_string(index));
  }
  void put_port_filter(uint16_t port, uint8_t bits) override {
    const uint32_t key = port;
    update(skel_->maps.veer_port_filter, &key, &bits, "write port " + std::to_string(port));
  }
  void put_service_key(uint32_t service_id, const veer_service_key& key) override {
    update(skel_->maps.veer_service_keys, &service_id, &key, "write the key of service " + std::to_string(service_id));
  }
  void put_tcp_port_hint(uint16_t port, uint8_t hint) override {
    const uint32_t key = port;
    update(skel_->maps.veer_tcp_port_service, &key, &hint, "write the TCP service hint of port " + std::to_string(port));
  }
  void put_backend_rev(const veer_backend_rev_key& key, const veer_backend_rev& value) override {
    update(skel_->maps.veer_backend_rev, &key, &value, "write the service of backend " + endpoint_text(key));
  }
  void delete_backend_rev(const veer_backend_rev_key& key) override {
    check_loaded();
    const int err = bpf_map_delete_elem(bpf_map__fd(skel_->maps.veer_backend_rev), &key);
    if (err && err != -ENOENT) fail("map veer_backend_rev: cannot delete backend " + endpoint_text(key), err);
  }

 private:
  static std::string endpoint_text(const veer_backend_rev_key& key) {
    return Endpoint{IpAddress::from_abi(key.addr, key.family), ntohs(key.port)}.to_string() +
           (key.proto == VEER_PROTO_TCP ? "/tcp" : "/udp");
  }

  static std::string with(const std::string& summary) { return summary.empty() ? "" : " [" + summary + "]"; }

  static uint32_t variant_key(const char* what, uint32_t service_id, unsigned variant) {
    if (service_id >= VEER_MAX_SERVICES || variant >= VEER_MAX_VARIANTS)
      throw DataplaneError(std::string(what) + ": service " + std::to_string(service_id) + " variant " +
                           std::to_string(variant) + " out of range");
    return service_id * VEER_MAX_VARIANTS + variant;
  }

  void check_loaded() const {
    if (!skel_) throw DataplaneError("the data plane at " + pin_ + " is unloaded");
  }

  void update(bpf_map* map, const void* key, const void* value, const std::string& what) {
    check_loaded();
    if (int err = bpf_map_update_elem(bpf_map__fd(map), key, value, BPF_ANY); err)
      fail("map " + map_name(map) + ": cannot " + what, err);
  }

  bool lookup(bpf_map* map, const void* key, void* value, const std::string& what) const {
    check_loaded();
    const int err = bpf_map_lookup_elem(bpf_map__fd(map), key, value);
    if (err == -ENOENT) return false;
    if (err) fail("map " + map_name(map) + ": cannot " + what, err);
    return true;
  }

  template <typename T>
  std::vector<T> read_per_cpu(bpf_map* map, uint32_t key) const {
    // Per-CPU values come one per possible CPU, each rounded up to 8 bytes.
    static_assert(sizeof(T) % 8 == 0);
    std::vector<T> values(static_cast<size_t>(ncpus_));
    if (!lookup(map, &key, values.data(), "read per-CPU entry " + std::to_string(key)))
      throw DataplaneError("map " + map_name(map) + ": entry " + std::to_string(key) + " does not exist");
    return values;
  }

  int prog_fd(Hook hook) const {
    const bpf_program* prog = hook == Hook::XdpNative || hook == Hook::XdpGeneric ? skel_->progs.veer_xdp
                                                                                 : skel_->progs.veer_tc;
    return bpf_program__fd(prog);
  }

  // veer_egress (abi.h): exactly the listed interfaces that are veths with their peer in another
  // namespace, written before the programs see them; entries of interfaces no longer listed go.
  void write_egress_flags(const std::vector<std::pair<std::string, int>>& targets) {
    const int fd = bpf_map__fd(skel_->maps.veer_egress);
    std::set<uint32_t> flagged;
    for (const auto& [name, ifindex] : targets) {
      if (!detail::veth_peer_in_other_netns(name, ifindex)) continue;
      const uint32_t key = static_cast<uint32_t>(ifindex), flags = VEER_EGRESS_F_PEER;
      if (int err = bpf_map_update_elem(fd, &key, &flags, BPF_ANY); err)
        fail("map veer_egress: cannot flag " + name, err);
      flagged.insert(key);
      spdlog::debug("{}: veth with its peer in another namespace: TC sends with bpf_redirect_peer", name);
    }
    std::vector<uint32_t> stale;
    uint32_t key = 0, next = 0;
    for (const uint32_t* prev = nullptr; bpf_map_get_next_key(fd, prev, &next) == 0; prev = &key) {
      key = next;
      if (!flagged.contains(key)) stale.push_back(key);
    }
    for (uint32_t k : stale) bpf_map_delete_elem(fd, &k);
  }

  Attachment attach_with(Hook hook, const std::string& name, int ifindex) {
    attach_hook(hook, name, ifindex, prog_fd(hook), links_dir_ + "/" + pin_name(name, hook));
    return {name, ifindex, hook_tag(hook)};
  }

  std::vector<Hook> tc_hooks() const {
    return options_.allow_tcx ? std::vector<Hook>{Hook::Tcx, Hook::ClsBpf} : std::vector<Hook>{Hook::ClsBpf};
  }

  Attachment attach_interface(const std::string& name, int ifindex, AttachMode mode,
                              const std::vector<PinnedHook>& existing) {
    std::vector<Hook> acceptable;
    switch (mode) {
      case AttachMode::Xdp: acceptable = {Hook::XdpNative}; break;
      case AttachMode::XdpGeneric: acceptable = {Hook::XdpGeneric}; break;
      case AttachMode::Auto:
        // Not native XDP on a veth: it copies every packet into an XDP buffer (the slowest mode for TCP in
        // bench/race), and a TCP segment whose sender left the checksum to offload (CHECKSUM_PARTIAL, the
        // veth default) leaves it as a frame whose checksum nobody completes. The TC hook keeps the skb.
        acceptable = detail::is_veth(name) ? tc_hooks() : std::vector<Hook>{Hook::XdpNative, Hook::XdpGeneric};
        break;
      case AttachMode::Tc: acceptable = tc_hooks(); break;
      case AttachMode::ClsBpf: acceptable = {Hook::ClsBpf}; break;
    }
    // A live pinned attachment of an acceptable kind gets the new program in
    // place (atomic: packets see the old or the new program, never none).
    for (const auto& e : existing) {
      if (std::find(acceptable.begin(), acceptable.end(), e.hook) == acceptable.end()) continue;
      if (live_ifindex(e) != ifindex) continue;
      for (const auto& other : existing)
        if (other.pin != e.pin) detach_hook(other);
      spdlog::info("replacing the program on {} ({}) in place", name, hook_tag(e.hook));
      return attach_with(e.hook, name, ifindex);
    }
    // Another kind (mode changed) or stale: detach first; native and generic
    // XDP cannot both be on one interface.
    for (const auto& e : existing) {
      spdlog::info("detaching {} ({}) before attaching in mode {}", name, hook_tag(e.hook), hook_tag(acceptable.front()));
      detach_hook(e);
    }
    try {
      return attach_with(acceptable.front(), name, ifindex);
    } catch (const AttachRefused& refused) {
      if (acceptable.size() < 2) throw;
      const Hook fallback = acceptable[1];
      if (acceptable.front() == Hook::Tcx && refused.err != EINVAL) throw;
      if (acceptable.front() == Hook::XdpNative && (refused.err == EBUSY || refused.err == EEXIST)) throw;
      spdlog::warn("{}; falling back to {}", refused.what(), hook_tag(fallback));
      return attach_with(fallback, name, ifindex);
    }
  }

  // --- creating or adopting the maps -------------------------------------------
  template <typename F>
  void for_each_pinned_map(F&& f) {
    bpf_map* map;
    bpf_object__for_each_map(map, skel_->obj) {
      // .rodata/.bss/.data are the object's own, made anew with each load.
      if (bpf_map__is_internal(map)) continue;
      f(map, maps_dir_ + "/" + map_name(map));
    }
  }

  void adopt_pinned_maps() {
    const std::string meta_path = maps_dir_ + "/veer_meta";
    FdGuard meta_fd{bpf_obj_get(meta_path.c_str())};
    if (meta_fd.fd < 0) fail("cannot open the pinned map " + meta_path, meta_fd.fd);
    veer_meta meta{};
    const uint32_t zero = 0;
    if (int err = bpf_map_lookup_elem(meta_fd.fd, &zero, &meta); err) fail("cannot read " + meta_path, err);
    if (meta.abi_version != VEER_ABI_VERSION)
      throw DataplaneError("refusing to adopt the pinned data plane under " + pin_ + ": it was made by veer ABI version " +
                           std::to_string(meta.abi_version) + ", this veerd speaks ABI version " +
                           std::to_string(VEER_ABI_VERSION) +
                           "; unload it first (detaches it and drops its flows and counters), then start again");
    for_each_pinned_map([&](bpf_map* map, const std::string& path) {
      FdGuard fd{bpf_obj_get(path.c_str())};
      if (fd.fd < 0)
        fail("the pinned data plane under " + pin_ + " is incomplete (map " + map_name(map) +
                 " missing); unload it first",
             fd.fd);
      bpf_map_info info{};
      uint32_t len = sizeof(info);
      if (int err = bpf_obj_get_info_by_fd(fd.fd, &info, &len); err) fail("cannot inspect the pinned map " + path, err);
      const bool same = info.type == static_cast<uint32_t>(bpf_map__type(map)) &&
                        info.key_size == bpf_map__key_size(map) && info.value_size == bpf_map__value_size(map) &&
                        info.map_flags == bpf_map__map_flags(map) &&
                        (is_flow_map(map_name(map)) || info.max_entries == bpf_map__max_entries(map));
      if (!same)
        throw DataplaneError("refusing to adopt the pinned map " + path + ": it does not match this veerd's (pinned: " +
                             describe(info.type, info.key_size, info.value_size, info.max_entries, info.map_flags) +
                             "; expected: " +
                             describe(bpf_map__type(map), bpf_map__key_size(map), bpf_map__value_size(map),
                                      bpf_map__max_entries(map), bpf_map__map_flags(map)) +
                             ") although both say ABI version " + std::to_string(VEER_ABI_VERSION) +
                             "; unload it first");
      if (is_flow_map(map_name(map)) && info.max_entries != options_.flow_table_size)
        spdlog::warn("{} keeps its pinned size of {} entries (flow_table_size {} applies after an unload)",
                     map_name(map), info.max_entries, options_.flow_table_size);
      if (int err = bpf_map__reuse_fd(map, fd.fd); err) fail("cannot reuse the pinned map " + path, err);
    });
    if (meta.hash_seed != options_.hash_seed)
      spdlog::info("pinned state was created with hash seed {:#x}, now {:#x}", meta.hash_seed, options_.hash_seed);
    adopted_ = true;
    spdlog::info("adopted the pinned data plane under {} (ABI version {})", pin_, meta.abi_version);
  }

  void prepare_fresh_maps() {
    // Pins without veer_meta are from a creation that never finished (meta is
    // pinned last): nothing in them was ever used.
    for (const auto& name : list_dir(maps_dir_)) {
      spdlog::info("removing the leftover pin {}/{} (no veer_meta: an unfinished creation)", maps_dir_, name);
      if (unlink((maps_dir_ + "/" + name).c_str()) != 0) fail("cannot remove " + maps_dir_ + "/" + name, errno);
    }
    if (int err = bpf_map__set_max_entries(skel_->maps.veer_flows, options_.flow_table_size); err)
      fail("cannot size veer_flows to " + std::to_string(options_.flow_table_size) + " entries", err);
  }

  void pin_fresh_maps() {
    std::vector<std::string> pinned;
    try {
      for_each_pinned_map([&](bpf_map* map, const std::string& path) {
        if (map == skel_->maps.veer_meta) return;
        if (int err = bpf_map__pin(map, path.c_str()); err) fail("cannot pin map " + map_name(map) + " at " + path, err);
        pinned.push_back(path);
      });
      timespec now{};
      clock_gettime(CLOCK_REALTIME, &now);
      const veer_meta meta{VEER_ABI_VERSION, options_.hash_seed,
                           static_cast<uint64_t>(now.tv_sec) * 1000000000ull + static_cast<uint64_t>(now.tv_nsec)};
      const uint32_t zero = 0;
      if (int err = bpf_map_update_elem(bpf_map__fd(skel_->maps.veer_meta), &zero, &meta, BPF_ANY); err)
        fail("map veer_meta: cannot write", err);
      // Last: its presence means "complete, adoptable".
      const std::string meta_path = maps_dir_ + "/veer_meta";
      if (int err = bpf_map__pin(skel_->maps.veer_meta, meta_path.c_str()); err)
        fail("cannot pin map veer_meta at " + meta_path, err);
    } catch (...) {
      for (const auto& path : pinned) unlink(path.c_str());
      throw;
    }
    spdlog::info("created the data plane's maps, pinned under {}", maps_dir_);
  }

  DataplaneOptions options_;
  std::string pin_, maps_dir_, links_dir_;
  Skeleton* skel_ = nullptr;
  bool adopted_ = false;
  int ncpus_ = 0;
};

}  // namespace

std::unique_ptr<Dataplane> Dataplane::open(const DataplaneOptions& options) {
  return std::make_unique<BpfDataplane>(options);
}

uint64_t Dataplane::collect_handshake_timeouts(uint64_t timeout_ns) {
  timespec now{};
  clock_gettime(CLOCK_MONOTONIC, &now);
  return collect_handshake_timeouts(static_cast<uint64_t>(now.tv_sec) * 1000000000ull + static_cast<uint64_t>(now.tv_nsec),
                                    timeout_ns);
}

void Dataplane::unload_pinned(const std::string& pin_path) {
  if (pin_path.empty() || pin_path.front() != '/')
    throw DataplaneError("pin path must be an absolute path, got '" + pin_path + "'");
  detail::unload_pins(pin_path);
}

}  // namespace veer
