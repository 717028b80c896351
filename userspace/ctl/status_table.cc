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

// A number with `decimals` decimals, "-" if absent or null.
std::string fixed(const json& j, const char* key, int decimals) {
  if (!j.is_object()) return "-";
  auto it = j.find(key);
  if (it == j.end() || !it->is_number()) return "-";
  std::ostringstream out;
  out.setf(std::ios::fixed);
  out.precision(decimals);
  out << it->get<double>();
  return out.str();
}

std::string percent(const json& j, const char* key) {
  if (!j.is_object()) return "-";
  auto it = j.find(key);
  if (it == j.end() || !it->is_number()) return "-";
  std::ostringstream out;
  out.setf(std::ios::fixed);
  out.precision(2);
  out << it->get<double>() * 100 << "%";
  return out.str();
}

}  // namespace

std::string format_rollout(const json& r) {
  if (!r.is_object()) return "";
  std::ostringstream out;
  out << "  rollout " << text(r, "strategy") << ": " << text(r, "phase");
  if (r.value("steps", 0) > 0) {
    out << "  step " << (r.value("step", 0) + 1 > r.value("steps", 0) ? r.value("steps", 0) : r.value("step", 0) + 1)
        << "/" << text(r, "steps");
    if (r.contains("step_kind") && !r["step_kind"].is_null()) out << " (" << text(r, "step_kind") << ")";
  }
  if (r.contains("pause_remaining_ms") && r["pause_remaining_ms"].is_number())
    out << "  pause left " << fixed(json{{"s", r["pause_remaining_ms"].get<double>() / 1000.0}}, "s", 1) << " s";
  out << "  canary " << text(r, "canary") << "  stable " << text(r, "stable") << "\n";
  if (r.contains("abort_reason") && r["abort_reason"].is_string()) out << "  aborted: " << text(r, "abort_reason") << "\n";
  if (auto g = r.find("gates"); g != r.end() && g->is_array() && !g->empty()) {
    Table t({"GATE", "SOURCE", "METRIC", "BOUND", "LAST", "VALUE", "FAILURES", "REASON"});
    for (const auto& gate : *g) {
      std::string bound;
      if (gate.contains("max")) bound += "max " + fixed(gate, "max", 4);
      if (gate.contains("min")) bound += std::string(bound.empty() ? "" : " ") + "min " + fixed(gate, "min", 4);
      std::string name = text(gate, "name");
      if (gate.contains("stage")) name += " (" + text(gate, "stage") + ")";
      t.add({name, text(gate, "source"), text(gate, "metric"), bound, text(gate, "last_result"),
             fixed(gate, "value", 4), text(gate, "failures"), text(gate, "reason")});
    }
    out << t.render("    ");
  }
  return out.str();
}

std::string format_ab(const json& r) {
  std::ostringstream out;
  out << "A/B on " << text(r, "metric") << " (" << text(r, "kind") << ", " << text(r, "test") << ", alpha "
      << text(r, "alpha") << ")\n";
  Table t({"VARIANT", "WEIGHT", "FLOWS", "N", "ESTIMATE", "95% CI", "DIFF", "P", "SIGNIFICANT"});
  if (auto v = r.find("variants"); v != r.end() && v->is_array()) {
    for (const auto& x : *v) {
      t.add({text(x, "variant"), text(x, "weight"), text(x, "flows"), text(x, "n"), fixed(x, "estimate", 4),
             "[" + fixed(x, "ci_low", 4) + ", " + fixed(x, "ci_high", 4) + "]", fixed(x, "difference", 4),
             text(x, "p_value"), x.value("significant", false) ? "yes" : "no"});
    }
  }
  out << t.render("  ");
  out << "sample size per arm " << text(r, "sample_size_per_arm") << ", still needed " << text(r, "samples_still_needed")
      << "; SRM p " << text(r, "srm_p_value") << (r.value("srm_mismatch", false) ? " (MISMATCH)" : "") << "\n";
  out << "verdict: " << text(r, "verdict") << "\n";
  return out.str();
}

std::string format_event(const json& e) {
  std::ostringstream out;
  out << text(e, "time") << "  #" << text(e, "seq") << "  " << text(e, "service") << "  " << text(e, "kind") << "  "
      << text(e, "message");
  if (auto v = e.find("values"); v != e.end() && v->is_object() && !v->empty()) {
    std::string vals;
    for (auto it = v->begin(); it != v->end(); ++it) vals += (vals.empty() ? "" : " ") + it.key() + "=" + it->dump();
    out << "  {" << vals << "}";
  }
  out << "\n";
  return out.str();
}

std::string format_service(const json& s) {
  std::ostringstream out;
  std::string vip = text(s, "vip");
  if (vip.find(':') != std::string::npos) vip = "[" + vip + "]";
  out << "service " << text(s, "name") << "  " << vip << ":" << text(s, "port") << "/" << text(s, "protocol")
      << "  affinity " << text(s, "affinity") << "  stable " << text(s, "stable") << "  generation "
      << text(s, "generation") << " (table " << text(s, "active_table") << ")\n";
  Table t({"VARIANT", "DESIRED", "APPLIED", "FLOWS", "FLOWS/S", "P95_MS", "ERRORS", "PKTS_IN", "PKTS_OUT",
           "BYTES_OUT", "BACKENDS"});
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
      const json window = variant.contains("window") ? variant["window"] : json();
      t.add({text(variant, "name"), text(variant, "weight_desired"), text(variant, "weight_applied"),
             text(variant, "flows"), fixed(window, "flows_per_s", 1), fixed(window, "latency_p95_ms", 1),
             percent(window, "error_rate"), text(variant, "packets_in"), text(variant, "packets_out"),
             text(variant, "bytes_out"), backends});
    }
  }
  out << t.render("  ");
  if (auto r = s.find("rollout"); r != s.end() && r->is_object()) out << format_rollout(*r);
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
  if (auto fleet = r.find("fleet"); fleet != r.end() && fleet->is_object()) {
    out << "fleet: node " << text(*fleet, "node") << "  prefix " << text(*fleet, "prefix") << "  etcd "
        << (fleet->value("connected", false) ? "connected" : "UNREACHABLE (tables kept): " + text(*fleet, "connection"));
    if (fleet->value("is_leader", false)) {
      out << "  leader: this node (term " << text(*fleet, "term") << ")";
    } else if (auto l = fleet->find("leader"); l != fleet->end() && l->is_string()) {
      out << "  leader: " << l->get<std::string>();
    } else if (fleet->contains("leader")) {
      out << "  leader: none";
    }
    out << "\n";
    if (auto services = fleet->find("services"); services != fleet->end() && services->is_object()) {
      for (auto it = services->begin(); it != services->end(); ++it) {
        out << "  " << it.key() << ": applied version " << text(*it, "applied_version") << " of "
            << text(*it, "current_version") << " (lag " << text(*it, "lag") << ")  definition "
            << text(*it, "definition");
        if (it->contains("diverged")) out << "  DIVERGED, applies nothing: " << text(*it, "diverged");
        if (auto w = it->find("gate_window"); w != it->end() && w->is_object())
          out << "  gates on " << text(*w, "contributing") << " of " << (*w)["nodes"].size() << " nodes";
        out << "\n";
      }
    }
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

std::string format_nodes(const json& r) {
  std::ostringstream out;
  out << "NODE                 REPORT_AGE  SERVICES (applied version, behind the current one)\n";
  if (auto nodes = r.find("nodes"); nodes != r.end() && nodes->is_array()) {
    for (const auto& n : *nodes) {
      std::string name = text(n, "node");
      if (name == text(r, "self")) name += " (this)";
      char head[64];
      std::snprintf(head, sizeof head, "%-20s ", name.c_str());
      out << head;
      if (n.contains("error")) {
        out << "unreadable report: " << text(n, "error") << "\n";
        continue;
      }
      char age[32];
      std::snprintf(age, sizeof age, "%-11s ", (std::to_string(n.value("report_age_ms", int64_t{0})) + " ms").c_str());
      out << age;
      std::string services;
      if (auto s = n.find("services"); s != n.end() && s->is_object()) {
        for (auto it = s->begin(); it != s->end(); ++it) {
          services += (services.empty() ? "" : "  ") + it.key() + " v" + text(*it, "applied_version");
          if (it->value("behind", 0) > 0) services += " (" + text(*it, "behind") + " behind)";
          if (it->contains("same_definition") && !it->value("same_definition", true)) services += " DIVERGED";
        }
      }
      out << (services.empty() ? "-" : services) << "\n";
    }
  }
  return out.str();
}

std::string format_which(const json& r) {
  std::ostringstream out;
  const json* entry = r.contains("entry") && r["entry"].is_object() ? &r["entry"] : nullptr;
  out << "variant " << text(r, "variant") << "  backend " << text(r, "backend") << "  slot " << text(r, "slot")
      << (entry ? "  (flow entry: " + text(*entry, "state") + ")"
                : std::string("  (no flow entry: the next packet selects)"))
      << "\n";
  if (!entry) return out.str();
  const json& nf = r.contains("new_flow") && r["new_flow"].is_object() ? r["new_flow"] : json::object();
  out << "flow entry: " << text(*entry, "variant") << " " << text(*entry, "backend") << ", "
      << text(r, "protocol") << " " << text(*entry, "state");
  if (entry->contains("syn_seq") && !(*entry)["syn_seq"].is_null())
    out << ", SYN seq " << text(*entry, "syn_seq");
  if (entry->contains("idle_ms"))
    out << ", idle " << text(*entry, "idle_ms") << " ms of " << text(*entry, "idle_timeout_ms") << " ms";
  if (entry->value("request_pending", false)) out << ", a request awaits its response";
  out << "\n";
  if (entry->contains("idle_ms")) {
    out << (entry->value("next_datagram_selects_again", false) ? "the next datagram selects again: "
                                                                : "the next datagram keeps the entry; after the "
                                                                  "idle timeout one selects: ");
  } else {
    out << (entry->value("syn_retransmit_continues", false)
                ? "a retransmission of its SYN keeps the entry; any other SYN (a new connection) selects: "
                : "every SYN (a new connection) selects: ");
  }
  out << text(nf, "variant") << " " << text(nf, "backend") << "\n";
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
