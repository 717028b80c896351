// A small packet crafter and checker for the BPF tests and the benchmark.
//
// build() writes Ethernet (+ optional 802.1Q tags), IPv4 (with options) or
// IPv6, and TCP (with options) / UDP / anything else, with every length and
// checksum computed from scratch. parse() finds the header offsets of a frame
// again, and the *_checksum_ok() functions recompute checksums from scratch
// (never incrementally), so a test that checks a rewritten frame does not
// share any arithmetic with the program under test.
#pragma once
#include <arpa/inet.h>

#include <array>
#include <cstdint>
#include <cstring>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace veer::test {

using Bytes = std::vector<uint8_t>;
using Mac = std::array<uint8_t, 6>;

constexpr uint16_t kEthIpv4 = 0x0800;
constexpr uint16_t kEthIpv6 = 0x86dd;
constexpr uint16_t kEthArp = 0x0806;
constexpr uint16_t kEthVlan = 0x8100;
constexpr uint8_t kProtoIcmp = 1;
constexpr uint8_t kProtoTcp = 6;
constexpr uint8_t kProtoUdp = 17;
constexpr uint8_t kProtoIcmp6 = 58;

constexpr uint8_t kTcpSyn = 0x02;
constexpr uint8_t kTcpAck = 0x10;

// An IP address in network order: 4 bytes (IPv4) or 16 (IPv6).
struct Ip {
  int family = 4;
  std::array<uint8_t, 16> b{};

  static Ip parse(const std::string& text) {
    Ip ip;
    if (inet_pton(AF_INET, text.c_str(), ip.b.data()) == 1) {
      ip.family = 4;
    } else if (inet_pton(AF_INET6, text.c_str(), ip.b.data()) == 1) {
      ip.family = 6;
    } else {
      throw std::invalid_argument("bad IP address: " + text);
    }
    return ip;
  }
  size_t size() const { return family == 4 ? 4 : 16; }
  bool operator==(const Ip&) const = default;
  std::string str() const {
    char buf[INET6_ADDRSTRLEN] = {};
    inet_ntop(family == 4 ? AF_INET : AF_INET6, b.data(), buf, sizeof buf);
    return buf;
  }
};

inline Mac mac(const std::string& text) {
  Mac m{};
  unsigned v[6];
  if (sscanf(text.c_str(), "%x:%x:%x:%x:%x:%x", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5]) != 6)
    throw std::invalid_argument("bad MAC: " + text);
  for (int i = 0; i < 6; ++i) m[i] = static_cast<uint8_t>(v[i]);
  return m;
}

struct PacketSpec {
  Mac src_mac = mac("02:00:00:00:00:01");
  Mac dst_mac = mac("02:00:00:00:00:02");
  std::vector<uint16_t> vlans;  // 802.1Q VIDs, outermost first
  uint16_t ethertype = 0;       // 0: from the address family
  Ip src, dst;
  uint8_t ttl = 64;
  Bytes ip_options;              // IPv4 only, padded to 4 bytes
  uint16_t frag_off = 0;         // IPv4 flags+offset field, host order
  uint8_t proto = kProtoTcp;     // L4 protocol (IPv4 protocol / IPv6 next header)
  uint16_t sport = 0, dport = 0; // host order
  uint8_t tcp_flags = kTcpSyn;
  uint32_t seq = 1000, ack = 0;
  Bytes tcp_options;             // padded to 4 bytes
  bool udp_zero_checksum = false;
  Bytes l4_raw;                  // for protocols other than TCP/UDP: the whole L4 part
  Bytes payload;
};

inline void put16(Bytes& b, size_t off, uint16_t v) {
  b[off] = static_cast<uint8_t>(v >> 8);
  b[off + 1] = static_cast<uint8_t>(v);
}
inline uint16_t get16(const Bytes& b, size_t off) {
  return static_cast<uint16_t>((b.at(off) << 8) | b.at(off + 1));
}
inline void put32(Bytes& b, size_t off, uint32_t v) {
  put16(b, off, static_cast<uint16_t>(v >> 16));
  put16(b, off + 2, static_cast<uint16_t>(v));
}

// One's-complement sum over bytes (big-endian 16-bit words), not folded.
inline uint32_t sum16(const uint8_t* p, size_t n, uint32_t acc = 0) {
  for (size_t i = 0; i + 1 < n; i += 2) acc += static_cast<uint32_t>((p[i] << 8) | p[i + 1]);
  if (n & 1) acc += static_cast<uint32_t>(p[n - 1] << 8);
  return acc;
}
inline uint16_t fold(uint32_t acc) {
  while (acc >> 16) acc = (acc & 0xffff) + (acc >> 16);
  return static_cast<uint16_t>(~acc & 0xffff);
}

// Pseudo-header sum for TCP/UDP over IPv4 or IPv6.
inline uint32_t pseudo_sum(const Ip& src, const Ip& dst, uint8_t proto, uint32_t l4_len) {
  uint32_t acc = sum16(src.b.data(), src.size());
  acc = sum16(dst.b.data(), dst.size(), acc);
  acc += proto;
  acc += l4_len >> 16;
  acc += l4_len & 0xffff;
  return acc;
}

inline Bytes build(const PacketSpec& s) {
  Bytes f;
  f.insert(f.end(), s.dst_mac.begin(), s.dst_mac.end());
  f.insert(f.end(), s.src_mac.begin(), s.src_mac.end());
  for (uint16_t vid : s.vlans) {
    f.push_back(kEthVlan >> 8);
    f.push_back(kEthVlan & 0xff);
    f.push_back(static_cast<uint8_t>(vid >> 8));
    f.push_back(static_cast<uint8_t>(vid));
  }
  uint16_t ethertype = s.ethertype ? s.ethertype : (s.src.family == 4 ? kEthIpv4 : kEthIpv6);
  f.push_back(static_cast<uint8_t>(ethertype >> 8));
  f.push_back(static_cast<uint8_t>(ethertype));

  // L4 first (its checksum needs only the addresses), then the IP header.
  Bytes l4;
  if (s.proto == kProtoTcp) {
    Bytes opts = s.tcp_options;
    while (opts.size() % 4) opts.push_back(0);  // EOL padding
    l4.assign(20 + opts.size(), 0);
    put16(l4, 0, s.sport);
    put16(l4, 2, s.dport);
    put32(l4, 4, s.seq);
    put32(l4, 8, s.ack);
    l4[12] = static_cast<uint8_t>(((20 + opts.size()) / 4) << 4);
    l4[13] = s.tcp_flags;
    put16(l4, 14, 65535);
    std::copy(opts.begin(), opts.end(), l4.begin() + 20);
    l4.insert(l4.end(), s.payload.begin(), s.payload.end());
    uint16_t c = fold(sum16(l4.data(), l4.size(), pseudo_sum(s.src, s.dst, kProtoTcp, l4.size())));
    put16(l4, 16, c);
  } else if (s.proto == kProtoUdp) {
    l4.assign(8, 0);
    put16(l4, 0, s.sport);
    put16(l4, 2, s.dport);
    l4.insert(l4.end(), s.payload.begin(), s.payload.end());
    put16(l4, 4, static_cast<uint16_t>(l4.size()));
    if (!s.udp_zero_checksum) {
      uint16_t c = fold(sum16(l4.data(), l4.size(), pseudo_sum(s.src, s.dst, kProtoUdp, l4.size())));
      put16(l4, 6, c == 0 ? 0xffff : c);
    }
  } else {
    l4 = s.l4_raw;
    l4.insert(l4.end(), s.payload.begin(), s.payload.end());
  }

  if (ethertype == kEthIpv4) {
    Bytes opts = s.ip_options;
    while (opts.size() % 4) opts.push_back(0);
    size_t ihl = 20 + opts.size();
    Bytes ip(ihl, 0);
    ip[0] = static_cast<uint8_t>(0x40 | (ihl / 4));
    put16(ip, 2, static_cast<uint16_t>(ihl + l4.size()));
    put16(ip, 4, 0x1234);
    put16(ip, 6, s.frag_off);
    ip[8] = s.ttl;
    ip[9] = s.proto;
    std::copy(s.src.b.begin(), s.src.b.begin() + 4, ip.begin() + 12);
    std::copy(s.dst.b.begin(), s.dst.b.begin() + 4, ip.begin() + 16);
    std::copy(opts.begin(), opts.end(), ip.begin() + 20);
    put16(ip, 10, fold(sum16(ip.data(), ip.size())));
    f.insert(f.end(), ip.begin(), ip.end());
  } else if (ethertype == kEthIpv6) {
    Bytes ip(40, 0);
    ip[0] = 0x60;
    put16(ip, 4, static_cast<uint16_t>(l4.size()));
    ip[6] = s.proto;
    ip[7] = s.ttl;
    std::copy(s.src.b.begin(), s.src.b.end(), ip.begin() + 8);
    std::copy(s.dst.b.begin(), s.dst.b.end(), ip.begin() + 24);
    f.insert(f.end(), ip.begin(), ip.end());
  }
  f.insert(f.end(), l4.begin(), l4.end());
  return f;
}

// Offsets and fields of a frame as a test reads them back.
struct Parsed {
  Mac dst_mac{}, src_mac{};
  size_t l3 = 0, l4 = 0, end = 0;  // offsets; end = end of the IP packet (tot_len)
  int family = 0;
  Ip src, dst;
  uint8_t ttl = 0, proto = 0;
  uint16_t sport = 0, dport = 0;
};

// Parses a well-formed frame (Ethernet, 0..n VLAN tags, IPv4/IPv6, TCP/UDP).
inline std::optional<Parsed> parse(const Bytes& f) {
  Parsed p;
  if (f.size() < 14) return std::nullopt;
  std::copy(f.begin(), f.begin() + 6, p.dst_mac.begin());
  std::copy(f.begin() + 6, f.begin() + 12, p.src_mac.begin());
  size_t off = 12;
  uint16_t et = get16(f, off);
  while (et == kEthVlan) {
    off += 4;
    if (f.size() < off + 2) return std::nullopt;
    et = get16(f, off);
  }
  p.l3 = off + 2;
  if (et == kEthIpv4) {
    if (f.size() < p.l3 + 20) return std::nullopt;
    p.family = 4;
    size_t ihl = (f[p.l3] & 0xf) * 4u;
    p.end = p.l3 + get16(f, p.l3 + 2);
    p.ttl = f[p.l3 + 8];
    p.proto = f[p.l3 + 9];
    p.src.family = p.dst.family = 4;
    std::copy(f.begin() + p.l3 + 12, f.begin() + p.l3 + 16, p.src.b.begin());
    std::copy(f.begin() + p.l3 + 16, f.begin() + p.l3 + 20, p.dst.b.begin());
    p.l4 = p.l3 + ihl;
  } else if (et == kEthIpv6) {
    if (f.size() < p.l3 + 40) return std::nullopt;
    p.family = 6;
    p.end = p.l3 + 40 + get16(f, p.l3 + 4);
    p.proto = f[p.l3 + 6];
    p.ttl = f[p.l3 + 7];
    p.src.family = p.dst.family = 6;
    std::copy(f.begin() + p.l3 + 8, f.begin() + p.l3 + 24, p.src.b.begin());
    std::copy(f.begin() + p.l3 + 24, f.begin() + p.l3 + 40, p.dst.b.begin());
    p.l4 = p.l3 + 40;
  } else {
    return std::nullopt;
  }
  if (p.end > f.size() || p.l4 + 4 > p.end) return std::nullopt;
  p.sport = get16(f, p.l4);
  p.dport = get16(f, p.l4 + 2);
  return p;
}

// IPv4 header checksum recomputed over the whole header (options included).
inline bool ipv4_checksum_ok(const Bytes& f, const Parsed& p) {
  size_t ihl = (f[p.l3] & 0xf) * 4u;
  return fold(sum16(f.data() + p.l3, ihl)) == 0;
}

// TCP or UDP checksum recomputed from scratch with the pseudo-header.
// IPv4 UDP with checksum 0 ("none") counts as correct only if allow_udp_zero.
inline bool l4_checksum_ok(const Bytes& f, const Parsed& p, bool allow_udp_zero = false) {
  size_t len = p.end - p.l4;
  if (p.proto == kProtoUdp && get16(f, p.l4 + 6) == 0) return p.family == 4 && allow_udp_zero;
  uint32_t acc = sum16(f.data() + p.l4, len, pseudo_sum(p.src, p.dst, p.proto, static_cast<uint32_t>(len)));
  return fold(acc) == 0;
}

inline std::string hex(const Bytes& b) {
  static const char* d = "0123456789abcdef";
  std::string s;
  for (uint8_t c : b) {
    s += d[c >> 4];
    s += d[c & 0xf];
  }
  return s;
}

}  // namespace veer::test
