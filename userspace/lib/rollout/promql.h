// The `promql` gate source as pure functions: the query template and its
// placeholders, the instant-query URL, and the reading of Prometheus's HTTP
// API answer (GET /api/v1/query) into a gate Measurement. The daemon sends
// the request (net::http_get, with the scraper's deadline and body bound);
// the unit tests feed these known answers.
//
// How an answer is read (docs/promql-gates.md):
//   scalar, or an instant vector of one element   -> its value (samples 1)
//   an empty vector                               -> Inconclusive, or Failed with no_data: fail
//   more than one element, NaN, a range vector,
//   a string, an HTTP or PromQL error             -> Error, with the server's own message
// prediction_kl: the vector holds one element per class (label `gate.label`)
// and the values are counts; they are the label distribution of the variant.
#pragma once
#include <optional>
#include <string>
#include <string_view>

#include "config/rollout_config.h"
#include "rollout/rollout_engine.h"

namespace veer::promql {

inline constexpr size_t kMaxQueryBytes = 4096;       // of a template, and of a rendered query
inline constexpr size_t kMaxAnswerBytes = 1u << 20;  // a gate's answer is one number or a few classes
inline constexpr size_t kMaxClasses = 1024;          // prediction_kl: elements of the answer (as pushed labels)

// What the placeholders stand for in one query.
struct QueryVars {
  std::string service;
  std::string variant;  // the variant measured: the one under test, or the stable one (relative, KL)
  std::string stable;   // the service's stable variant
  Millis interval{0};   // the rollout's interval, written as a PromQL duration ("5s", "1m30s")
};

// Why TEMPLATE cannot be a query: empty, too long, a "{{" without "}}", or a
// placeholder other than {{service}} {{variant}} {{stable}} {{interval}}
// (spaces inside the braces are allowed). nullopt when it is fine.
std::optional<std::string> template_error(std::string_view tmpl);
// TEMPLATE with its placeholders replaced (TEMPLATE passed template_error).
std::string render(std::string_view tmpl, const QueryVars& vars);

// Why ADDRESS cannot be a Prometheus server's URL (http://host[:port][/prefix],
// no query or fragment); nullopt when it is fine.
std::optional<std::string> address_error(std::string_view address);
// ADDRESS's instant-query URL for QUERY, percent-encoded; TIMEOUT is passed
// on as the server's own evaluation timeout.
std::string query_url(std::string_view address, std::string_view query, Millis timeout);

// The Measurement of one answer: HTTP_STATUS and BODY as the server sent
// them (an HTTP 4xx/5xx carries Prometheus's JSON error in its body).
Measurement read_answer(unsigned http_status, std::string_view body, const GateConfig& gate);

}  // namespace veer::promql
