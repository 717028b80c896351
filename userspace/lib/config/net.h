// Addresses and endpoints as the config, the CLI and the maps see them.
#pragma once
#include <linux/types.h>

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

extern "C" {
#include "veer/abi.h"
}

namespace veer {

struct IpAddress {
  int family = 0;                   // VEER_AF_INET or VEER_AF_INET6
  std::array<uint8_t, 16> bytes{};  // network order; IPv4 in bytes[0..3], rest zero

  static std::optional<IpAddress> parse(std::string_view text);
  std::string to_string() const;
  veer_addr to_abi() const;  // IPv4 in addr[0], network order
  static IpAddress from_abi(const veer_addr& a, int family);
  bool operator==(const IpAddress&) const = default;
};

struct Endpoint {
  IpAddress ip;
  uint16_t port = 0;  // host order
  // "10.1.1.2:8080" or "[fd00::2]:8080"
  static std::optional<Endpoint> parse(std::string_view text);
  std::string to_string() const;
  bool operator==(const Endpoint&) const = default;
};

}  // namespace veer
