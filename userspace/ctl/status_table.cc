// Text tables for veerctl. Tolerant of missing fields (an older or newer
// daemon): a missing value prints as "-", never throws.
#include "status_table.h"

#include <sstream>
#include <vector>

namespace veer::ctl {

using nlohmann::json;

namespace {

std::string text(const json& j, const char* key) {
  if (!j.is_object()) return "-";
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return "-";
  if (it->is_string()) return it->get<std::string>();
  return it->dump();
}

std::string hex(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_number_unsigned()) return text(j, key);
  std::ostringstream out;
  out << "0x" << std::hex << it->get<uint64_t>();
  return out.str();
}

class Table {
 public:
  explicit Table(std::vector<std::string> header) { rows_.push_back(std::move(header)); }
  void add(std::vector<std::string> row) { rows_.push_back(std::move(row)); }
  std::string render(const std::string& indent) const {
    std::vector<size_t> width;
    for (const auto& r : rows_) {
      for (size_t i = 0; i < r.size(); ++i) {
        if (width.size() <= i) width.push_back(0);
        width[i] = std::max(width[i], r[i].size());
      }
    }
    std::ostringstream out;
    for (const auto& r : rows_) {
      std::string line = indent;
      for (size_t i = 0; i < r.size(); ++i) {
        line += r[i];
        if (i + 1 < r.size()) line += std::string(width[i] - r[i].size() + 2, ' ');
      }
      out << line << "\n";
    }
    return out.str();
  }

 private:
  std::vector<std::vector<std::string>> rows_;
};

}  // namespace

std::string format_service(const json& s) {
  std::ostringstream out;
  std::string vip = text(s, "vip");
  if (vip.find(':') != std::string::npos) vip = "[" + vip + "]";
  out << "service " << text(s, "name") << "  " << vip << ":" << text(s, "port") << "/" << text(s, "protocol")
      << "  affinity " << text(s, "affinity") << "  stable " << text(s, "stable") << "  generation "
      << text(s, "generation") << " (table " << text(s, "active_table") << ")\n";
  Table t({"VARIANT", "DESIRED", "APPLIED", "FLOWS", "PKTS_IN", "BYTES_IN", "PKTS_OUT", "BYTES_OUT", "BACKENDS"});
  if (auto v = s.find("variants"); v != s.end() && v->is_array()) {
    for (const auto& variant : *v) {
      std::string backends;
      if (auto b = variant.find("backends"); b != variant.end() && b->is_array()) {
        for (const auto& be : *b) {
          if (!backends.empty()) backends += ", ";
          backends += text(be, "address");
          if (be.value("draining", false)) backends += " (draining)";
        }
      }
      t.add({text(variant, "name"), text(variant, "weight_desired"), text(variant, "weight_applied"),
             text(variant, "flows"), text(variant, "packets_in"), text(variant, "bytes_in"),
             text(variant, "packets_out"), text(variant, "bytes_out"), backends});
    }
  }
  out << t.render("  ");
  return out.str();
}

std::string format_status(const json& r) {
  std::ostringstream out;
  if (auto node = r.find("node"); node != r.end() && node->is_object()) {
    std::string ifs;
    if (auto i = node->find("interfaces"); i != node->end() && i->is_array()) {
      for (const auto& a : *i) ifs += (ifs.empty() ? "" : ", ") + text(a, "interface") + " (" + text(a, "mode") + ")";
    }
    out << "node: interfaces " << (ifs.empty() ? "none" : ifs) << "  attach " << text(*node, "attach")
        << "  hash_seed " << hex(*node, "hash_seed") << "  pins " << text(*node, "pin_path")
        << (node->value("adopted", false) ? " (adopted)" : "") << "\n";
    if (node->contains("state_problem")) out << "warning: state not persisted: " << text(*node, "state_problem") << "\n";
  }
  if (auto services = r.find("services"); services != r.end() && services->is_array()) {
    for (const auto& s : *services) out << "\n" << format_service(s);
  }
  if (auto reasons = r.find("reasons"); reasons != r.end() && reasons->is_object()) {
    std::string nonzero;
    for (auto it = reasons->begin(); it != reasons->end(); ++it) {
      if (it->is_number() && it->get<uint64_t>() > 0) {
        nonzero += (nonzero.empty() ? "" : "  ") + it.key() + "=" + it->dump();
      }
    }
    out << "\nverdicts: " << (nonzero.empty() ? "none yet" : nonzero) << "\n";
  }
  return out.str();
}

std::string format_which(const json& r) {
  std::ostringstream out;
  out << "variant " << text(r, "variant") << "  backend " << text(r, "backend") << "  slot " << text(r, "slot")
      << (r.value("established", false) ? "  (established flow)" : "  (new flow)") << "\n";
  return out.str();
}

std::string format_reload(const json& r) {
  std::ostringstream out;
  auto list = [&](const char* key) {
    std::string s;
    if (auto it = r.find(key); it != r.end() && it->is_array()) {
      for (const auto& x : *it) s += (s.empty() ? "" : ", ") + (x.is_string() ? x.get<std::string>() : x.dump());
    }
    return s.empty() ? std::string("none") : s;
  };
  out << "reloaded: added " << list("added") << "; removed " << list("removed") << "; changed " << list("changed")
      << "; unchanged " << list("unchanged") << "\n";
  if (r.value("interfaces_changed", false)) out << "interfaces re-attached\n";
  if (auto rr = r.find("restart_required"); rr != r.end() && rr->is_array() && !rr->empty()) {
    out << "needs a restart to take effect: " << list("restart_required") << "\n";
  }
  if (auto w = r.find("warnings"); w != r.end() && w->is_array()) {
    for (const auto& x : *w) out << "warning: " << (x.is_string() ? x.get<std::string>() : x.dump()) << "\n";
  }
  return out.str();
}

std::string format_ping(const json& r) { return "veerd " + text(r, "version") + " (pid " + text(r, "pid") + ")\n"; }

std::string format_shutdown(const json& r) {
  const bool unloaded = r.value("unloaded", false);
  return "veerd (pid " + text(r, "pid") + ") is exiting; " +
         (unloaded ? "data plane unloaded: programs detached, pins under " + text(r, "pin_path") + " removed\n"
                   : "the data plane keeps forwarding on the pins under " + text(r, "pin_path") + "\n");
}

}  // namespace veer::ctl
