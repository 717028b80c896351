// BPF data-plane tests: the real veer object (veer.skel.h) is loaded, its maps
// are filled directly with the abi.h structs, and crafted frames run through
// veer_xdp and veer_tc with BPF_PROG_TEST_RUN inside a private network
// namespace whose routes and PERMANENT neighbours make bpf_fib_lookup() give
// known answers (support/netns.h). Outputs are checked against values the
// test computes itself: the slot via veer/hash.h, checksums recomputed from
// scratch (support/packet.h). Needs root.
#include <gtest/gtest.h>
#include <sched.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <thread>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include "support/harness.h"

extern "C" {
#include "veer/latency.h"
}
#include "support/netns.h"
#include "support/packet.h"

using namespace veer::test;

namespace {

Topology* g_topo = nullptr;

// ---- the services every test loads ----------------------------------------

const char* kVip4 = "203.0.113.100";
const char* kVip6 = "2001:db8:100::100";
const char* kClient4 = "198.51.100.10";
const char* kClient6 = "2001:db8:c::10";

ServiceDef svc_tcp4() {
  return {0, kVip4, 80, VEER_PROTO_TCP, VEER_AFFINITY_CONNECTION, 0x5eed,
          {{{"192.0.2.11", 8080}, {"192.0.2.12", 8080}}, {{"192.0.2.21", 8081}, {"192.0.2.22", 8081}}}};
}
ServiceDef svc_udp4() {
  return {1, kVip4, 53, VEER_PROTO_UDP, VEER_AFFINITY_CONNECTION, 0x1234,
          {{{"192.0.2.11", 5353}, {"192.0.2.12", 5353}}}};
}
ServiceDef svc_tcp6() {
  return {2, kVip6, 80, VEER_PROTO_TCP, VEER_AFFINITY_CONNECTION, 0x5eed,
          {{{"2001:db8:b::11", 8080}, {"2001:db8:b::12", 8080}}, {{"2001:db8:b::21", 8081}}}};
}
ServiceDef svc_udp6() {
  return {3, kVip6, 53, VEER_PROTO_UDP, VEER_AFFINITY_CONNECTION, 0xabcdef,
          {{{"2001:db8:b::11", 5353}, {"2001:db8:b::12", 5353}}}};
}
ServiceDef svc_client_ip() {
  return {4, kVip4, 443, VEER_PROTO_TCP, VEER_AFFINITY_CLIENT_IP, 0x5eed,
          {{{"192.0.2.11", 8443}, {"192.0.2.12", 8443}}}};
}
ServiceDef svc_no_neigh4() {
  return {5, "203.0.113.101", 80, VEER_PROTO_TCP, VEER_AFFINITY_CONNECTION, 0x5eed,
          {{{Topology::kNoNeighbour4, 8080}}}};
}
ServiceDef svc_no_neigh6() {
  return {6, "2001:db8:100::101", 80, VEER_PROTO_TCP, VEER_AFFINITY_CONNECTION, 0x5eed,
          {{{Topology::kNoNeighbour6, 8080}}}};
}
ServiceDef svc_unreachable() {
  return {7, "203.0.113.102", 80, VEER_PROTO_TCP, VEER_AFFINITY_CONNECTION, 0x5eed,
          {{{Topology::kUnreachable4, 8080}}}};
}
ServiceDef svc_same_side() {  // backend reachable through the client interface
  return {8, "203.0.113.103", 80, VEER_PROTO_TCP, VEER_AFFINITY_CONNECTION, 0x5eed,
          {{{"198.51.100.50", 8080}}}};
}
// A backend belongs to one service (veer_backend_rev): the services below
// that never forward use backend ports of their own.
ServiceDef svc_no_variant() {  // every slot VEER_VARIANT_NONE
  return {9, "203.0.113.104", 80, VEER_PROTO_TCP, VEER_AFFINITY_CONNECTION, 0x5eed,
          {{{"192.0.2.11", 8090}}}};
}
ServiceDef svc_local_backend() {  // the backend is an address of this node
  return {11, "203.0.113.106", 80, VEER_PROTO_TCP, VEER_AFFINITY_CONNECTION, 0x5eed,
          {{{"192.0.2.1", 8080}}}};
}
ServiceDef svc_absent_backend() {  // the slot names a backend without F_PRESENT
  return {10, "203.0.113.105", 80, VEER_PROTO_TCP, VEER_AFFINITY_CONNECTION, 0x5eed,
          {{{"192.0.2.11", 8091, false}}}};
}

// Table 0 of every service: variant 0, backends alternating by slot parity,
// so the expected backend depends on the exact slot the hash gives.
veer_slot table0_slot(const ServiceDef& s, uint32_t i) {
  return {0, static_cast<uint8_t>(i % s.variants[0].size())};
}

veer_flow_key flow_key(const Ip& src, const Ip& dst, uint16_t sport, uint16_t dport, uint8_t proto) {
  veer_flow_key k{};
  k.src = to_abi(src);
  k.dst = to_abi(dst);
  k.sport = htons(sport);
  k.dport = htons(dport);
  k.proto = proto;
  k.family = src.family == 4 ? VEER_AF_INET : VEER_AF_INET6;
  return k;
}

// The slot a new flow of `s` from client:cport lands on, computed with the
// same hash.h the program compiles.
uint32_t expected_slot(const ServiceDef& s, const Ip& client, uint16_t cport) {
  veer_flow_key k = flow_key(client, Ip::parse(s.vip), cport, s.port, s.proto);
  uint32_t h = s.affinity == VEER_AFFINITY_CLIENT_IP ? veer_hash_client(&k.src, s.seed)
                                                     : veer_hash_connection(&k, s.seed);
  return veer_slot_of(h);
}

PacketSpec client_spec(const ServiceDef& s, const Ip& client, uint16_t cport) {
  PacketSpec p;
  p.src_mac = Topology::neighbour_mac(client);
  p.dst_mac = mac(Topology::kClientIfMac);
  p.src = client;
  p.dst = Ip::parse(s.vip);
  p.proto = s.proto;
  p.sport = cport;
  p.dport = s.port;
  p.payload = {'h', 'e', 'l', 'l', 'o', ' ', 'v', 'e', 'e', 'r'};
  return p;
}

PacketSpec reply_spec(const ServiceDef& s, const BackendDef& b, const Ip& client, uint16_t cport) {
  PacketSpec p;
  p.src_mac = Topology::neighbour_mac(Ip::parse(b.ip));
  p.dst_mac = mac(Topology::kBackendIfMac);
  p.src = Ip::parse(b.ip);
  p.dst = client;
  p.proto = s.proto;
  p.sport = b.port;
  p.dport = cport;
  p.tcp_flags = kTcpSyn | kTcpAck;
  p.payload = {'r', 'e', 'p', 'l', 'y'};
  return p;
}

std::string reason_name(int r) {
  switch (r) {
#define VEER_REASON_NAME(name, value, kind, desc) \
  case value:                                      \
    return #name;
    VEER_REASONS(VEER_REASON_NAME)
#undef VEER_REASON_NAME
  }
  return "reason " + std::to_string(r);
}

// ---- fixture ----------------------------------------------------------------

class VeerBpf : public ::testing::TestWithParam<Hook> {
 protected:
  void SetUp() override {
    ASSERT_NE(g_topo, nullptr) << "network namespace not set up";
    dp_ = std::make_unique<Dataplane>();
    for (const ServiceDef& s : {svc_tcp4(), svc_udp4(), svc_tcp6(), svc_udp6(), svc_client_ip(),
                                svc_no_neigh4(), svc_no_neigh6(), svc_unreachable(), svc_same_side(),
                                svc_absent_backend(), svc_local_backend()}) {
      dp_->add_service(s);
      dp_->write_table(s.id, 0, [&](uint32_t i) { return table0_slot(s, i); });
    }
    ServiceDef none = svc_no_variant();
    dp_->add_service(none);
    dp_->write_table(none.id, 0, [](uint32_t) { return veer_slot{VEER_VARIANT_NONE, 0}; });
  }

  Hook hook() const { return GetParam(); }

  // Runs one frame and checks that exactly one reason counter moved, and
  // that it is `reason`.
  RunResult run_expect(const Bytes& frame, int ifindex, int reason) {
    auto before = dp_->reasons();
    RunResult r = dp_->run(hook(), frame, ifindex);
    auto after = dp_->reasons();
    uint64_t total = 0;
    for (int i = 0; i < VEER_REASON_MAX; ++i) total += after[i] - before[i];
    EXPECT_EQ(after[reason] - before[reason], 1u)
        << "expected reason " << reason_name(reason) << " to count this packet";
    EXPECT_EQ(total, 1u) << "every packet is counted under exactly one reason";
    if (total != 1 || after[reason] - before[reason] != 1) {
      for (int i = 0; i < VEER_REASON_MAX; ++i)
        if (after[i] != before[i]) ADD_FAILURE() << "counted: " << reason_name(i);
    }
    return r;
  }

  // Sends a client packet of `s` and checks the complete rewrite to `backend`.
  RunResult expect_forwarded_to(const ServiceDef& s, const PacketSpec& spec, const BackendDef& backend) {
    Bytes in = build(spec);
    RunResult r = run_expect(in, g_topo->client_ifindex, VEER_R_FWD_TO_BACKEND);
    EXPECT_EQ(r.retval, verdict_redirect(hook()));
    auto p = parse(r.out);
    EXPECT_TRUE(p.has_value()) << "output does not parse: " << hex(r.out);
    if (!p) return r;
    Ip bip = Ip::parse(backend.ip);
    EXPECT_EQ(p->dst.str(), bip.str()) << "destination must be the backend";
    EXPECT_EQ(p->dport, backend.port);
    EXPECT_EQ(p->src.str(), spec.src.str()) << "client address is preserved";
    EXPECT_EQ(p->sport, spec.sport);
    EXPECT_EQ(p->ttl, spec.ttl - 1);
    EXPECT_EQ(p->dst_mac, Topology::neighbour_mac(bip));
    EXPECT_EQ(p->src_mac, mac(Topology::kBackendIfMac));
    EXPECT_EQ(r.out.size(), in.size());
    if (p->family == 4) {
      EXPECT_TRUE(ipv4_checksum_ok(r.out, *p)) << hex(r.out);
    }
    EXPECT_TRUE(l4_checksum_ok(r.out, *p, spec.udp_zero_checksum)) << hex(r.out);
    // Everything after the ports is the client's (payload, TCP seq/flags, ...)
    // except the checksum field.
    size_t ck = p->l4 + (s.proto == VEER_PROTO_TCP ? 16 : 6);
    for (size_t i = p->l4 + 4; i < in.size() && i < r.out.size(); ++i)
      if (i != ck && i != ck + 1) {
        EXPECT_EQ(r.out[i], in[i]) << "byte " << i << " changed";
      }
    return r;
  }

  // Sends a backend reply and checks it comes back from VIP:port.
  void expect_reply_translated(const ServiceDef& s, const PacketSpec& spec) {
    Bytes in = build(spec);
    RunResult r = run_expect(in, g_topo->backend_ifindex, VEER_R_FWD_TO_CLIENT);
    EXPECT_EQ(r.retval, verdict_redirect(hook()));
    auto p = parse(r.out);
    ASSERT_TRUE(p.has_value()) << hex(r.out);
    EXPECT_EQ(p->src.str(), Ip::parse(s.vip).str()) << "the client only ever sees the VIP";
    EXPECT_EQ(p->sport, s.port);
    EXPECT_EQ(p->dst.str(), spec.dst.str());
    EXPECT_EQ(p->dport, spec.dport);
    EXPECT_EQ(p->ttl, spec.ttl - 1);
    EXPECT_EQ(p->dst_mac, Topology::neighbour_mac(spec.dst));
    EXPECT_EQ(p->src_mac, mac(Topology::kClientIfMac));
    if (p->family == 4) {
      EXPECT_TRUE(ipv4_checksum_ok(r.out, *p)) << hex(r.out);
    }
    EXPECT_TRUE(l4_checksum_ok(r.out, *p, spec.udp_zero_checksum)) << hex(r.out);
  }

  // A packet that must pass untouched: verdict pass, same bytes, reason.
  void expect_untouched(const Bytes& in, int ifindex, int reason) {
    RunResult r = run_expect(in, ifindex, reason);
    EXPECT_EQ(r.retval, verdict_pass(hook()));
    EXPECT_EQ(hex(r.out), hex(in)) << "must come out byte for byte unchanged";
  }

  const BackendDef& expected_backend(const ServiceDef& s, const Ip& client, uint16_t cport) {
    uint32_t slot = expected_slot(s, client, cport);
    veer_slot sl = table0_slot(s, slot);
    return s.variants[sl.variant][sl.backend];
  }

  std::unique_ptr<Dataplane> dp_;
};

// ---- forwarding and replies, every family x protocol --------------------------

struct ServiceCase {
  const char* name;
  ServiceDef (*def)();
  const char* client;
};
const ServiceCase kServiceCases[] = {
    {"ipv4_tcp", svc_tcp4, kClient4},
    {"ipv4_udp", svc_udp4, kClient4},
    {"ipv6_tcp", svc_tcp6, kClient6},
    {"ipv6_udp", svc_udp6, kClient6},
};

TEST_P(VeerBpf, NewFlowsGoToTheSlotsBackendAndRepliesComeBackFromTheVip) {
  for (const ServiceCase& c : kServiceCases) {
    SCOPED_TRACE(c.name);
    ServiceDef s = c.def();
    Ip client = Ip::parse(c.client);
    // Several client ports: both backends of variant 0 must be hit, each
    // exactly where the slot parity says.
    std::set<std::string> seen;
    uint64_t packets = 0, bytes = 0, out_packets = 0, out_bytes = 0;
    for (uint16_t cport = 40000; cport < 40016; ++cport) {
      SCOPED_TRACE("client port " + std::to_string(cport));
      const BackendDef& want = expected_backend(s, client, cport);
      seen.insert(want.ip);
      PacketSpec spec = client_spec(s, client, cport);
      Bytes frame = build(spec);
      expect_forwarded_to(s, spec, want);
      // A second packet of the flow goes the same way.
      spec.tcp_flags = kTcpAck;
      spec.payload = {'m', 'o', 'r', 'e'};
      expect_forwarded_to(s, spec, want);
      packets += 2;
      bytes += frame.size() + build(spec).size();

      PacketSpec reply = reply_spec(s, want, client, cport);
      expect_reply_translated(s, reply);
      out_packets += 1;
      out_bytes += build(reply).size();
    }
    EXPECT_EQ(seen.size(), 2u) << "the 16 flows should cover both backends (test setup)";
    veer_variant_counters c0 = dp_->counters(s.id, 0);
    EXPECT_EQ(c0.new_flows, 16u);
    EXPECT_EQ(c0.packets_in, packets);
    EXPECT_EQ(c0.bytes_in, bytes);
    EXPECT_EQ(c0.packets_out, out_packets);
    EXPECT_EQ(c0.bytes_out, out_bytes);
    if (s.variants.size() > 1) {
      veer_variant_counters c1 = dp_->counters(s.id, 1);
      EXPECT_EQ(c1.packets_in + c1.packets_out + c1.new_flows, 0u) << "variant 1 owns no slot";
    }
  }
}

TEST_P(VeerBpf, ForwardedFlowIsRecordedInTheFlowTable) {
  ServiceDef s = svc_tcp4();
  Ip client = Ip::parse(kClient4);
  const BackendDef& want = expected_backend(s, client, 41000);
  expect_forwarded_to(s, client_spec(s, client, 41000), want);
  veer_flow f{};
  ASSERT_TRUE(dp_->flow_exists(flow_key(client, Ip::parse(s.vip), 41000, 80, VEER_PROTO_TCP), &f));
  EXPECT_EQ(f.backend_port, htons(want.port));
  EXPECT_EQ(f.variant, 0);
  // Made by the client's SYN (with data: a request is pending): its ISN is kept.
  EXPECT_EQ(f.state, VEER_FLOW_S_SYN | VEER_FLOW_S_REQUEST_PENDING);
  EXPECT_EQ(ntohl(f.syn_seq), client_spec(s, client, 41000).seq);
  veer_addr want_addr = to_abi(Ip::parse(want.ip));
  EXPECT_EQ(std::memcmp(&f.backend, &want_addr, sizeof f.backend), 0);
}

TEST_P(VeerBpf, OneFlowEntryServesBothDirections) {
  ServiceDef s = svc_tcp4();
  Ip client = Ip::parse(kClient4);
  const uint16_t cport = 41100;
  const BackendDef& want = expected_backend(s, client, cport);
  expect_forwarded_to(s, client_spec(s, client, cport), want);
  // The entry is keyed by (client, client port, service): no VIP, no backend.
  veer_flow_id id{};
  id.client = to_abi(client);
  id.client_port = htons(cport);
  id.service_id = static_cast<uint16_t>(s.id);
  id.proto = VEER_PROTO_TCP;
  id.family = VEER_AF_INET;
  veer_flow f{};
  ASSERT_TRUE(dp_->flow_by_id(id, &f));
  EXPECT_EQ(f.backend_port, htons(want.port));
  // The reply finds the same entry: rewriting its backend port makes the
  // real backend's reply a stranger's.
  veer_flow moved = f;
  moved.backend_port = htons(want.port + 1);
  dp_->put_flow(id, moved);
  Bytes reply = build(reply_spec(s, want, client, cport));
  expect_untouched(reply, g_topo->backend_ifindex, VEER_R_PASS_NOT_SERVICE);
  dp_->put_flow(id, f);
  expect_reply_translated(s, reply_spec(s, want, client, cport));
}

TEST_P(VeerBpf, ReplyFromABackendWithoutAFlowPassesUntouched) {
  ServiceDef s = svc_tcp4();
  Ip client = Ip::parse(kClient4);
  // A backend of the service (its veer_backend_rev entry exists) talking to
  // a client that has no flow with this service.
  for (const BackendDef& b : {s.variants[0][0], s.variants[1][1]}) {
    SCOPED_TRACE(b.ip);
    expect_untouched(build(reply_spec(s, b, client, 41200)), g_topo->backend_ifindex, VEER_R_PASS_NOT_SERVICE);
  }
  // A flow of another client does not make this client's packets replies.
  expect_forwarded_to(s, client_spec(s, client, 41201), expected_backend(s, client, 41201));
  expect_untouched(build(reply_spec(s, expected_backend(s, client, 41201), Ip::parse("198.51.100.11"), 41201)),
                   g_topo->backend_ifindex, VEER_R_PASS_NOT_SERVICE);
  // Backend port, but an address that is no backend.
  PacketSpec stranger = reply_spec(s, s.variants[0][0], client, 41201);
  stranger.src = Ip::parse("192.0.2.99");
  expect_untouched(build(stranger), g_topo->backend_ifindex, VEER_R_PASS_NOT_SERVICE);
  EXPECT_EQ(dp_->counters(s.id, 0).packets_out + dp_->counters(s.id, 1).packets_out, 0u);
}

TEST_P(VeerBpf, ReplyFromAnotherBackendThanTheFlowsPassesUntouched) {
  for (const ServiceCase& c : kServiceCases) {
    SCOPED_TRACE(c.name);
    ServiceDef s = c.def();
    Ip client = Ip::parse(c.client);
    const uint16_t cport = 41300;
    const BackendDef& want = expected_backend(s, client, cport);
    expect_forwarded_to(s, client_spec(s, client, cport), want);
    // Every other backend of the service, same client and client port.
    for (const auto& variant : s.variants)
      for (const BackendDef& other : variant) {
        if (other.ip == want.ip && other.port == want.port) continue;
        SCOPED_TRACE("from " + other.ip + ":" + std::to_string(other.port));
        expect_untouched(build(reply_spec(s, other, client, cport)), g_topo->backend_ifindex,
                         VEER_R_PASS_NOT_SERVICE);
      }
    EXPECT_EQ(dp_->counters(s.id, 0).packets_out, 0u);
    // The flow is untouched by them: its own backend's reply still works.
    expect_reply_translated(s, reply_spec(s, want, client, cport));
    EXPECT_EQ(dp_->counters(s.id, 0).packets_out, 1u);
  }
}

TEST_P(VeerBpf, SameClientPortToTwoServicesKeepsTwoIndependentFlows) {
  // Same VIP, same client address and port, two services (ports 80 and 443).
  ServiceDef web = svc_tcp4();
  ServiceDef tls = svc_client_ip();
  Ip client = Ip::parse(kClient4);
  const uint16_t cport = 41400;
  const BackendDef& web_backend = expected_backend(web, client, cport);
  const BackendDef& tls_backend = expected_backend(tls, client, cport);
  expect_forwarded_to(web, client_spec(web, client, cport), web_backend);
  expect_forwarded_to(tls, client_spec(tls, client, cport), tls_backend);
  EXPECT_EQ(dp_->counters(web.id, 0).new_flows, 1u);
  EXPECT_EQ(dp_->counters(tls.id, 0).new_flows, 1u);
  veer_flow fw{}, ft{};
  ASSERT_TRUE(dp_->flow_exists(flow_key(client, Ip::parse(web.vip), cport, web.port, VEER_PROTO_TCP), &fw));
  ASSERT_TRUE(dp_->flow_exists(flow_key(client, Ip::parse(tls.vip), cport, tls.port, VEER_PROTO_TCP), &ft));
  EXPECT_EQ(fw.backend_port, htons(web_backend.port));
  EXPECT_EQ(ft.backend_port, htons(tls_backend.port));
  // Each reply goes back from its own service's VIP port.
  expect_reply_translated(web, reply_spec(web, web_backend, client, cport));
  expect_reply_translated(tls, reply_spec(tls, tls_backend, client, cport));
  // Later packets of each keep their own backend, also after the other's
  // table changes.
  dp_->write_table(tls.id, 1, [](uint32_t) { return veer_slot{0, 0}; });
  dp_->write_table(tls.id, 0, [](uint32_t) { return veer_slot{0, 1}; });
  PacketSpec more = client_spec(web, client, cport);
  more.tcp_flags = kTcpAck;
  expect_forwarded_to(web, more, web_backend);
  more = client_spec(tls, client, cport);
  more.tcp_flags = kTcpAck;
  expect_forwarded_to(tls, more, tls_backend);
  EXPECT_EQ(dp_->counters(web.id, 0).new_flows + dp_->counters(tls.id, 0).new_flows, 2u);
}

TEST_P(VeerBpf, Ipv4OptionsTcpOptionsVlanAndEthernetPaddingAreForwarded) {
  ServiceDef s = svc_tcp4();
  Ip client = Ip::parse(kClient4);
  {
    SCOPED_TRACE("IPv4 options (IHL 8) and TCP options");
    PacketSpec spec = client_spec(s, client, 42001);
    spec.ip_options = {0x07, 0x0b, 0x04, 0, 0, 0, 0, 0, 0, 0, 0, 0};  // record route
    spec.tcp_options = {2, 4, 0x05, 0xb4, 4, 2, 1, 3, 3, 7};         // MSS, SACK-perm, NOP, wscale
    expect_forwarded_to(s, spec, expected_backend(s, client, 42001));
  }
  {
    SCOPED_TRACE("one 802.1Q tag");
    PacketSpec spec = client_spec(s, client, 42002);
    spec.vlans = {100};
    Bytes in = build(spec);
    RunResult r = run_expect(in, g_topo->client_ifindex, VEER_R_FWD_TO_BACKEND);
    EXPECT_EQ(r.retval, verdict_redirect(hook()));
    auto p = parse(r.out);
    ASSERT_TRUE(p.has_value()) << hex(r.out);
    const BackendDef& want = expected_backend(s, client, 42002);
    EXPECT_EQ(p->dst.str(), want.ip);
    EXPECT_EQ(p->dport, want.port);
    EXPECT_TRUE(ipv4_checksum_ok(r.out, *p));
    EXPECT_TRUE(l4_checksum_ok(r.out, *p));
  }
  {
    SCOPED_TRACE("minimum Ethernet frame: 60 bytes with padding after the IP packet");
    PacketSpec spec = client_spec(s, client, 42003);
    spec.payload.clear();
    spec.tcp_flags = kTcpAck;
    Bytes in = build(spec);  // 54 bytes
    in.resize(60, 0);
    RunResult r = run_expect(in, g_topo->client_ifindex, VEER_R_FWD_TO_BACKEND);
    EXPECT_EQ(r.retval, verdict_redirect(hook()));
    auto p = parse(r.out);
    ASSERT_TRUE(p.has_value()) << hex(r.out);
    EXPECT_EQ(p->dst.str(), expected_backend(s, client, 42003).ip);
    EXPECT_TRUE(ipv4_checksum_ok(r.out, *p));
    EXPECT_TRUE(l4_checksum_ok(r.out, *p)) << "the TCP checksum covers tot_len, not the padding";
  }
}

TEST_P(VeerBpf, Ipv4UdpChecksumZeroStaysZero) {
  ServiceDef s = svc_udp4();
  Ip client = Ip::parse(kClient4);
  PacketSpec spec = client_spec(s, client, 43000);
  spec.udp_zero_checksum = true;
  RunResult r = expect_forwarded_to(s, spec, expected_backend(s, client, 43000));
  auto p = parse(r.out);
  ASSERT_TRUE(p.has_value());
  EXPECT_EQ(get16(r.out, p->l4 + 6), 0) << "no checksum must stay no checksum";

  PacketSpec reply = reply_spec(s, expected_backend(s, client, 43000), client, 43000);
  reply.udp_zero_checksum = true;
  RunResult rr = run_expect(build(reply), g_topo->backend_ifindex, VEER_R_FWD_TO_CLIENT);
  auto rp = parse(rr.out);
  ASSERT_TRUE(rp.has_value());
  EXPECT_EQ(rp->src.str(), s.vip);
  EXPECT_EQ(get16(rr.out, rp->l4 + 6), 0);
  EXPECT_TRUE(ipv4_checksum_ok(rr.out, *rp));
}

// RFC 768: a UDP checksum that computes to 0 is sent as 0xffff (0 means
// "none" in IPv4 and is invalid in IPv6). The client's payload is chosen so
// that the checksum of the REWRITTEN datagram computes to exactly 0.
TEST_P(VeerBpf, UdpChecksumThatComputesToZeroIsSentAsAllOnes) {
  for (auto def : {svc_udp4, svc_udp6}) {
    ServiceDef s = def();
    SCOPED_TRACE(s.vip);
    Ip client = Ip::parse(s.family() == VEER_AF_INET ? kClient4 : kClient6);
    const uint16_t cport = 43100;
    const BackendDef& want = expected_backend(s, client, cport);
    PacketSpec spec = client_spec(s, client, cport);
    spec.payload = {0, 0, 'z', 'e', 'r', 'o'};
    // The datagram as it must leave, with checksum field and payload[0..1] 0.
    PacketSpec out = spec;
    out.dst = Ip::parse(want.ip);
    out.dport = want.port;
    out.udp_zero_checksum = true;
    Bytes o = build(out);
    auto op = parse(o);
    ASSERT_TRUE(op.has_value());
    uint32_t acc = sum16(o.data() + op->l4, op->end - op->l4,
                         pseudo_sum(op->src, op->dst, kProtoUdp, static_cast<uint32_t>(op->end - op->l4)));
    while (acc >> 16) acc = (acc & 0xffff) + (acc >> 16);
    uint16_t word = static_cast<uint16_t>(~acc);  // makes the folded sum 0xffff, i.e. checksum 0
    spec.payload[0] = static_cast<uint8_t>(word >> 8);
    spec.payload[1] = static_cast<uint8_t>(word);
    RunResult r = expect_forwarded_to(s, spec, want);
    auto p = parse(r.out);
    ASSERT_TRUE(p.has_value());
    EXPECT_EQ(get16(r.out, p->l4 + 6), 0xffff) << "a computed 0 must be sent as 0xffff";
  }
}

TEST_P(VeerBpf, ClientIpAffinityKeepsEveryPortOfAClientOnTheSlotOfItsAddress) {
  ServiceDef s = svc_client_ip();
  std::set<std::string> backends_seen;
  for (const char* c : {"198.51.100.10", "198.51.100.11", "198.51.100.12"}) {
    SCOPED_TRACE(c);
    Ip client = Ip::parse(c);
    const BackendDef& want = expected_backend(s, client, 0);  // port is not part of the key
    backends_seen.insert(want.ip);
    for (uint16_t cport : {50001, 50002, 61234}) {
      SCOPED_TRACE(cport);
      ASSERT_EQ(expected_slot(s, client, cport), expected_slot(s, client, 0));
      expect_forwarded_to(s, client_spec(s, client, cport), want);
    }
  }
  // With connection affinity the same ports would be spread by port; here the
  // clients must still be spread by address over both backends, or the test
  // would not tell the affinities apart.
  EXPECT_EQ(backends_seen.size(), 2u) << "pick client addresses with different slots (test setup)";
}

// ---- table flip -------------------------------------------------------------------

TEST_P(VeerBpf, EstablishedFlowKeepsItsBackendAcrossATableFlip) {
  ServiceDef s = svc_tcp4();
  Ip client = Ip::parse(kClient4);
  const BackendDef& old_backend = expected_backend(s, client, 44000);
  expect_forwarded_to(s, client_spec(s, client, 44000), old_backend);

  // Userspace writes the inactive table (all variant 1), then flips.
  dp_->write_table(s.id, 1, [&](uint32_t i) { return veer_slot{1, static_cast<uint8_t>(i % 2)}; });
  dp_->flip(s, 1);

  // The old flow, both directions, stays where it was.
  PacketSpec again = client_spec(s, client, 44000);
  again.tcp_flags = kTcpAck;
  expect_forwarded_to(s, again, old_backend);
  expect_reply_translated(s, reply_spec(s, old_backend, client, 44000));

  // A new flow uses the new table: variant 1, backend by slot parity.
  uint32_t slot = expected_slot(s, client, 44001);
  const BackendDef& new_backend = s.variants[1][slot % 2];
  expect_forwarded_to(s, client_spec(s, client, 44001), new_backend);

  EXPECT_EQ(dp_->counters(s.id, 0).new_flows, 1u);
  EXPECT_EQ(dp_->counters(s.id, 0).packets_in, 2u);
  EXPECT_EQ(dp_->counters(s.id, 0).packets_out, 1u);
  EXPECT_EQ(dp_->counters(s.id, 1).new_flows, 1u);
  EXPECT_EQ(dp_->counters(s.id, 1).packets_in, 1u);

  // And a rollback (flip back to table 0) again keeps both established flows.
  dp_->flip(s, 0);
  expect_forwarded_to(s, again, old_backend);
  PacketSpec new_again = client_spec(s, client, 44001);
  new_again.tcp_flags = kTcpAck;
  expect_forwarded_to(s, new_again, new_backend);
}

TEST_P(VeerBpf, PerVariantCountersCountWhatWasSent) {
  ServiceDef s = svc_tcp6();
  // A table that mixes variants: slot i -> variant i%2; variant 0 has two
  // backends, variant 1 one.
  auto slot = [](uint32_t i) {
    return i % 2 ? veer_slot{1, 0} : veer_slot{0, static_cast<uint8_t>((i / 2) % 2)};
  };
  dp_->write_table(s.id, 1, slot);
  dp_->flip(s, 1);
  Ip client = Ip::parse(kClient6);
  veer_variant_counters want[2]{};
  for (uint16_t cport = 45000; cport < 45020; ++cport) {
    veer_slot sl = slot(expected_slot(s, client, cport));
    const BackendDef& b = s.variants[sl.variant][sl.backend];
    want[sl.variant].new_flows += 1;
    for (int n = 0; n < 1 + cport % 3; ++n) {
      PacketSpec spec = client_spec(s, client, cport);
      spec.payload.resize(10 + 7 * n, 'x');
      expect_forwarded_to(s, spec, b);
      want[sl.variant].packets_in += 1;
      want[sl.variant].bytes_in += build(spec).size();
    }
    PacketSpec reply = reply_spec(s, b, client, cport);
    reply.payload.resize(100 + cport % 5, 'y');
    expect_reply_translated(s, reply);
    want[sl.variant].packets_out += 1;
    want[sl.variant].bytes_out += build(reply).size();
  }
  for (int v = 0; v < 2; ++v) {
    SCOPED_TRACE("variant " + std::to_string(v));
    veer_variant_counters got = dp_->counters(s.id, v);
    EXPECT_GT(want[v].new_flows, 0u) << "both variants must get flows (test setup)";
    EXPECT_EQ(got.new_flows, want[v].new_flows);
    EXPECT_EQ(got.packets_in, want[v].packets_in);
    EXPECT_EQ(got.bytes_in, want[v].bytes_in);
    EXPECT_EQ(got.packets_out, want[v].packets_out);
    EXPECT_EQ(got.bytes_out, want[v].bytes_out);
  }
}

// ---- forwarding outcomes of the FIB lookup ------------------------------------------

TEST_P(VeerBpf, NoNeighbourIsRewrittenAndLeftToTheStackOrRedirectNeigh) {
  for (auto def : {svc_no_neigh4, svc_no_neigh6}) {
    ServiceDef s = def();
    SCOPED_TRACE(s.vip);
    Ip client = Ip::parse(s.family() == VEER_AF_INET ? kClient4 : kClient6);
    PacketSpec spec = client_spec(s, client, 46000);
    // XDP cannot resolve a neighbour: it passes the rewritten packet to the
    // stack. TC hands it to bpf_redirect_neigh.
    int reason = hook() == Hook::Xdp ? VEER_R_PASS_FIB_TO_STACK : VEER_R_FWD_TO_BACKEND;
    RunResult r = run_expect(build(spec), g_topo->client_ifindex, reason);
    EXPECT_EQ(r.retval, hook() == Hook::Xdp ? XDP_PASS : TC_ACT_REDIRECT);
    auto p = parse(r.out);
    ASSERT_TRUE(p.has_value()) << hex(r.out);
    EXPECT_EQ(p->dst.str(), s.variants[0][0].ip) << "rewritten before it is left to the stack";
    EXPECT_EQ(p->dport, 8080);
    EXPECT_EQ(p->src.str(), client.str());
    if (p->family == 4) {
      EXPECT_TRUE(ipv4_checksum_ok(r.out, *p));
    }
    EXPECT_TRUE(l4_checksum_ok(r.out, *p));
    EXPECT_EQ(dp_->counters(s.id, 0).new_flows, 1u);
  }
}

// A backend that is an address of this node: the FIB says NOT_FWDED and the
// rewritten packet goes up the local stack.
TEST_P(VeerBpf, LocalBackendIsRewrittenAndLeftToTheStack) {
  ServiceDef s = svc_local_backend();
  PacketSpec spec = client_spec(s, Ip::parse(kClient4), 47050);
  RunResult r = run_expect(build(spec), g_topo->client_ifindex, VEER_R_PASS_FIB_TO_STACK);
  EXPECT_EQ(r.retval, verdict_pass(hook()));
  auto p = parse(r.out);
  ASSERT_TRUE(p.has_value());
  EXPECT_EQ(p->dst.str(), "192.0.2.1");
  EXPECT_EQ(p->dport, 8080);
  EXPECT_TRUE(ipv4_checksum_ok(r.out, *p));
  EXPECT_TRUE(l4_checksum_ok(r.out, *p));
}

TEST_P(VeerBpf, BlackholedBackendIsDropped) {
  ServiceDef s = svc_unreachable();
  RunResult r = run_expect(build(client_spec(s, Ip::parse(kClient4), 47000)), g_topo->client_ifindex,
                           VEER_R_DROP_FIB_UNREACHABLE);
  EXPECT_EQ(r.retval, verdict_drop(hook()));
}

TEST_P(VeerBpf, BackendOnTheIngressInterfaceIsSentBackOut) {
  ServiceDef s = svc_same_side();
  PacketSpec spec = client_spec(s, Ip::parse(kClient4), 47100);
  RunResult r = run_expect(build(spec), g_topo->client_ifindex, VEER_R_FWD_TO_BACKEND);
  EXPECT_EQ(r.retval, hook() == Hook::Xdp ? XDP_TX : TC_ACT_REDIRECT);
  auto p = parse(r.out);
  ASSERT_TRUE(p.has_value());
  EXPECT_EQ(p->dst.str(), "198.51.100.50");
  EXPECT_EQ(p->dst_mac, mac("02:00:00:00:0c:50"));
  EXPECT_EQ(p->src_mac, mac(Topology::kClientIfMac));
  EXPECT_TRUE(ipv4_checksum_ok(r.out, *p));
  EXPECT_TRUE(l4_checksum_ok(r.out, *p));
}

TEST_P(VeerBpf, SlotWithoutVariantOrAbsentBackendIsDropped) {
  for (auto def : {svc_no_variant, svc_absent_backend}) {
    ServiceDef s = def();
    SCOPED_TRACE(s.vip);
    RunResult r = run_expect(build(client_spec(s, Ip::parse(kClient4), 47200)), g_topo->client_ifindex,
                             VEER_R_DROP_NO_BACKEND);
    EXPECT_EQ(r.retval, verdict_drop(hook()));
    EXPECT_FALSE(dp_->flow_exists(flow_key(Ip::parse(kClient4), Ip::parse(s.vip), 47200, 80, VEER_PROTO_TCP)))
        << "no flow entry for a packet that was dropped";
  }
}

// ---- non-service packets pass untouched -------------------------------------------------

TEST_P(VeerBpf, NonServicePacketsPassByteForByteUnchanged) {
  ServiceDef tcp4 = svc_tcp4();
  Ip client = Ip::parse(kClient4);
  struct Case {
    const char* name;
    Bytes frame;
    int reason;
    int ifindex;
  };
  std::vector<Case> cases;
  auto add = [&](const char* name, PacketSpec spec, int reason, int ifindex = 0) {
    cases.push_back({name, build(spec), reason, ifindex ? ifindex : g_topo->client_ifindex});
  };
  {
    PacketSpec p = client_spec(tcp4, client, 48000);
    p.dst = Ip::parse("203.0.113.200");
    add("other address, service port", p, VEER_R_PASS_NOT_SERVICE);
  }
  {
    PacketSpec p = client_spec(tcp4, client, 48000);
    p.dport = 81;
    add("VIP, other port", p, VEER_R_PASS_NOT_SERVICE);
  }
  {
    PacketSpec p = client_spec(tcp4, client, 48000);
    p.proto = kProtoUdp;
    add("VIP, UDP to the TCP service port", p, VEER_R_PASS_NOT_SERVICE);
  }
  {
    PacketSpec p = client_spec(tcp4, client, 48000);
    p.proto = kProtoIcmp;
    p.l4_raw = {8, 0, 0xf7, 0xff, 0, 0, 0, 0};  // echo request
    add("ICMP echo to the VIP", p, VEER_R_PASS_NOT_TCP_UDP);
  }
  {
    PacketSpec p = client_spec(svc_tcp6(), Ip::parse(kClient6), 48000);
    p.proto = kProtoIcmp6;
    p.l4_raw = {128, 0, 0, 0, 0, 1, 0, 1};
    add("ICMPv6 echo to the VIP", p, VEER_R_PASS_NOT_TCP_UDP);
  }
  {
    PacketSpec p = client_spec(svc_tcp6(), Ip::parse(kClient6), 48000);
    p.dst = Ip::parse("2001:db8:100::200");
    add("IPv6 other address, service port", p, VEER_R_PASS_NOT_SERVICE);
  }
  {
    PacketSpec p = client_spec(tcp4, client, 48000);
    p.dst = Ip::parse("203.0.113.200");
    p.vlans = {42};
    add("802.1Q tagged, other address", p, VEER_R_PASS_NOT_SERVICE);
  }
  {
    // Looks like a reply (backend port as source) but no flow made it.
    PacketSpec p = reply_spec(tcp4, tcp4.variants[0][0], client, 48000);
    add("backend port as source without a flow", p, VEER_R_PASS_NOT_SERVICE, g_topo->backend_ifindex);
  }
  {
    PacketSpec p;
    p.ethertype = kEthArp;
    p.dst_mac = mac("ff:ff:ff:ff:ff:ff");
    p.l4_raw = {0, 1, 8, 0, 6, 4, 0, 1, 2, 0, 0, 0, 0x0c, 0x10, 198, 51, 100, 10,
                0, 0, 0, 0, 0, 0, 198, 51, 100, 1};
    add("ARP request", p, VEER_R_PASS_NOT_IP);
  }
  {
    PacketSpec p;
    p.ethertype = 0x88cc;  // LLDP
    p.l4_raw.assign(46, 0x5a);
    add("LLDP", p, VEER_R_PASS_NOT_IP);
  }
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    expect_untouched(c.frame, c.ifindex, c.reason);
  }
  for (uint32_t v = 0; v < 2; ++v) {
    veer_variant_counters cnt = dp_->counters(tcp4.id, v);
    EXPECT_EQ(cnt.packets_in + cnt.packets_out + cnt.new_flows, 0u);
  }
}

// ---- malformed and truncated packets ----------------------------------------------------

struct MalformedCase {
  std::string name;
  Bytes frame;
  int reason;
  bool dropped;  // else: passes unchanged
};

std::vector<MalformedCase> malformed_cases() {
  std::vector<MalformedCase> cases;
  ServiceDef tcp4 = svc_tcp4(), udp4 = svc_udp4(), tcp6 = svc_tcp6();
  Ip c4 = Ip::parse(kClient4), c6 = Ip::parse(kClient6);
  constexpr size_t l3 = 14;

  auto base4 = [&](uint16_t cport = 49000) { return client_spec(tcp4, c4, cport); };
  auto refix_ip4 = [](Bytes& f, size_t off = 14) {  // recompute the IPv4 header checksum
    size_t ihl = (f[off] & 0xf) * 4u;
    if (ihl < 20) ihl = 20;
    put16(f, off + 10, 0);
    put16(f, off + 10, fold(sum16(f.data() + off, std::min(ihl, f.size() - off))));
  };
  // An IPv4 packet to a service whose L4 part is cut to `l4_len` bytes, with
  // tot_len telling the truth, so only the L4 layer is short.
  auto cut_l4_4 = [&](PacketSpec spec, size_t l4_len) {
    Bytes f = build(spec);
    f.resize(l3 + 20 + l4_len);
    put16(f, l3 + 2, static_cast<uint16_t>(20 + l4_len));
    refix_ip4(f);
    return f;
  };
  auto cut_l4_6 = [&](PacketSpec spec, size_t l4_len) {
    Bytes f = build(spec);
    f.resize(l3 + 40 + l4_len);
    put16(f, l3 + 4, static_cast<uint16_t>(l4_len));
    return f;
  };

  {
    Bytes f = build(base4());
    f.resize(16);
    put16(f, 12, kEthVlan);
    cases.push_back({"802.1Q tag cut short (16 bytes)", f, VEER_R_PASS_TRUNCATED_ETH, false});
  }
  {
    PacketSpec p = base4();
    p.vlans = {10, 20};
    cases.push_back({"two 802.1Q tags", build(p), VEER_R_PASS_VLAN_UNSUPPORTED, false});
  }
  {
    Bytes f = build(base4());
    f.resize(l3 + 19);
    cases.push_back({"IPv4 header of 19 bytes", f, VEER_R_PASS_TRUNCATED_IP, false});
  }
  {
    Bytes f = build(base4());
    f[l3] = 0x44;
    refix_ip4(f);
    cases.push_back({"IPv4 IHL 4", f, VEER_R_PASS_BAD_IP_HEADER, false});
  }
  {
    Bytes f = build(base4());
    f[l3] = 0x65;
    refix_ip4(f);
    cases.push_back({"version 6 in an IPv4 frame", f, VEER_R_PASS_BAD_IP_HEADER, false});
  }
  {
    Bytes f = build(base4());
    put16(f, l3 + 2, static_cast<uint16_t>(get16(f, l3 + 2) + 10));
    refix_ip4(f);
    cases.push_back({"IPv4 tot_len beyond the frame", f, VEER_R_PASS_BAD_IP_HEADER, false});
  }
  {
    Bytes f = build(base4());
    put16(f, l3 + 2, 19);
    refix_ip4(f);
    cases.push_back({"IPv4 tot_len below IHL*4", f, VEER_R_PASS_BAD_IP_HEADER, false});
  }
  {
    PacketSpec p = base4();
    p.frag_off = 0x2000;  // MF, offset 0: first fragment, ports readable
    cases.push_back({"IPv4 first fragment (MF)", build(p), VEER_R_PASS_IPV4_FRAGMENT, false});
  }
  {
    PacketSpec p = base4();
    p.frag_off = 0x0010;  // offset 128 bytes, last fragment
    cases.push_back({"IPv4 later fragment (offset)", build(p), VEER_R_PASS_IPV4_FRAGMENT, false});
  }
  {
    PacketSpec p = base4();
    p.ttl = 1;
    cases.push_back({"IPv4 TTL 1 to a service", build(p), VEER_R_PASS_TTL_EXPIRED, false});
  }
  cases.push_back({"IPv4 TCP to a service, 3 bytes of L4", cut_l4_4(base4(), 3), VEER_R_PASS_TRUNCATED_L4, false});
  cases.push_back({"IPv4 TCP to a service, 10 bytes of L4", cut_l4_4(base4(), 10), VEER_R_DROP_TRUNCATED_L4, true});
  cases.push_back({"IPv4 TCP to a service, 19 bytes of L4", cut_l4_4(base4(), 19), VEER_R_DROP_TRUNCATED_L4, true});
  cases.push_back({"IPv4 UDP to a service, 6 bytes of L4", cut_l4_4(client_spec(udp4, c4, 49001), 6),
                   VEER_R_DROP_TRUNCATED_L4, true});
  {
    PacketSpec p = base4();
    p.dst = Ip::parse("203.0.113.200");
    cases.push_back({"IPv4 TCP not to a service, 10 bytes of L4", cut_l4_4(p, 10), VEER_R_PASS_NOT_SERVICE, false});
  }
  {
    Bytes f = build(base4());
    f[l3 + 20 + 12] = 0x40;  // doff 4
    cases.push_back({"TCP doff 4 to a service", f, VEER_R_DROP_BAD_L4_HEADER, true});
  }
  {
    Bytes f = build(client_spec(tcp6, c6, 49002));
    f.resize(l3 + 39);
    cases.push_back({"IPv6 header of 39 bytes", f, VEER_R_PASS_TRUNCATED_IP, false});
  }
  for (uint8_t nh : {0, 43, 44, 60}) {
    // The extension header's own content does not matter: the program must
    // stop at the next-header value.
    PacketSpec p = client_spec(tcp6, c6, 49003);
    p.proto = nh;
    p.l4_raw = {kProtoTcp, 0, 0, 0, 0, 0, 0, 0};
    Bytes tcp = build(client_spec(tcp6, c6, 49003));
    p.payload.assign(tcp.begin() + l3 + 40, tcp.end());
    cases.push_back({"IPv6 extension header " + std::to_string(nh), build(p), VEER_R_PASS_IPV6_EXT_HDR, false});
  }
  {
    PacketSpec p = client_spec(tcp6, c6, 49004);
    p.ttl = 1;
    cases.push_back({"IPv6 hop limit 1 to a service", build(p), VEER_R_PASS_TTL_EXPIRED, false});
  }
  cases.push_back({"IPv6 TCP to a service, 3 bytes of L4", cut_l4_6(client_spec(tcp6, c6, 49005), 3),
                   VEER_R_PASS_TRUNCATED_L4, false});
  cases.push_back({"IPv6 TCP to a service, 12 bytes of L4", cut_l4_6(client_spec(tcp6, c6, 49006), 12),
                   VEER_R_DROP_TRUNCATED_L4, true});
  cases.push_back({"IPv6 UDP to a service, 7 bytes of L4", cut_l4_6(client_spec(svc_udp6(), c6, 49007), 7),
                   VEER_R_DROP_TRUNCATED_L4, true});
  return cases;
}

TEST_P(VeerBpf, MalformedAndTruncatedPacketsGetTheirVerdictAndCounter) {
  for (const MalformedCase& c : malformed_cases()) {
    SCOPED_TRACE(c.name + " (" + std::to_string(c.frame.size()) + " bytes)");
    if (hook() == Hook::Tc && Dataplane::tc_cannot_run(c.frame)) {
      // Check the premise (the kernel refuses to build the skb); XDP covers the frame.
      EXPECT_THROW(dp_->run(hook(), c.frame, g_topo->client_ifindex), std::runtime_error)
          << "the kernel now runs TC on a frame with a cut IP header: test it";
      continue;
    }
    if (c.dropped) {
      RunResult r = run_expect(c.frame, g_topo->client_ifindex, c.reason);
      EXPECT_EQ(r.retval, verdict_drop(hook()));
    } else {
      expect_untouched(c.frame, g_topo->client_ifindex, c.reason);
    }
  }
  // None of them created a flow or counted as service traffic.
  for (uint32_t id : {0u, 1u, 2u, 3u})
    EXPECT_EQ(dp_->counters(id, 0).new_flows, 0u) << "service " << id;
}

// Every prefix of a valid service packet: whatever the cut, the program
// returns a pass or drop verdict and counts the packet (nothing faults, no
// verdict escapes the counters).
TEST_P(VeerBpf, EveryPrefixOfAServicePacketIsHandled) {
  for (const ServiceCase& c : kServiceCases) {
    ServiceDef s = c.def();
    PacketSpec spec = client_spec(s, Ip::parse(c.client), 49100);
    spec.tcp_options = {2, 4, 0x05, 0xb4};
    Bytes full = build(spec);
    for (size_t len = 14; len < full.size(); ++len) {
      SCOPED_TRACE(std::string(c.name) + " cut to " + std::to_string(len));
      Bytes f(full.begin(), full.begin() + len);
      if (hook() == Hook::Tc && Dataplane::tc_cannot_run(f)) continue;
      auto before = dp_->reasons();
      RunResult r = dp_->run(hook(), f, g_topo->client_ifindex);
      auto after = dp_->reasons();
      uint64_t total = 0;
      for (int i = 0; i < VEER_REASON_MAX; ++i) total += after[i] - before[i];
      EXPECT_EQ(total, 1u);
      EXPECT_TRUE(r.retval == verdict_pass(hook()) || r.retval == verdict_drop(hook())) << r.retval;
      if (r.retval == verdict_pass(hook())) {
        EXPECT_EQ(hex(r.out), hex(f));
      }
    }
  }
}

// ---- next-hop cache (bpf/lib/fib_cache.h) ------------------------------------------------

// The cache is per CPU and BPF_PROG_TEST_RUN runs on the caller's CPU: these
// tests pin themselves to one CPU so that every run sees the same copy.
class PinnedToOneCpu {
 public:
  PinnedToOneCpu() {
    if (sched_getaffinity(0, sizeof saved_, &saved_) != 0) throw std::runtime_error("sched_getaffinity");
    cpu_ = sched_getcpu();
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(cpu_, &one);
    if (sched_setaffinity(0, sizeof one, &one) != 0) throw std::runtime_error("sched_setaffinity");
  }
  ~PinnedToOneCpu() { sched_setaffinity(0, sizeof saved_, &saved_); }
  PinnedToOneCpu(const PinnedToOneCpu&) = delete;
  PinnedToOneCpu& operator=(const PinnedToOneCpu&) = delete;
  int cpu() const { return cpu_; }

 private:
  cpu_set_t saved_{};
  int cpu_ = 0;
};

// The clock the program stamps expiries with (bpf_ktime_get_coarse_ns).
uint64_t coarse_now_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

// Gives a PERMANENT neighbour another MAC for the scope of a test, and puts
// the topology's MAC back afterwards (every test shares the namespace).
class NeighbourMacChange {
 public:
  NeighbourMacChange(const std::string& ip, const std::string& new_mac) : ip_(ip) {
    for (const auto& n : Topology::kNeighbours)
      if (ip == n.ip) {
        old_mac_ = n.mac;
        dev_ = n.dev;
      }
    if (dev_.empty()) throw std::invalid_argument("no neighbour " + ip);
    Topology::run("ip neigh replace " + ip + " lladdr " + new_mac + " dev " + dev_ + " nud permanent");
  }
  ~NeighbourMacChange() {
    try {
      Topology::run("ip neigh replace " + ip_ + " lladdr " + old_mac_ + " dev " + dev_ + " nud permanent");
    } catch (const std::exception& e) {
      ADD_FAILURE() << "cannot restore the neighbour " << ip_ << ": " << e.what();
    }
  }
  NeighbourMacChange(const NeighbourMacChange&) = delete;
  NeighbourMacChange& operator=(const NeighbourMacChange&) = delete;

 private:
  std::string ip_, old_mac_, dev_;
};

TEST_P(VeerBpf, SecondPacketToABackendUsesTheNextHopCache) {
  PinnedToOneCpu pin;
  for (const ServiceCase& c : kServiceCases) {
    SCOPED_TRACE(c.name);
    // A fresh data plane, so an empty cache, per case: the services share
    // backends.
    if (&c != &kServiceCases[0]) SetUp();
    ServiceDef s = c.def();
    Ip client = Ip::parse(c.client);
    const uint16_t cport = 51000;
    const BackendDef& want = expected_backend(s, client, cport);
    Ip backend = Ip::parse(want.ip);
    ASSERT_FALSE(dp_->fib_cache_entry(backend, g_topo->client_ifindex, pin.cpu())) << "fresh data plane";

    PacketSpec spec = client_spec(s, client, cport);
    RunResult first = expect_forwarded_to(s, spec, want);
    uint64_t after_first = coarse_now_ns();
    auto entry = dp_->fib_cache_entry(backend, g_topo->client_ifindex, pin.cpu());
    ASSERT_TRUE(entry.has_value()) << "the SUCCESS of the first packet's lookup is cached";
    EXPECT_EQ(entry->family, s.family());
    EXPECT_EQ(entry->egress_ifindex, static_cast<uint32_t>(g_topo->backend_ifindex));
    EXPECT_EQ(Mac(std::to_array(entry->dmac)), Topology::neighbour_mac(backend));
    EXPECT_EQ(Mac(std::to_array(entry->smac)), mac(Topology::kBackendIfMac));
    EXPECT_EQ(entry->mtu, 1500u) << "the veth's MTU, from the lookup's mtu_result";
    EXPECT_GT(entry->expires_ns, after_first) << "fresh";
    EXPECT_LE(entry->expires_ns, after_first + VEER_FIB_CACHE_TTL_NS) << "expires within a second";

    // Later than the clock's resolution: a full lookup now would store a
    // later expiry.
    std::this_thread::sleep_for(std::chrono::milliseconds(30));
    RunResult second = expect_forwarded_to(s, spec, want);
    EXPECT_EQ(hex(second.out), hex(first.out)) << "the cached next hop gives the same bytes";
    auto again = dp_->fib_cache_entry(backend, g_topo->client_ifindex, pin.cpu());
    ASSERT_TRUE(again.has_value());
    EXPECT_EQ(again->expires_ns, entry->expires_ns) << "a hit does not look up (nor refresh) the entry";

    // The reply direction is cached under the client's address.
    expect_reply_translated(s, reply_spec(s, want, client, cport));
    EXPECT_TRUE(dp_->fib_cache_entry(client, g_topo->backend_ifindex, pin.cpu()).has_value());
  }
}

TEST_P(VeerBpf, NeighbourChangeIsUsedOnlyAfterTheCacheEntryExpires) {
  PinnedToOneCpu pin;
  ServiceDef s = svc_tcp4();
  Ip client = Ip::parse(kClient4);
  const uint16_t cport = 51100;
  const BackendDef& want = expected_backend(s, client, cport);
  Ip backend = Ip::parse(want.ip);
  const Mac new_mac = mac("02:00:00:00:0b:99");
  PacketSpec spec = client_spec(s, client, cport);
  Bytes frame = build(spec);

  auto started = std::chrono::steady_clock::now();
  RunResult first = run_expect(frame, g_topo->client_ifindex, VEER_R_FWD_TO_BACKEND);
  auto p = parse(first.out);
  ASSERT_TRUE(p.has_value());
  ASSERT_EQ(p->dst_mac, Topology::neighbour_mac(backend));

  NeighbourMacChange change(want.ip, "02:00:00:00:0b:99");
  RunResult fresh = run_expect(frame, g_topo->client_ifindex, VEER_R_FWD_TO_BACKEND);
  double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  p = parse(fresh.out);
  ASSERT_TRUE(p.has_value());
  if (elapsed < 0.9) {  // else the entry may have expired already: nothing to tell
    EXPECT_EQ(p->dst_mac, Topology::neighbour_mac(backend)) << "a fresh entry keeps the old next hop";
  }

  std::this_thread::sleep_for(std::chrono::milliseconds(1100));
  RunResult expired = run_expect(frame, g_topo->client_ifindex, VEER_R_FWD_TO_BACKEND);
  EXPECT_EQ(expired.retval, verdict_redirect(hook()));
  p = parse(expired.out);
  ASSERT_TRUE(p.has_value());
  EXPECT_EQ(p->dst_mac, new_mac) << "after expiry the lookup finds the new neighbour";
  auto entry = dp_->fib_cache_entry(backend, g_topo->client_ifindex, pin.cpu());
  ASSERT_TRUE(entry.has_value());
  EXPECT_EQ(Mac(std::to_array(entry->dmac)), new_mac) << "and the entry is refilled with it";
}

TEST_P(VeerBpf, PacketLongerThanTheCachedMtuTakesTheFullLookup) {
  PinnedToOneCpu pin;
  ServiceDef s = svc_tcp4();
  Ip client = Ip::parse(kClient4);
  const uint16_t cport = 51200;
  const BackendDef& want = expected_backend(s, client, cport);
  Ip backend = Ip::parse(want.ip);
  expect_forwarded_to(s, client_spec(s, client, cport), want);
  auto entry = dp_->fib_cache_entry(backend, g_topo->client_ifindex, pin.cpu());
  ASSERT_TRUE(entry.has_value());
  ASSERT_EQ(entry->mtu, 1500u);

  {
    SCOPED_TRACE("exactly the MTU: forwarded");
    PacketSpec spec = client_spec(s, client, cport);
    spec.payload.assign(1500 - 20 - 20, 'm');
    ASSERT_EQ(build(spec).size(), 14u + 1500u);
    expect_forwarded_to(s, spec, want);
  }
  {
    // An L3 length of 2000 on a 1500-byte link: XDP's lookup answers
    // FRAG_NEEDED (tot_len > MTU), TC's too (not a GSO skb, longer than
    // the device takes). Either way the stack gets it, rewritten. Had the
    // cache answered, it would have been redirected.
    SCOPED_TRACE("longer than the cached MTU: the full lookup's verdict");
    PacketSpec spec = client_spec(s, client, cport);
    spec.payload.assign(2000 - 20 - 20, 'b');
    RunResult r = run_expect(build(spec), g_topo->client_ifindex, VEER_R_PASS_FIB_TO_STACK);
    EXPECT_EQ(r.retval, verdict_pass(hook()));
    auto p = parse(r.out);
    ASSERT_TRUE(p.has_value());
    EXPECT_EQ(p->dst.str(), want.ip) << "rewritten before it is left to the stack";
    EXPECT_TRUE(ipv4_checksum_ok(r.out, *p));
    EXPECT_TRUE(l4_checksum_ok(r.out, *p));
  }
  auto after = dp_->fib_cache_entry(backend, g_topo->client_ifindex, pin.cpu());
  ASSERT_TRUE(after.has_value());
  EXPECT_EQ(after->mtu, 1500u) << "FRAG_NEEDED is never cached";
}

// ---- telemetry (bpf/lib/telemetry.h, SPEC §2.10) ------------------------------------------

constexpr uint8_t kTcpRst = 0x04;

uint64_t monotonic_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);  // bpf_ktime_get_ns()'s clock
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

Bytes text(const std::string& s) { return Bytes(s.begin(), s.end()); }

// The reverse tuple of a client's flow: backend -> client, as replies carry it.
veer_flow_key reverse_key(const ServiceDef& s, const BackendDef& b, const Ip& client, uint16_t cport) {
  return flow_key(Ip::parse(b.ip), client, b.port, cport, s.proto);
}

// Every counter of veer_variant_counters by name, for whole-struct comparisons.
std::vector<std::pair<std::string, uint64_t>> fields(const veer_variant_counters& c) {
  return {{"new_flows", c.new_flows},       {"backend_resets", c.backend_resets}, {"client_resets", c.client_resets},
          {"http_2xx", c.http_2xx},         {"http_3xx", c.http_3xx},             {"http_4xx", c.http_4xx},
          {"http_5xx", c.http_5xx},         {"responses", c.responses}};
}

class Telemetry : public VeerBpf {
 protected:
  // A client packet of the flow (ACK, with payload unless empty).
  void client_sends(const ServiceDef& s, const Ip& client, uint16_t cport, const Bytes& payload,
                    uint8_t flags = kTcpAck) {
    PacketSpec spec = client_spec(s, client, cport);
    spec.tcp_flags = flags;
    spec.payload = payload;
    expect_forwarded_to(s, spec, expected_backend(s, client, cport));
  }
  void backend_sends(const ServiceDef& s, const Ip& client, uint16_t cport, const Bytes& payload,
                     uint8_t flags = kTcpAck) {
    PacketSpec spec = reply_spec(s, expected_backend(s, client, cport), client, cport);
    spec.tcp_flags = flags;
    spec.payload = payload;
    expect_reply_translated(s, spec);
  }
  // SYN, SYN-ACK, ACK: an established TCP flow with no request yet.
  void handshake(const ServiceDef& s, const Ip& client, uint16_t cport) {
    client_sends(s, client, cport, {}, kTcpSyn);
    backend_sends(s, client, cport, {}, kTcpSyn | kTcpAck);
    client_sends(s, client, cport, {}, kTcpAck);
  }
};

TEST_P(Telemetry, ResetsFromClientAndBackendAreCountedPerVariant) {
  ServiceDef s = svc_tcp4();
  // Every slot to variant 1: the counts must land there, not in variant 0.
  dp_->write_table(s.id, 0, [](uint32_t i) { return veer_slot{1, static_cast<uint8_t>(i % 2)}; });
  Ip client = Ip::parse(kClient4);
  auto backend_of = [&](uint16_t cport) -> const BackendDef& {
    return s.variants[1][expected_slot(s, client, cport) % 2];
  };
  // Client packets carry seq 1000 (the SYN's ISN); replies acknowledge ACK.
  auto send = [&](uint16_t cport, bool from_client, uint8_t flags, uint32_t ack = 1001) {
    const BackendDef& b = backend_of(cport);
    if (from_client) {
      PacketSpec spec = client_spec(s, client, cport);
      spec.tcp_flags = flags;
      spec.payload.clear();
      expect_forwarded_to(s, spec, b);
    } else {
      PacketSpec spec = reply_spec(s, b, client, cport);
      spec.tcp_flags = flags;
      spec.ack = ack;
      spec.payload.clear();
      expect_reply_translated(s, spec);
    }
  };
  // Flow 1: handshake, then the client resets (twice: the connection counts once).
  send(45000, true, kTcpSyn);
  send(45000, false, kTcpSyn | kTcpAck);
  send(45000, true, kTcpRst | kTcpAck);
  send(45000, true, kTcpRst);
  // Flow 2: handshake, then the backend resets, and again to a segment that was in flight: one reset of
  // one connection, as the client sees it (a gate's reset_rate is a share of requests, not of packets).
  send(45001, true, kTcpSyn);
  send(45001, false, kTcpSyn | kTcpAck);
  send(45001, false, kTcpRst | kTcpAck);
  send(45001, false, kTcpRst);
  send(45001, false, kTcpRst);
  // Flow 3: a SYN answered by RST (nothing listens on the backend): it acknowledges the SYN.
  send(45002, true, kTcpSyn);
  send(45002, false, kTcpRst | kTcpAck);
  // Flow 4: a new connection on a tuple whose last one the backend reset; before its SYN-ACK, the backend's
  // RST to a segment of the old one arrives (acknowledging old data, not this SYN): the client drops it,
  // and so does the count. The handshake goes on (a retransmitted SYN keeps its entry), then is answered.
  send(45003, true, kTcpSyn);
  send(45003, false, kTcpRst | kTcpAck, /*ack=*/77777);
  send(45003, false, kTcpRst, /*ack=*/0);
  send(45003, true, kTcpSyn);
  send(45003, false, kTcpSyn | kTcpAck);

  veer_variant_counters c1 = dp_->counters(s.id, 1);
  EXPECT_EQ(c1.client_resets, 1u);
  EXPECT_EQ(c1.backend_resets, 2u) << "the earlier connection's RST counted on the new one";
  EXPECT_EQ(c1.new_flows, 4u) << "the retransmitted SYN after the stray RST selected again";
  EXPECT_EQ(c1.responses, 0u) << "no payload, no request";
  veer_variant_counters c0 = dp_->counters(s.id, 0);
  for (const auto& [name, v] : fields(c0)) EXPECT_EQ(v, 0u) << "variant 0 " << name;
  // The RST to a SYN is no SYN-ACK: the handshake stays unanswered.
  EXPECT_TRUE(dp_->handshake(reverse_key(s, backend_of(45002), client, 45002)).has_value());
  EXPECT_FALSE(dp_->handshake(reverse_key(s, backend_of(45001), client, 45001)).has_value());
  EXPECT_FALSE(dp_->handshake(reverse_key(s, backend_of(45003), client, 45003)).has_value());
}

// One request and its answer, the answer sent `delay` after the request:
// returns the kernel's sample bucket, and checks it against the elapsed time
// measured around the two runs (within one bucket either side).
TEST_P(Telemetry, RequestThenReplyGivesOneLatencySampleInTheElapsedTimesBucket) {
  for (const ServiceCase& c : kServiceCases) {
    SCOPED_TRACE(c.name);
    ServiceDef s = c.def();
    Ip client = Ip::parse(c.client);
    const uint16_t cport = 46000;
    const bool tcp = s.proto == VEER_PROTO_TCP;
    if (tcp) handshake(s, client, cport);
    const veer_flow_key fkey = flow_key(client, Ip::parse(s.vip), cport, s.port, s.proto);
    auto req_ts = [&] {
      veer_flow f{};
      EXPECT_TRUE(dp_->flow_exists(fkey, &f));
      return f.req_ts_ns;
    };

    // Two requests on one flow (keep-alive), 20 ms and 5 ms answers.
    for (int delay_ms : {20, 5}) {
      SCOPED_TRACE("answer after " + std::to_string(delay_ms) + " ms");
      auto before = dp_->latency(s.id, 0);
      uint64_t responses_before = dp_->counters(s.id, 0).responses;
      if (tcp) {
        veer_flow f{};
        ASSERT_TRUE(dp_->flow_exists(fkey, &f));
        EXPECT_EQ(f.state & VEER_FLOW_S_REQUEST_PENDING, 0) << "no request pending before it is sent";
      }
      uint64_t t0 = monotonic_ns();
      client_sends(s, client, cport, text("GET /predict HTTP/1.1\r\nHost: m\r\n\r\n"));
      uint64_t t1 = monotonic_ns();
      veer_flow f{};
      ASSERT_TRUE(dp_->flow_exists(fkey, &f));
      EXPECT_EQ(f.state & VEER_FLOW_S_REQUEST_PENDING, VEER_FLOW_S_REQUEST_PENDING);
      EXPECT_GE(f.req_ts_ns, t0) << "the request's start is in the flow entry";
      EXPECT_LE(f.req_ts_ns, t1);
      // More of the same request: not a new one.
      client_sends(s, client, cport, text("{\"x\": [1, 2, 3]}"));
      EXPECT_EQ(req_ts(), f.req_ts_ns) << "a request's later segments keep its start";

      std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
      uint64_t t2 = monotonic_ns();
      backend_sends(s, client, cport, text("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"));
      uint64_t t3 = monotonic_ns();
      // More of the answer: no second sample.
      backend_sends(s, client, cport, text("more body bytes"));

      auto after = dp_->latency(s.id, 0);
      EXPECT_EQ(dp_->counters(s.id, 0).responses, responses_before + 1);
      int sampled = -1, samples = 0;
      for (int b = 0; b < static_cast<int>(VEER_LAT_BUCKETS); ++b)
        if (after[b] != before[b]) {
          samples += static_cast<int>(after[b] - before[b]);
          sampled = b;
        }
      ASSERT_EQ(samples, 1) << "exactly one latency sample";
      // The kernel's elapsed time is within [t2 - t1, t3 - t0].
      int lo = static_cast<int>(veer_lat_bucket(t2 - t1)), hi = static_cast<int>(veer_lat_bucket(t3 - t0));
      EXPECT_GE(sampled, lo - 1) << "elapsed >= " << (t2 - t1) << " ns";
      EXPECT_LE(sampled, hi + 1) << "elapsed <= " << (t3 - t0) << " ns";
      EXPECT_GE(veer_lat_bucket_upper(sampled), static_cast<uint64_t>(delay_ms) * 1000000u)
          << "at least the sleep";
      EXPECT_EQ(req_ts(), 0u) << "answered";
      ASSERT_TRUE(dp_->flow_exists(fkey, &f));
      EXPECT_EQ(f.state & VEER_FLOW_S_REQUEST_PENDING, 0) << "the next request may start";
    }
    EXPECT_EQ(dp_->counters(s.id, 0).http_2xx, 2u);
  }
}

TEST_P(Telemetry, Http1StatusClassOfTheFirstAnswerIsCounted) {
  struct Case {
    std::string reply;
    __u64 veer_variant_counters::*counter;  // nullptr: no class
  };
  const std::vector<Case> cases = {
      {"HTTP/1.1 200 OK\r\n\r\n", &veer_variant_counters::http_2xx},
      {"HTTP/1.1 302 Found\r\nLocation: /x\r\n\r\n", &veer_variant_counters::http_3xx},
      {"HTTP/1.1 404 Not Found\r\n\r\n", &veer_variant_counters::http_4xx},
      {"HTTP/1.0 503 Service Unavailable\r\n\r\n", &veer_variant_counters::http_5xx},
      {"HTTP/1.1 204", &veer_variant_counters::http_2xx},  // exactly the 12 bytes read
      {"SSH-2.0-OpenSSH_9.2\r\n", nullptr},                // not HTTP
      {"HTTP/1.1 20", nullptr},                            // too short to hold a status
      {"HTTP/2.0 200 OK\r\n", nullptr},                    // not HTTP/1.x
      {"HTTP/1.1 100 Continue\r\n\r\n", nullptr},          // interim: no class
      {"HTTP/1.1 2x0 OK\r\n", nullptr},                    // not a status code
      {"http/1.1 200 OK\r\n", nullptr},                    // the version is case-sensitive
  };
  for (auto def : {svc_tcp4, svc_tcp6}) {
    ServiceDef s = def();
    Ip client = Ip::parse(s.family() == VEER_AF_INET ? kClient4 : kClient6);
    uint16_t cport = 47000;
    for (const Case& c : cases) {
      SCOPED_TRACE(s.vip + " " + c.reply);
      ++cport;
      handshake(s, client, cport);
      veer_variant_counters before = dp_->counters(s.id, 0);
      client_sends(s, client, cport, text("GET / HTTP/1.1\r\n\r\n"));
      backend_sends(s, client, cport, text(c.reply));
      // The second answer segment and an unsolicited one count nothing.
      backend_sends(s, client, cport, text("HTTP/1.1 500 Internal Server Error\r\n\r\n"));
      veer_variant_counters after = dp_->counters(s.id, 0);
      EXPECT_EQ(after.responses, before.responses + 1);
      for (auto member : {&veer_variant_counters::http_2xx, &veer_variant_counters::http_3xx,
                          &veer_variant_counters::http_4xx, &veer_variant_counters::http_5xx}) {
        uint64_t want = before.*member + (member == c.counter ? 1 : 0);
        EXPECT_EQ(after.*member, want);
      }
    }
  }
}

TEST_P(Telemetry, ReplyWithoutARequestTakesNoSample) {
  ServiceDef s = svc_tcp4();
  Ip client = Ip::parse(kClient4);
  handshake(s, client, 47500);
  backend_sends(s, client, 47500, text("HTTP/1.1 200 OK\r\n\r\n"));  // server speaks first
  client_sends(s, client, 47500, {}, kTcpAck);                        // a pure ACK is no request
  backend_sends(s, client, 47500, text("HTTP/1.1 200 OK\r\n\r\n"));
  veer_variant_counters c = dp_->counters(s.id, 0);
  EXPECT_EQ(c.responses, 0u);
  EXPECT_EQ(c.http_2xx, 0u);
  uint64_t samples = 0;
  for (uint64_t n : dp_->latency(s.id, 0)) samples += n;
  EXPECT_EQ(samples, 0u);
}

TEST_P(Telemetry, SynRecordsAHandshakeAndSynAckDeletesIt) {
  for (auto def : {svc_tcp4, svc_tcp6}) {
    ServiceDef s = def();
    SCOPED_TRACE(s.vip);
    // Every slot to variant 1, backend 0: the entry must name variant 1.
    dp_->write_table(s.id, 0, [](uint32_t) { return veer_slot{1, 0}; });
    Ip client = Ip::parse(s.family() == VEER_AF_INET ? kClient4 : kClient6);
    const uint16_t cport = 48000;
    const BackendDef& b = s.variants[1][0];
    const veer_flow_key rkey = reverse_key(s, b, client, cport);
    ASSERT_FALSE(dp_->handshake(rkey).has_value());

    uint64_t t0 = coarse_now_ns();
    PacketSpec syn = client_spec(s, client, cport);
    syn.tcp_flags = kTcpSyn;
    syn.payload.clear();
    expect_forwarded_to(s, syn, b);
    uint64_t t1 = coarse_now_ns();
    auto hs = dp_->handshake(rkey);
    ASSERT_TRUE(hs.has_value()) << "the SYN's handshake is pending";
    EXPECT_EQ(hs->service_id, s.id);
    EXPECT_EQ(hs->variant, 1);
    EXPECT_GE(hs->syn_ts_ns, t0);
    EXPECT_LE(hs->syn_ts_ns, t1);

    // A retransmitted SYN keeps the first one's time.
    std::this_thread::sleep_for(std::chrono::milliseconds(30));
    expect_forwarded_to(s, syn, b);
    ASSERT_TRUE(dp_->handshake(rkey).has_value());
    EXPECT_EQ(dp_->handshake(rkey)->syn_ts_ns, hs->syn_ts_ns);

    // Packets that are no SYN-ACK leave it; the SYN-ACK deletes it.
    PacketSpec ack = reply_spec(s, b, client, cport);
    ack.tcp_flags = kTcpAck;
    ack.payload.clear();
    expect_reply_translated(s, ack);
    EXPECT_TRUE(dp_->handshake(rkey).has_value());
    PacketSpec syn_ack = ack;
    syn_ack.tcp_flags = kTcpSyn | kTcpAck;
    expect_reply_translated(s, syn_ack);
    EXPECT_FALSE(dp_->handshake(rkey).has_value()) << "answered";

    // A client ACK (not a SYN) records nothing.
    PacketSpec client_ack = syn;
    client_ack.tcp_flags = kTcpAck;
    expect_forwarded_to(s, client_ack, b);
    EXPECT_FALSE(dp_->handshake(rkey).has_value());
  }
  // UDP has no handshake.
  ServiceDef u = svc_udp4();
  Ip client = Ip::parse(kClient4);
  expect_forwarded_to(u, client_spec(u, client, 48001), expected_backend(u, client, 48001));
  EXPECT_FALSE(dp_->handshake(reverse_key(u, expected_backend(u, client, 48001), client, 48001)).has_value());
}

// A request whose answer never came must not be timed against a later
// connection that reuses the tuple: its SYN clears the pending request.
TEST_P(Telemetry, SynOnAReusedTupleClearsAnUnansweredRequest) {
  ServiceDef s = svc_tcp4();
  Ip client = Ip::parse(kClient4);
  const uint16_t cport = 48500;
  handshake(s, client, cport);
  client_sends(s, client, cport, text("GET / HTTP/1.1\r\n\r\n"));
  client_sends(s, client, cport, {}, kTcpRst);  // gives up, no answer
  const veer_flow_key fkey = flow_key(client, Ip::parse(s.vip), cport, s.port, s.proto);
  veer_flow f{};
  ASSERT_TRUE(dp_->flow_exists(fkey, &f));
  ASSERT_NE(f.req_ts_ns, 0u);

  handshake(s, client, cport);  // a new connection, same tuple
  ASSERT_TRUE(dp_->flow_exists(fkey, &f));
  EXPECT_EQ(f.req_ts_ns, 0u);
  EXPECT_EQ(f.state & VEER_FLOW_S_REQUEST_PENDING, 0);
  backend_sends(s, client, cport, text("HTTP/1.1 200 OK\r\n\r\n"));
  EXPECT_EQ(dp_->counters(s.id, 0).responses, 0u) << "nothing was asked on this connection";
  client_sends(s, client, cport, text("GET / HTTP/1.1\r\n\r\n"));
  backend_sends(s, client, cport, text("HTTP/1.1 200 OK\r\n\r\n"));
  EXPECT_EQ(dp_->counters(s.id, 0).responses, 1u);
}

// ---- one flow entry per connection (SPEC §2.2, bpf/lib/conn.h) ----------------------
//
// Clients reuse tuples: a SYN that is not a retransmission of the entry's own
// SYN is a new connection and selects from the table active now; a UDP entry
// idle for longer than udp_idle_ticks selects again on its next datagram.

constexpr uint8_t kTcpFin = 0x01;

class Connections : public VeerBpf {
 protected:
  // Table 1: every slot to variant 1 (backend by slot parity), then the flip;
  // returns the backend a new flow of (client, cport) gets from it.
  const BackendDef& flip_to_variant1(const ServiceDef& s, const Ip& client, uint16_t cport) {
    const size_t n = s.variants[1].size();
    dp_->write_table(s.id, 1, [n](uint32_t i) { return veer_slot{1, static_cast<uint8_t>(i % n)}; });
    dp_->flip(s, 1);
    return s.variants[1][expected_slot(s, client, cport) % n];
  }
  static PacketSpec tcp_from_client(const ServiceDef& s, const Ip& client, uint16_t cport, uint8_t flags,
                                    uint32_t seq) {
    PacketSpec p = client_spec(s, client, cport);
    p.tcp_flags = flags;
    p.seq = seq;
    p.payload.clear();
    return p;
  }
  static PacketSpec tcp_from_backend(const ServiceDef& s, const BackendDef& b, const Ip& client, uint16_t cport,
                                     uint8_t flags) {
    PacketSpec p = reply_spec(s, b, client, cport);
    p.tcp_flags = flags;
    p.payload.clear();
    return p;
  }
  veer_flow entry(const ServiceDef& s, const Ip& client, uint16_t cport) {
    veer_flow f{};
    EXPECT_TRUE(dp_->flow_exists(flow_key(client, Ip::parse(s.vip), cport, s.port, s.proto), &f))
        << "no flow entry for port " << cport;
    return f;
  }
  static std::string backend_of(const veer_flow& f, int family) {
    Ip ip;
    ip.family = family == VEER_AF_INET ? 4 : 6;
    std::memcpy(ip.b.data(), f.backend.addr, ip.size());
    return ip.str() + ":" + std::to_string(ntohs(f.backend_port));
  }
  static std::string endpoint(const BackendDef& b) { return Ip::parse(b.ip).str() + ":" + std::to_string(b.port); }
  static uint32_t tick_now() { return static_cast<uint32_t>(coarse_now_ns() >> VEER_TICK_SHIFT); }
};

TEST_P(Connections, NewConnectionOnAReusedTupleSelectsFromTheActiveTable) {
  for (auto def : {svc_tcp4, svc_tcp6}) {
    ServiceDef s = def();
    SCOPED_TRACE(s.vip);
    Ip client = Ip::parse(s.family() == VEER_AF_INET ? kClient4 : kClient6);
    const uint16_t cport = 49000;
    const BackendDef& old_backend = expected_backend(s, client, cport);
    // A whole connection on table 0: handshake, request, answer, close from both sides.
    expect_forwarded_to(s, tcp_from_client(s, client, cport, kTcpSyn, 1000), old_backend);
    expect_reply_translated(s, tcp_from_backend(s, old_backend, client, cport, kTcpSyn | kTcpAck));
    PacketSpec req = tcp_from_client(s, client, cport, kTcpAck, 1001);
    req.payload = text("GET / HTTP/1.1\r\n\r\n");
    expect_forwarded_to(s, req, old_backend);
    PacketSpec answer = tcp_from_backend(s, old_backend, client, cport, kTcpAck);
    answer.payload = text("HTTP/1.1 200 OK\r\n\r\n");
    expect_reply_translated(s, answer);
    expect_reply_translated(s, tcp_from_backend(s, old_backend, client, cport, kTcpFin | kTcpAck));
    expect_forwarded_to(s, tcp_from_client(s, client, cport, kTcpFin | kTcpAck, 1019), old_backend);
    EXPECT_EQ(entry(s, client, cport).state,
              VEER_FLOW_S_SYN | VEER_FLOW_S_ESTABLISHED | VEER_FLOW_S_FIN_CLIENT | VEER_FLOW_S_FIN_BACKEND);

    // The switch, then the client reuses its port for a new connection.
    const BackendDef& new_backend = flip_to_variant1(s, client, cport);
    const veer_variant_counters v0 = dp_->counters(s.id, 0);
    expect_forwarded_to(s, tcp_from_client(s, client, cport, kTcpSyn, 777000), new_backend);
    veer_flow f = entry(s, client, cport);
    EXPECT_EQ(f.variant, 1);
    EXPECT_EQ(backend_of(f, s.family()), endpoint(new_backend));
    EXPECT_EQ(f.state, VEER_FLOW_S_SYN) << "a new connection: its own state, no request pending";
    EXPECT_EQ(ntohl(f.syn_seq), 777000u);
    EXPECT_EQ(f.req_ts_ns, 0u);
    EXPECT_EQ(dp_->counters(s.id, 0).new_flows, 1u);
    EXPECT_EQ(dp_->counters(s.id, 1).new_flows, 1u) << "the reused tuple is a new flow, counted once";
    EXPECT_TRUE(dp_->handshake(reverse_key(s, new_backend, client, cport)).has_value())
        << "the new connection's handshake is pending";

    // A late segment of the old connection from the old backend is not
    // translated for the new one: it passes untouched and counts nowhere.
    expect_untouched(build(tcp_from_backend(s, old_backend, client, cport, kTcpFin | kTcpAck)),
                     g_topo->backend_ifindex, VEER_R_PASS_NOT_SERVICE);
    EXPECT_EQ(dp_->counters(s.id, 0).packets_out, v0.packets_out);
    // The new connection goes on with the new backend, both ways.
    expect_reply_translated(s, tcp_from_backend(s, new_backend, client, cport, kTcpSyn | kTcpAck));
    expect_forwarded_to(s, tcp_from_client(s, client, cport, kTcpAck, 777001), new_backend);
    EXPECT_EQ(entry(s, client, cport).state, VEER_FLOW_S_SYN | VEER_FLOW_S_ESTABLISHED);
    dp_->flip(s, 0);
  }
}

// Without a FIN or RST seen (a lost close, a client that crashed): another
// sequence number alone makes it a new connection, in every state.
TEST_P(Connections, SynWithAnotherSequenceNumberIsANewConnectionWhateverTheState) {
  ServiceDef s = svc_tcp4();
  Ip client = Ip::parse(kClient4);
  const uint16_t established = 49100, handshaking = 49101;
  const BackendDef& b_est = expected_backend(s, client, established);
  const BackendDef& b_hs = expected_backend(s, client, handshaking);
  expect_forwarded_to(s, tcp_from_client(s, client, established, kTcpSyn, 1000), b_est);
  expect_reply_translated(s, tcp_from_backend(s, b_est, client, established, kTcpSyn | kTcpAck));
  expect_forwarded_to(s, tcp_from_client(s, client, established, kTcpAck, 1001), b_est);
  expect_forwarded_to(s, tcp_from_client(s, client, handshaking, kTcpSyn, 1000), b_hs);
  EXPECT_EQ(entry(s, client, established).state, VEER_FLOW_S_SYN | VEER_FLOW_S_ESTABLISHED);
  EXPECT_EQ(entry(s, client, handshaking).state, VEER_FLOW_S_SYN);

  const BackendDef& n_est = flip_to_variant1(s, client, established);
  const BackendDef& n_hs = s.variants[1][expected_slot(s, client, handshaking) % 2];
  expect_forwarded_to(s, tcp_from_client(s, client, established, kTcpSyn, 2000), n_est);
  expect_forwarded_to(s, tcp_from_client(s, client, handshaking, kTcpSyn, 2000), n_hs);
  EXPECT_EQ(entry(s, client, established).variant, 1);
  EXPECT_EQ(entry(s, client, handshaking).variant, 1);
  EXPECT_EQ(dp_->counters(s.id, 0).new_flows, 2u);
  EXPECT_EQ(dp_->counters(s.id, 1).new_flows, 2u);
}

TEST_P(Connections, RetransmittedSynKeepsItsChoiceAcrossAFlip) {
  ServiceDef s = svc_tcp4();
  Ip client = Ip::parse(kClient4);
  const uint16_t cport = 49200;
  const BackendDef& b = expected_backend(s, client, cport);
  const PacketSpec syn = tcp_from_client(s, client, cport, kTcpSyn, 424242);
  expect_forwarded_to(s, syn, b);
  const auto hs = dp_->handshake(reverse_key(s, b, client, cport));
  ASSERT_TRUE(hs.has_value());
  flip_to_variant1(s, client, cport);
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  expect_forwarded_to(s, syn, b);  // retransmitted before any answer
  EXPECT_EQ(dp_->handshake(reverse_key(s, b, client, cport))->syn_ts_ns, hs->syn_ts_ns)
      << "a retransmission keeps the first SYN's time";
  expect_reply_translated(s, tcp_from_backend(s, b, client, cport, kTcpSyn | kTcpAck));
  expect_forwarded_to(s, syn, b);  // the client did not get the SYN-ACK: the same handshake still
  veer_flow f = entry(s, client, cport);
  EXPECT_EQ(f.variant, 0);
  EXPECT_EQ(f.state, VEER_FLOW_S_SYN | VEER_FLOW_S_ESTABLISHED);
  EXPECT_EQ(dp_->counters(s.id, 0).new_flows, 1u) << "retransmissions are not new flows";
  EXPECT_EQ(dp_->counters(s.id, 1).new_flows, 0u);
  EXPECT_EQ(dp_->counters(s.id, 0).packets_in, 3u);
}

// FIN and RST from either side move the entry's state; once its connection is
// closing or closed, even a SYN with the same sequence number (a client with a
// fixed ISN) is a new connection.
TEST_P(Connections, FinAndRstFromEitherSideEndTheConnection) {
  ServiceDef s = svc_tcp4();
  Ip client = Ip::parse(kClient4);
  struct Case {
    const char* what;
    bool from_client;
    uint8_t flags;
    uint8_t bit;
  };
  const Case cases[] = {{"client FIN", true, kTcpFin | kTcpAck, VEER_FLOW_S_FIN_CLIENT},
                        {"backend FIN", false, kTcpFin | kTcpAck, VEER_FLOW_S_FIN_BACKEND},
                        {"client RST", true, kTcpRst, VEER_FLOW_S_RST},
                        {"backend RST", false, kTcpRst | kTcpAck, VEER_FLOW_S_RST}};
  uint16_t cport = 49300;
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    ++cport;
    const BackendDef& b = expected_backend(s, client, cport);
    expect_forwarded_to(s, tcp_from_client(s, client, cport, kTcpSyn, 5000), b);
    expect_reply_translated(s, tcp_from_backend(s, b, client, cport, kTcpSyn | kTcpAck));
    if (c.from_client) {
      expect_forwarded_to(s, tcp_from_client(s, client, cport, c.flags, 5001), b);
    } else {
      expect_reply_translated(s, tcp_from_backend(s, b, client, cport, c.flags));
    }
    EXPECT_EQ(entry(s, client, cport).state, VEER_FLOW_S_SYN | VEER_FLOW_S_ESTABLISHED | c.bit);
    // A non-SYN packet after the close still follows the entry.
    expect_forwarded_to(s, tcp_from_client(s, client, cport, kTcpAck, 5002), b);
    const uint64_t v1_flows = dp_->counters(s.id, 1).new_flows;
    const BackendDef& n = flip_to_variant1(s, client, cport);
    expect_forwarded_to(s, tcp_from_client(s, client, cport, kTcpSyn, 5000), n);
    EXPECT_EQ(entry(s, client, cport).variant, 1);
    EXPECT_EQ(entry(s, client, cport).state, VEER_FLOW_S_SYN);
    EXPECT_EQ(dp_->counters(s.id, 1).new_flows, v1_flows + 1);
    dp_->flip(s, 0);
  }
}

// A packet that finds no entry (an eviction, a restart without pins) still
// selects and creates one, picked up mid-stream: no ISN known, so every SYN
// on that tuple is a new connection.
TEST_P(Connections, EntryPickedUpMidStreamIsReplacedByAnySyn) {
  ServiceDef s = svc_tcp4();
  Ip client = Ip::parse(kClient4);
  const uint16_t cport = 49400;
  const BackendDef& b = expected_backend(s, client, cport);
  PacketSpec data = tcp_from_client(s, client, cport, kTcpAck, 1000);
  data.payload = text("more of a request");
  expect_forwarded_to(s, data, b);
  veer_flow f = entry(s, client, cport);
  EXPECT_EQ(f.state, VEER_FLOW_S_ESTABLISHED | VEER_FLOW_S_REQUEST_PENDING);
  EXPECT_EQ(f.syn_seq, 0u);
  EXPECT_EQ(dp_->counters(s.id, 0).new_flows, 1u);
  const BackendDef& n = flip_to_variant1(s, client, cport);
  expect_forwarded_to(s, tcp_from_client(s, client, cport, kTcpAck, 1017), b);
  expect_forwarded_to(s, tcp_from_client(s, client, cport, kTcpSyn, 0), n);
  EXPECT_EQ(entry(s, client, cport).variant, 1);
}

TEST_P(Connections, UdpEntryIdleLongerThanTheTimeoutSelectsAgain) {
  for (auto def : {svc_udp4, svc_udp6}) {
    ServiceDef s = def();
    SCOPED_TRACE(s.vip);
    Ip client = Ip::parse(s.family() == VEER_AF_INET ? kClient4 : kClient6);
    const uint16_t cport = 49500;
    const size_t n = s.variants[0].size();
    ASSERT_EQ(n, 2u);
    const BackendDef& first = expected_backend(s, client, cport);
    const BackendDef& other = s.variants[0][(expected_slot(s, client, cport) + 1) % n];
    const veer_flow_key key = flow_key(client, Ip::parse(s.vip), cport, s.port, s.proto);
    const veer_flow_id id = Dataplane::flow_id(key, static_cast<uint16_t>(s.id));
    expect_forwarded_to(s, client_spec(s, client, cport), first);
    uint32_t t = tick_now();
    veer_flow f = entry(s, client, cport);
    EXPECT_GE(f.seen_tick + 1, t) << "the datagram's tick";
    EXPECT_LE(f.seen_tick, t);
    // Table 1 names the other backend of every slot's pair.
    dp_->write_table(s.id, 1, [n](uint32_t i) { return veer_slot{0, static_cast<uint8_t>((i + 1) % n)}; });
    dp_->flip(s, 1);

    // A live exchange keeps its backend.
    expect_forwarded_to(s, client_spec(s, client, cport), first);
    expect_reply_translated(s, reply_spec(s, first, client, cport));
    EXPECT_EQ(dp_->counters(s.id, 0).new_flows, 1u);

    // Test clock: the entry last saw a datagram just within the timeout...
    f = entry(s, client, cport);
    f.seen_tick = tick_now() - s.udp_idle_ticks + 2;
    dp_->put_flow(id, f);
    expect_forwarded_to(s, client_spec(s, client, cport), first);
    // ...and a reply refreshes it as a datagram does.
    f = entry(s, client, cport);
    f.seen_tick = tick_now() - s.udp_idle_ticks - 5;
    dp_->put_flow(id, f);
    expect_reply_translated(s, reply_spec(s, first, client, cport));
    EXPECT_LE(tick_now() - entry(s, client, cport).seen_tick, 1u);
    expect_forwarded_to(s, client_spec(s, client, cport), first);
    EXPECT_EQ(dp_->counters(s.id, 0).new_flows, 1u);

    // Idle for longer than the timeout: the next datagram is a new flow.
    f = entry(s, client, cport);
    f.seen_tick = tick_now() - s.udp_idle_ticks - 5;
    dp_->put_flow(id, f);
    expect_forwarded_to(s, client_spec(s, client, cport), other);
    EXPECT_EQ(dp_->counters(s.id, 0).new_flows, 2u) << "the new exchange is counted once";
    t = tick_now();
    f = entry(s, client, cport);
    EXPECT_EQ(backend_of(f, s.family()), endpoint(other));
    EXPECT_LE(t - f.seen_tick, 1u);
    // The old backend's late answer is not translated for the new exchange.
    expect_untouched(build(reply_spec(s, first, client, cport)), g_topo->backend_ifindex,
                     VEER_R_PASS_NOT_SERVICE);
    dp_->flip(s, 0);
  }
}

// The same with the real clock and a short timeout: 12 ticks (201 ms).
TEST_P(Connections, UdpShortIdleTimeoutOnTheRealClock) {
  ServiceDef s = svc_udp4();
  Ip client = Ip::parse(kClient4);
  const uint16_t cport = 49600;
  const uint32_t ticks = 12;
  const uint64_t timeout_ms = ticks * VEER_TICK_NS / 1000000;
  dp_->set_udp_idle_ticks(s, ticks);
  const BackendDef& first = expected_backend(s, client, cport);
  const BackendDef& other = s.variants[0][(expected_slot(s, client, cport) + 1) % 2];
  expect_forwarded_to(s, client_spec(s, client, cport), first);
  dp_->write_table(s.id, 1, [](uint32_t i) { return veer_slot{0, static_cast<uint8_t>((i + 1) % 2)}; });
  dp_->flip(s, 1);
  // Datagrams 20 ms apart for twice the timeout: one exchange, one backend.
  uint64_t last = monotonic_ns(), max_gap_ns = 0;
  const uint64_t end = last + 2 * timeout_ms * 1000000;
  while (monotonic_ns() < end) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    const uint64_t now = monotonic_ns();
    max_gap_ns = std::max(max_gap_ns, now - last);
    last = now;
    expect_forwarded_to(s, client_spec(s, client, cport), first);
  }
  // The harness's own pace (a slow emulated guest): the gaps must have been
  // well within the timeout for the check to mean anything.
  ASSERT_LT(max_gap_ns / 1000000, timeout_ms / 2) << "datagrams were not sent often enough to keep it live";
  EXPECT_EQ(dp_->counters(s.id, 0).new_flows, 1u);
  std::this_thread::sleep_for(std::chrono::milliseconds(timeout_ms + 2 * VEER_TICK_NS / 1000000 + 20));
  expect_forwarded_to(s, client_spec(s, client, cport), other);
  EXPECT_EQ(dp_->counters(s.id, 0).new_flows, 2u);
}

// The TCP port hint (veer_tcp_port_service, abi.h): the only TCP service of
// its port is found without the hash lookup; a hint that does not fit falls
// back to it; a new connection found through the hint still selects from the
// service's active table; with the hint cleared and the service deleted (the
// order veerd removes a service in), its packets are not ours any more.
TEST_P(Connections, TcpPortHintFindsTheServiceAndFallsBackWhenItDoesNotFit) {
  dp_ = std::make_unique<Dataplane>();
  ServiceDef s = svc_tcp4();
  dp_->add_service(s);
  dp_->write_table(s.id, 0, [&](uint32_t i) { return table0_slot(s, i); });
  ASSERT_EQ(dp_->tcp_hint(s.port), s.id + 1) << "the only TCP service on its port";
  Ip client = Ip::parse(kClient4);
  const uint16_t cport = 49700;
  const BackendDef& b = expected_backend(s, client, cport);
  expect_forwarded_to(s, tcp_from_client(s, client, cport, kTcpSyn, 100), b);
  expect_reply_translated(s, tcp_from_backend(s, b, client, cport, kTcpSyn | kTcpAck));
  expect_forwarded_to(s, tcp_from_client(s, client, cport, kTcpAck, 101), b);

  // A hint naming an id whose key is another VIP: the hash lookup decides.
  veer_service_key wrong = s.key();
  wrong.vip.addr[0] ^= htonl(1);
  const uint32_t id = s.id;
  Dataplane::check(bpf_map__update_elem(dp_->skel()->maps.veer_service_keys, &id, sizeof id, &wrong, sizeof wrong,
                                        BPF_ANY),
                   "update veer_service_keys");
  expect_forwarded_to(s, tcp_from_client(s, client, cport, kTcpAck, 102), b);
  veer_service_key right = s.key();
  Dataplane::check(bpf_map__update_elem(dp_->skel()->maps.veer_service_keys, &id, sizeof id, &right, sizeof right,
                                        BPF_ANY),
                   "update veer_service_keys");

  // A new connection on the tuple, matched through the hint: the table now.
  const BackendDef& n = flip_to_variant1(s, client, cport);
  expect_forwarded_to(s, tcp_from_client(s, client, cport, kTcpSyn, 9000), n);
  EXPECT_EQ(dp_->counters(s.id, 1).new_flows, 1u);

  // Removal as veerd does it: hint first, then the service.
  dp_->set_tcp_hint(s.port, 0);
  dp_->delete_service(s);
  PacketSpec ack = tcp_from_client(s, client, cport, kTcpAck, 9001);
  expect_untouched(build(ack), g_topo->client_ifindex, VEER_R_PASS_NOT_SERVICE);
}

INSTANTIATE_TEST_SUITE_P(Hooks, Connections, ::testing::Values(Hook::Xdp, Hook::Tc),
                         [](const auto& info) { return std::string(hook_name(info.param)); });

INSTANTIATE_TEST_SUITE_P(Hooks, Telemetry, ::testing::Values(Hook::Xdp, Hook::Tc),
                         [](const auto& info) { return std::string(hook_name(info.param)); });

INSTANTIATE_TEST_SUITE_P(Hooks, VeerBpf, ::testing::Values(Hook::Xdp, Hook::Tc),
                         [](const auto& info) { return std::string(hook_name(info.param)); });

}  // namespace

// Issue 5: <= 128 bytes of kernel memory per flow. The kernel's own figure
// (what `bpftool map show` prints as memlock) for veer_flows at its default
// size, divided by the entries.
TEST(FlowTable, KernelMemoryPerFlowIsAtMost128BytesAtTheDefaultSize) {
  Dataplane dp(0);  // the object's default size
  const bpf_map* flows = dp.skel()->maps.veer_flows;
  const uint32_t entries = bpf_map__max_entries(flows);
  ASSERT_EQ(entries, 1048576u);
  bpf_map_info info{};
  uint32_t len = sizeof info;
  ASSERT_EQ(bpf_obj_get_info_by_fd(bpf_map__fd(flows), &info, &len), 0);
  EXPECT_EQ(info.max_entries, entries);
  EXPECT_EQ(info.type, static_cast<uint32_t>(BPF_MAP_TYPE_LRU_HASH));
  uint64_t memlock = 0;
  std::ifstream fdinfo("/proc/self/fdinfo/" + std::to_string(bpf_map__fd(flows)));
  for (std::string line; std::getline(fdinfo, line);)
    if (line.rfind("memlock:", 0) == 0) memlock = std::stoull(line.substr(8));
  ASSERT_GT(memlock, 0u) << "no memlock line in the map's fdinfo";
  const double per_flow = static_cast<double>(memlock) / entries;
  std::printf("veer_flows: %llu bytes for %u entries = %.2f bytes per flow\n",
              static_cast<unsigned long long>(memlock), entries, per_flow);
  // Before 6.4 (no map_mem_usage) memlock is the generic estimate, key + value
  // rounded to 8 bytes per entry, rounded up to a page: not the map's memory.
  const uint64_t estimate_per_entry = (sizeof(veer_flow_id) + sizeof(veer_flow) + 7) / 8 * 8;
  const uint64_t page = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  if (memlock == (estimate_per_entry * entries + page - 1) / page * page)
    GTEST_SKIP() << "this kernel reports memlock as the pre-6.4 estimate (key + value per entry), not the "
                    "map's memory; the per-flow figure is checked on kernels with map_mem_usage (6.4+)";
  EXPECT_LE(per_flow, 128.0);
  // At least the element and its bucket: the figure is the real one.
  EXPECT_GE(per_flow, static_cast<double>(sizeof(veer_flow_id) + sizeof(veer_flow) + 16));
}

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  bool listing = ::testing::GTEST_FLAG(list_tests);
  static Topology topo;
  if (!listing) {
    try {
      topo = Topology::enter();
      g_topo = &topo;
    } catch (const std::exception& e) {
      fprintf(stderr, "veer_bpf_tests: cannot set up the test network namespace: %s\n", e.what());
      return 1;
    }
  }
  return RUN_ALL_TESTS();
}
