// veer_bpf_bench: ns per packet of veer_xdp under BPF_PROG_TEST_RUN, beside
// reference programs measured in the same run (bench/ref.bpf.c), and the
// ratios the data plane is designed for:
//   established flow / (parse + LRU lookup)   target <= 3
//   non-service      / (parse + HASH lookup)  target <= 1.3
//
// Method (printed with the results):
// - Programs that leave the frame alone (the references, veer on non-service
//   packets) run with repeat = N: the kernel's `duration` is the mean ns/run.
// - veer rewrites service packets, and BPF_PROG_TEST_RUN repeats on the same
//   buffer, so a plain repeat would measure the rewritten frame (a non-service
//   packet after run 1, TTL expiry after 63 runs). Those cases run through
//   bench_reset (ref.bpf.c), which restores the pristine 64-byte frame and
//   tail-calls the program; for new flows it also stamps a fresh source
//   address so every run misses the flow table (the LRU table is full after
//   a warm-up that fills it, so the cost includes eviction, as on a busy node). The
//   harness cost is measured as bench_reset -> XDP_PASS and subtracted:
//   net = wrapped - wrapped(XDP_PASS) + XDP_PASS. bench_reset -> parse+LRU is
//   reported as a cross-check of that subtraction.
// - Every round checks veer's counters: the runs took the intended path.
// - Forwarded packets take their next hop from veer's per-CPU next-hop cache
//   (bpf/lib/fib_cache.h) after the first run fills it, as established flows
//   and replies do on a node: the rows include that, and the run checks the
//   cache holds the backend's and the client's entries. "info: parse +
//   bpf_fib_lookup" is what each of those packets would cost without it.
// - "telemetry-heavy packet": the costliest telemetry path (SPEC §2.10), an
//   established client packet whose payload starts a request and the
//   backend's reply that answers it, by turns (bench_reset's alternate mode,
//   80-byte frames, its own harness cost subtracted). Every run is checked to
//   have taken a latency sample and counted the reply's 2xx.
// - R rounds, cases interleaved within a round, medians reported.
//
// Runs in its own network namespace (bpf_fib_lookup needs routes and
// neighbours), needs root. Usage: veer_bpf_bench [REPEAT [ROUNDS]]
#include <linux/types.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

#include "support/harness.h"
#include "support/netns.h"
#include "support/packet.h"

extern "C" {
#include "bench_ref.h"
}
#include "veer_bench_ref.skel.h"

using namespace veer::test;

namespace {

constexpr uint32_t kLruFilled = 50000;

struct Row {
  std::string name;
  bool wrapped = false;  // through bench_reset
  std::vector<double> ns;
  double median() const {
    std::vector<double> v = ns;
    std::sort(v.begin(), v.end());
    return v.empty() ? 0 : v[v.size() / 2];
  }
};

Bytes frame64(PacketSpec s) {
  s.payload.assign(BENCH_FRAME_LEN - 14 - 20 - 20, 'p');
  Bytes f = build(s);
  if (f.size() != BENCH_FRAME_LEN) throw std::logic_error("benchmark frame is not 64 bytes");
  return f;
}

}  // namespace

int main(int argc, char** argv) {
  uint32_t repeat = argc > 1 ? static_cast<uint32_t>(std::strtoul(argv[1], nullptr, 10)) : 1000000;
  int rounds = argc > 2 ? std::atoi(argv[2]) : 7;
  if (repeat == 0 || rounds <= 0 || rounds > 50) {
    fprintf(stderr, "usage: veer_bpf_bench [REPEAT [ROUNDS]] (ROUNDS 1..50)\n");
    return 2;
  }
  auto started = std::chrono::steady_clock::now();
  try {
    Topology topo = Topology::enter();
    int ifindex = topo.client_ifindex;

    // ---- veer: one IPv4 TCP service, default flow table size (1M) ----
    Dataplane dp(1048576);
    ServiceDef svc{0, "203.0.113.100", 80, VEER_PROTO_TCP, VEER_AFFINITY_CONNECTION, 0x5eed,
                   {{{"192.0.2.11", 8080}, {"192.0.2.12", 8080}}, {{"192.0.2.21", 8081}}}};
    dp.add_service(svc);
    dp.write_table(svc.id, 0, [](uint32_t i) {  // 90/10 split, backends by parity
      return i < 9000 ? veer_slot{0, static_cast<uint8_t>(i % 2)} : veer_slot{1, 0};
    });

    PacketSpec client;
    client.src_mac = mac("02:00:00:00:0c:10");
    client.dst_mac = mac(Topology::kClientIfMac);
    client.src = Ip::parse("198.51.100.10");
    client.dst = Ip::parse(svc.vip);
    client.sport = 40000;
    client.dport = 80;
    client.tcp_flags = kTcpAck;
    Bytes established = frame64(client);
    PacketSpec other = client;
    other.dport = 443;  // no port filter bit
    Bytes non_service = frame64(other);
    PacketSpec other_addr = client;
    other_addr.dst = Ip::parse("203.0.113.200");  // service port, no service: hash miss
    Bytes non_service_hash = frame64(other_addr);

    // Install the established flow, and build its backend's reply.
    RunResult first = dp.run(Hook::Xdp, established, ifindex);
    if (first.retval != XDP_REDIRECT) throw std::runtime_error("setup: the service packet was not forwarded");
    auto fwd = parse(first.out);
    if (!fwd) throw std::runtime_error("setup: the forwarded packet does not parse");
    PacketSpec reply_spec;
    reply_spec.src_mac = Topology::neighbour_mac(fwd->dst);
    reply_spec.dst_mac = mac(Topology::kBackendIfMac);
    reply_spec.src = fwd->dst;
    reply_spec.dst = client.src;
    reply_spec.sport = fwd->dport;
    reply_spec.dport = client.sport;
    reply_spec.tcp_flags = kTcpAck;
    Bytes reply = frame64(reply_spec);
    int backend_ifindex = topo.backend_ifindex;
    // What the FIB reference looks up: the forwarded packet (dst = backend).
    Bytes to_backend = first.out;
    veer_flow_key flow_key_of_client{};
    flow_key_of_client.src = to_abi(client.src);
    flow_key_of_client.dst = to_abi(client.dst);
    flow_key_of_client.sport = htons(client.sport);
    flow_key_of_client.dport = htons(client.dport);
    flow_key_of_client.proto = VEER_PROTO_TCP;
    flow_key_of_client.family = VEER_AF_INET;
    if (!dp.flow_exists(flow_key_of_client)) throw std::runtime_error("setup: no flow entry after the first packet");

    // ---- references ----
    veer_bench_ref* ref = veer_bench_ref__open_and_load();
    if (!ref) throw std::runtime_error("cannot load the reference programs");
    {
      // The HASH holds services (16 entries); the packet's one hits.
      for (uint32_t i = 0; i < 16; ++i) {
        ref_service_key k{};
        std::memcpy(&k.daddr, client.dst.b.data(), 4);
        k.daddr = htonl(ntohl(k.daddr) + i);
        k.dport = htons(80);
        k.proto = kProtoTcp;
        uint32_t v = i;
        Dataplane::check(bpf_map__update_elem(ref->maps.ref_services, &k, sizeof k, &v, sizeof v, BPF_ANY),
                         "fill ref_services");
      }
      // The LRU holds 50,000 5-tuples; the packet's one is among them.
      for (uint32_t i = 0; i < kLruFilled; ++i) {
        ref_tuple k{};
        uint32_t s = htonl(ntohl(*reinterpret_cast<const uint32_t*>(client.src.b.data())) + i / 20000);
        k.saddr = s;
        std::memcpy(&k.daddr, client.dst.b.data(), 4);
        k.sport = htons(static_cast<uint16_t>(40000 + i % 20000));
        k.dport = htons(80);
        k.proto = kProtoTcp;
        uint64_t v = i;
        Dataplane::check(bpf_map__update_elem(ref->maps.ref_flows, &k, sizeof k, &v, sizeof v, BPF_ANY),
                         "fill ref_flows");
      }
    }
    int fd_pass = bpf_program__fd(ref->progs.ref_pass);
    int fd_hash = bpf_program__fd(ref->progs.ref_parse_hash);
    int fd_lru = bpf_program__fd(ref->progs.ref_parse_lru);
    int fd_reset = bpf_program__fd(ref->progs.bench_reset);
    int fd_fib = bpf_program__fd(ref->progs.ref_parse_fib);
    int fd_veer = dp.prog_fd(Hook::Xdp);

    // The telemetry row: an established client packet whose payload starts a
    // request, then the backend's reply to it ("HTTP/1.1 200"), by turns.
    // Every pair costs the request start (reverse-entry lookup, clock) and
    // the answer (clock, histogram, status class, flow lookup).
    auto tel_frame = [](PacketSpec spec, const std::string& text) {
      spec.payload.assign(text.begin(), text.end());
      spec.payload.resize(BENCH_TEL_FRAME_LEN - 14 - 20 - 20, 'x');
      Bytes f = build(spec);
      if (f.size() != BENCH_TEL_FRAME_LEN) throw std::logic_error("telemetry frame is not 80 bytes");
      return f;
    };
    const Bytes tel_request = tel_frame(client, "GET /predict HTTP/1.1\r\n");
    const Bytes tel_reply = tel_frame(reply_spec, "HTTP/1.1 200 OK\r\n");
    // set_wrapper with alternate: frame is ignored, the pair runs by turns.
    auto set_wrapper = [&](const Bytes& frame, bool vary, int target_fd, bool alternate = false) {
      bench_template t{};
      std::memcpy(t.frame, frame.data(), BENCH_FRAME_LEN);
      t.vary_src = vary;
      t.alternate = alternate;
      std::memcpy(t.alt_frame[0], tel_request.data(), BENCH_TEL_FRAME_LEN);
      std::memcpy(t.alt_frame[1], tel_reply.data(), BENCH_TEL_FRAME_LEN);
      uint32_t zero = 0;
      Dataplane::check(bpf_map__update_elem(ref->maps.bench_template, &zero, sizeof zero, &t, sizeof t, BPF_ANY),
                       "bench_template");
      Dataplane::check(bpf_map__update_elem(ref->maps.bench_next, &zero, sizeof zero, &target_fd, sizeof target_fd,
                                            BPF_ANY),
                       "bench_next");
    };

    // Why the wrapper: a plain repeat of a rewriting program.
    uint64_t fwd_plain = 0;
    {
      PacketSpec fresh = client;
      fresh.sport = 39999;
      Bytes f = frame64(fresh);
      auto before = dp.reasons();
      dp.run(Hook::Xdp, f, ifindex, 1000);
      fwd_plain = dp.reasons()[VEER_R_FWD_TO_BACKEND] - before[VEER_R_FWD_TO_BACKEND];
    }

    // ---- measurement ----
    std::vector<Row> rows = {
        {"ref: XDP_PASS", false, {}},
        {"ref: parse eth/ipv4/tcp + HASH lookup (hit)", false, {}},
        {"ref: parse + LRU_HASH 5-tuple lookup (50k, hit)", false, {}},
        {"veer_xdp: non-service (port filter miss)", false, {}},
        {"veer_xdp: non-service (service port, hash miss)", false, {}},
        {"info: parse + bpf_fib_lookup (SUCCESS)", false, {}},
        {"harness: bench_reset -> XDP_PASS", true, {}},
        {"check: bench_reset -> parse + LRU (net)", true, {}},
        {"veer_xdp: established flow (net)", true, {}},
        {"veer_xdp: reply of an established flow (net)", true, {}},
        {"veer_xdp: new flow (net)", true, {}},
        {"harness: alternating bench_reset -> XDP_PASS", true, {}},
        {"veer_xdp: telemetry-heavy packet (net)", true, {}},
    };
    enum { PASS, HASH, LRU, NONSVC, NONSVC_HASH, FIB, WRAP_PASS, WRAP_LRU, EST, REPLY, NEW, WRAP_ALT, TEL };
    const Bytes dummy(BENCH_FRAME_LEN, 0);  // overwritten by bench_reset
    const Bytes dummy_tel(BENCH_TEL_FRAME_LEN, 0);
    // Even: every measurement ends with a reply, and the next starts with a
    // request (the wrapper's turn counter carries over between runs).
    const uint32_t repeat_tel = repeat + (repeat & 1);
    std::string check_errors;
    auto expect_delta = [&](const char* what, uint64_t got, uint64_t want) {
      if (got != want)
        check_errors += std::string(what) + ": " + std::to_string(got) + " != " + std::to_string(want) + "\n";
    };

    // New flows are measured on a FULL flow table (the steady state of a busy
    // node: every insert evicts): fill it first, unmeasured, with as many
    // distinct flows as it has entries, then run fewer new flows per round
    // (they cost microseconds, and the run must stay short).
    const uint32_t flow_table = bpf_map__max_entries(dp.skel()->maps.veer_flows);
    const uint32_t repeat_new = std::max<uint32_t>(1, repeat / 5);
    set_wrapper(established, true, fd_veer);
    Dataplane::run_fd(fd_reset, Hook::Xdp, dummy, ifindex, flow_table);

    for (int round = 0; round < rounds; ++round) {
      auto direct = [&](int fd, const Bytes& f) { return Dataplane::run_fd(fd, Hook::Xdp, f, ifindex, repeat); };
      rows[PASS].ns.push_back(direct(fd_pass, established).duration_ns);
      rows[HASH].ns.push_back(direct(fd_hash, established).duration_ns);
      rows[LRU].ns.push_back(direct(fd_lru, established).duration_ns);
      rows[FIB].ns.push_back(direct(fd_fib, to_backend).duration_ns);
      {
        auto before = dp.reasons();
        rows[NONSVC].ns.push_back(direct(fd_veer, non_service).duration_ns);
        rows[NONSVC_HASH].ns.push_back(direct(fd_veer, non_service_hash).duration_ns);
        expect_delta("non-service runs counted PASS_NOT_SERVICE",
                     dp.reasons()[VEER_R_PASS_NOT_SERVICE] - before[VEER_R_PASS_NOT_SERVICE], 2ull * repeat);
      }
      set_wrapper(established, false, fd_pass);
      rows[WRAP_PASS].ns.push_back(direct(fd_reset, dummy).duration_ns);
      set_wrapper(established, false, fd_lru);
      rows[WRAP_LRU].ns.push_back(direct(fd_reset, dummy).duration_ns);
      {
        // The new-flow runs evict LRU entries: make sure the measured flow
        // exists (unmeasured), then check no measured run re-created it.
        dp.run(Hook::Xdp, established, ifindex);
        if (!dp.flow_exists(flow_key_of_client))
          throw std::runtime_error("the established flow is not in the flow table");
        auto before = dp.reasons();
        auto flows_before = dp.counters(0, 0).new_flows + dp.counters(0, 1).new_flows;
        set_wrapper(established, false, fd_veer);
        rows[EST].ns.push_back(direct(fd_reset, dummy).duration_ns);
        auto mid = dp.reasons();
        auto flows_mid = dp.counters(0, 0).new_flows + dp.counters(0, 1).new_flows;
        expect_delta("established runs counted FWD_TO_BACKEND",
                     mid[VEER_R_FWD_TO_BACKEND] - before[VEER_R_FWD_TO_BACKEND], repeat);
        expect_delta("established runs made new flows", flows_mid - flows_before, 0);
        set_wrapper(reply, false, fd_veer);
        auto before_reply = dp.reasons();
        rows[REPLY].ns.push_back(
            Dataplane::run_fd(fd_reset, Hook::Xdp, dummy, backend_ifindex, repeat).duration_ns);
        expect_delta("reply runs counted FWD_TO_CLIENT",
                     dp.reasons()[VEER_R_FWD_TO_CLIENT] - before_reply[VEER_R_FWD_TO_CLIENT], repeat);
        set_wrapper(established, false, fd_pass, true);
        rows[WRAP_ALT].ns.push_back(
            Dataplane::run_fd(fd_reset, Hook::Xdp, dummy_tel, ifindex, repeat_tel).duration_ns);
        {
          // The reply row's first run answered any pending request: the
          // first telemetry run starts a new one.
          set_wrapper(established, false, fd_veer, true);
          auto before_tel = dp.reasons();
          auto c_before = dp.counters(0, 0);
          auto c1_before = dp.counters(0, 1);
          rows[TEL].ns.push_back(
              Dataplane::run_fd(fd_reset, Hook::Xdp, dummy_tel, ifindex, repeat_tel).duration_ns);
          auto after_tel = dp.reasons();
          auto c_after = dp.counters(0, 0);
          auto c1_after = dp.counters(0, 1);
          uint64_t responses = (c_after.responses - c_before.responses) + (c1_after.responses - c1_before.responses);
          uint64_t ok = (c_after.http_2xx - c_before.http_2xx) + (c1_after.http_2xx - c1_before.http_2xx);
          expect_delta("telemetry runs counted FWD_TO_BACKEND",
                       after_tel[VEER_R_FWD_TO_BACKEND] - before_tel[VEER_R_FWD_TO_BACKEND], repeat_tel / 2);
          expect_delta("telemetry runs counted FWD_TO_CLIENT",
                       after_tel[VEER_R_FWD_TO_CLIENT] - before_tel[VEER_R_FWD_TO_CLIENT], repeat_tel / 2);
          expect_delta("telemetry runs took latency samples", responses, repeat_tel / 2);
          expect_delta("telemetry runs counted HTTP 2xx", ok, repeat_tel / 2);
        }
        set_wrapper(established, true, fd_veer);
        auto before_new = dp.reasons();
        rows[NEW].ns.push_back(
            Dataplane::run_fd(fd_reset, Hook::Xdp, dummy, ifindex, repeat_new).duration_ns);
        auto flows_after = dp.counters(0, 0).new_flows + dp.counters(0, 1).new_flows;
        expect_delta("new-flow runs counted new_flows", flows_after - flows_mid, repeat_new);
        expect_delta("new-flow runs counted FWD_TO_BACKEND",
                     dp.reasons()[VEER_R_FWD_TO_BACKEND] - before_new[VEER_R_FWD_TO_BACKEND], repeat_new);
      }
    }
    veer_bench_ref__destroy(ref);
    {
      int ncpus = libbpf_num_possible_cpus();
      auto cached_anywhere = [&](const Ip& dst, int ingress) {
        for (int cpu = 0; cpu < ncpus; ++cpu)
          if (dp.fib_cache_entry(dst, ingress, cpu)) return true;
        return false;
      };
      if (!cached_anywhere(fwd->dst, ifindex)) check_errors += "no next-hop cache entry for the backend\n";
      if (!cached_anywhere(client.src, backend_ifindex)) check_errors += "no next-hop cache entry for the client\n";
    }

    // ---- report ----
    double pass = rows[PASS].median();
    double harness = rows[WRAP_PASS].median() - pass;
    double harness_alt = rows[WRAP_ALT].median() - pass;
    auto offset = [&](int i) {
      if (!rows[i].wrapped || i == WRAP_PASS || i == WRAP_ALT) return 0.0;
      return i == TEL ? harness_alt : harness;
    };
    auto net = [&](int i) { return rows[i].median() - offset(i); };
    printf("veer_bpf_bench: BPF_PROG_TEST_RUN, XDP, 64-byte IPv4 TCP frames, ingress on a veth in a private netns\n");
    printf("repeat %u per measurement, %d rounds (cases interleaved), medians of the kernel's mean ns/run\n",
           repeat, rounds);
    printf("rewriting cases run through bench_reset (restores the frame, tail call); its cost %.1f ns is\n"
           "subtracted (rows marked net). A plain repeat of veer_xdp on a service packet forwarded %lu of\n"
           "1000 runs: after the first run the buffer holds the rewritten frame, hence the harness.\n"
           "new flow: every run has a new source address (flow table miss); the %u-entry flow table\n"
           "was filled first, so every insert evicts (busy-node steady state); %u runs per round.\n"
           "telemetry-heavy: 80-byte frames by turns, an established client packet whose payload starts\n"
           "a request and the backend's \"HTTP/1.1 200\" answer to it (latency sample, status class),\n"
           "ns per packet (mean of the two); its harness (%.1f ns, 80-byte copies) is subtracted.\n\n",
           harness, static_cast<unsigned long>(fwd_plain), flow_table, repeat_new, harness_alt);
    printf("%-52s %10s %10s %10s\n", "case", "ns/packet", "min", "max");
    for (int i = 0; i < static_cast<int>(rows.size()); ++i) {
      auto [mn, mx] = std::minmax_element(rows[i].ns.begin(), rows[i].ns.end());
      double off = offset(i);
      printf("%-52s %10.1f %10.1f %10.1f\n", rows[i].name.c_str(), net(i), *mn - off, *mx - off);
    }
    double est_ratio = net(EST) / net(LRU);
    double nonsvc_ratio = net(NONSVC) / net(HASH);
    printf("\nratios (same run):\n");
    printf("  established / parse+LRU   = %5.2f   target <= 3.00  %s\n", est_ratio, est_ratio <= 3.0 ? "ok" : "MISSED");
    printf("  non-service / parse+HASH  = %5.2f   target <= 1.30  %s\n", nonsvc_ratio,
           nonsvc_ratio <= 1.3 ? "ok" : "MISSED");
    printf("  reply       / parse+LRU   = %5.2f   (no target)\n", net(REPLY) / net(LRU));
    printf("  new flow    / parse+LRU   = %5.2f   (no target)\n", net(NEW) / net(LRU));
    printf("  telemetry-heavy / parse+LRU = %5.2f (no target); a request + its answer cost %.1f ns more\n"
           "    than an established packet + a reply that start or end nothing\n",
           net(TEL) / net(LRU), 2 * net(TEL) - net(EST) - net(REPLY));
    printf("  cross-check: bench_reset->parse+LRU net %.1f ns vs direct %.1f ns\n", net(WRAP_LRU), net(LRU));
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    printf("total time %.1f s\n", secs);
    if (!check_errors.empty()) {
      fprintf(stderr, "veer_bpf_bench: the runs did not take the measured path:\n%s", check_errors.c_str());
      return 1;
    }
    return 0;
  } catch (const std::exception& e) {
    fprintf(stderr, "veer_bpf_bench: %s\n", e.what());
    return 1;
  }
}
