// The JSON documents of the live view's API (GET /api/v1/..., docs/view.md)
// and of `veerctl report`, built from what veerd already has: status objects,
// the event log and the History of each service. Pure functions.
#pragma once
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "control/events.h"

namespace veer::view {

// What a GET of the live view asks for (MetricsServer routes; docs/view.md).
struct Route {
  enum class Kind { Page, Script, Stylesheet, Services, Service, Nodes };
  Kind kind = Kind::Page;
  std::string service;  // Kind::Service: the name, percent-decoded
};
// "/" (and "/index.html"), "/assets/veer-view.js", "/assets/veer-view.css",
// "/api/v1/services", "/api/v1/services/NAME", "/api/v1/nodes"; nullopt for
// anything else (a 404), also a NAME that is empty, holds "/" or a bad escape.
std::optional<Route> route_of(std::string_view path);

// At most this many events of one rollout go into a document (the newest;
// "events_dropped" counts the others): a rollout that failed a gate every
// second for hours would otherwise make a page of megabytes.
inline constexpr std::size_t kMaxRolloutEvents = 2000;

// The events of SERVICE's last rollout out of a list of events (oldest first):
// from its last "started" event on (a "retry" continues the same rollout).
// Empty if SERVICE never started one.
std::vector<Event> last_rollout_events(const std::vector<Event>& events, const std::string& service);

// A rollout's story out of its events (last_rollout_events):
//   {"started_at_ms", "events": [...], "events_dropped",
//    "steps": [{"t", "weights": {VARIANT: pct}, "reason"}],        every weight change, in order
//    "gates": {NAME: {"max", "min", "points": [{"t", "value", "result", "failures"}]}},
//    "outcome": {"kind": "abort" | "completed", "t", "message", "values"} or null}
// null if EVENTS is empty (no rollout yet).
nlohmann::json rollout_document(const std::vector<Event>& events, std::size_t max_events = kMaxRolloutEvents);

// GET /api/v1/services: one line per service of a `status` answer
// ({"services": [...]}, optionally "fleet"):
//   {"services": [{"name", "vip", "port", "protocol", "strategy", "phase", "step", "steps",
//                  "canary", "stable", "weights": {VARIANT: {"desired", "applied"}}}], "fleet": bool}
// Throws std::invalid_argument if STATUS_ANSWER has no services array.
nlohmann::json services_document(const nlohmann::json& status_answer);

// GET /api/v1/services/NAME and `veerctl report`'s data:
//   {"service", "now_ms", "status", "history", "rollout", "ab", "fleet"}
// where "ab" (the A/B report) and "fleet" (this node's fleet status of the
// service) are null when they do not apply.
nlohmann::json service_document(const nlohmann::json& service_status, const nlohmann::json& history,
                                const nlohmann::json& rollout, const nlohmann::json& ab, const nlohmann::json& fleet,
                                int64_t now_ms);

// `veerctl report`: the page made self-contained. PAGE is the live view's
// index.html, which links "/assets/veer-view.css" and "/assets/veer-view.js";
// those links are replaced by the stylesheet and the script themselves, and
// DOCUMENT (service_document) is embedded as window.VEER_REPORT, so the file
// needs no server and fetches nothing. Throws std::invalid_argument if PAGE
// lacks either link.
std::string report_html(std::string_view page, std::string_view css, std::string_view js,
                        const nlohmann::json& document);

// JSON text safe inside an HTML <script> element: every "<" (which JSON has
// only inside strings) becomes "\u003c", the same string to JSON, so no value
// can end the element or open a comment in it.
std::string json_for_script(const nlohmann::json& j);

}  // namespace veer::view
