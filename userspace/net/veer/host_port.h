// "host:port" and http:// / https:// URLs as veerd's HTTP pieces accept them.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace veer::net {

struct HostPort {
  std::string host;  // IPv6 without brackets; a name or an IPv4 literal as given
  uint16_t port = 0;
  // Host as it goes into a URL or a Host header: IPv6 in brackets.
  std::string host_for_url() const;
};

// "127.0.0.1:9469", "[::1]:9469", "localhost:9469". Port 0..65535 (0: an
// ephemeral port, for tests). nullopt with *error set for anything else
// (an unbracketed IPv6 address is ambiguous and refused).
std::optional<HostPort> parse_host_port(std::string_view text, std::string* error = nullptr);

struct HttpUrl {
  bool https = false;  // https://: the exchange runs over TLS
  HostPort authority;  // port 80 (https: 443) when the URL names none
  std::string target;  // path and query, "/" when the URL has no path
};

// http[s]://host[:port][/path[?query]]. nullopt with *error set for other
// schemes, user info, a bad host or port, control characters or spaces; a
// #fragment is dropped. Whether https can be spoken is the caller's business
// (it needs a TLS configuration).
std::optional<HttpUrl> parse_http_url(std::string_view url, std::string* error = nullptr);

}  // namespace veer::net
