#include "view/documents.h"

#include <cmath>
#include <stdexcept>

#include "config/config.h"

namespace veer::view {

using nlohmann::json;

namespace {

json number_or_null(const std::map<std::string, double>& values, const char* name) {
  const auto it = values.find(name);
  return it != values.end() && std::isfinite(it->second) ? json(it->second) : json(nullptr);
}

// "gate NAME: RESULT (reason)" as the rollout engine words a gate event;
// the result is the last ": WORD (" in the message (a gate's name may hold ": ").
bool parse_gate_message(const std::string& message, std::string& name, std::string& result) {
  static const char* const kResults[] = {"Successful", "Failed", "Inconclusive", "Error"};
  if (message.rfind("gate ", 0) != 0) return false;
  size_t best = std::string::npos;
  for (const char* r : kResults) {
    const std::string needle = std::string(": ") + r + " (";
    const size_t at = message.rfind(needle);
    if (at != std::string::npos && at >= 5 && (best == std::string::npos || at > best)) {
      best = at;
      result = r;
    }
  }
  if (best == std::string::npos || best == 5) return false;
  name = message.substr(5, best - 5);
  return true;
}

double weight_pct(const json& v, const char* name) {
  const auto it = v.find(name);
  if (it == v.end() || !it->is_string()) return 0;
  const auto bp = parse_weight_bp(it->get<std::string>());
  return bp ? *bp / 100.0 : 0;
}

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::optional<std::string> percent_decoded(std::string_view text) {
  std::string out;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '%') {
      out += text[i];
      continue;
    }
    if (i + 2 >= text.size()) return std::nullopt;
    const int hi = hex_digit(text[i + 1]), lo = hex_digit(text[i + 2]);
    if (hi < 0 || lo < 0) return std::nullopt;
    out += static_cast<char>(hi * 16 + lo);
    i += 2;
  }
  return out;
}

}  // namespace

std::optional<Route> route_of(std::string_view path) {
  using Kind = Route::Kind;
  if (path == "/" || path == "/index.html") return Route{Kind::Page, {}};
  if (path == "/assets/veer-view.js") return Route{Kind::Script, {}};
  if (path == "/assets/veer-view.css") return Route{Kind::Stylesheet, {}};
  if (path == "/api/v1/services") return Route{Kind::Services, {}};
  if (path == "/api/v1/nodes") return Route{Kind::Nodes, {}};
  static constexpr std::string_view kService = "/api/v1/services/";
  if (path.substr(0, kService.size()) != kService) return std::nullopt;
  const auto name = percent_decoded(path.substr(kService.size()));
  if (!name || name->empty() || name->find('/') != std::string::npos) return std::nullopt;
  return Route{Kind::Service, *name};
}

std::vector<Event> last_rollout_events(const std::vector<Event>& events, const std::string& service) {
  size_t start = events.size();
  for (size_t i = events.size(); i-- > 0;) {
    if (events[i].service == service && events[i].kind == "started") {
      start = i;
      break;
    }
  }
  std::vector<Event> out;
  for (size_t i = start; i < events.size(); ++i)
    if (events[i].service == service) out.push_back(events[i]);
  return out;
}

json rollout_document(const std::vector<Event>& events, std::size_t max_events) {
  if (events.empty()) return nullptr;
  json steps = json::array();
  json gates = json::object();
  json outcome = nullptr;
  for (const auto& e : events) {
    if (e.kind == "weights") {
      json weights = json::object();
      for (const auto& [k, v] : e.values)
        if (k.rfind("weight.", 0) == 0) weights[k.substr(7)] = v;
      if (weights.empty()) continue;
      const auto colon = e.message.find(':');
      steps.push_back(json{{"t", e.time_ms},
                           {"weights", weights},
                           {"reason", colon == std::string::npos ? e.message : e.message.substr(0, colon)}});
    } else if (e.kind == "gate") {
      std::string name, result;
      if (!parse_gate_message(e.message, name, result)) continue;
      json& g = gates[name];
      if (g.is_null()) g = json{{"max", nullptr}, {"min", nullptr}, {"points", json::array()}};
      if (e.values.count("max")) g["max"] = number_or_null(e.values, "max");
      if (e.values.count("min")) g["min"] = number_or_null(e.values, "min");
      g["points"].push_back(json{{"t", e.time_ms},
                                 {"value", number_or_null(e.values, "value")},
                                 {"result", result},
                                 {"failures", number_or_null(e.values, "failures")}});
    } else if (e.kind == "abort" || e.kind == "completed") {
      json values = json::object();
      for (const auto& [k, v] : e.values) values[k] = std::isfinite(v) ? json(v) : json(nullptr);
      outcome = json{{"kind", e.kind}, {"t", e.time_ms}, {"message", e.message}, {"values", values}};
    } else if (e.kind == "retry" || e.kind == "started") {
      outcome = nullptr;  // a retry goes on after an abort: the rollout is running again
    }
  }
  json list = json::array();
  const size_t first = events.size() > max_events ? events.size() - max_events : 0;
  for (size_t i = first; i < events.size(); ++i) list.push_back(to_json(events[i]));
  return json{{"started_at_ms", events.front().time_ms},
              {"events", list},
              {"events_dropped", first},
              {"steps", steps},
              {"gates", gates},
              {"outcome", outcome}};
}

json services_document(const json& status_answer) {
  const auto services = status_answer.find("services");
  if (!status_answer.is_object() || services == status_answer.end() || !services->is_array())
    throw std::invalid_argument("status answer has no services array");
  json list = json::array();
  for (const auto& s : *services) {
    json weights = json::object();
    for (const auto& v : s.value("variants", json::array()))
      weights[v.value("name", std::string())] =
          json{{"desired", weight_pct(v, "weight_desired")}, {"applied", weight_pct(v, "weight_applied")}};
    json line{{"name", s.value("name", std::string())},
              {"vip", s.value("vip", std::string())},
              {"port", s.value("port", 0)},
              {"protocol", s.value("protocol", std::string())},
              {"stable", s.value("stable", std::string())},
              {"weights", weights},
              {"strategy", nullptr},
              {"phase", nullptr},
              {"step", nullptr},
              {"steps", nullptr},
              {"canary", nullptr}};
    if (const auto r = s.find("rollout"); r != s.end() && r->is_object()) {
      for (const char* k : {"strategy", "phase", "step", "steps", "canary", "stable"})
        if (r->contains(k)) line[k] = (*r)[k];
    }
    list.push_back(std::move(line));
  }
  const auto fleet = status_answer.find("fleet");
  return json{{"services", list}, {"fleet", fleet != status_answer.end() && !fleet->is_null()}};
}

json service_document(const json& service_status, const json& history, const json& rollout, const json& ab,
                      const json& fleet, int64_t now_ms) {
  return json{{"service", service_status.value("name", std::string())},
              {"now_ms", now_ms},
              {"status", service_status},
              {"history", history},
              {"rollout", rollout},
              {"ab", ab},
              {"fleet", fleet}};
}

std::string json_for_script(const json& j) {
  const std::string text = j.dump(-1, ' ', false, json::error_handler_t::replace);
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    if (c == '<')
      out += "\\u003c";
    else
      out += c;
  }
  return out;
}

std::string report_html(std::string_view page, std::string_view css, std::string_view js, const json& document) {
  static constexpr std::string_view kCssLink = R"(<link rel="stylesheet" href="/assets/veer-view.css">)";
  static constexpr std::string_view kJsLink = R"(<script src="/assets/veer-view.js"></script>)";
  const size_t css_at = page.find(kCssLink);
  const size_t js_at = page.find(kJsLink);
  if (css_at == std::string_view::npos) throw std::invalid_argument("the page does not link /assets/veer-view.css");
  if (js_at == std::string_view::npos || js_at < css_at)
    throw std::invalid_argument("the page does not link /assets/veer-view.js after its stylesheet");
  std::string out;
  out.reserve(page.size() + css.size() + js.size() + 4096);
  out += page.substr(0, css_at);
  out += "<style>\n";
  out += css;
  out += "</style>";
  out += page.substr(css_at + kCssLink.size(), js_at - css_at - kCssLink.size());
  out += "<script>window.VEER_REPORT = ";
  out += json_for_script(document);
  out += ";</script>\n<script>\n";
  out += js;
  out += "</script>";
  out += page.substr(js_at + kJsLink.size());
  return out;
}

}  // namespace veer::view
