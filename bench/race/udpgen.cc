// veer_udpgen: a UDP packet generator built on BPF_PROG_TEST_RUN with
// BPF_F_TEST_XDP_LIVE_FRAMES (kernel >= 5.18). udpgen.bpf.c writes every frame
// and returns XDP_TX; live-frames mode transmits it out of --dev, so on a veth
// the frames arrive at the peer (which needs GRO on, or an XDP program, to
// accept XDP frames). Runs in the caller's network namespace.
//
// Prints one JSON line {"sent": N, "seconds": S, "pps": X} on stdout; "sent"
// counts frames the program returned XDP_TX for (its per-CPU counter), which
// is what the kernel tried to transmit, not what the receiver kept.
// Exit status: 0 ok, 1 runtime error, 2 usage.
#include <arpa/inet.h>
#include <linux/if_ether.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include <array>
#include <atomic>
#include <boost/program_options.hpp>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "udpgen.h"
#include "veer_udpgen_bpf.skel.h"

namespace po = boost::program_options;

namespace {

constexpr int kExitOk = 0;
constexpr int kExitError = 1;
constexpr int kExitUsage = 2;

// veth drops XDP frames longer than the peer's MTU + headers; 1514 is a full
// frame at the default MTU of 1500.
constexpr uint32_t kMaxFrameLen = 1514;
constexpr double kMaxSeconds = 3600;
constexpr uint32_t kMaxThreads = 64;
// The kernel refuses live-frames batch sizes above 256 (TEST_XDP_MAX_BATCH).
constexpr uint32_t kMaxKernelBatch = 256;
// Bound on the loop besides time: no run may claim more than one frame per
// nanosecond, far above anything a CPU reaches.
constexpr double kMaxFramesPerSecond = 1e9;

struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

using Mac = std::array<uint8_t, ETH_ALEN>;

Mac parse_mac(const std::string& text, const char* option) {
  Mac mac{};
  unsigned int b[ETH_ALEN];
  char trailing = 0;
  if (std::sscanf(text.c_str(), "%2x:%2x:%2x:%2x:%2x:%2x%c", &b[0], &b[1], &b[2], &b[3], &b[4], &b[5],
                  &trailing) != ETH_ALEN)
    throw UsageError(std::string("--") + option + ": not a MAC address (aa:bb:cc:dd:ee:ff): " + text);
  for (int i = 0; i < ETH_ALEN; i++) mac[i] = static_cast<uint8_t>(b[i]);
  return mac;
}

in_addr parse_ipv4(const std::string& text, const char* option) {
  in_addr addr{};
  if (inet_pton(AF_INET, text.c_str(), &addr) != 1)
    throw UsageError(std::string("--") + option + ": not an IPv4 address: " + text);
  return addr;
}

Mac device_mac(const std::string& dev) {
  ifreq request{};
  if (dev.size() >= sizeof(request.ifr_name)) throw std::runtime_error("device name too long: " + dev);
  std::memcpy(request.ifr_name, dev.c_str(), dev.size());
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw std::runtime_error(std::string("socket: ") + std::strerror(errno));
  int rc = ioctl(fd, SIOCGIFHWADDR, &request);
  int err = errno;
  close(fd);
  if (rc != 0) throw std::runtime_error("reading the MAC of " + dev + ": " + std::strerror(err));
  Mac mac{};
  std::memcpy(mac.data(), request.ifr_hwaddr.sa_data, ETH_ALEN);
  return mac;
}

uint16_t ipv4_header_checksum(const uint8_t* header, size_t len) {
  uint32_t sum = 0;
  for (size_t i = 0; i + 1 < len; i += 2) sum += (uint32_t(header[i]) << 8) | header[i + 1];
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<uint16_t>(~sum);
}

void put16(uint8_t* at, uint16_t host_value) {
  at[0] = static_cast<uint8_t>(host_value >> 8);
  at[1] = static_cast<uint8_t>(host_value);
}

struct Options {
  std::string dev;
  Mac dst_mac{}, src_mac{};
  bool src_mac_given = false;
  in_addr src_ip{}, dst_ip{};
  uint16_t dst_port = 0;
  uint32_t flows = 1024;
  double seconds = 5;
  uint32_t size = 64;
  uint32_t batch = 65536;
  uint32_t kernel_batch = 0;  // 0: the kernel's default (64)
  uint32_t threads = 1;
};

// The whole frame: Ethernet, IPv4 (DF, TTL 64, checksum), UDP (checksum 0),
// zero padding up to size. Its source port is overwritten per frame.
std::vector<uint8_t> build_frame(const Options& o) {
  std::vector<uint8_t> frame(o.size, 0);
  uint8_t* eth = frame.data();
  std::memcpy(eth, o.dst_mac.data(), ETH_ALEN);
  std::memcpy(eth + ETH_ALEN, o.src_mac.data(), ETH_ALEN);
  put16(eth + 12, ETH_P_IP);
  uint8_t* ip = eth + ETH_HLEN;
  ip[0] = 0x45;
  put16(ip + 2, static_cast<uint16_t>(o.size - ETH_HLEN));
  put16(ip + 6, 0x4000);  // DF
  ip[8] = 64;
  ip[9] = IPPROTO_UDP;
  std::memcpy(ip + 12, &o.src_ip, 4);
  std::memcpy(ip + 16, &o.dst_ip, 4);
  put16(ip + 10, ipv4_header_checksum(ip, 20));
  uint8_t* udp = ip + 20;
  put16(udp, UDPGEN_FIRST_SRC_PORT);
  put16(udp + 2, o.dst_port);
  put16(udp + 4, static_cast<uint16_t>(o.size - ETH_HLEN - 20));
  return frame;
}

template <typename T>
T checked_range(const po::variables_map& vm, const char* name, T lo, T hi) {
  T v = vm[name].as<T>();
  if (v < lo || v > hi)
    throw UsageError("--" + std::string(name) + " must be in " + std::to_string(lo) + ".." + std::to_string(hi));
  return v;
}

Options parse_options(int argc, char** argv, po::options_description& desc) {
  po::variables_map vm;
  po::store(po::command_line_parser(argc, argv).options(desc).run(), vm);
  if (vm.count("help")) throw UsageError("");
  po::notify(vm);
  Options o;
  o.dev = vm["dev"].as<std::string>();
  o.dst_mac = parse_mac(vm["dst-mac"].as<std::string>(), "dst-mac");
  if (vm.count("src-mac")) {
    o.src_mac = parse_mac(vm["src-mac"].as<std::string>(), "src-mac");
    o.src_mac_given = true;
  }
  o.src_ip = parse_ipv4(vm["src-ip"].as<std::string>(), "src-ip");
  o.dst_ip = parse_ipv4(vm["dst-ip"].as<std::string>(), "dst-ip");
  o.dst_port = static_cast<uint16_t>(checked_range<uint32_t>(vm, "dst-port", 1, 65535));
  o.flows = checked_range<uint32_t>(vm, "flows", 1, UDPGEN_MAX_FLOWS);
  o.seconds = vm["seconds"].as<double>();
  if (!(o.seconds > 0 && o.seconds <= kMaxSeconds))
    throw UsageError("--seconds must be > 0 and <= " + std::to_string(int(kMaxSeconds)));
  o.size = checked_range<uint32_t>(vm, "size", UDPGEN_HEADER_LEN, kMaxFrameLen);
  o.batch = checked_range<uint32_t>(vm, "batch", 1, 1u << 30);
  o.kernel_batch = checked_range<uint32_t>(vm, "kernel-batch", 0, kMaxKernelBatch);
  o.threads = checked_range<uint32_t>(vm, "threads", 1, kMaxThreads);
  return o;
}

std::atomic<bool> g_stop{false};

void on_signal(int) { g_stop.store(true); }

struct RunResult {
  int error = 0;  // first errno a test run returned
};

uint64_t read_sent(const veer_udpgen_bpf* skel) {
  int cpus = libbpf_num_possible_cpus();
  if (cpus <= 0) throw std::runtime_error("libbpf_num_possible_cpus failed");
  std::vector<uint64_t> per_cpu(static_cast<size_t>(cpus), 0);
  uint32_t key = 0;
  if (bpf_map_lookup_elem(bpf_map__fd(skel->maps.udpgen_frames), &key, per_cpu.data()) != 0)
    throw std::runtime_error(std::string("reading the frame counter: ") + std::strerror(errno));
  uint64_t total = 0;
  for (uint64_t n : per_cpu) total += n;
  return total;
}

int run(const Options& o) {
  const unsigned ifindex = if_nametoindex(o.dev.c_str());
  if (ifindex == 0) {
    std::cerr << "veer_udpgen: no device " << o.dev << " in this network namespace\n";
    return kExitError;
  }
  Options opts = o;
  if (!opts.src_mac_given) opts.src_mac = device_mac(opts.dev);
  const std::vector<uint8_t> frame = build_frame(opts);

  veer_udpgen_bpf* skel = veer_udpgen_bpf__open();
  if (!skel) {
    std::cerr << "veer_udpgen: opening the BPF object: " << std::strerror(errno) << "\n";
    return kExitError;
  }
  // rodata is const volatile in the program; the skeleton maps it writable until load.
  auto* cfg = const_cast<udpgen_config*>(&skel->rodata->udpgen_cfg);
  std::memcpy(cfg->header.bytes, frame.data(), UDPGEN_HEADER_LEN);
  cfg->flows = opts.flows;
  if (int err = veer_udpgen_bpf__load(skel); err != 0) {
    std::cerr << "veer_udpgen: loading the BPF program: " << std::strerror(-err) << "\n";
    veer_udpgen_bpf__destroy(skel);
    return kExitError;
  }
  const int prog_fd = bpf_program__fd(skel->progs.udpgen_frame);

  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);

  // Each thread stops at the deadline or after its share of the frame bound.
  const uint64_t max_calls_per_thread = static_cast<uint64_t>(
      std::ceil(opts.seconds * kMaxFramesPerSecond / opts.batch / opts.threads));
  std::vector<RunResult> results(opts.threads);
  const auto start = std::chrono::steady_clock::now();
  const auto deadline = start + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                                    std::chrono::duration<double>(opts.seconds));
  auto worker = [&](RunResult& result) {
    xdp_md ctx{};
    ctx.data = 0;
    ctx.data_end = opts.size;
    ctx.ingress_ifindex = ifindex;
    ctx.rx_queue_index = 0;
    for (uint64_t call = 0; call < max_calls_per_thread; call++) {
      if (g_stop.load() || std::chrono::steady_clock::now() >= deadline) break;
      LIBBPF_OPTS(bpf_test_run_opts, run_opts, .data_in = frame.data(), .data_size_in = opts.size,
                  .ctx_in = &ctx, .ctx_size_in = sizeof(ctx), .repeat = static_cast<int>(opts.batch),
                  .flags = BPF_F_TEST_XDP_LIVE_FRAMES, .batch_size = opts.kernel_batch);
      if (bpf_prog_test_run_opts(prog_fd, &run_opts) != 0) {
        if (errno == EINTR && g_stop.load()) break;
        result.error = errno;
        g_stop.store(true);  // one failing thread ends the run of all
        break;
      }
    }
  };
  std::vector<std::thread> workers;
  for (uint32_t t = 0; t < opts.threads; t++) workers.emplace_back(worker, std::ref(results[t]));
  for (auto& w : workers) w.join();
  const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  int status = kExitOk;
  for (const RunResult& r : results) {
    if (r.error != 0) {
      std::cerr << "veer_udpgen: BPF_PROG_TEST_RUN (live frames) on " << opts.dev << " failed: "
                << std::strerror(r.error) << "\n";
      status = kExitError;
      break;
    }
  }
  if (status == kExitOk) {
    try {
      const uint64_t sent = read_sent(skel);
      char line[160];
      std::snprintf(line, sizeof(line), "{\"sent\": %llu, \"seconds\": %.6f, \"pps\": %.1f}",
                    static_cast<unsigned long long>(sent), elapsed, elapsed > 0 ? double(sent) / elapsed : 0.0);
      std::cout << line << std::endl;
    } catch (const std::exception& e) {
      std::cerr << "veer_udpgen: " << e.what() << "\n";
      status = kExitError;
    }
  }
  veer_udpgen_bpf__destroy(skel);
  return status;
}

}  // namespace

int main(int argc, char** argv) {
  po::options_description desc(
      "usage: veer_udpgen --dev IFNAME --dst-mac MAC --src-ip A --dst-ip B --dst-port P [options]\n"
      "Sends UDP frames out of IFNAME with BPF_PROG_TEST_RUN live frames; prints\n"
      "{\"sent\": N, \"seconds\": S, \"pps\": X} (sent: frames the program returned XDP_TX for).\n"
      "Options");
  // clang-format off
  desc.add_options()
      ("help,h", "this text")
      ("dev", po::value<std::string>()->required(), "device to send out of (a veth: frames reach its peer)")
      ("dst-mac", po::value<std::string>()->required(), "destination MAC")
      ("src-mac", po::value<std::string>(), "source MAC (default: the device's own)")
      ("src-ip", po::value<std::string>()->required(), "IPv4 source address")
      ("dst-ip", po::value<std::string>()->required(), "IPv4 destination address")
      ("dst-port", po::value<uint32_t>()->required(), "UDP destination port")
      ("flows", po::value<uint32_t>()->default_value(1024),
       "distinct UDP source ports, 10000..10000+N-1, round robin (max 55536)")
      ("seconds", po::value<double>()->default_value(5), "how long to send")
      ("size", po::value<uint32_t>()->default_value(64), "frame length in bytes without FCS (42..1514)")
      ("batch", po::value<uint32_t>()->default_value(65536), "frames per BPF_PROG_TEST_RUN call (its repeat)")
      ("kernel-batch", po::value<uint32_t>()->default_value(0),
       "frames the kernel runs and transmits per bulk (batch_size; 0: kernel default 64, max 256)")
      ("threads", po::value<uint32_t>()->default_value(1), "sending threads");
  // clang-format on
  Options options;
  try {
    options = parse_options(argc, argv, desc);
  } catch (const UsageError& e) {
    if (*e.what()) std::cerr << "veer_udpgen: " << e.what() << "\n";
    std::cerr << desc;
    return std::string(e.what()).empty() ? kExitOk : kExitUsage;
  } catch (const po::error& e) {
    std::cerr << "veer_udpgen: " << e.what() << "\n" << desc;
    return kExitUsage;
  }
  try {
    return run(options);
  } catch (const std::exception& e) {
    std::cerr << "veer_udpgen: " << e.what() << "\n";
    return kExitError;
  }
}
