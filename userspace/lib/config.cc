// SPEC §4 config: YAML -> Config, validated as a whole. Every refusal is a
// ConfigError naming the file, the 1-based line and column of the offending
// node, and the reason. Nothing is returned unless everything is valid.
#include "veer/config.h"

#include <yaml-cpp/yaml.h>

#include <fcntl.h>
#include <unistd.h>

#include <array>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <map>
#include <optional>
#include <tuple>

namespace veer {

std::string to_string(AttachMode m) {
  switch (m) {
    case AttachMode::Auto: return "auto";
    case AttachMode::Xdp: return "xdp";
    case AttachMode::XdpGeneric: return "xdp-generic";
    case AttachMode::Tc: return "tc";
  }
  return "?";
}

std::string to_string(Protocol p) { return p == Protocol::Tcp ? "tcp" : "udp"; }

std::string to_string(Affinity a) { return a == Affinity::Connection ? "connection" : "client-ip"; }

int ServiceConfig::variant_index(std::string_view n) const {
  for (size_t i = 0; i < variants.size(); ++i)
    if (variants[i].name == n) return static_cast<int>(i);
  return -1;
}

const ServiceConfig* Config::find_service(std::string_view n) const {
  for (const auto& s : services)
    if (s.name == n) return &s;
  return nullptr;
}

namespace {
std::string format_error(const std::string& file, int line, int column, const std::string& reason) {
  if (line <= 0) return file + ": " + reason;  // no position (e.g. the file cannot be read)
  return file + ":" + std::to_string(line) + ":" + std::to_string(column) + ": " + reason;
}
}  // namespace

ConfigError::ConfigError(std::string file, int line, int column, std::string reason)
    : std::runtime_error(format_error(file, line, column, reason)),
      file_(std::move(file)),
      line_(line),
      column_(column),
      reason_(std::move(reason)) {}

std::optional<uint32_t> parse_weight_bp(std::string_view text) {
  // Digits, optionally '.' and one or two digits. Parsed as text, never as a
  // double, so 0.01 % resolution is exact.
  const auto dot = text.find('.');
  const std::string_view whole = text.substr(0, dot);
  const std::string_view frac = dot == std::string_view::npos ? std::string_view{} : text.substr(dot + 1);
  if (whole.empty() || whole.size() > 3) return std::nullopt;
  if (dot != std::string_view::npos && (frac.empty() || frac.size() > 2)) return std::nullopt;
  uint32_t value = 0;
  for (char c : whole) {
    if (c < '0' || c > '9') return std::nullopt;
    value = value * 10 + static_cast<uint32_t>(c - '0');
  }
  value *= 100;
  for (size_t i = 0; i < 2; ++i) {
    const char c = i < frac.size() ? frac[i] : '0';
    if (c < '0' || c > '9') return std::nullopt;
    value += static_cast<uint32_t>(c - '0') * (i == 0 ? 10 : 1);
  }
  if (value > VEER_WEIGHT_TOTAL) return std::nullopt;
  return value;
}

std::string format_weight(uint32_t bp) {
  char frac[3] = {static_cast<char>('0' + (bp % 100) / 10), static_cast<char>('0' + bp % 10), 0};
  return std::to_string(bp / 100) + "." + frac;
}

namespace {

using Mark = YAML::Mark;

// One "key: value" of a mapping, with the key's position: a null value
// (`vip:` with nothing after it) has no useful position of its own.
struct Field {
  std::string key;
  Mark key_mark;
  YAML::Node value;
};

class Parser {
 public:
  explicit Parser(std::string file) : file_(std::move(file)) {}

  Config parse(const YAML::Node& root);

 private:
  [[noreturn]] void fail(const Mark& m, const std::string& reason) const {
    throw ConfigError(file_, m.is_null() ? 0 : m.line + 1, m.is_null() ? 0 : m.column + 1, reason);
  }
  // Where to point for a value: the value itself, or its key if the value is null.
  static Mark where(const Field& f) {
    if (!f.value || f.value.IsNull() || f.value.Mark().is_null()) return f.key_mark;
    return f.value.Mark();
  }

  std::vector<Field> entries(const YAML::Node& map, const Mark& at, const std::string& what) const;
  std::vector<Field> fields(const YAML::Node& map, const Mark& at, const std::string& what,
                            std::initializer_list<std::string_view> allowed) const;
  std::string scalar(const Field& f, const std::string& what) const;
  uint64_t integer(const Field& f, const std::string& what, uint64_t min, uint64_t max, bool hex_ok) const;
  std::string absolute_path(const Field& f) const;

  NodeConfig parse_node(const Field& f) const;
  ServiceConfig parse_service(const YAML::Node& n, std::vector<std::string>& warnings) const;
  void parse_variants(const Field& f, ServiceConfig& svc) const;
  void parse_weights(const Field& f, ServiceConfig& svc, std::vector<std::pair<Mark, Field>>& ws) const;

  std::string file_;
};

std::vector<Field> Parser::entries(const YAML::Node& map, const Mark& at, const std::string& what) const {
  if (!map || !map.IsMap()) fail(map && !map.Mark().is_null() && !map.IsNull() ? map.Mark() : at, what + " must be a mapping");
  std::vector<Field> out;
  std::map<std::string, Mark> seen;
  for (auto it = map.begin(); it != map.end(); ++it) {
    if (!it->first.IsScalar()) fail(it->first.Mark(), "keys of " + what + " must be plain names");
    Field f{it->first.Scalar(), it->first.Mark(), it->second};
    if (auto [pos, fresh] = seen.emplace(f.key, f.key_mark); !fresh)
      fail(f.key_mark, "duplicate key '" + f.key + "' in " + what + " (first at line " +
                           std::to_string(pos->second.line + 1) + ")");
    out.push_back(std::move(f));
  }
  return out;
}

std::vector<Field> Parser::fields(const YAML::Node& map, const Mark& at, const std::string& what,
                                  std::initializer_list<std::string_view> allowed) const {
  auto out = entries(map, at, what);
  for (const auto& f : out) {
    bool known = false;
    for (auto a : allowed) known |= (a == f.key);
    if (!known) {
      std::string list;
      for (auto a : allowed) list += (list.empty() ? "" : ", ") + std::string(a);
      fail(f.key_mark, "unknown key '" + f.key + "' in " + what + " (expected one of: " + list + ")");
    }
  }
  return out;
}

std::string Parser::scalar(const Field& f, const std::string& what) const {
  if (!f.value || f.value.IsNull()) fail(f.key_mark, what + " needs a value");
  if (!f.value.IsScalar()) fail(where(f), what + " must be a single value, not a list or mapping");
  return f.value.Scalar();
}

uint64_t Parser::integer(const Field& f, const std::string& what, uint64_t min, uint64_t max,
                         bool hex_ok) const {
  const std::string text = scalar(f, what);
  std::string_view digits = text;
  int base = 10;
  if (hex_ok && digits.size() > 2 && digits[0] == '0' && (digits[1] == 'x' || digits[1] == 'X')) {
    digits.remove_prefix(2);
    base = 16;
  }
  uint64_t value = 0;
  auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), value, base);
  const bool ok = !digits.empty() && ec == std::errc{} && end == digits.data() + digits.size() &&
                  value >= min && value <= max;
  if (!ok)
    fail(where(f), what + " must be an integer " + std::to_string(min) + ".." + std::to_string(max) +
                       (hex_ok ? " (decimal or 0x hex)" : "") + ", got '" + text + "'");
  return value;
}

std::string Parser::absolute_path(const Field& f) const {
  std::string p = scalar(f, f.key);
  if (p.empty() || p[0] != '/') fail(where(f), f.key + " must be an absolute path, got '" + p + "'");
  if (p.size() > 4095) fail(where(f), f.key + " is too long");
  return p;
}

bool valid_interface_name(std::string_view n) {
  // The kernel's dev_valid_name(): 1..15 bytes, not "." or "..", no '/', ':' or whitespace.
  if (n.empty() || n.size() > 15 || n == "." || n == "..") return false;
  for (unsigned char c : n)
    if (c == '/' || c == ':' || std::isspace(c) || c < 0x20) return false;
  return true;
}

bool valid_service_name(std::string_view n) {
  if (n.empty() || n.size() > 32) return false;
  for (size_t i = 0; i < n.size(); ++i) {
    const char c = n[i];
    const bool alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
    if (!alnum && (i == 0 || (c != '_' && c != '-'))) return false;
  }
  return true;
}

bool valid_variant_name(std::string_view n) {
  if (n.empty() || n.size() > 32) return false;
  for (char c : n) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

bool valid_listen(std::string_view text) {
  if (Endpoint::parse(text)) return true;
  // host name:port, e.g. localhost:9469
  const auto colon = text.rfind(':');
  if (colon == std::string_view::npos || colon == 0 || colon > 253) return false;
  for (char c : text.substr(0, colon)) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '-';
    if (!ok) return false;
  }
  // Reuse the endpoint port rules through a dummy address.
  return Endpoint::parse("0.0.0.0" + std::string(text.substr(colon))).has_value();
}

NodeConfig Parser::parse_node(const Field& nf) const {
  NodeConfig node;
  auto fs = fields(nf.value, where(nf), "node",
                   {"interfaces", "attach", "hash_seed", "flow_table_size", "socket", "pin_path", "state_dir",
                    "metrics_listen"});
  bool have_interfaces = false;
  for (const auto& f : fs) {
    if (f.key == "interfaces") {
      have_interfaces = true;
      if (!f.value || !f.value.IsSequence() || f.value.size() == 0)
        fail(where(f), "node.interfaces must be a non-empty list of interface names");
      std::map<std::string, Mark> seen;
      for (const auto& item : f.value) {
        if (!item.IsScalar()) fail(item.Mark(), "node.interfaces: each entry must be an interface name");
        const std::string name = item.Scalar();
        if (!valid_interface_name(name))
          fail(item.Mark(), "interface name '" + name +
                                "' is invalid (1..15 characters, no '/', ':' or whitespace)");
        if (auto [pos, fresh] = seen.emplace(name, item.Mark()); !fresh)
          fail(item.Mark(), "interface '" + name + "' is listed twice");
        node.interfaces.push_back(name);
      }
    } else if (f.key == "attach") {
      const std::string a = scalar(f, "attach");
      if (a == "auto") node.attach = AttachMode::Auto;
      else if (a == "xdp") node.attach = AttachMode::Xdp;
      else if (a == "xdp-generic") node.attach = AttachMode::XdpGeneric;
      else if (a == "tc") node.attach = AttachMode::Tc;
      else fail(where(f), "attach must be one of auto, xdp, xdp-generic, tc; got '" + a + "'");
    } else if (f.key == "hash_seed") {
      node.hash_seed = static_cast<uint32_t>(integer(f, "hash_seed", 0, 0xffffffffu, true));
    } else if (f.key == "flow_table_size") {
      node.flow_table_size = static_cast<uint32_t>(integer(f, "flow_table_size", 1024, 134217728, false));
    } else if (f.key == "socket") {
      node.socket = absolute_path(f);
      // sockaddr_un.sun_path holds 108 bytes including the NUL.
      if (node.socket.size() > 107) fail(where(f), "socket path is longer than 107 bytes");
    } else if (f.key == "pin_path") {
      node.pin_path = absolute_path(f);
    } else if (f.key == "state_dir") {
      node.state_dir = absolute_path(f);
    } else if (f.key == "metrics_listen") {
      node.metrics_listen = scalar(f, "metrics_listen");
      if (!valid_listen(node.metrics_listen))
        fail(where(f), "metrics_listen must be host:port (e.g. 127.0.0.1:9469 or [::1]:9469), got '" +
                           node.metrics_listen + "'");
    }
  }
  if (!have_interfaces) fail(nf.key_mark, "node.interfaces is required");
  return node;
}

void Parser::parse_variants(const Field& f, ServiceConfig& svc) const {
  auto vs = entries(f.value, where(f), "variants of service '" + svc.name + "'");
  if (vs.empty()) fail(where(f), "service '" + svc.name + "' needs 1 to 8 variants, has 0");
  std::map<Endpoint, Mark, bool (*)(const Endpoint&, const Endpoint&)> seen_backends(
      [](const Endpoint& a, const Endpoint& b) {
        return std::tie(a.ip.family, a.ip.bytes, a.port) < std::tie(b.ip.family, b.ip.bytes, b.port);
      });
  for (size_t i = 0; i < vs.size(); ++i) {
    const auto& vf = vs[i];
    if (i >= VEER_MAX_VARIANTS)
      fail(vf.key_mark, "too many variants in service '" + svc.name + "': at most 8");
    if (!valid_variant_name(vf.key))
      fail(vf.key_mark, "variant name '" + vf.key + "' is invalid (1..32 of A-Z a-z 0-9 _ -)");
    VariantConfig v;
    v.name = vf.key;
    const std::string what = "variant '" + v.name + "'";
    bool have_backends = false;
    for (const auto& k : fields(vf.value, where(vf), what, {"backends", "metrics_url"})) {
      if (k.key == "backends") {
        have_backends = true;
        if (!k.value || !(k.value.IsSequence() || k.value.IsNull()))
          fail(where(k), what + ": backends must be a list of \"ip:port\"");
        const size_t n = k.value.IsSequence() ? k.value.size() : 0;
        if (n == 0 || n > VEER_MAX_BACKENDS)
          fail(where(k), what + " needs 1 to 64 backends, has " + std::to_string(n));
        for (const auto& item : k.value) {
          if (!item.IsScalar()) fail(item.Mark(), what + ": each backend must be \"ip:port\"");
          const std::string text = item.Scalar();
          auto ep = Endpoint::parse(text);
          if (!ep)
            fail(item.Mark(), "backend '" + text + "' is not ip:port or [ipv6]:port with port 1..65535");
          if (ep->ip.family != svc.vip.family)
            fail(item.Mark(), "backend '" + text + "' is " +
                                  (ep->ip.family == VEER_AF_INET ? "IPv4" : "IPv6") + " but vip " +
                                  svc.vip.to_string() + " is " +
                                  (svc.vip.family == VEER_AF_INET ? "IPv4" : "IPv6"));
          if (auto [pos, fresh] = seen_backends.emplace(*ep, item.Mark()); !fresh)
            fail(item.Mark(), "backend '" + text + "' appears twice in service '" + svc.name +
                                  "' (first at line " + std::to_string(pos->second.line + 1) + ")");
          v.backends.push_back(*ep);
        }
      } else if (k.key == "metrics_url") {
        v.metrics_url = scalar(k, "metrics_url");
        const bool http = v.metrics_url.rfind("http://", 0) == 0 && v.metrics_url.size() > 7;
        const bool https = v.metrics_url.rfind("https://", 0) == 0 && v.metrics_url.size() > 8;
        if (!http && !https)
          fail(where(k), "metrics_url must be an http:// or https:// URL, got '" + v.metrics_url + "'");
      }
    }
    if (!have_backends) fail(vf.key_mark, what + " needs backends");
    svc.variants.push_back(std::move(v));
  }
}

ServiceConfig Parser::parse_service(const YAML::Node& n, std::vector<std::string>& warnings) const {
  ServiceConfig svc;
  auto fs = fields(n, n.Mark(), "service",
                   {"name", "vip", "port", "protocol", "affinity", "stable", "variants", "weights", "rollout"});
  auto find = [&](std::string_view key) -> const Field* {
    for (const auto& f : fs)
      if (f.key == key) return &f;
    return nullptr;
  };
  auto require = [&](std::string_view key) -> const Field& {
    const Field* f = find(key);
    if (!f) fail(n.Mark(), "service is missing required key '" + std::string(key) + "'");
    return *f;
  };
  // Fixed order so that later checks can rely on earlier values (backends
  // need the vip's family, weights and stable need the variants).
  {
    const Field& f = require("name");
    svc.name = scalar(f, "name");
    if (!valid_service_name(svc.name))
      fail(where(f), "service name '" + svc.name + "' is invalid (1..32 of a-z 0-9 _ -, starting a-z or 0-9)");
  }
  const std::string what = "service '" + svc.name + "'";
  {
    const Field& f = require("vip");
    const std::string text = scalar(f, "vip");
    auto ip = IpAddress::parse(text);
    if (!ip) fail(where(f), "vip '" + text + "' is not an IPv4 or IPv6 address");
    svc.vip = *ip;
  }
  svc.port = static_cast<uint16_t>(integer(require("port"), "port", 1, 65535, false));
  if (const Field* f = find("protocol")) {
    const std::string p = scalar(*f, "protocol");
    if (p == "tcp") svc.protocol = Protocol::Tcp;
    else if (p == "udp") svc.protocol = Protocol::Udp;
    else fail(where(*f), "protocol must be tcp or udp, got '" + p + "'");
  }
  if (const Field* f = find("affinity")) {
    const std::string a = scalar(*f, "affinity");
    if (a == "connection") svc.affinity = Affinity::Connection;
    else if (a == "client-ip") svc.affinity = Affinity::ClientIp;
    else fail(where(*f), "affinity must be connection or client-ip, got '" + a + "'");
  }
  parse_variants(require("variants"), svc);
  {
    const Field& f = require("stable");
    svc.stable = scalar(f, "stable");
    if (svc.stable_index() < 0) fail(where(f), "stable '" + svc.stable + "' is not a variant of " + what);
  }
  svc.weights_bp.assign(svc.variants.size(), 0);
  if (const Field* f = find("weights")) {
    uint32_t sum = 0;
    for (const auto& w : entries(f->value, where(*f), "weights of " + what)) {
      const int v = svc.variant_index(w.key);
      if (v < 0) fail(w.key_mark, "weights: '" + w.key + "' is not a variant of " + what);
      const std::string text = scalar(w, "weight of '" + w.key + "'");
      auto bp = parse_weight_bp(text);
      if (!bp)
        fail(where(w), "weight of '" + w.key + "' must be a number 0..100 with at most two decimals, got '" +
                           text + "'");
      svc.weights_bp[static_cast<size_t>(v)] = *bp;
      sum += *bp;
    }
    if (sum != VEER_WEIGHT_TOTAL)
      fail(where(*f), "weights of " + what + " sum to " + format_weight(sum) + ", not 100");
  } else {
    // No weights: everything on the stable variant.
    svc.weights_bp[static_cast<size_t>(svc.stable_index())] = VEER_WEIGHT_TOTAL;
  }
  if (const Field* f = find("rollout")) {
    warnings.push_back(format_error(file_, f->key_mark.line + 1, f->key_mark.column + 1,
                                    what + ": 'rollout' is not implemented yet and is ignored"));
  }
  return svc;
}

Config Parser::parse(const YAML::Node& root) {
  Config cfg;
  if (!root || root.IsNull()) throw ConfigError(file_, 1, 1, "the config is empty");
  auto fs = fields(root, root.Mark(), "the config", {"node", "services"});
  const Field* node = nullptr;
  const Field* services = nullptr;
  for (const auto& f : fs) (f.key == "node" ? node : services) = &f;
  if (!node) fail(root.Mark(), "the config is missing required key 'node'");
  if (!services) fail(root.Mark(), "the config is missing required key 'services'");
  cfg.node = parse_node(*node);

  if (!services->value || !services->value.IsSequence() || services->value.size() == 0)
    fail(where(*services), "services must be a list of 1 to 64 services");
  std::map<std::string, Mark> names;
  std::map<std::tuple<int, std::array<uint8_t, 16>, uint16_t, Protocol>, std::string> keys;
  size_t i = 0;
  for (const auto& item : services->value) {
    if (i++ >= VEER_MAX_SERVICES) fail(item.Mark(), "too many services: at most 64");
    ServiceConfig svc = parse_service(item, cfg.warnings);
    if (auto [pos, fresh] = names.emplace(svc.name, item.Mark()); !fresh)
      fail(item.Mark(), "duplicate service name '" + svc.name + "' (first at line " +
                            std::to_string(pos->second.line + 1) + ")");
    auto key = std::make_tuple(svc.vip.family, svc.vip.bytes, svc.port, svc.protocol);
    if (auto [pos, fresh] = keys.emplace(key, svc.name); !fresh)
      fail(item.Mark(), "service '" + svc.name + "' has the same vip, port and protocol as service '" +
                            pos->second + "' (" + Endpoint{svc.vip, svc.port}.to_string() + "/" +
                            to_string(svc.protocol) + ")");
    cfg.services.push_back(std::move(svc));
  }
  return cfg;
}

}  // namespace

Config parse_config(std::string_view yaml_text, const std::string& file_name) {
  YAML::Node root;
  try {
    root = YAML::Load(std::string(yaml_text));
  } catch (const YAML::Exception& e) {
    // ParserException and friends: the mark is the syntax error's position.
    throw ConfigError(file_name, e.mark.is_null() ? 1 : e.mark.line + 1, e.mark.is_null() ? 1 : e.mark.column + 1,
                      "YAML syntax error: " + e.msg);
  }
  try {
    return Parser(file_name).parse(root);
  } catch (const ConfigError&) {
    throw;
  } catch (const YAML::Exception& e) {
    // Should not happen (scalars are read as text), but never escape as a
    // non-ConfigError.
    throw ConfigError(file_name, e.mark.is_null() ? 0 : e.mark.line + 1, e.mark.is_null() ? 0 : e.mark.column + 1,
                      std::string("invalid config: ") + e.msg);
  }
}

Config load_config_file(const std::string& path) {
  auto unreadable = [&](int err) {
    return ConfigError(path, 0, 0, std::string("cannot read config file: ") + std::strerror(err));
  };
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw unreadable(errno);
  std::string text;
  char buf[65536];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int err = errno;  // e.g. EISDIR
      ::close(fd);
      throw unreadable(err);
    }
    if (n == 0) break;
    text.append(buf, static_cast<size_t>(n));
    if (text.size() > (16u << 20)) {
      ::close(fd);
      throw ConfigError(path, 0, 0, "config file is larger than 16 MiB");
    }
  }
  ::close(fd);
  return parse_config(text, path);
}

}  // namespace veer
