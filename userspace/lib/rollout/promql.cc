// The promql gate source: templates, URLs, answers. See promql.h.
#include "rollout/promql.h"

#include <cmath>
#include <cstdlib>
#include <map>

#include <nlohmann/json.hpp>

namespace veer::promql {
namespace {

constexpr std::string_view kPlaceholders[] = {"service", "variant", "stable", "interval"};

std::string_view trim(std::string_view s) {
  while (!s.empty() && s.front() == ' ') s.remove_prefix(1);
  while (!s.empty() && s.back() == ' ') s.remove_suffix(1);
  return s;
}

// Calls ON_TEXT for the literal pieces and ON_NAME for each placeholder's
// (trimmed) name, in order; returns the error of a "{{" left open.
template <typename Text, typename Name>
std::optional<std::string> walk(std::string_view tmpl, Text on_text, Name on_name) {
  size_t at = 0;
  while (at < tmpl.size()) {
    const size_t open = tmpl.find("{{", at);
    if (open == std::string_view::npos) {
      on_text(tmpl.substr(at));
      break;
    }
    on_text(tmpl.substr(at, open - at));
    const size_t close = tmpl.find("}}", open + 2);
    if (close == std::string_view::npos)
      return "a '{{' at offset " + std::to_string(open) + " is not closed by '}}'";
    if (auto e = on_name(trim(tmpl.substr(open + 2, close - open - 2)))) return e;
    at = close + 2;
  }
  return std::nullopt;
}

std::string short_text(std::string_view s, size_t max = 300) {
  std::string out(s.substr(0, max));
  for (char& c : out)
    if (c == '\n' || c == '\r') c = ' ';
  if (s.size() > max) out += "...";
  return out;
}

// A sample value as the API writes it: a JSON string ("1.5", "NaN", "+Inf").
std::optional<double> sample_value(const nlohmann::json& pair) {
  if (!pair.is_array() || pair.size() != 2 || !pair[1].is_string()) return std::nullopt;
  const std::string& text = pair[1].get_ref<const std::string&>();
  if (text.empty()) return std::nullopt;
  char* end = nullptr;
  const double v = std::strtod(text.c_str(), &end);
  if (end != text.c_str() + text.size()) return std::nullopt;
  return v;
}

std::string labels_text(const nlohmann::json& metric) {
  if (!metric.is_object() || metric.empty()) return "{}";
  std::string out = "{";
  for (auto it = metric.begin(); it != metric.end(); ++it) {
    if (out.size() > 1) out += ", ";
    out += it.key() + "=" + (it->is_string() ? "\"" + it->get<std::string>() + "\"" : it->dump());
  }
  return out + "}";
}

Measurement no_data(const GateConfig& gate) {
  const std::string why = "the query returned no data (an empty vector)";
  return gate.no_data == NoDataPolicy::Fail ? Measurement::failed(why + "; no_data: fail")
                                            : Measurement::inconclusive(why);
}

Measurement label_counts(const nlohmann::json& result, const GateConfig& gate) {
  std::map<std::string, double> counts;
  if (result.size() > kMaxClasses)
    return Measurement::error("the query returned " + std::to_string(result.size()) + " classes, more than " +
                              std::to_string(kMaxClasses));
  for (const auto& element : result) {
    if (!element.is_object()) return Measurement::error("malformed vector element");
    const nlohmann::json metric = element.value("metric", nlohmann::json::object());
    if (!metric.is_object() || !metric.contains(gate.label) || !metric[gate.label].is_string())
      return Measurement::error("an element of the answer has no label '" + gate.label + "': " + labels_text(metric) +
                                " (aggregate with sum by (" + gate.label + ") (...))");
    const std::string cls = metric[gate.label].get<std::string>();
    const auto value = element.contains("value") ? sample_value(element["value"]) : std::nullopt;
    if (!value) return Measurement::error("malformed sample value in the answer");
    if (std::isnan(*value) || *value < 0 || std::isinf(*value))
      return Measurement::error("class '" + cls + "' has count " + element["value"][1].get<std::string>() +
                                "; label counts must be finite and >= 0");
    if (!counts.emplace(cls, *value).second)
      return Measurement::error("class '" + cls + "' appears twice in the answer");
  }
  if (counts.empty()) return no_data(gate);
  return Measurement::of_labels(std::move(counts));
}

}  // namespace

std::optional<std::string> template_error(std::string_view tmpl) {
  if (trim(tmpl).empty()) return "the query is empty";
  if (tmpl.size() > kMaxQueryBytes)
    return "the query has " + std::to_string(tmpl.size()) + " bytes, more than " + std::to_string(kMaxQueryBytes);
  return walk(
      tmpl, [](std::string_view) {},
      [](std::string_view name) -> std::optional<std::string> {
        for (auto known : kPlaceholders)
          if (name == known) return std::nullopt;
        return "unknown placeholder {{" + std::string(name) +
               "}} (known: {{service}} {{variant}} {{stable}} {{interval}})";
      });
}

std::string render(std::string_view tmpl, const QueryVars& vars) {
  std::string out;
  walk(
      tmpl, [&](std::string_view text) { out += text; },
      [&](std::string_view name) -> std::optional<std::string> {
        if (name == "service") out += vars.service;
        else if (name == "variant") out += vars.variant;
        else if (name == "stable") out += vars.stable;
        else if (name == "interval") out += format_duration(vars.interval);
        return std::nullopt;
      });
  return out;
}

std::optional<std::string> address_error(std::string_view address) {
  constexpr std::string_view scheme = "http://";
  if (address.rfind("https://", 0) == 0)
    return "https:// Prometheus servers are not supported by this build; give an http:// address";
  if (address.rfind(scheme, 0) != 0) return "must be an http:// URL of a Prometheus server";
  const std::string_view rest = address.substr(scheme.size());
  const std::string_view host = rest.substr(0, rest.find('/'));
  if (host.empty()) return "has no host";
  if (address.find_first_of("?# ") != std::string_view::npos)
    return "must not hold a query, a fragment or spaces: veer adds /api/v1/query itself";
  if (address.size() > 512) return "is longer than 512 bytes";
  return std::nullopt;
}

std::string query_url(std::string_view address, std::string_view query, Millis timeout) {
  while (!address.empty() && address.back() == '/') address.remove_suffix(1);
  std::string url(address);
  url += "/api/v1/query?query=";
  static constexpr char hex[] = "0123456789ABCDEF";
  for (unsigned char c : query) {
    const bool unreserved = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                            c == '-' || c == '_' || c == '.' || c == '~';
    if (unreserved) {
      url += static_cast<char>(c);
    } else {
      url += '%';
      url += hex[c >> 4];
      url += hex[c & 15];
    }
  }
  url += "&timeout=" + format_duration(timeout);
  return url;
}

Measurement read_answer(unsigned http_status, std::string_view body, const GateConfig& gate) {
  const auto answer = nlohmann::json::parse(body, nullptr, false);
  const bool api = answer.is_object() && answer.contains("status") && answer["status"].is_string();
  if (api && answer["status"] == "error") {
    const std::string type = answer.value("errorType", std::string("error"));
    const std::string message = answer.contains("error") && answer["error"].is_string()
                                    ? answer["error"].get<std::string>()
                                    : std::string("(no message)");
    return Measurement::error("Prometheus answered " + std::to_string(http_status) + " (" + type +
                              "): " + short_text(message));
  }
  if (http_status != 200) {
    std::string why = "Prometheus answered HTTP " + std::to_string(http_status);
    if (http_status >= 300 && http_status < 400) why += " (redirects are not followed: give the final address)";
    if (!body.empty()) why += ": " + short_text(body, 200);
    return Measurement::error(why);
  }
  if (!api || answer["status"] != "success" || !answer.contains("data") || !answer["data"].is_object())
    return Measurement::error("not an answer of Prometheus's query API: " + short_text(body, 120));
  const auto& data = answer["data"];
  const std::string type = data.value("resultType", std::string());
  if (!data.contains("result")) return Measurement::error("the answer has no result");
  const auto& result = data["result"];
  if (type == "matrix" || type == "string")
    return Measurement::error("the query returned a " + std::string(type == "matrix" ? "range vector" : "string") +
                              "; a gate needs a scalar or an instant vector (drop the trailing [range])");
  std::optional<double> value;
  if (type == "scalar") {
    value = sample_value(result);
    if (!value) return Measurement::error("malformed scalar in the answer");
    if (is_label_metric(gate.metric))
      return Measurement::error(gate.metric + " needs one element per class (sum by (" + gate.label +
                                ") (...)), the query returned a scalar");
  } else if (type == "vector") {
    if (!result.is_array()) return Measurement::error("malformed vector in the answer");
    if (is_label_metric(gate.metric)) return label_counts(result, gate);
    if (result.empty()) return no_data(gate);
    if (result.size() > 1) {
      std::string shown;
      for (size_t i = 0; i < result.size() && i < 2; ++i)
        shown += (i ? ", " : "") + labels_text(result[i].is_object() ? result[i].value("metric", nlohmann::json::object())
                                                                   : nlohmann::json::object());
      return Measurement::error("the query returned " + std::to_string(result.size()) + " series (" + shown +
                                (result.size() > 2 ? ", ..." : "") +
                                "); a gate needs one: aggregate them (sum, max, ...)");
    }
    const auto& element = result[0];
    value = element.is_object() && element.contains("value") ? sample_value(element["value"]) : std::nullopt;
    if (!value) return Measurement::error("malformed sample value in the answer");
  } else {
    return Measurement::error("unknown resultType '" + short_text(type, 40) + "'");
  }
  if (std::isnan(*value))
    return Measurement::error("the query returned NaN (a 0/0, e.g. a ratio of rates with no requests in the range)");
  return Measurement::of(*value, 1);
}

}  // namespace veer::promql
