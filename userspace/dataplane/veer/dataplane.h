// The kernel side of veerd: loads the BPF object (skeleton), creates or adopts
// the pinned maps under node.pin_path, attaches to interfaces, and gives the
// pure logic a MapWriter over the real maps. Needs root (or CAP_BPF +
// CAP_NET_ADMIN + CAP_PERFMON).
#pragma once
#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "config/config.h"
#include "veer/latency_histogram.h"
#include "tables/map_writer.h"

namespace veer {

class DataplaneError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct DataplaneOptions {
  std::string pin_path = "/sys/fs/bpf/veer";
  uint32_t flow_table_size = 1048576;
  uint32_t hash_seed = 0x5eed;
  // false: mode tc uses cls_bpf under clsact even where the kernel has tcx
  // (what a pre-6.6 kernel gets; lets tests cover that path on any kernel).
  bool allow_tcx = true;
};

struct Attachment {
  std::string interface;
  int ifindex = 0;
  std::string mode;  // "xdp", "xdp-generic", "tcx", "tc" (cls_bpf under clsact)
};

// Kernel telemetry of one (service, variant), SPEC §2.10: cumulative since
// the maps were created (they are pinned: veerd restarts keep them); a
// consumer windows them by differences.
struct VariantTelemetry {
  veer_variant_counters counters{};  // per-CPU counters, summed (new flows, resets, HTTP classes, responses)
  LatencyHistogram latency{};        // veer_latency, summed; bounds: veer/latency_histogram.h
  uint64_t handshake_timeouts = 0;   // counted by collect_handshake_timeouts
};

class Dataplane {
 public:
  virtual ~Dataplane() = default;

  // Mounts bpffs under the pin path if needed. If compatible pins exist
  // (veer_meta.abi_version == VEER_ABI_VERSION), adopts them: maps keep flows,
  // tables and counters; the programs of pinned links are replaced atomically
  // by the new ones. Otherwise creates and pins fresh maps. Throws DataplaneError.
  static std::unique_ptr<Dataplane> open(const DataplaneOptions& options);

  // unload() without opening: detaches every pinned attachment and removes
  // every pin and the pin folder, whatever ABI version made them (the way out
  // of open()'s refusal to adopt an incompatible version). No-op if the pin
  // folder does not exist. Throws DataplaneError.
  static void unload_pinned(const std::string& pin_path);

  virtual bool adopted() const = 0;
  virtual MapWriter& writer() = 0;

  // Attaches to every interface in `interfaces` (pinned links / clsact filters
  // survive veerd's exit), detaches from pinned interfaces no longer listed.
  // auto = native XDP, falling back to generic XDP where native is refused.
  // tc = tcx where the kernel has it, cls_bpf under clsact otherwise.
  // Throws DataplaneError naming the interface and the reason.
  virtual std::vector<Attachment> attach(const std::vector<std::string>& interfaces, AttachMode mode) = 0;
  virtual std::vector<Attachment> attachments() const = 0;

  // Per-CPU counters, summed.
  virtual veer_variant_counters variant_counters(uint32_t service_id, unsigned variant) const = 0;
  virtual std::array<uint64_t, VEER_REASON_MAX> reason_counters() const = 0;
  // The flow of a client's connection tuple (src = client, dst = VIP), found
  // as the program finds it: the service of (VIP, port, protocol), then
  // veer_flows by (client, client port, service). nullopt if either is absent.
  virtual std::optional<veer_flow> lookup_flow(const veer_flow_key& key) const = 0;

  // Counters, latency histogram and handshake timeouts of one variant.
  // Throws DataplaneError for an out-of-range service or variant.
  virtual VariantTelemetry telemetry(uint32_t service_id, unsigned variant) const = 0;

  // Scans veer_handshakes: every SYN older than timeout_ns at now_ns (both on
  // the CLOCK_MONOTONIC base; the kernel stamps SYNs with the coarse clock, so
  // an age can read up to one tick long) is deleted and counted in
  // veer_handshake_timeouts under its (service, variant). A SYN-ACK that
  // deletes the entry first wins: it is not counted. Returns how many were
  // counted. Throws DataplaneError (timeout_ns 0 included: nothing would
  // ever be answered in time).
  virtual uint64_t collect_handshake_timeouts(uint64_t now_ns, uint64_t timeout_ns) = 0;
  // The same at now = clock_gettime(CLOCK_MONOTONIC).
  uint64_t collect_handshake_timeouts(uint64_t timeout_ns);

  // Detaches every program and removes every pin and the pin folder.
  virtual void unload() = 0;
};

}  // namespace veer
