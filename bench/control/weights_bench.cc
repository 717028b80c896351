// veer_control_bench: control-plane figures of issue 5 item 3 (see
// bench/control/README.md). One binary, one subcommand per figure:
//
//   weights  --socket S --pin P --service NAME --a V=PCT,... --b V=PCT,...
//            [--changes 1000] [--time-limit 120] [--change-timeout 2000] [--poll-us 0]
//       A running veerd gets `weights` requests alternating between settings
//       A and B over one control connection. After each send the program
//       busy-polls the pinned maps (veer_services, veer_slots) until the
//       service's active_table has flipped AND the active table's slot counts
//       equal the requested weights: time from the send to that observation
//       is "live"; time from the send to the whole answer line is "reply".
//       --poll-us N sleeps N us between polls (default 0: busy loop).
//   table    [--iterations 50]
//       veer_core's build_table / rebalance for 8 variants x 64 backends,
//       beside references measured in the same run.
//   clients  --socket S --pid PID [--clients 100] [--requests 200] [--time-limit 60]
//       CLIENTS concurrent connections each send REQUESTS `status` requests
//       (one at a time, each answer read before the next send) while a
//       sampler reads VmRSS/VmHWM of PID every 20 ms.
//   push     --socket S --service NAME --variant V [--requests 2000] [--time-limit 60]
//       Round trips over one control connection, alternating a `push` of one
//       observation (written to state.json, fsync included, before veerd
//       answers) with a `ping` (the reference: same socket, no disk write).
//       Medians of both and their ratio; veerd's state_dir decides the disk.
//   wait-weight --pin P --socket S --service NAME --variant V [--timeout 15]
//            [--poll-us 1000]
//       For bench/control/breach.py: prints {"event":"ready",...} once the
//       maps are open, then polls the active table until VARIANT owns no slot
//       and prints {"event":"zero","time":UNIX_SECONDS} (CLOCK_REALTIME, so
//       it compares with times taken in other namespaces/processes).
//
// Every figure is also printed as `RESULT {json}` (figure, value, unit,
// target, op) for run.sh to collect. Exit status: 0 ok, 1 failure, 2 usage.
#include <linux/types.h>
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <poll.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <numeric>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "config/config.h"
#include "config/net.h"
#include "tables/slot_table.h"

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {

struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

double us_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::micro>(b - a).count();
}

double quantile(std::vector<double> v, double q) {
  if (v.empty()) return NAN;
  std::sort(v.begin(), v.end());
  // nearest rank: the smallest value with at least q of the samples at or below it
  size_t rank = static_cast<size_t>(std::ceil(q * static_cast<double>(v.size())));
  if (rank == 0) rank = 1;
  return v[std::min(rank, v.size()) - 1];
}

double median(const std::vector<double>& v) { return quantile(v, 0.5); }

void result(const std::string& figure, double value, const std::string& unit, const std::string& op = "",
            double target = NAN) {
  json j = {{"figure", figure}, {"value", value}, {"unit", unit}};
  if (!op.empty()) {
    j["op"] = op;
    j["target"] = target;
  }
  std::printf("RESULT %s\n", j.dump().c_str());
  std::fflush(stdout);
}

// --- arguments -----------------------------------------------------------------
class Args {
 public:
  Args(int argc, char** argv, int first) {
    for (int i = first; i < argc; ++i) {
      std::string a = argv[i];
      if (a.rfind("--", 0) != 0 || i + 1 >= argc) throw UsageError("expected --NAME VALUE, got '" + a + "'");
      values_[a.substr(2)] = argv[++i];
    }
  }
  std::string str(const std::string& name, std::optional<std::string> fallback = std::nullopt) {
    used_.push_back(name);
    auto it = values_.find(name);
    if (it != values_.end()) return it->second;
    if (!fallback) throw UsageError("--" + name + " is required");
    return *fallback;
  }
  long num(const std::string& name, long fallback, long min, long max) {
    const std::string text = str(name, std::to_string(fallback));
    char* end = nullptr;
    errno = 0;
    const long v = std::strtol(text.c_str(), &end, 10);
    if (errno || end == text.c_str() || *end || v < min || v > max)
      throw UsageError("--" + name + ": want an integer in [" + std::to_string(min) + ", " + std::to_string(max) +
                       "], got '" + text + "'");
    return v;
  }
  // Unknown options are an error, not silently ignored.
  void check_all_used() const {
    for (const auto& [k, v] : values_)
      if (std::find(used_.begin(), used_.end(), k) == used_.end()) throw UsageError("unknown option --" + k);
  }

 private:
  std::map<std::string, std::string> values_;
  std::vector<std::string> used_;
};

// --- control socket --------------------------------------------------------------
class ControlConnection {
 public:
  explicit ControlConnection(const std::string& path) {
    fd_ = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd_ < 0) throw std::runtime_error(std::string("socket: ") + std::strerror(errno));
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (path.size() >= sizeof(addr.sun_path)) throw std::runtime_error("socket path too long: " + path);
    std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
    if (connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
      const int err = errno;
      close(fd_);
      throw std::runtime_error("connect " + path + ": " + std::strerror(err));
    }
  }
  ~ControlConnection() { close(fd_); }
  ControlConnection(const ControlConnection&) = delete;
  ControlConnection& operator=(const ControlConnection&) = delete;

  void send_line(const std::string& line) {
    std::string data = line + "\n";
    size_t off = 0;
    while (off < data.size()) {
      ssize_t n = ::send(fd_, data.data() + off, data.size() - off, MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) throw std::runtime_error(std::string("send: ") + std::strerror(errno));
      off += static_cast<size_t>(n);
    }
  }

  // A complete line if one is buffered or arrives without blocking; nullopt otherwise.
  std::optional<std::string> try_line() {
    if (auto l = take_line()) return l;
    char buf[65536];
    ssize_t n = ::recv(fd_, buf, sizeof(buf), MSG_DONTWAIT);
    if (n == 0) throw std::runtime_error("veerd closed the control connection");
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return std::nullopt;
      throw std::runtime_error(std::string("recv: ") + std::strerror(errno));
    }
    buffer_.append(buf, static_cast<size_t>(n));
    return take_line();
  }

  std::string read_line(std::chrono::milliseconds timeout) {
    const auto deadline = Clock::now() + timeout;
    while (true) {
      if (auto l = try_line()) return *l;
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
      if (left <= 0) throw std::runtime_error("no answer from veerd in time");
      pollfd p{fd_, POLLIN, 0};
      ::poll(&p, 1, static_cast<int>(left));
    }
  }

  json request(const json& req, std::chrono::milliseconds timeout = std::chrono::milliseconds(5000)) {
    send_line(req.dump());
    json answer = json::parse(read_line(timeout));
    if (!answer.value("ok", false)) throw std::runtime_error("veerd refused " + req.dump() + ": " + answer.dump());
    return answer["result"];
  }

 private:
  std::optional<std::string> take_line() {
    auto nl = buffer_.find('\n');
    if (nl == std::string::npos) return std::nullopt;
    std::string line = buffer_.substr(0, nl);
    buffer_.erase(0, nl + 1);
    return line;
  }
  int fd_ = -1;
  std::string buffer_;
};

// --- the service in the kernel ---------------------------------------------------
// What the bench needs to watch one service: its map key (from `status`), the
// variant order (status lists variants in config order = variant index) and
// the pinned maps.
class KernelService {
 public:
  KernelService(const std::string& pin, const json& status_service) {
    name_ = status_service.at("name").get<std::string>();
    for (const auto& v : status_service.at("variants")) variants_.push_back(v.at("name").get<std::string>());
    const auto vip = veer::IpAddress::parse(status_service.at("vip").get<std::string>());
    if (!vip) throw std::runtime_error("status: bad vip " + status_service.at("vip").dump());
    std::memset(&key_, 0, sizeof(key_));
    key_.vip = vip->to_abi();
    key_.port = htons(status_service.at("port").get<uint16_t>());
    key_.proto = status_service.at("protocol").get<std::string>() == "udp" ? VEER_PROTO_UDP : VEER_PROTO_TCP;
    key_.family = static_cast<__u8>(vip->family);
    services_fd_ = open_pinned(pin + "/maps/veer_services");
    slots_fd_ = open_pinned(pin + "/maps/veer_slots");
  }
  ~KernelService() {
    close(services_fd_);
    close(slots_fd_);
  }
  KernelService(const KernelService&) = delete;
  KernelService& operator=(const KernelService&) = delete;

  const std::vector<std::string>& variants() const { return variants_; }
  int variant_index(const std::string& name) const {
    auto it = std::find(variants_.begin(), variants_.end(), name);
    return it == variants_.end() ? -1 : static_cast<int>(it - variants_.begin());
  }

  veer_service service() const {
    veer_service s{};
    if (bpf_map_lookup_elem(services_fd_, &key_, &s) != 0)
      throw std::runtime_error("service " + name_ + " not in veer_services: " + std::strerror(errno));
    return s;
  }

  // Slots per variant of table `table` of service `id` (index VEER_VARIANT_NONE -> ignored).
  std::vector<uint32_t> counts(const veer_service& s) const {
    const uint32_t index = s.id * 2 + s.active_table;
    if (bpf_map_lookup_elem(slots_fd_, &index, &table_) != 0)
      throw std::runtime_error("veer_slots lookup: " + std::string(std::strerror(errno)));
    std::vector<uint32_t> out(variants_.size(), 0);
    for (const auto& slot : table_.slot)
      if (slot.variant < out.size()) ++out[slot.variant];
    return out;
  }

 private:
  static int open_pinned(const std::string& path) {
    int fd = bpf_obj_get(path.c_str());
    if (fd < 0) throw std::runtime_error("bpf_obj_get " + path + ": " + std::strerror(errno));
    return fd;
  }
  std::string name_;
  std::vector<std::string> variants_;
  veer_service_key key_;
  int services_fd_ = -1;
  int slots_fd_ = -1;
  mutable veer_slot_table table_;  // 20 KB: not on the stack of every poll
};

json find_service(const json& status, const std::string& name) {
  for (const auto& s : status.at("services"))
    if (s.at("name") == name) return s;
  throw std::runtime_error("service '" + name + "' not in veerd's status");
}

// "blue=90,canary=10" -> basis points per variant (variants not named: 0).
std::vector<uint32_t> parse_setting(const std::string& text, const KernelService& svc, json& request_weights) {
  std::vector<uint32_t> bp(svc.variants().size(), 0);
  request_weights = json::object();
  size_t start = 0;
  while (start <= text.size()) {
    size_t comma = text.find(',', start);
    const std::string item = text.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    const auto eq = item.find('=');
    if (eq == std::string::npos) throw UsageError("weights '" + text + "': want VARIANT=PCT,...");
    const std::string name = item.substr(0, eq), pct = item.substr(eq + 1);
    const int v = svc.variant_index(name);
    if (v < 0) throw UsageError("weights '" + text + "': no variant '" + name + "' in the service");
    const auto w = veer::parse_weight_bp(pct);
    if (!w) throw UsageError("weights '" + text + "': bad percentage '" + pct + "'");
    bp[static_cast<size_t>(v)] = *w;
    request_weights[name] = pct;
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  if (std::accumulate(bp.begin(), bp.end(), 0u) != VEER_WEIGHT_TOTAL)
    throw UsageError("weights '" + text + "' do not sum to 100");
  return bp;
}

std::string join(const std::vector<uint32_t>& v) {
  std::string s;
  for (size_t i = 0; i < v.size(); ++i) s += (i ? "/" : "") + std::to_string(v[i]);
  return s;
}

// --- weights -----------------------------------------------------------------------
int cmd_weights(Args& args) {
  const std::string socket_path = args.str("socket"), pin = args.str("pin"), name = args.str("service");
  const std::string a_text = args.str("a"), b_text = args.str("b");
  const long changes = args.num("changes", 1000, 2, 1000000);
  const long time_limit_s = args.num("time-limit", 120, 1, 3600);
  const long change_timeout_ms = args.num("change-timeout", 2000, 10, 60000);
  const long poll_us = args.num("poll-us", 0, 0, 100000);  // 0: busy loop
  args.check_all_used();

  ControlConnection conn(socket_path);
  const json svc_status = find_service(conn.request({{"cmd", "status"}, {"service", name}}), name);
  KernelService kernel(pin, svc_status);
  json req_a, req_b;
  const auto bp_a = parse_setting(a_text, kernel, req_a);
  const auto bp_b = parse_setting(b_text, kernel, req_b);
  if (bp_a == bp_b) throw UsageError("--a and --b are the same setting: nothing would flip");

  // Sanity check of the variant order: the kernel's active table must hold
  // the applied weights status reports, variant by variant.
  {
    std::vector<uint32_t> applied;
    for (const auto& v : svc_status.at("variants"))
      applied.push_back(*veer::parse_weight_bp(v.at("weight_applied").get<std::string>()));
    const auto counts = kernel.counts(kernel.service());
    if (counts != applied)
      throw std::runtime_error("kernel table " + join(counts) + " != status applied " + join(applied) +
                               ": wrong pin path or variant order");
  }
  // Start from B so that the first change (to A) is a real change.
  conn.request({{"cmd", "weights"}, {"service", name}, {"weights", req_b}});

  std::vector<double> live_us, reply_us;
  live_us.reserve(static_cast<size_t>(changes));
  reply_us.reserve(static_cast<size_t>(changes));
  long polls = 0, flips_before_match = 0;
  const auto bench_deadline = Clock::now() + std::chrono::seconds(time_limit_s);
  bool time_limited = false;
  for (long i = 0; i < changes; ++i) {
    if (Clock::now() > bench_deadline) {
      time_limited = true;
      break;
    }
    const bool to_a = (i % 2 == 0);
    const auto& want = to_a ? bp_a : bp_b;
    const veer_service before = kernel.service();
    const std::string line =
        json{{"cmd", "weights"}, {"service", name}, {"weights", to_a ? req_a : req_b}}.dump();

    const auto t_send = Clock::now();
    conn.send_line(line);
    std::optional<Clock::time_point> t_live, t_reply;
    const auto deadline = t_send + std::chrono::milliseconds(change_timeout_ms);
    // Busy loop, bounded by the per-change timeout: the kernel side first
    // (what is measured), then a non-blocking look at the socket.
    while (!(t_live && t_reply)) {
      const auto now = Clock::now();
      if (now > deadline)
        throw std::runtime_error("change " + std::to_string(i) + " to " + join(want) + ": " +
                                 (t_live ? "no answer" : "table not live") + " within " +
                                 std::to_string(change_timeout_ms) + " ms");
      if (!t_live) {
        ++polls;
        const veer_service s = kernel.service();
        if (s.active_table != before.active_table) {
          if (kernel.counts(s) == want)
            t_live = Clock::now();
          else
            ++flips_before_match;  // flipped, but the table does not hold the weights (yet)
        }
      }
      if (!t_reply) {
        if (auto answer = conn.try_line()) {
          t_reply = Clock::now();
          const json j = json::parse(*answer);
          if (!j.value("ok", false)) throw std::runtime_error("veerd refused a weights change: " + *answer);
        }
      }
      if (poll_us) std::this_thread::sleep_for(std::chrono::microseconds(poll_us));
    }
    live_us.push_back(us_between(t_send, *t_live));
    reply_us.push_back(us_between(t_send, *t_reply));
  }

  const size_t n = live_us.size();
  std::printf("weights: %zu changes of service %s between %s and %s (bp)%s; %ld map polls (%s); %ld polls saw a "
              "flipped table not yet matching\n",
              n, name.c_str(), join(bp_a).c_str(), join(bp_b).c_str(),
              time_limited ? " (stopped by the time limit)" : "", polls,
              poll_us ? ("every " + std::to_string(poll_us) + " us").c_str() : "busy loop", flips_before_match);
  std::printf("  send -> live in kernel: p50 %.0f us  p90 %.0f us  p99 %.0f us  max %.0f us\n",
              quantile(live_us, 0.5), quantile(live_us, 0.9), quantile(live_us, 0.99),
              *std::max_element(live_us.begin(), live_us.end()));
  std::printf("  send -> answer line:    p50 %.0f us  p99 %.0f us  max %.0f us\n", quantile(reply_us, 0.5),
              quantile(reply_us, 0.99), *std::max_element(reply_us.begin(), reply_us.end()));
  result("weight change live: changes measured", static_cast<double>(n), "count", ">=", static_cast<double>(changes));
  result("weight change live p50", quantile(live_us, 0.5), "us");
  result("weight change live p90", quantile(live_us, 0.9), "us");
  result("weight change live p99", quantile(live_us, 0.99), "us", "<", 1000);
  result("weight change live max", *std::max_element(live_us.begin(), live_us.end()), "us");
  result("weight change reply p50", quantile(reply_us, 0.5), "us");
  result("weight change reply p99", quantile(reply_us, 0.99), "us");
  return time_limited ? 1 : 0;
}

// --- table ----------------------------------------------------------------------------
// Wall time of one call in ms; the calling thread's CPU time goes to `cpu_ms`
// (the machine is shared: CPU time shows what preemption added to the wall).
template <class F>
double time_once(std::vector<double>& cpu_ms, F&& f) {
  timespec c0{}, c1{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c0);
  const auto t0 = Clock::now();
  f();
  const auto t1 = Clock::now();
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c1);
  cpu_ms.push_back((c1.tv_sec - c0.tv_sec) * 1e3 + (c1.tv_nsec - c0.tv_nsec) / 1e6);
  return std::chrono::duration<double, std::milli>(t1 - t0).count();
}

int cmd_table(Args& args) {
  const long iterations = args.num("iterations", 50, 3, 100000);
  args.check_all_used();
  constexpr unsigned kVariants = VEER_MAX_VARIANTS, kBackends = VEER_MAX_BACKENDS;
  constexpr uint32_t kSeed = 0x5eed;

  veer::VariantBackends backends(kVariants);
  for (unsigned v = 0; v < kVariants; ++v)
    for (unsigned b = 0; b < kBackends; ++b) {
      const std::string ep = "10." + std::to_string(v + 1) + "." + std::to_string(b / 250) + "." +
                             std::to_string(b % 250 + 2) + ":8080";
      backends[v].push_back({*veer::Endpoint::parse(ep), false});
    }
  // Two settings over all 8 variants; the rebalance alternates between them.
  const std::vector<uint32_t> w_a = {3000, 1000, 1000, 1000, 1000, 1000, 1000, 1000};
  const std::vector<uint32_t> w_b = {2300, 1100, 1200, 900, 1000, 1500, 800, 1200};
  const veer::VariantBackends one_backend = {{backends[0][0]}};

  // Keeps the optimizer from dropping the work.
  std::atomic<uint64_t> sink{0};
  auto consume = [&](const veer::SlotTable& t) { sink += t.slots[static_cast<size_t>(sink % VEER_SLOTS)].variant; };

  veer::SlotTable warm = veer::build_table(w_a, 0, backends, kSeed);  // fills the rank cache for kSeed
  // Sanity: the builder gives exactly the requested shares.
  if (veer::count_weights(warm, kVariants) != w_a) throw std::runtime_error("build_table does not give the weights");

  std::vector<double> fill, build1, build8, build8_cold, rebalance8;
  std::vector<double> cpu_fill, cpu_build1, cpu_build8, cpu_cold, cpu_rebalance;
  // Interleaved rounds, so that machine noise hits every case alike. The
  // builder caches the slot rank order of ONE seed (the node's), so the
  // "new seed" build runs first in a round and an untimed build puts kSeed
  // back in the cache before the warm cases.
  veer::SlotTable current = warm;
  for (long i = 0; i < iterations; ++i) {
    fill.push_back(time_once(cpu_fill, [&] {
      veer::SlotTable table;
      std::fill(table.slots.begin(), table.slots.end(), veer_slot{0, 0});
      consume(table);
    }));
    // A seed never seen: includes computing the slot rank order (veerd does
    // that once per start, for its node.hash_seed).
    const uint32_t new_seed = kSeed + 1 + static_cast<uint32_t>(i);
    build8_cold.push_back(time_once(cpu_cold, [&] { consume(veer::build_table(w_a, 0, backends, new_seed)); }));
    consume(veer::build_table({VEER_WEIGHT_TOTAL}, 0, one_backend, kSeed));  // re-warm the rank cache
    build1.push_back(
        time_once(cpu_build1, [&] { consume(veer::build_table({VEER_WEIGHT_TOTAL}, 0, one_backend, kSeed)); }));
    build8.push_back(time_once(cpu_build8, [&] { consume(veer::build_table(w_a, 0, backends, kSeed)); }));
    const auto& target = (i % 2 == 0) ? w_b : w_a;
    rebalance8.push_back(
        time_once(cpu_rebalance, [&] { current = veer::rebalance(current, target, 0, backends, kSeed); }));
    consume(current);
    if (veer::count_weights(current, kVariants) != target) throw std::runtime_error("rebalance missed the weights");
  }
  const double m_fill = median(fill), m_b1 = median(build1), m_b8 = median(build8), m_cold = median(build8_cold),
               m_reb = median(rebalance8);
  std::printf("slot table, %u variants x %u backends, medians of %ld interleaved runs:\n", kVariants, kBackends,
              iterations);
  std::printf("  %-40s %10s %10s\n", "", "wall ms", "cpu ms");
  std::printf("  %-40s %10.4f %10.4f\n", "reference: std::fill of 10,000 slots", m_fill, median(cpu_fill));
  std::printf("  %-40s %10.4f %10.4f\n", "reference: build, 1 variant x 1 backend", m_b1, median(cpu_build1));
  std::printf("  %-40s %10.4f %10.4f  (%.1fx the 1x1 build, %.0fx fill)\n", "build from scratch, 8 x 64", m_b8,
              median(cpu_build8), m_b8 / m_b1, m_b8 / m_fill);
  std::printf("  %-40s %10.4f %10.4f\n", "build, first for a new seed, 8 x 64", m_cold, median(cpu_cold));
  std::printf("  %-40s %10.4f %10.4f  (%.1fx the 1x1 build)\n", "rebalance (weight change), 8 x 64", m_reb,
              median(cpu_rebalance), m_reb / m_b1);
  result("table build 8x64 from scratch", m_b8, "ms", "<", 5);
  result("table build 8x64 first for a new seed", m_cold, "ms");  // once per veerd start
  result("table rebalance 8x64", m_reb, "ms", "<", 5);
  result("table build 8x64 from scratch, thread CPU", median(cpu_build8), "ms");
  result("table ref build 1x1", m_b1, "ms");
  result("table ref std::fill", m_fill, "ms");
  result("table build 8x64 / build 1x1", m_b8 / m_b1, "ratio");
  result("table rebalance 8x64 / build 1x1", m_reb / m_b1, "ratio");
  return sink.load() == 0xffffffffffffffffull ? 1 : 0;  // never: only keeps sink alive
}

// --- clients ---------------------------------------------------------------------------
struct Rss {
  long rss_kb = -1, hwm_kb = -1;
};

Rss read_rss(long pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/status");
  if (!f) throw std::runtime_error("cannot read /proc/" + std::to_string(pid) + "/status (veerd gone?)");
  Rss r;
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("VmRSS:", 0) == 0) r.rss_kb = std::stol(line.substr(6));
    if (line.rfind("VmHWM:", 0) == 0) r.hwm_kb = std::stol(line.substr(6));
  }
  if (r.rss_kb < 0) throw std::runtime_error("no VmRSS for pid " + std::to_string(pid));
  return r;
}

int cmd_clients(Args& args) {
  const std::string socket_path = args.str("socket");
  const long pid = args.num("pid", 0, 1, 1L << 30);
  const long clients = args.num("clients", 100, 1, 120);  // veerd refuses beyond 128 connections
  const long requests = args.num("requests", 200, 1, 100000);
  const long time_limit_s = args.num("time-limit", 60, 1, 3600);
  args.check_all_used();

  const Rss idle = read_rss(pid);
  const std::string request = json{{"cmd", "status"}}.dump();
  std::atomic<long> ok{0}, failed{0};
  std::atomic<bool> stop{false};
  std::vector<std::string> errors(static_cast<size_t>(clients));
  const auto deadline = Clock::now() + std::chrono::seconds(time_limit_s);

  // Every client connects first, then all start together: 100 connections
  // really are open at the same time.
  std::atomic<long> connected{0};
  std::atomic<bool> go{false};
  std::vector<std::thread> threads;
  for (long c = 0; c < clients; ++c) {
    threads.emplace_back([&, c] {
      try {
        ControlConnection conn(socket_path);
        ++connected;
        while (!go && !stop) std::this_thread::sleep_for(std::chrono::milliseconds(1));
        for (long r = 0; r < requests && !stop; ++r) {
          if (Clock::now() > deadline) throw std::runtime_error("time limit");
          conn.send_line(request);
          const std::string answer = conn.read_line(std::chrono::milliseconds(10000));
          if (answer.rfind("{\"ok\":true", 0) != 0) throw std::runtime_error("answer: " + answer.substr(0, 200));
          ++ok;
        }
      } catch (const std::exception& e) {
        ++connected;  // so the start barrier never waits for a failed client
        ++failed;
        errors[static_cast<size_t>(c)] = e.what();
      }
    });
  }
  while (connected < clients && Clock::now() < deadline) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  const auto t_start = Clock::now();
  go = true;
  long max_rss = idle.rss_kb, samples = 0;
  std::atomic<bool> done{false};
  std::thread joiner([&] {
    for (auto& t : threads) t.join();
    done = true;
  });
  while (!done) {
    try {
      max_rss = std::max(max_rss, read_rss(pid).rss_kb);
      ++samples;
    } catch (const std::exception&) {
      stop = true;
    }
    if (Clock::now() > deadline + std::chrono::seconds(5)) stop = true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  joiner.join();
  const double seconds = std::chrono::duration<double>(Clock::now() - t_start).count();
  const Rss after = read_rss(pid);
  std::printf("clients: %ld concurrent connections x %ld status requests: %ld ok, %ld clients failed, %.2f s, "
              "%.0f requests/s; RSS samples %ld\n",
              clients, requests, ok.load(), failed.load(), seconds, ok.load() / seconds, samples);
  for (const auto& e : errors)
    if (!e.empty()) {
      std::printf("  first client error: %s\n", e.c_str());
      break;
    }
  std::printf("  veerd VmRSS: before %ld kB, max during load %ld kB, after %ld kB; VmHWM after %ld kB\n",
              idle.rss_kb, max_rss, after.rss_kb, after.hwm_kb);
  result("control clients: requests answered", static_cast<double>(ok.load()), "count", ">=",
         static_cast<double>(clients * requests));
  result("control clients: request rate", ok.load() / seconds, "req/s");
  result("veerd RSS max under load", max_rss / 1024.0, "MB", "<", 30);
  result("veerd RSS after load", after.rss_kb / 1024.0, "MB", "<", 30);
  result("veerd VmHWM after load", after.hwm_kb / 1024.0, "MB", "<", 30);
  return failed.load() == 0 && ok.load() == clients * requests ? 0 : 1;
}

// --- push -------------------------------------------------------------------------------
int cmd_push(Args& args) {
  const std::string socket_path = args.str("socket"), name = args.str("service"), variant = args.str("variant");
  const long requests = args.num("requests", 2000, 10, 1000000);
  const long time_limit = args.num("time-limit", 60, 1, 3600);
  args.check_all_used();
  ControlConnection conn(socket_path);
  const json push = {{"cmd", "push"}, {"service", name}, {"variant", variant}, {"values", {{"bench_push", "1"}}}};
  const json ping = {{"cmd", "ping"}};
  std::vector<double> push_us, ping_us;
  const auto deadline = Clock::now() + std::chrono::seconds(time_limit);
  for (long i = 0; i < requests && Clock::now() < deadline; ++i) {
    for (const json* req : {&push, &ping}) {
      const auto t0 = Clock::now();
      conn.request(*req);
      (req == &push ? push_us : ping_us).push_back(us_between(t0, Clock::now()));
    }
  }
  if (push_us.size() < static_cast<size_t>(requests)) {
    std::fprintf(stderr, "push: only %zu of %ld round trips within %ld s\n", push_us.size(), requests, time_limit);
    return 1;
  }
  const double push_p50 = median(push_us), ping_p50 = median(ping_us);
  std::printf("push (on disk before the answer): p50 %.0f us  p99 %.0f us;  ping: p50 %.0f us  p99 %.0f us;  "
              "push/ping %.1fx over %ld round trips each\n",
              push_p50, quantile(push_us, 0.99), ping_p50, quantile(ping_us, 0.99), push_p50 / ping_p50, requests);
  result("push round trip p50", push_p50, "us");
  result("push round trip p99", quantile(push_us, 0.99), "us");
  result("ping round trip p50 (reference)", ping_p50, "us");
  result("push / ping round trip", push_p50 / ping_p50, "x");
  return 0;
}

// --- wait-weight ------------------------------------------------------------------------
int cmd_wait_weight(Args& args) {
  const std::string socket_path = args.str("socket"), pin = args.str("pin"), name = args.str("service");
  const std::string variant = args.str("variant");
  const long timeout_s = args.num("timeout", 15, 1, 600);
  const long poll_us = args.num("poll-us", 1000, 0, 1000000);
  args.check_all_used();

  json svc_status;
  {
    ControlConnection conn(socket_path);
    svc_status = find_service(conn.request({{"cmd", "status"}, {"service", name}}), name);
  }
  KernelService kernel(pin, svc_status);
  const int v = kernel.variant_index(variant);
  if (v < 0) throw UsageError("no variant '" + variant + "' in service " + name);
  const auto initial = kernel.counts(kernel.service());
  std::printf("%s\n", json{{"event", "ready"}, {"slots", initial[static_cast<size_t>(v)]}}.dump().c_str());
  std::fflush(stdout);
  const auto deadline = Clock::now() + std::chrono::seconds(timeout_s);
  while (Clock::now() < deadline) {
    const auto counts = kernel.counts(kernel.service());
    if (counts[static_cast<size_t>(v)] == 0) {
      const double unix_s = std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
      std::printf("%s\n", json{{"event", "zero"}, {"time", unix_s}}.dump().c_str());
      return 0;
    }
    if (poll_us) std::this_thread::sleep_for(std::chrono::microseconds(poll_us));
  }
  std::printf("%s\n", json{{"event", "timeout"}}.dump().c_str());
  return 1;
}

void usage() {
  std::fprintf(stderr,
               "usage: veer_control_bench weights --socket S --pin P --service NAME --a V=PCT,... --b V=PCT,...\n"
               "                          [--changes 1000] [--time-limit 120] [--change-timeout 2000] [--poll-us 0]\n"
               "       veer_control_bench table [--iterations 50]\n"
               "       veer_control_bench clients --socket S --pid PID [--clients 100] [--requests 200] "
               "[--time-limit 60]\n"
               "       veer_control_bench push --socket S --service NAME --variant V [--requests 2000] "
               "[--time-limit 60]\n"
               "       veer_control_bench wait-weight --socket S --pin P --service NAME --variant V [--timeout 15] "
               "[--poll-us 1000]\n");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    usage();
    return 2;
  }
  const std::string cmd = argv[1];
  try {
    Args args(argc, argv, 2);
    if (cmd == "weights") return cmd_weights(args);
    if (cmd == "table") return cmd_table(args);
    if (cmd == "clients") return cmd_clients(args);
    if (cmd == "push") return cmd_push(args);
    if (cmd == "wait-weight") return cmd_wait_weight(args);
    usage();
    return 2;
  } catch (const UsageError& e) {
    std::fprintf(stderr, "veer_control_bench: %s\n", e.what());
    usage();
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "veer_control_bench %s: %s\n", cmd.c_str(), e.what());
    return 1;
  }
}
