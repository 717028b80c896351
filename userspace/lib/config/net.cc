// Addresses and endpoints: text <-> bytes <-> the ABI's veer_addr.
#include "config/net.h"

#include <arpa/inet.h>

#include <charconv>
#include <cstring>

namespace veer {

std::optional<IpAddress> IpAddress::parse(std::string_view text) {
  // inet_pton needs a NUL-terminated string; anything longer than the
  // longest IPv6 text form cannot be an address.
  if (text.empty() || text.size() >= INET6_ADDRSTRLEN) return std::nullopt;
  const std::string s(text);
  IpAddress ip;
  if (inet_pton(AF_INET, s.c_str(), ip.bytes.data()) == 1) {
    ip.family = VEER_AF_INET;
    return ip;
  }
  if (inet_pton(AF_INET6, s.c_str(), ip.bytes.data()) == 1) {
    ip.family = VEER_AF_INET6;
    return ip;
  }
  return std::nullopt;
}

std::string IpAddress::to_string() const {
  char buf[INET6_ADDRSTRLEN] = {};
  if (family == VEER_AF_INET) {
    inet_ntop(AF_INET, bytes.data(), buf, sizeof buf);
  } else if (family == VEER_AF_INET6) {
    inet_ntop(AF_INET6, bytes.data(), buf, sizeof buf);
  } else {
    return "<none>";
  }
  return buf;
}

veer_addr IpAddress::to_abi() const {
  veer_addr a{};
  // Byte copy keeps network order: an IPv4 address lands in addr[0], the
  // rest stays zero because bytes[4..15] are zero for IPv4.
  if (family == VEER_AF_INET) {
    std::memcpy(&a.addr[0], bytes.data(), 4);
  } else {
    std::memcpy(a.addr, bytes.data(), 16);
  }
  return a;
}

IpAddress IpAddress::from_abi(const veer_addr& a, int family) {
  IpAddress ip;
  ip.family = family;
  std::memcpy(ip.bytes.data(), a.addr, family == VEER_AF_INET ? 4 : 16);
  return ip;
}

namespace {
std::optional<uint16_t> parse_port(std::string_view text) {
  if (text.empty() || text.size() > 5) return std::nullopt;
  unsigned value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc{} || end != text.data() + text.size()) return std::nullopt;
  if (value == 0 || value > 65535) return std::nullopt;
  return static_cast<uint16_t>(value);
}
}  // namespace

std::optional<Endpoint> Endpoint::parse(std::string_view text) {
  Endpoint ep;
  std::string_view host, port;
  if (!text.empty() && text.front() == '[') {
    const auto close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':')
      return std::nullopt;
    host = text.substr(1, close - 1);
    port = text.substr(close + 2);
    auto ip = IpAddress::parse(host);
    if (!ip || ip->family != VEER_AF_INET6) return std::nullopt;  // brackets are for IPv6 only
    ep.ip = *ip;
  } else {
    const auto colon = text.rfind(':');
    if (colon == std::string_view::npos) return std::nullopt;
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
    auto ip = IpAddress::parse(host);
    // An unbracketed IPv6 address is ambiguous ("fd00::2:80"): refused.
    if (!ip || ip->family != VEER_AF_INET) return std::nullopt;
    ep.ip = *ip;
  }
  auto p = parse_port(port);
  if (!p) return std::nullopt;
  ep.port = *p;
  return ep;
}

std::string Endpoint::to_string() const {
  if (ip.family == VEER_AF_INET6) return "[" + ip.to_string() + "]:" + std::to_string(port);
  return ip.to_string() + ":" + std::to_string(port);
}

}  // namespace veer
