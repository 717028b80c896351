#include "veer/host_port.h"

#include <boost/asio/ip/address.hpp>
#include <cctype>
#include <charconv>

namespace veer::net {
namespace {

bool fail(std::string* error, std::string message) {
  if (error) *error = std::move(message);
  return false;
}

bool parse_port(std::string_view text, uint16_t& port) {
  if (text.empty() || text.size() > 5) return false;
  unsigned value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc{} || end != text.data() + text.size() || value > 65535) return false;
  port = static_cast<uint16_t>(value);
  return true;
}

bool valid_host_name(std::string_view host) {
  if (host.empty() || host.size() > 253) return false;
  for (char c : host) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
                    c == '-';
    if (!ok) return false;
  }
  return true;
}

// host[:port] or [v6][:port]; default_port when the port is absent and allowed.
bool parse_authority(std::string_view text, std::optional<uint16_t> default_port, HostPort& out,
                     std::string* error) {
  std::string_view host, port;
  bool have_port = false;
  if (!text.empty() && text.front() == '[') {
    const auto close = text.find(']');
    if (close == std::string_view::npos) return fail(error, "missing ']' after an IPv6 address");
    host = text.substr(1, close - 1);
    boost::system::error_code ec;
    boost::asio::ip::make_address_v6(std::string(host), ec);
    if (ec) return fail(error, "'" + std::string(host) + "' is not an IPv6 address");
    if (close + 1 < text.size()) {
      if (text[close + 1] != ':') return fail(error, "expected ':' after ']'");
      port = text.substr(close + 2);
      have_port = true;
    }
  } else {
    const auto colon = text.rfind(':');
    if (colon != std::string_view::npos) {
      if (text.find(':') != colon) return fail(error, "an IPv6 address needs brackets: [addr]:port");
      host = text.substr(0, colon);
      port = text.substr(colon + 1);
      have_port = true;
    } else {
      host = text;
    }
    if (!valid_host_name(host)) return fail(error, "'" + std::string(host) + "' is not a host name or address");
  }
  out.host = std::string(host);
  if (have_port) {
    if (!parse_port(port, out.port)) return fail(error, "'" + std::string(port) + "' is not a port (0-65535)");
  } else if (default_port) {
    out.port = *default_port;
  } else {
    return fail(error, "a port is required (host:port)");
  }
  return true;
}

}  // namespace

std::string HostPort::host_for_url() const {
  return host.find(':') != std::string::npos ? "[" + host + "]" : host;
}

std::optional<HostPort> parse_host_port(std::string_view text, std::string* error) {
  HostPort hp;
  if (!parse_authority(text, std::nullopt, hp, error)) return std::nullopt;
  return hp;
}

std::optional<HttpUrl> parse_http_url(std::string_view url, std::string* error) {
  for (unsigned char c : url)
    if (c <= 0x20 || c == 0x7f) {
      fail(error, "URL contains a space or control character");
      return std::nullopt;
    }
  const auto scheme_end = url.find("://");
  if (scheme_end == std::string_view::npos) {
    fail(error, "URL must start with http:// or https://");
    return std::nullopt;
  }
  std::string scheme(url.substr(0, scheme_end));
  for (auto& c : scheme) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (scheme != "http" && scheme != "https") {
    fail(error, "scheme '" + scheme + "' is not supported (only http:// and https://)");
    return std::nullopt;
  }
  std::string_view rest = url.substr(scheme_end + 3);
  if (const auto hash = rest.find('#'); hash != std::string_view::npos) rest = rest.substr(0, hash);
  const auto path_start = rest.find_first_of("/?");
  const std::string_view authority = rest.substr(0, path_start);
  if (authority.find('@') != std::string_view::npos) {
    fail(error, "user info in the URL is not supported");
    return std::nullopt;
  }
  HttpUrl out;
  out.https = scheme == "https";
  if (!parse_authority(authority, out.https ? 443 : 80, out.authority, error)) return std::nullopt;
  if (out.authority.port == 0) {
    fail(error, "port 0 is not a valid destination");
    return std::nullopt;
  }
  out.target = path_start == std::string_view::npos ? "/" : std::string(rest.substr(path_start));
  if (out.target.front() == '?') out.target.insert(0, "/");
  return out;
}

}  // namespace veer::net
