// describe_flow_entry: the data plane's per-connection rules (bpf/lib/conn.h)
// as `veerctl which` reports them.
#include <arpa/inet.h>
#include <gtest/gtest.h>

#include "tables/flow_entry.h"

namespace veer {
namespace {

veer_flow tcp_entry(uint8_t state, uint32_t isn = 0) {
  veer_flow f{};
  f.state = state;
  f.syn_seq = htonl(isn);
  return f;
}

TEST(FlowEntry, TcpStatesAndWhetherARetransmittedSynContinues) {
  struct Case {
    uint8_t state;
    const char* name;
    bool retransmit_continues;
  };
  const Case cases[] = {
      {VEER_FLOW_S_SYN, "handshake", true},
      {VEER_FLOW_S_SYN | VEER_FLOW_S_ESTABLISHED, "established", true},
      {VEER_FLOW_S_ESTABLISHED, "established", false},  // picked up mid-stream: no ISN
      {VEER_FLOW_S_SYN | VEER_FLOW_S_ESTABLISHED | VEER_FLOW_S_FIN_CLIENT, "closing", false},
      {VEER_FLOW_S_SYN | VEER_FLOW_S_ESTABLISHED | VEER_FLOW_S_FIN_BACKEND, "closing", false},
      {VEER_FLOW_S_SYN | VEER_FLOW_S_ESTABLISHED | VEER_FLOW_S_FIN_CLIENT | VEER_FLOW_S_FIN_BACKEND, "closed", false},
      {VEER_FLOW_S_SYN | VEER_FLOW_S_RST, "closed", false},
      {VEER_FLOW_S_ESTABLISHED | VEER_FLOW_S_RST | VEER_FLOW_S_FIN_CLIENT, "closed", false},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(static_cast<int>(c.state));
    const FlowEntryView v = describe_flow_entry(tcp_entry(c.state, 123456789), Protocol::Tcp, 0, 0);
    EXPECT_EQ(v.state, c.name);
    EXPECT_EQ(v.syn_retransmit_continues, c.retransmit_continues);
    EXPECT_EQ(v.syn_seq.has_value(), (c.state & VEER_FLOW_S_SYN) != 0);
    if (v.syn_seq) {
      EXPECT_EQ(*v.syn_seq, 123456789u) << "host order";
    }
    EXPECT_FALSE(v.idle_ms.has_value());
    EXPECT_FALSE(v.request_pending);
  }
  EXPECT_TRUE(describe_flow_entry(tcp_entry(VEER_FLOW_S_SYN | VEER_FLOW_S_REQUEST_PENDING), Protocol::Tcp, 0, 0)
                  .request_pending);
}

TEST(FlowEntry, UdpIdleAgainstTheTimeoutAcrossTheTickWrap) {
  veer_flow f{};
  f.seen_tick = 1000;
  const uint32_t timeout = 1789;  // 30 s
  FlowEntryView v = describe_flow_entry(f, Protocol::Udp, 1000 + timeout, timeout);
  EXPECT_EQ(v.state, "active");
  EXPECT_FALSE(v.next_datagram_selects_again) << "idle exactly the timeout: not longer";
  EXPECT_EQ(*v.idle_ms, static_cast<uint64_t>(timeout) * VEER_TICK_NS / 1000000);
  v = describe_flow_entry(f, Protocol::Udp, 1000 + timeout + 1, timeout);
  EXPECT_EQ(v.state, "idle");
  EXPECT_TRUE(v.next_datagram_selects_again);
  // The 32-bit tick wraps (every 2.3 years): differences are modulo 2^32.
  f.seen_tick = 0xfffffff0u;
  v = describe_flow_entry(f, Protocol::Udp, 0x10, timeout);
  EXPECT_EQ(*v.idle_ms, 0x20ull * VEER_TICK_NS / 1000000);
  EXPECT_FALSE(v.next_datagram_selects_again);
  EXPECT_FALSE(v.syn_seq.has_value());
}

}  // namespace
}  // namespace veer
