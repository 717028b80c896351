// The data plane's per-connection rules (bpf/lib/conn.h) read back.
#include "tables/flow_entry.h"

#include <arpa/inet.h>

namespace veer {

FlowEntryView describe_flow_entry(const veer_flow& flow, Protocol protocol, uint32_t now_tick, uint32_t idle_ticks) {
  FlowEntryView v;
  v.request_pending = (flow.state & VEER_FLOW_S_REQUEST_PENDING) != 0;
  if (protocol == Protocol::Udp) {
    // Modulo 2^32, as the kernel compares.
    const uint32_t idle = now_tick - flow.seen_tick;
    v.idle_ms = static_cast<uint64_t>(idle) * VEER_TICK_NS / 1000000ull;
    v.next_datagram_selects_again = idle > idle_ticks;
    v.state = v.next_datagram_selects_again ? "idle" : "active";
    return v;
  }
  const uint8_t s = flow.state;
  const bool both_fins = (s & VEER_FLOW_S_FIN_CLIENT) && (s & VEER_FLOW_S_FIN_BACKEND);
  if ((s & VEER_FLOW_S_RST) || both_fins) {
    v.state = "closed";
  } else if (s & (VEER_FLOW_S_FIN_CLIENT | VEER_FLOW_S_FIN_BACKEND)) {
    v.state = "closing";
  } else if (s & VEER_FLOW_S_ESTABLISHED) {
    v.state = "established";
  } else {
    v.state = "handshake";
  }
  if (s & VEER_FLOW_S_SYN) v.syn_seq = ntohl(flow.syn_seq);
  v.syn_retransmit_continues = (s & (VEER_FLOW_S_SYN | VEER_FLOW_S_ENDING)) == VEER_FLOW_S_SYN;
  return v;
}

}  // namespace veer
