// What a veer_flows entry says about its connection, for `veerctl which`:
// the data plane's rules of lib/conn.h (bpf/) read back in userspace. Pure:
// the entry, the protocol and the clock come in.
#pragma once
#include <cstdint>
#include <optional>
#include <string>

#include "config/config.h"
#include "config/net.h"

namespace veer {

struct FlowEntryView {
  // tcp: "handshake" (SYN seen, not answered), "established", "closing"
  // (a FIN from one side), "closed" (FINs from both, or a RST);
  // udp: "active" or "idle" (beyond node.udp_idle_timeout).
  std::string state;
  std::optional<uint32_t> syn_seq;  // tcp: the ISN of the SYN that made the entry (host order)
  bool request_pending = false;     // a request awaits its first response byte
  // tcp: a retransmission of the entry's own SYN (seq syn_seq) continues the
  // entry; every other SYN selects again. False when the entry has no SYN or
  // its connection is closing or closed: then every SYN selects again.
  bool syn_retransmit_continues = false;
  // udp: how long the entry has been idle, and whether the next client
  // datagram selects again (idle for longer than the timeout).
  std::optional<uint64_t> idle_ms;
  bool next_datagram_selects_again = false;
};

// now_tick: the data plane's clock (CLOCK_MONOTONIC_COARSE >> VEER_TICK_SHIFT);
// idle_ticks: veer_service.udp_idle_ticks.
FlowEntryView describe_flow_entry(const veer_flow& flow, Protocol protocol, uint32_t now_tick, uint32_t idle_ticks);

}  // namespace veer
