// SPEC §4 config: YAML -> Config, validated as a whole. Every refusal is a
// ConfigError naming the file, the 1-based line and column of the offending
// node, and the reason. Nothing is returned unless everything is valid.
#include "config/config.h"
#include "rollout/promql.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <yaml-cpp/yaml.h>

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <tuple>

#include "config/openssl_errors.h"

namespace veer {

std::string to_string(AttachMode m) {
  switch (m) {
    case AttachMode::Auto: return "auto";
    case AttachMode::Xdp: return "xdp";
    case AttachMode::XdpGeneric: return "xdp-generic";
    case AttachMode::Tc: return "tc";
    case AttachMode::ClsBpf: return "cls_bpf";
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
  ClusterConfig parse_cluster(const Field& f) const;
  ClusterTlsConfig parse_cluster_tls(const Field& f) const;
  std::string pem_file_path(const Field& f, const std::string& what) const;
  ServiceConfig parse_service(const YAML::Node& n, std::vector<std::string>& warnings) const;
  void parse_variants(const Field& f, ServiceConfig& svc) const;
  void parse_weights(const Field& f, ServiceConfig& svc, std::vector<std::pair<Mark, Field>>& ws) const;

  // rollout (SPEC §4/§5)
  enum class GateContext { Canary, PrePromotion, PostPromotion };
  RolloutConfig parse_rollout(const Field& f, const ServiceConfig& svc) const;
  std::vector<GateConfig> parse_gates(const Field& f, const ServiceConfig& svc, const std::string& test_variant,
                                      GateContext ctx) const;
  GateConfig parse_gate(const YAML::Node& n, const ServiceConfig& svc, const std::string& test_variant,
                        GateContext ctx) const;
  std::vector<CanaryStep> parse_steps(const Field& f, const ServiceConfig& svc, int canary) const;
  PrePromotion parse_pre_promotion(const Field& f, const ServiceConfig& svc, const std::string& preview) const;
  PostPromotion parse_post_promotion(const Field& f, const ServiceConfig& svc, const std::string& preview) const;
  double number(const Field& f, const std::string& what) const;
  bool boolean(const Field& f, const std::string& what) const;
  Millis duration(const Field& f, const std::string& what) const;

  std::string file_;
  mutable std::vector<std::string> warnings_;  // collected by const parse_* helpers, moved into Config
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

bool valid_node_name(std::string_view n) {
  if (n.empty() || n.size() > 63) return false;
  for (char c : n) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

bool valid_cluster_prefix(std::string_view p) {
  if (p.size() < 2 || p.size() > 128 || p.front() != '/' || p.back() == '/') return false;
  for (char c : p) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '/' || c == '.' || c == '_' || c == '-';
    if (!ok) return false;
  }
  return p.find("//") == std::string_view::npos;
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
                    "metrics_listen", "handshake_timeout", "udp_idle_timeout"});
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
      else if (a == "cls_bpf") node.attach = AttachMode::ClsBpf;
      else fail(where(f), "attach must be one of auto, xdp, xdp-generic, tc, cls_bpf; got '" + a + "'");
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
    } else if (f.key == "handshake_timeout") {
      node.handshake_timeout = duration(f, "node.handshake_timeout");
      if (node.handshake_timeout < Millis{100} || node.handshake_timeout > Millis{600000})
        fail(where(f), "node.handshake_timeout must be between 100ms and 10m");
    } else if (f.key == "udp_idle_timeout") {
      node.udp_idle_timeout = duration(f, "node.udp_idle_timeout");
      if (node.udp_idle_timeout < Millis{100} || node.udp_idle_timeout > Millis{86400000})
        fail(where(f), "node.udp_idle_timeout must be between 100ms and 24h");
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

namespace {

// PATH's contents into TEXT: 0, or the errno that stopped it (EISDIR, EACCES, ...; EFBIG above LIMIT bytes).
int read_whole_file(const std::string& path, size_t limit, std::string& text) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return errno;
  char buf[65536];
  int err = 0;
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      err = errno;
      break;
    }
    if (n == 0) break;
    text.append(buf, static_cast<size_t>(n));
    if (text.size() > limit) {
      err = EFBIG;
      break;
    }
  }
  ::close(fd);
  return err;
}

struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};
struct KeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
using X509Ptr = std::unique_ptr<X509, X509Free>;
using KeyPtr = std::unique_ptr<EVP_PKEY, KeyFree>;

std::unique_ptr<BIO, BioFree> pem_bio(const std::string& text) {
  return std::unique_ptr<BIO, BioFree>(BIO_new_mem_buf(text.data(), static_cast<int>(text.size())));
}

// The first object READ finds in a PEM text (a certificate, a key); null, with OpenSSL's reason in *WHY, if none.
template <typename Object, typename Free, typename Read>
std::unique_ptr<Object, Free> read_pem(const std::string& pem, Read read, std::string* why) {
  ERR_clear_error();
  auto bio = pem_bio(pem);
  std::unique_ptr<Object, Free> object(bio ? read(bio.get(), nullptr, nullptr, nullptr) : nullptr);
  if (!object) *why = openssl_errors("no PEM block found");
  return object;
}

X509Ptr first_certificate(const std::string& pem, std::string* why) {
  return read_pem<X509, X509Free>(pem, &PEM_read_bio_X509, why);
}

KeyPtr private_key(const std::string& pem, std::string* why) {
  return read_pem<EVP_PKEY, KeyFree>(pem, &PEM_read_bio_PrivateKey, why);
}

}  // namespace

// cluster.tls's files: absolute, as veerd's other paths (it may run from any directory).
std::string Parser::pem_file_path(const Field& f, const std::string& what) const {
  const std::string path = scalar(f, what);
  if (path.empty() || path[0] != '/') fail(where(f), what + " must be an absolute path, got '" + path + "'");
  return path;
}

ClusterTlsConfig Parser::parse_cluster_tls(const Field& tf) const {
  ClusterTlsConfig t;
  Mark ca_at, cert_at, key_at;
  for (const auto& f : fields(tf.value, where(tf), "cluster.tls", {"ca", "cert", "key", "server_name"})) {
    if (f.key == "ca") {
      t.ca = pem_file_path(f, "cluster.tls.ca");
      ca_at = where(f);
    } else if (f.key == "cert") {
      t.cert = pem_file_path(f, "cluster.tls.cert");
      cert_at = where(f);
    } else if (f.key == "key") {
      t.key = pem_file_path(f, "cluster.tls.key");
      key_at = where(f);
    } else if (f.key == "server_name") {
      t.server_name = scalar(f, "cluster.tls.server_name");
      const bool ok = !t.server_name.empty() && t.server_name.size() <= 253 &&
                      std::all_of(t.server_name.begin(), t.server_name.end(), [](unsigned char ch) {
                        return std::isalnum(ch) || ch == '.' || ch == '-' || ch == ':' || ch == '_';
                      });
      if (!ok)
        fail(where(f), "cluster.tls.server_name must be a DNS name or an IP address, got '" + t.server_name + "'");
    }
  }
  if (t.ca.empty())
    fail(tf.key_mark, "cluster.tls.ca is required: the CA file that verifies etcd's server certificate");
  if (t.cert.empty() != t.key.empty())
    fail(t.cert.empty() ? key_at : cert_at,
         "cluster.tls.cert and cluster.tls.key go together (a client certificate and its key): set both or neither");
  // Read and parsed now: a file veerd cannot use refuses the config instead of failing every etcd call later.
  auto read = [&](const std::string& path, const Mark& at, const char* what) {
    std::string text;
    if (const int err = read_whole_file(path, 1u << 20, text))
      fail(at, std::string(what) + ": cannot read '" + path + "': " + std::strerror(err));
    return text;
  };
  std::string why;
  if (!first_certificate(read(t.ca, ca_at, "cluster.tls.ca"), &why))
    fail(ca_at, "cluster.tls.ca: '" + t.ca + "' holds no PEM certificate: " + why);
  if (!t.cert.empty()) {
    const X509Ptr cert = first_certificate(read(t.cert, cert_at, "cluster.tls.cert"), &why);
    if (!cert) fail(cert_at, "cluster.tls.cert: '" + t.cert + "' holds no PEM certificate: " + why);
    const KeyPtr key = private_key(read(t.key, key_at, "cluster.tls.key"), &why);
    if (!key) fail(key_at, "cluster.tls.key: '" + t.key + "' holds no PEM private key: " + why);
    if (X509_check_private_key(cert.get(), key.get()) != 1) {
      ERR_clear_error();
      fail(key_at, "cluster.tls.key: '" + t.key + "' is not the key of the certificate '" + t.cert + "'");
    }
  }
  return t;
}

ClusterConfig Parser::parse_cluster(const Field& cf) const {
  ClusterConfig c;
  auto fs = fields(cf.value, where(cf), "cluster",
                   {"endpoints", "node_name", "prefix", "lease_ttl", "min_nodes", "tls"});
  bool have_endpoints = false;
  Mark first_endpoint_at, tls_at;
  for (const auto& f : fs) {
    if (f.key == "endpoints") {
      have_endpoints = true;
      if (!f.value || !f.value.IsSequence() || f.value.size() == 0 || f.value.size() > 16)
        fail(where(f), "cluster.endpoints must be a list of 1 to 16 etcd endpoints (http://HOST:PORT or https://HOST:PORT)");
      first_endpoint_at = f.value[0].Mark();
      for (const auto& item : f.value) {
        if (!item.IsScalar()) fail(item.Mark(), "cluster.endpoints: each entry must be http://HOST:PORT or https://HOST:PORT");
        const std::string e = item.Scalar();
        const bool https = e.rfind("https://", 0) == 0;
        if (!(https || e.rfind("http://", 0) == 0) || !valid_listen(e.substr(https ? 8 : 7)))
          fail(item.Mark(), "cluster.endpoints: '" + e + "' is not http://HOST:PORT or https://HOST:PORT");
        if (!c.endpoints.empty() && https != (c.endpoints[0].rfind("https://", 0) == 0))
          fail(item.Mark(), "cluster.endpoints: '" + e + "' and '" + c.endpoints[0] +
                                "' mix http and https: all endpoints are https:// (with cluster.tls) or all http://");
        for (const auto& seen : c.endpoints)
          if (seen == e) fail(item.Mark(), "cluster.endpoints: '" + e + "' is listed twice");
        c.endpoints.push_back(e);
      }
    } else if (f.key == "tls") {
      c.tls = parse_cluster_tls(f);
      tls_at = f.key_mark;
    } else if (f.key == "node_name") {
      c.node_name = scalar(f, "cluster.node_name");
      if (!valid_node_name(c.node_name))
        fail(where(f), "cluster.node_name must be 1 to 63 characters of a-z, A-Z, 0-9, '.', '_' or '-', got '" +
                           c.node_name + "'");
    } else if (f.key == "prefix") {
      c.prefix = scalar(f, "cluster.prefix");
      if (!valid_cluster_prefix(c.prefix))
        fail(where(f), "cluster.prefix must start with '/', not end with '/', and hold 2 to 128 characters of "
                       "a-z, A-Z, 0-9, '/', '.', '_' or '-', got '" + c.prefix + "'");
    } else if (f.key == "lease_ttl") {
      c.lease_ttl = duration(f, "cluster.lease_ttl");
      // etcd 3.4 grants at least about 2 s (its minimum TTL follows the election timeout), and whole seconds.
      if (c.lease_ttl < Millis{2000} || c.lease_ttl > Millis{600000} || c.lease_ttl.count() % 1000 != 0)
        fail(where(f), "cluster.lease_ttl must be whole seconds between 2s and 10m");
    } else if (f.key == "min_nodes") {
      c.min_nodes = static_cast<uint32_t>(integer(f, "cluster.min_nodes", 0, 1024, false));
    }
  }
  if (!have_endpoints) fail(cf.key_mark, "cluster.endpoints is required");
  const bool https = c.endpoints[0].rfind("https://", 0) == 0;
  if (https && !c.tls)
    fail(first_endpoint_at, "cluster.endpoints are https:// but cluster.tls is missing: "
                            "cluster.tls.ca (the CA that verifies etcd's certificate) is required");
  if (!https && c.tls)
    fail(tls_at, "cluster.tls is set but cluster.endpoints are http://: TLS to etcd needs https:// endpoints");
  if (c.node_name.empty()) {
    char host[256] = {};
    if (::gethostname(host, sizeof host - 1) != 0 || !valid_node_name(host))
      fail(cf.key_mark, "cluster.node_name is not set and the host name '" + std::string(host) +
                            "' is not a valid node name: set cluster.node_name");
    c.node_name = host;
  }
  return c;
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
  (void)warnings;
  if (const Field* f = find("rollout")) svc.rollout = parse_rollout(*f, svc);
  return svc;
}

// ---------------------------------------------------------------------------
// rollout (SPEC §4/§5). Every bound that the engine relies on is checked here,
// so the engine never meets a config it cannot run.

double Parser::number(const Field& f, const std::string& what) const {
  const std::string text = scalar(f, what);
  double value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || ec != std::errc{} || end != text.data() + text.size() || !std::isfinite(value))
    fail(where(f), what + " must be a number, got '" + text + "'");
  return value;
}

bool Parser::boolean(const Field& f, const std::string& what) const {
  const std::string text = scalar(f, what);
  if (text == "true") return true;
  if (text == "false") return false;
  fail(where(f), what + " must be true or false, got '" + text + "'");
}

Millis Parser::duration(const Field& f, const std::string& what) const {
  const std::string text = scalar(f, what);
  auto d = parse_duration(text);
  if (!d) fail(where(f), what + " must be a duration like 500ms, 5s, 10m, 1h or 1m30s, got '" + text + "'");
  return *d;
}

namespace {
bool valid_metric_name(std::string_view n) {
  if (n.empty() || n.size() > 64) return false;
  for (char c : n) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
                    c == '.' || c == ':' || c == '-';
    if (!ok) return false;
  }
  return true;
}
// Prometheus metric and label names: [a-zA-Z_:][a-zA-Z0-9_:]*.
bool valid_prometheus_name(std::string_view n, bool colon_ok) {
  if (n.empty() || n.size() > 200) return false;
  for (size_t i = 0; i < n.size(); ++i) {
    const char c = n[i];
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (colon_ok && c == ':') ||
                    (i > 0 && c >= '0' && c <= '9');
    if (!ok) return false;
  }
  return true;
}
}  // namespace

GateConfig Parser::parse_gate(const YAML::Node& n, const ServiceConfig& svc, const std::string& test_variant,
                              GateContext ctx) const {
  GateConfig g;
  const auto fs = fields(n, n.Mark(), "gate",
                         {"name", "metric", "source", "max", "min", "min_samples", "relative", "series", "label",
                          "histogram", "smoothing", "address", "query", "no_data"});
  auto find = [&](std::string_view key) -> const Field* {
    for (const auto& f : fs)
      if (f.key == key) return &f;
    return nullptr;
  };
  const Field* metric = find("metric");
  if (!metric) fail(n.Mark(), "gate is missing required key 'metric'");
  g.metric = scalar(*metric, "metric");
  if (!valid_metric_name(g.metric))
    fail(where(*metric), "metric name '" + g.metric + "' is invalid (1..64 of A-Z a-z 0-9 _ . : -)");
  g.name = g.metric;
  if (const Field* f = find("name")) {
    g.name = scalar(*f, "gate name");
    if (!valid_metric_name(g.name))
      fail(where(*f), "gate name '" + g.name + "' is invalid (1..64 of A-Z a-z 0-9 _ . : -)");
  }
  const std::string what = "gate '" + g.name + "'";
  // A drift gate over label counts (prediction_kl and its siblings): KL-like rules.
  const bool kl = is_label_metric(g.metric);

  // Source: required unless it has an obvious default (the kernel for what
  // the kernel measures; the probes in a pre-promotion).
  const Field* source = find("source");
  if (source) {
    const std::string s = scalar(*source, what + ": source");
    if (s == "kernel") g.source = GateSource::Kernel;
    else if (s == "prometheus") g.source = GateSource::Prometheus;
    else if (s == "push") g.source = GateSource::Push;
    else if (s == "probe") g.source = GateSource::Probe;
    else if (s == "promql") g.source = GateSource::PromQL;
    else fail(where(*source), what + ": source must be kernel, prometheus, promql, push or probe; got '" + s + "'");
  } else if (ctx == GateContext::PrePromotion) {
    g.source = GateSource::Probe;
  } else if (is_kernel_metric(g.metric)) {
    g.source = GateSource::Kernel;
  } else {
    fail(n.Mark(), what + " needs a source (kernel, prometheus, promql or push): '" + g.metric +
                       "' is not a kernel metric");
  }
  const Mark source_at = source ? where(*source) : n.Mark();
  if (g.source == GateSource::Kernel && !is_kernel_metric(g.metric))
    fail(source_at, what + ": the kernel does not measure '" + g.metric +
                        "' (it has latency_pNN_ms, error_rate, reset_rate, handshake_timeout_rate)");
  if (g.source == GateSource::Probe) {
    if (ctx != GateContext::PrePromotion)
      fail(source_at, what + ": source probe exists only in blue-green pre_promotion");
    if (!is_latency_metric(g.metric) && g.metric != "error_rate")
      fail(source_at, what + ": probes measure latency_pNN_ms and error_rate, not '" + g.metric + "'");
  }
  if (g.source == GateSource::Kernel && ctx == GateContext::PrePromotion)
    fail(source_at, what + ": no traffic reaches the preview before the switch, so the kernel cannot measure "
                           "it; use source probe, prometheus or push");

  for (const auto& f : fs) {
    if (f.key == "max") g.max = number(f, what + ": max");
    else if (f.key == "min") g.min = number(f, what + ": min");
    else if (f.key == "min_samples") g.min_samples = integer(f, what + ": min_samples", 0, 1000000000000ull, false);
    else if (f.key == "relative") g.relative = boolean(f, what + ": relative");
    else if (f.key == "smoothing") {
      if (g.metric != "prediction_kl" && g.metric != "prediction_psi")
        fail(f.key_mark, what + ": smoothing applies only to prediction_kl and prediction_psi");
      g.smoothing = number(f, what + ": smoothing");
      if (g.smoothing < 0) fail(where(f), what + ": smoothing must be >= 0");
    } else if (f.key == "address" || f.key == "query" || f.key == "no_data") {
      if (g.source != GateSource::PromQL) fail(f.key_mark, what + ": '" + f.key + "' applies only to source promql");
      std::string v = scalar(f, what + ": " + f.key);
      if (f.key == "address") {
        if (auto e = promql::address_error(v)) fail(where(f), what + ": address '" + v + "' " + *e);
        g.address = std::move(v);
      } else if (f.key == "query") {
        if (auto e = promql::template_error(v)) fail(where(f), what + ": query: " + *e);
        g.query = std::move(v);
      } else if (v == "inconclusive" || v == "fail") {
        g.no_data = v == "fail" ? NoDataPolicy::Fail : NoDataPolicy::Inconclusive;
      } else {
        fail(where(f), what + ": no_data must be inconclusive or fail; got '" + v + "'");
      }
    } else if (f.key == "label" && g.source == GateSource::PromQL) {
      if (!kl) fail(f.key_mark, what + ": a promql gate's 'label' names the class label of a prediction_* drift query");
      g.label = scalar(f, what + ": label");
      if (!valid_prometheus_name(g.label, false))
        fail(where(f), what + ": '" + g.label + "' is not a valid Prometheus label name");
    } else if (f.key == "series" || f.key == "label" || f.key == "histogram") {
      const bool prometheus_like = g.source == GateSource::Prometheus || (kl && g.source == GateSource::Push);
      if (!prometheus_like || (f.key != "series" && g.source != GateSource::Prometheus))
        fail(f.key_mark, what + ": '" + f.key + "' applies only to source prometheus" +
                             (f.key == "series" ? " (or a pushed prediction_* drift gate)" : ""));
      std::string v = scalar(f, what + ": " + f.key);
      if (g.source == GateSource::Prometheus && !valid_prometheus_name(v, f.key != "label"))
        fail(where(f), what + ": '" + v + "' is not a valid Prometheus " + (f.key == "label" ? "label" : "metric") +
                           " name");
      if (g.source == GateSource::Push && !valid_metric_name(v))
        fail(where(f), what + ": '" + v + "' is not a valid pushed metric prefix");
      (f.key == "series" ? g.series : f.key == "label" ? g.label : g.histogram) = std::move(v);
    }
  }
  if (!g.max && !g.min) fail(n.Mark(), what + " needs max, min or both");
  if (g.max && g.min && *g.min > *g.max)
    fail(where(*find("min")), what + ": min " + scalar(*find("min"), "min") + " is above max " +
                                  scalar(*find("max"), "max"));
  if (g.relative) {
    if (kl) fail(where(*find("relative")), what + ": " + g.metric + " already compares with the stable variant; "
                                                   "relative does not apply");
    if (ctx != GateContext::Canary)
      fail(where(*find("relative")), what + ": relative gates need the stable variant's traffic in the same "
                                             "window; they exist only for canary rollouts");
    if ((g.max && *g.max <= 0) || (g.min && *g.min < 0))
      fail(n.Mark(), what + ": relative bounds are ratios to the stable variant and must be positive");
  }
  if (kl && g.max && *g.max < 0) fail(where(*find("max")), what + ": a drift measure is never negative");
  if (g.metric == "prediction_chi2_p" && ((g.min && (*g.min <= 0 || *g.min >= 1)) || g.max))
    fail(n.Mark(), what + ": prediction_chi2_p is a p-value: give min (0 < min < 1, e.g. 0.001), no max");
  if (g.metric == "prediction_js" && g.max && *g.max > 0.8326)
    fail(where(*find("max")), what + ": a Jensen-Shannon distance (natural log) never exceeds sqrt(ln 2) = 0.8326");
  if (g.source == GateSource::Prometheus) {
    if (is_latency_metric(g.metric)) {
      if (g.histogram.empty())
        fail(n.Mark(), what + ": a prometheus latency gate needs 'histogram' (the histogram's base name)");
    } else if (g.series.empty()) {
      fail(n.Mark(), what + ": a prometheus gate needs 'series'");
    }
    if (kl && g.label.empty())
      fail(n.Mark(), what + ": " + g.metric + " from prometheus needs 'label' (the label holding the class)");
    // The daemon scrapes each variant's metrics_url; the stable's too when
    // the gate compares with it.
    const int test = svc.variant_index(test_variant);
    if (test >= 0 && svc.variants[static_cast<size_t>(test)].metrics_url.empty())
      fail(source_at, what + " reads prometheus, but variant '" + test_variant + "' has no metrics_url");
    // Without the stable's figures the gate can never be conclusive; a
    // warning, not a refusal, so that the SPEC §4 example (stable without
    // metrics_url) loads as written.
    const int stable = svc.stable_index();
    if ((kl || g.relative) && stable >= 0 && svc.variants[static_cast<size_t>(stable)].metrics_url.empty())
      warnings_.push_back(format_error(file_, source_at.line + 1, source_at.column + 1,
                                       what + " compares with the stable variant '" + svc.stable +
                                           "', which has no metrics_url: the gate stays Inconclusive "
                                           "(and the rollout holds after each pause) until it has one"));
  }
  if (g.source == GateSource::PromQL) {
    if (g.address.empty()) fail(n.Mark(), what + ": a promql gate needs 'address' (the Prometheus server's URL)");
    if (g.query.empty()) fail(n.Mark(), what + ": a promql gate needs 'query'");
    if (kl && g.label.empty())
      fail(n.Mark(), what + ": " + g.metric + " from promql needs 'label' (the label holding the class in the answer)");
    // An answer is a value, not a count of what it rests on; only label counts have a size.
    if (!kl && find("min_samples"))
      fail(where(*find("min_samples")),
           what + ": a promql answer carries no sample count; put the threshold into the query, e.g. "
                  "'<expr> and on() sum(increase(requests_total[1m])) > 100' (an empty answer is Inconclusive)");
  }
  if (kl && g.source == GateSource::Push && g.series.empty()) g.series = "prediction";
  if (kl && g.source == GateSource::Kernel) fail(source_at, what + ": the kernel does not see predictions");
  return g;
}

std::vector<GateConfig> Parser::parse_gates(const Field& f, const ServiceConfig& svc,
                                            const std::string& test_variant, GateContext ctx) const {
  if (!f.value || !(f.value.IsSequence() || f.value.IsNull()))
    fail(where(f), "gates must be a list of {metric: ..., max/min: ...}");
  std::vector<GateConfig> out;
  std::map<std::string, Mark> seen;
  if (f.value.IsNull()) return out;
  for (const auto& item : f.value) {
    GateConfig g = parse_gate(item, svc, test_variant, ctx);
    if (auto [pos, fresh] = seen.emplace(g.name, item.Mark()); !fresh)
      fail(item.Mark(), "two gates are named '" + g.name + "' (first at line " +
                            std::to_string(pos->second.line + 1) + "); give one of them a 'name'");
    out.push_back(std::move(g));
  }
  return out;
}

std::vector<CanaryStep> Parser::parse_steps(const Field& f, const ServiceConfig& svc, int canary) const {
  if (!f.value || !f.value.IsSequence() || f.value.size() == 0)
    fail(where(f), "steps must be a non-empty list of {set_weight: N} and {pause: D} / {pause: {}}");
  // Variants other than stable and canary keep their weight during a canary
  // rollout: the canary can have at most what the stable has with it.
  uint32_t others = 0;
  for (size_t i = 0; i < svc.variants.size(); ++i)
    if (static_cast<int>(i) != canary && static_cast<int>(i) != svc.stable_index()) others += svc.weights_bp[i];
  std::vector<CanaryStep> steps;
  for (const auto& item : f.value) {
    if (steps.size() >= 1000) fail(item.Mark(), "too many steps: at most 1000");
    const auto fs = fields(item, item.Mark(), "a step", {"set_weight", "pause"});
    if (fs.size() != 1) fail(item.Mark(), "each step is exactly one of set_weight or pause");
    const Field& s = fs[0];
    CanaryStep step;
    if (s.key == "set_weight") {
      step.kind = CanaryStep::Kind::SetWeight;
      const std::string text = scalar(s, "set_weight");
      auto bp = parse_weight_bp(text);
      if (!bp) fail(where(s), "set_weight must be a number 0..100 with at most two decimals, got '" + text + "'");
      if (*bp + others > VEER_WEIGHT_TOTAL)
        fail(where(s), "set_weight " + text + " leaves no room: the other variants hold " + format_weight(others) +
                           " % of the traffic");
      step.weight_bp = *bp;
    } else {
      step.kind = CanaryStep::Kind::Pause;
      if (s.value && s.value.IsMap()) {
        if (s.value.size() != 0) fail(where(s), "pause takes a duration, or {} to wait for promote");
        step.pause = std::nullopt;
      } else {
        step.pause = duration(s, "pause");
      }
    }
    steps.push_back(step);
  }
  return steps;
}

PrePromotion Parser::parse_pre_promotion(const Field& f, const ServiceConfig& svc,
                                         const std::string& preview) const {
  PrePromotion p;
  for (const auto& k : fields(f.value, where(f), "pre_promotion", {"requests", "path", "timeout", "gates"})) {
    if (k.key == "requests") p.requests = static_cast<uint32_t>(integer(k, "pre_promotion.requests", 1, 100000, false));
    else if (k.key == "path") {
      p.path = scalar(k, "pre_promotion.path");
      bool ok = !p.path.empty() && p.path[0] == '/' && p.path.size() <= 2048;
      for (unsigned char c : p.path) ok = ok && c > 0x20 && c < 0x7f;
      if (!ok) fail(where(k), "pre_promotion.path must start with '/' and hold no spaces or control bytes");
    } else if (k.key == "timeout") {
      p.timeout = duration(k, "pre_promotion.timeout");
    } else if (k.key == "gates") {
      p.gates = parse_gates(k, svc, preview, GateContext::PrePromotion);
    }
  }
  if (svc.protocol != Protocol::Tcp)
    fail(f.key_mark, "pre_promotion sends HTTP probe requests; service '" + svc.name + "' is udp");
  if (p.gates.empty()) fail(f.key_mark, "pre_promotion needs gates (what the probes must show)");
  return p;
}

PostPromotion Parser::parse_post_promotion(const Field& f, const ServiceConfig& svc,
                                           const std::string& preview) const {
  PostPromotion p;
  bool have_duration = false;
  for (const auto& k : fields(f.value, where(f), "post_promotion", {"duration", "gates"})) {
    if (k.key == "duration") {
      have_duration = true;
      p.duration = duration(k, "post_promotion.duration");
    } else {
      p.gates = parse_gates(k, svc, preview, GateContext::PostPromotion);
    }
  }
  if (!have_duration) fail(f.key_mark, "post_promotion needs a duration (how long to watch after the switch)");
  if (p.gates.empty()) fail(f.key_mark, "post_promotion needs gates (what breaches switch back)");
  return p;
}

RolloutConfig Parser::parse_rollout(const Field& rf, const ServiceConfig& svc) const {
  RolloutConfig r;
  const std::string what = "rollout of service '" + svc.name + "'";
  const auto fs = entries(rf.value, where(rf), what);
  auto find = [&](std::string_view key) -> const Field* {
    for (const auto& f : fs)
      if (f.key == key) return &f;
    return nullptr;
  };
  const Field* strategy = find("strategy");
  if (!strategy) fail(rf.key_mark, what + " is missing required key 'strategy' (canary, blue-green or ab)");
  const std::string sname = scalar(*strategy, "strategy");
  std::vector<std::string_view> allowed{"strategy", "interval", "failure_limit"};
  if (sname == "canary") {
    r.strategy = RolloutStrategy::Canary;
    allowed.insert(allowed.end(), {"canary", "steps", "gates"});
  } else if (sname == "blue-green") {
    r.strategy = RolloutStrategy::BlueGreen;
    allowed.insert(allowed.end(), {"active", "preview", "pre_promotion", "auto_promote", "post_promotion"});
  } else if (sname == "ab") {
    r.strategy = RolloutStrategy::Ab;
    allowed.insert(allowed.end(), {"metric", "alpha", "power", "min_detectable_effect"});
  } else {
    fail(where(*strategy), "strategy must be canary, blue-green or ab; got '" + sname + "'");
  }
  for (const auto& f : fs) {
    bool known = false;
    for (auto a : allowed) known |= (a == f.key);
    if (!known) {
      std::string list;
      for (auto a : allowed) list += (list.empty() ? "" : ", ") + std::string(a);
      fail(f.key_mark, "unknown key '" + f.key + "' in a " + sname + " rollout (expected one of: " + list + ")");
    }
  }
  if (const Field* f = find("interval")) {
    r.interval = duration(*f, "interval");
    if (r.interval < Millis{100} || r.interval > Millis{3600000})
      fail(where(*f), "interval must be between 100ms and 1h");
  }
  if (const Field* f = find("failure_limit"))
    r.failure_limit = static_cast<uint32_t>(integer(*f, "failure_limit", 0, 1000000, false));

  auto variant_field = [&](std::string_view key, bool required) -> std::string {
    const Field* f = find(key);
    if (!f) {
      if (required) fail(rf.key_mark, what + " is missing required key '" + std::string(key) + "'");
      return {};
    }
    std::string v = scalar(*f, std::string(key));
    if (svc.variant_index(v) < 0) fail(where(*f), std::string(key) + " '" + v + "' is not a variant of service '" +
                                                      svc.name + "'");
    return v;
  };

  switch (r.strategy) {
    case RolloutStrategy::Canary: {
      r.canary = variant_field("canary", true);
      if (r.canary == svc.stable)
        fail(where(*find("canary")), "canary '" + r.canary + "' is the stable variant; the canary must differ");
      const Field* steps = find("steps");
      if (!steps) fail(rf.key_mark, what + " is missing required key 'steps'");
      r.steps = parse_steps(*steps, svc, svc.variant_index(r.canary));
      if (const Field* g = find("gates")) r.gates = parse_gates(*g, svc, r.canary, GateContext::Canary);
      break;
    }
    case RolloutStrategy::BlueGreen: {
      r.active = variant_field("active", false);
      if (r.active.empty()) r.active = svc.stable;
      if (r.active != svc.stable)
        fail(where(*find("active")), "active '" + r.active + "' must be the stable variant '" + svc.stable +
                                         "' (the variant that serves now)");
      r.preview = variant_field("preview", true);
      if (r.preview == r.active)
        fail(where(*find("preview")), "preview '" + r.preview + "' is the active variant; it must differ");
      if (const Field* f = find("pre_promotion")) r.pre_promotion = parse_pre_promotion(*f, svc, r.preview);
      if (const Field* f = find("auto_promote")) r.auto_promote = boolean(*f, "auto_promote");
      if (const Field* f = find("post_promotion")) r.post_promotion = parse_post_promotion(*f, svc, r.preview);
      break;
    }
    case RolloutStrategy::Ab: {
      // One client must stay in one variant for the whole experiment, or the
      // arms are not independent samples.
      if (svc.affinity != Affinity::ClientIp)
        fail(where(*strategy), "an ab rollout needs 'affinity: client-ip' on service '" + svc.name +
                                   "' so that each client stays in one variant");
      int live = 0;
      for (uint32_t w : svc.weights_bp) live += w > 0;
      if (live < 2) fail(where(*strategy), "an ab rollout needs 'weights' with at least two variants above 0");
      const Field* m = find("metric");
      if (!m) fail(rf.key_mark, what + " is missing required key 'metric' ({name: ..., kind: proportion|mean})");
      bool have_name = false;
      for (const auto& k : fields(m->value, where(*m), "metric", {"name", "kind"})) {
        if (k.key == "name") {
          have_name = true;
          r.metric.name = scalar(k, "metric.name");
          if (!valid_metric_name(r.metric.name))
            fail(where(k), "metric name '" + r.metric.name + "' is invalid (1..64 of A-Z a-z 0-9 _ . : -)");
        } else {
          const std::string kind = scalar(k, "metric.kind");
          if (kind == "proportion") r.metric.kind = AbMetricKind::Proportion;
          else if (kind == "mean") r.metric.kind = AbMetricKind::Mean;
          else fail(where(k), "metric.kind must be proportion or mean, got '" + kind + "'");
        }
      }
      if (!have_name) fail(where(*m), "metric needs a name");
      auto probability = [&](const char* key, double& out) {
        if (const Field* f = find(key)) {
          out = number(*f, key);
          if (!(out > 0 && out < 1)) fail(where(*f), std::string(key) + " must be between 0 and 1 (exclusive)");
        }
      };
      probability("alpha", r.alpha);
      probability("power", r.power);
      const Field* mde = find("min_detectable_effect");
      if (!mde) fail(rf.key_mark, what + " is missing required key 'min_detectable_effect'");
      r.min_detectable_effect = number(*mde, "min_detectable_effect");
      if (!(r.min_detectable_effect > 0) ||
          (r.metric.kind == AbMetricKind::Proportion && !(r.min_detectable_effect < 1)))
        fail(where(*mde), std::string("min_detectable_effect must be ") +
                              (r.metric.kind == AbMetricKind::Proportion
                                   ? "a difference of proportions between 0 and 1 (0.01 = one point)"
                                   : "positive (a difference of means)"));
      break;
    }
  }
  return r;
}

Config Parser::parse(const YAML::Node& root) {
  Config cfg;
  if (!root || root.IsNull()) throw ConfigError(file_, 1, 1, "the config is empty");
  auto fs = fields(root, root.Mark(), "the config", {"node", "cluster", "services"});
  const Field* node = nullptr;
  const Field* cluster = nullptr;
  const Field* services = nullptr;
  for (const auto& f : fs) (f.key == "node" ? node : f.key == "cluster" ? cluster : services) = &f;
  if (!node) fail(root.Mark(), "the config is missing required key 'node'");
  if (!services) fail(root.Mark(), "the config is missing required key 'services'");
  cfg.node = parse_node(*node);
  if (cluster) cfg.cluster = parse_cluster(*cluster);

  if (!services->value || !services->value.IsSequence() || services->value.size() == 0)
    fail(where(*services), "services must be a list of 1 to 64 services");
  std::map<std::string, Mark> names;
  std::map<std::tuple<int, std::array<uint8_t, 16>, uint16_t, Protocol>, std::string> keys;
  std::map<std::tuple<int, std::array<uint8_t, 16>, uint16_t, Protocol>, std::pair<std::string, Mark>>
      backend_owners;
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
    // A backend serves one service only: the data plane tells a backend's
    // replies by the backend alone (veer_backend_rev: backend -> service).
    // Walks the YAML again for the marks; parse_service already checked it.
    for (const auto& variant : item["variants"]) {
      for (const auto& b : variant.second["backends"]) {
        const auto ep = Endpoint::parse(b.Scalar());
        if (!ep) continue;
        auto bkey = std::make_tuple(ep->ip.family, ep->ip.bytes, ep->port, svc.protocol);
        if (auto [pos, fresh] = backend_owners.emplace(bkey, std::make_pair(svc.name, b.Mark())); !fresh)
          fail(b.Mark(), "backend '" + ep->to_string() + "' (" + to_string(svc.protocol) +
                             ") is already a backend of service '" + pos->second.first + "' (line " +
                             std::to_string(pos->second.second.line + 1) +
                             "): a backend may belong to one service only");
      }
    }
    cfg.services.push_back(std::move(svc));
  }
  cfg.warnings.insert(cfg.warnings.end(), warnings_.begin(), warnings_.end());
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
  std::string text;
  const int err = read_whole_file(path, 16u << 20, text);
  if (err == EFBIG) throw ConfigError(path, 0, 0, "config file is larger than 16 MiB");
  if (err) throw ConfigError(path, 0, 0, std::string("cannot read config file: ") + std::strerror(err));
  return parse_config(text, path);
}

}  // namespace veer
