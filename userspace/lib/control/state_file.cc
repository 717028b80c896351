// state.json: serialisation, atomic write, tolerant read.
#include "control/state_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

namespace veer {

using nlohmann::json;

std::string state_to_json(const NodeState& state) {
  json ids = json::object();
  for (const auto& [name, id] : state.service_ids) ids[name] = id;
  json services = json::object();
  for (const auto& [name, s] : state.services) {
    json weights = json::object();
    // Weights as "90.00" strings: the same form the socket uses, exact.
    for (const auto& [variant, bp] : s.weights_bp) weights[variant] = format_weight(bp);
    json draining = json::array();
    for (const auto& b : s.draining) draining.push_back(b);
    json service{{"weights", weights}, {"draining", draining}};
    if (!s.stable.empty()) service["stable"] = s.stable;
    if (s.fleet_version) service["fleet_version"] = s.fleet_version;
    if (s.rollout) service["rollout"] = *s.rollout;
    if (!s.totals.pushed.empty() || !s.totals.flows_base.empty()) {
      json pushed = json::object();
      for (const auto& [variant, data] : s.totals.pushed) pushed[variant] = to_json(data);
      service["rollout_totals"] = {{"pushed", pushed}, {"flows_base", s.totals.flows_base}};
    }
    services[name] = std::move(service);
  }
  json doc = {{"version", kStateFileVersion}, {"service_ids", ids}, {"services", services}};
  return doc.dump(2, ' ', false, json::error_handler_t::replace) + "\n";
}

NodeState state_from_json(std::string_view text) {
  json doc;
  try {
    doc = json::parse(text.begin(), text.end());
  } catch (const json::parse_error& e) {
    throw StateFileError(std::string("not valid JSON: ") + e.what());
  }
  if (!doc.is_object()) throw StateFileError("not a JSON object");
  auto version = doc.find("version");
  if (version == doc.end() || !version->is_number_integer() || version->get<int>() != kStateFileVersion) {
    throw StateFileError("\"version\" must be " + std::to_string(kStateFileVersion));
  }
  NodeState state;
  if (auto ids = doc.find("service_ids"); ids != doc.end()) {
    if (!ids->is_object()) throw StateFileError("\"service_ids\" must be an object");
    std::set<uint32_t> seen;
    for (auto it = ids->begin(); it != ids->end(); ++it) {
      if (!it->is_number_unsigned() || it->get<uint64_t>() >= VEER_MAX_SERVICES) {
        throw StateFileError("service id of \"" + it.key() + "\" must be 0.." +
                             std::to_string(VEER_MAX_SERVICES - 1));
      }
      const auto id = it->get<uint32_t>();
      if (!seen.insert(id).second) throw StateFileError("service id " + std::to_string(id) + " used twice");
      state.service_ids[it.key()] = id;
    }
  }
  if (auto services = doc.find("services"); services != doc.end()) {
    if (!services->is_object()) throw StateFileError("\"services\" must be an object");
    for (auto it = services->begin(); it != services->end(); ++it) {
      const std::string& name = it.key();
      if (!it->is_object()) throw StateFileError("services." + name + " must be an object");
      ServiceState s;
      if (auto w = it->find("weights"); w != it->end()) {
        if (!w->is_object()) throw StateFileError("services." + name + ".weights must be an object");
        for (auto wi = w->begin(); wi != w->end(); ++wi) {
          std::optional<uint32_t> bp;
          if (wi->is_string()) bp = parse_weight_bp(wi->get<std::string>());
          if (!bp) throw StateFileError("services." + name + ".weights." + wi.key() + " is not a weight");
          s.weights_bp[wi.key()] = *bp;
        }
      }
      if (auto d = it->find("draining"); d != it->end()) {
        if (!d->is_array()) throw StateFileError("services." + name + ".draining must be an array");
        for (const auto& b : *d) {
          if (!b.is_string() || !Endpoint::parse(b.get<std::string>())) {
            throw StateFileError("services." + name + ".draining holds something that is not IP:PORT");
          }
          s.draining.insert(Endpoint::parse(b.get<std::string>())->to_string());
        }
      }
      if (auto st = it->find("stable"); st != it->end()) {
        if (!st->is_string()) throw StateFileError("services." + name + ".stable must be a string");
        s.stable = st->get<std::string>();
      }
      if (auto fv = it->find("fleet_version"); fv != it->end()) {
        if (!fv->is_number_unsigned()) throw StateFileError("services." + name + ".fleet_version must be a count");
        s.fleet_version = fv->get<uint64_t>();
      }
      if (auto r = it->find("rollout"); r != it->end() && !r->is_null()) {
        try {
          s.rollout = r->get<RolloutState>();
        } catch (const std::exception& e) {
          throw StateFileError("services." + name + ".rollout: " + e.what());
        }
      }
      if (auto t = it->find("rollout_totals"); t != it->end()) {
        const std::string where = "services." + name + ".rollout_totals";
        if (!t->is_object()) throw StateFileError(where + " must be an object");
        if (auto p = t->find("pushed"); p != t->end()) {
          if (!p->is_object()) throw StateFileError(where + ".pushed must be an object");
          for (auto v = p->begin(); v != p->end(); ++v) {
            try {
              s.totals.pushed[v.key()] = push_data_from_json(*v);
            } catch (const PushError& e) {
              throw StateFileError(where + ".pushed." + v.key() + ": " + e.what());
            }
          }
        }
        if (auto f = t->find("flows_base"); f != t->end()) {
          if (!f->is_object()) throw StateFileError(where + ".flows_base must be an object");
          for (auto v = f->begin(); v != f->end(); ++v) {
            if (!v->is_number_unsigned()) throw StateFileError(where + ".flows_base." + v.key() + " must be a count");
            s.totals.flows_base[v.key()] = v->get<uint64_t>();
          }
        }
      }
      state.services[name] = std::move(s);
    }
  }
  return state;
}

namespace {

std::string errno_text(const std::string& what, const std::string& path) {
  return what + " " + path + ": " + std::strerror(errno);
}

void write_all(int fd, const std::string& data, const std::string& path) {
  const char* p = data.data();
  size_t left = data.size();
  while (left > 0) {
    const ssize_t n = ::write(fd, p, left);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw StateFileError(errno_text("write", path));
    }
    p += n;
    left -= static_cast<size_t>(n);
  }
}

}  // namespace

void write_state_file(const std::string& path, const NodeState& state) {
  const std::filesystem::path target(path);
  const std::filesystem::path dir = target.has_parent_path() ? target.parent_path() : ".";
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) throw StateFileError("create " + dir.string() + ": " + ec.message());

  const std::string data = state_to_json(state);
  // The temp file lives in the same folder so rename() is atomic (same fs).
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw StateFileError(errno_text("open", tmp));
  try {
    write_all(fd, data, tmp);
    // Data on disk before the rename makes it visible: after a crash the
    // file is the old one or the complete new one.
    if (::fsync(fd) != 0) throw StateFileError(errno_text("fsync", tmp));
  } catch (...) {
    ::close(fd);
    ::unlink(tmp.c_str());
    throw;
  }
  if (::close(fd) != 0) {
    ::unlink(tmp.c_str());
    throw StateFileError(errno_text("close", tmp));
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const std::string msg = errno_text("rename to " + path + " from", tmp);
    ::unlink(tmp.c_str());
    throw StateFileError(msg);
  }
  // Persist the rename itself (the directory entry).
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
}

StateLoad read_state_file(const std::string& path) {
  StateLoad load;
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    if (errno != ENOENT) load.problem = errno_text("cannot read", path);
    return load;
  }
  std::stringstream buf;
  buf << in.rdbuf();
  try {
    load.state = state_from_json(buf.str());
  } catch (const StateFileError& e) {
    load.problem = path + ": " + e.what();
  }
  return load;
}

std::map<std::string, uint32_t> assign_service_ids(const std::vector<std::string>& names,
                                                   const std::map<std::string, uint32_t>& previous) {
  if (names.size() > VEER_MAX_SERVICES) {
    throw StateFileError("at most " + std::to_string(VEER_MAX_SERVICES) + " services");
  }
  std::map<std::string, uint32_t> ids;
  std::set<uint32_t> used;
  for (const auto& name : names) {
    auto it = previous.find(name);
    if (it != previous.end() && it->second < VEER_MAX_SERVICES && used.insert(it->second).second) {
      ids[name] = it->second;
    }
  }
  uint32_t next = 0;
  for (const auto& name : names) {
    if (ids.count(name)) continue;
    while (used.count(next)) ++next;
    ids[name] = next;
    used.insert(next);
  }
  return ids;
}

std::vector<uint32_t> effective_weights(const ServiceConfig& svc, const ServiceState* state) {
  if (state == nullptr || state->weights_bp.size() != svc.variants.size()) return svc.weights_bp;
  std::vector<uint32_t> out;
  uint32_t sum = 0;
  for (const auto& v : svc.variants) {
    auto it = state->weights_bp.find(v.name);
    if (it == state->weights_bp.end()) return svc.weights_bp;
    out.push_back(it->second);
    sum += it->second;
  }
  if (sum != VEER_WEIGHT_TOTAL) return svc.weights_bp;
  return out;
}

std::map<std::string, uint32_t> weights_by_name(const ServiceConfig& svc, const std::vector<uint32_t>& weights_bp) {
  std::map<std::string, uint32_t> out;
  for (size_t i = 0; i < svc.variants.size() && i < weights_bp.size(); ++i) out[svc.variants[i].name] = weights_bp[i];
  return out;
}

}  // namespace veer
