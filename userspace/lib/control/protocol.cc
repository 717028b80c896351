// Control protocol: request parsing/validation and answer building.
#include "control/protocol.h"

#include <charconv>

#include "config/config.h"

namespace veer::protocol {

using nlohmann::json;

namespace {

struct CodeName {
  ErrorCode code;
  const char* name;
};
constexpr CodeName kCodeNames[] = {
    {ErrorCode::BadJson, "bad_json"},
    {ErrorCode::BadRequest, "bad_request"},
    {ErrorCode::UnknownCommand, "unknown_command"},
    {ErrorCode::TooLarge, "too_large"},
    {ErrorCode::NotFound, "not_found"},
    {ErrorCode::Refused, "refused"},
    {ErrorCode::ConfigInvalid, "config_invalid"},
    {ErrorCode::PermissionDenied, "permission_denied"},
    {ErrorCode::Internal, "internal"},
};

[[noreturn]] void bad_request(const std::string& message) { throw ProtocolError(ErrorCode::BadRequest, message); }

// Dumps never throw on invalid UTF-8 (a client may send any bytes inside a
// valid JSON string escape, and we echo names back in messages).
std::string dump_line(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

const char* type_name(const json& j) { return j.type_name(); }

std::string required_string(const json& req, const char* field) {
  auto it = req.find(field);
  if (it == req.end()) bad_request(std::string("missing field \"") + field + "\"");
  if (!it->is_string()) {
    bad_request(std::string("field \"") + field + "\" must be a string, not " + type_name(*it));
  }
  std::string value = it->get<std::string>();
  if (value.empty()) bad_request(std::string("field \"") + field + "\" must not be empty");
  return value;
}

std::optional<std::string> optional_string(const json& req, const char* field) {
  auto it = req.find(field);
  if (it == req.end() || it->is_null()) return std::nullopt;
  if (!it->is_string()) {
    bad_request(std::string("field \"") + field + "\" must be a string, not " + type_name(*it));
  }
  std::string value = it->get<std::string>();
  if (value.empty()) bad_request(std::string("field \"") + field + "\" must not be empty");
  return value;
}

bool optional_bool(const json& req, const char* field) {
  auto it = req.find(field);
  if (it == req.end() || it->is_null()) return false;
  if (!it->is_boolean()) {
    bad_request(std::string("field \"") + field + "\" must be true or false, not " + type_name(*it));
  }
  return it->get<bool>();
}

std::optional<uint64_t> optional_count(const json& req, const char* field) {
  auto it = req.find(field);
  if (it == req.end() || it->is_null()) return std::nullopt;
  if (!it->is_number_unsigned()) {
    bad_request(std::string("field \"") + field + "\" must be a non-negative integer, not " +
                (it->is_number() ? std::string("a negative or fractional number") : std::string(type_name(*it))));
  }
  return it->get<uint64_t>();
}

// A weight is a string ("5", "99.50") or a number (5, 99.5). Numbers go
// through their shortest text form so 99.5 and "99.5" mean the same thing,
// and anything with more than two decimals is refused rather than rounded.
uint32_t weight_value(const std::string& variant, const json& value) {
  std::string text;
  if (value.is_string()) {
    text = value.get<std::string>();
  } else if (value.is_number_integer() || value.is_number_unsigned()) {
    text = value.dump();
  } else if (value.is_number_float()) {
    const double d = value.get<double>();
    char buf[64];
    auto [end, ec] = std::to_chars(buf, buf + sizeof buf, d);
    if (ec != std::errc()) bad_request("weight of \"" + variant + "\" is not a valid number");
    text.assign(buf, end);
  } else {
    bad_request("weight of \"" + variant + "\" must be a string or a number, not " + type_name(value));
  }
  auto bp = parse_weight_bp(text);
  if (!bp) {
    bad_request("weight of \"" + variant + "\" is \"" + text +
                "\": expected a percentage 0..100 with at most two decimals");
  }
  return *bp;
}

}  // namespace

std::string to_string(RolloutAction action) {
  switch (action) {
    case RolloutAction::Start: return "start";
    case RolloutAction::Promote: return "promote";
    case RolloutAction::Pause: return "pause";
    case RolloutAction::Abort: return "abort";
    case RolloutAction::Retry: return "retry";
  }
  return "start";
}

std::string to_string(ErrorCode code) {
  for (const auto& c : kCodeNames) {
    if (c.code == code) return c.name;
  }
  return "internal";
}

std::optional<ErrorCode> error_code_from_string(std::string_view text) {
  for (const auto& c : kCodeNames) {
    if (text == c.name) return c.code;
  }
  return std::nullopt;
}

std::optional<ClientAddress> parse_client_address(std::string_view text) {
  if (text.empty()) return std::nullopt;
  // Bare address first: IPv6 text contains ':' so it must be tried whole.
  if (auto ip = IpAddress::parse(text)) return ClientAddress{*ip, std::nullopt};
  auto ep = Endpoint::parse(text);
  if (!ep || ep->port == 0) return std::nullopt;
  return ClientAddress{ep->ip, ep->port};
}

Request parse_request(std::string_view line) {
  if (!line.empty() && line.back() == '\n') line.remove_suffix(1);
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  if (line.size() > kMaxLineBytes) {
    throw ProtocolError(ErrorCode::TooLarge,
                        "request line of " + std::to_string(line.size()) + " bytes exceeds the limit of " +
                            std::to_string(kMaxLineBytes) + " bytes");
  }
  json req;
  try {
    req = json::parse(line.begin(), line.end());
  } catch (const json::parse_error& e) {
    throw ProtocolError(ErrorCode::BadJson, std::string("malformed JSON: ") + e.what());
  }
  if (!req.is_object()) bad_request(std::string("request must be a JSON object, not ") + type_name(req));
  auto cmd_it = req.find("cmd");
  if (cmd_it == req.end()) bad_request("missing field \"cmd\"");
  if (!cmd_it->is_string()) bad_request(std::string("field \"cmd\" must be a string, not ") + type_name(*cmd_it));
  const std::string cmd = cmd_it->get<std::string>();

  if (cmd == "ping") return PingRequest{};
  if (cmd == "nodes") return NodesRequest{};
  if (cmd == "reload") return ReloadRequest{};
  if (cmd == "shutdown") return ShutdownRequest{optional_bool(req, "unload")};
  if (cmd == "status") return StatusRequest{optional_string(req, "service")};
  if (cmd == "weights") {
    WeightsRequest r;
    r.service = required_string(req, "service");
    auto w = req.find("weights");
    if (w == req.end()) bad_request("missing field \"weights\"");
    if (!w->is_object()) bad_request(std::string("field \"weights\" must be an object, not ") + type_name(*w));
    if (w->empty()) bad_request("field \"weights\" must name at least one variant");
    for (auto it = w->begin(); it != w->end(); ++it) {
      if (it.key().empty()) bad_request("field \"weights\" has an empty variant name");
      r.weights_bp[it.key()] = weight_value(it.key(), it.value());
    }
    r.force = optional_bool(req, "force");
    r.adopt = optional_bool(req, "adopt");
    return r;
  }
  if (cmd == "switch") {
    return SwitchRequest{required_string(req, "service"), required_string(req, "variant"), optional_bool(req, "force")};
  }
  if (cmd == "rollout") {
    RolloutRequest r;
    r.service = required_string(req, "service");
    const std::string action = required_string(req, "action");
    if (action == "start") r.action = RolloutAction::Start;
    else if (action == "promote") r.action = RolloutAction::Promote;
    else if (action == "pause") r.action = RolloutAction::Pause;
    else if (action == "abort") r.action = RolloutAction::Abort;
    else if (action == "retry") r.action = RolloutAction::Retry;
    else bad_request("field \"action\" is \"" + action + "\": expected start, promote, pause, abort or retry");
    r.full = optional_bool(req, "full");
    if (r.full && r.action != RolloutAction::Promote) bad_request("field \"full\" applies to promote only");
    return r;
  }
  if (cmd == "push") {
    PushRequest r;
    r.service = required_string(req, "service");
    r.variant = required_string(req, "variant");
    auto v = req.find("values");
    if (v == req.end()) bad_request("missing field \"values\"");
    if (!v->is_object()) bad_request(std::string("field \"values\" must be an object, not ") + type_name(*v));
    if (v->empty()) bad_request("field \"values\" must hold at least one NAME: VALUE");
    r.values = *v;
    return r;
  }
  if (cmd == "events") {
    EventsRequest r;
    r.service = optional_string(req, "service");
    r.since = optional_count(req, "since").value_or(0);
    r.limit = optional_count(req, "limit");
    return r;
  }
  if (cmd == "ab") return AbRequest{required_string(req, "service")};
  if (cmd == "view") return ViewRequest{required_string(req, "service")};
  if (cmd == "which") {
    WhichRequest r;
    r.service = required_string(req, "service");
    const std::string client = required_string(req, "client");
    auto addr = parse_client_address(client);
    if (!addr) bad_request("field \"client\" is \"" + client + "\": expected IP or IP:PORT ([IPv6]:PORT)");
    r.client_ip = addr->ip;
    r.client_port = addr->port;
    return r;
  }
  if (cmd == "drain") {
    DrainRequest r;
    r.service = required_string(req, "service");
    const std::string backend = required_string(req, "backend");
    auto ep = Endpoint::parse(backend);
    if (!ep) bad_request("field \"backend\" is \"" + backend + "\": expected IP:PORT ([IPv6]:PORT)");
    r.backend = *ep;
    r.undo = optional_bool(req, "undo");
    return r;
  }
  throw ProtocolError(ErrorCode::UnknownCommand, "unknown command \"" + cmd + "\"");
}

namespace {
template <class... Ts>
struct Overloaded : Ts... {
  using Ts::operator()...;
};
template <class... Ts>
Overloaded(Ts...) -> Overloaded<Ts...>;
}  // namespace

std::string command_name(const Request& request) {
  return std::visit(Overloaded{
                        [](const PingRequest&) { return "ping"; },
                        [](const StatusRequest&) { return "status"; },
                        [](const WeightsRequest&) { return "weights"; },
                        [](const SwitchRequest&) { return "switch"; },
                        [](const WhichRequest&) { return "which"; },
                        [](const DrainRequest&) { return "drain"; },
                        [](const ReloadRequest&) { return "reload"; },
                        [](const ShutdownRequest&) { return "shutdown"; },
                        [](const RolloutRequest&) { return "rollout"; },
                        [](const PushRequest&) { return "push"; },
                        [](const EventsRequest&) { return "events"; },
                        [](const AbRequest&) { return "ab"; },
                        [](const NodesRequest&) { return "nodes"; },
                        [](const ViewRequest&) { return "view"; },
                    },
                    request);
}

json to_json(const Request& request) {
  json j = json::object();
  j["cmd"] = command_name(request);
  std::visit(Overloaded{
                 [](const PingRequest&) {},
                 [](const ReloadRequest&) {},
                 [](const NodesRequest&) {},
                 [&](const ShutdownRequest& r) { j["unload"] = r.unload; },
                 [&](const StatusRequest& r) {
                   if (r.service) j["service"] = *r.service;
                 },
                 [&](const WeightsRequest& r) {
                   j["service"] = r.service;
                   json w = json::object();
                   for (const auto& [variant, bp] : r.weights_bp) w[variant] = format_weight(bp);
                   j["weights"] = w;
                   j["force"] = r.force;
                   if (r.adopt) j["adopt"] = true;
                 },
                 [&](const SwitchRequest& r) {
                   j["service"] = r.service;
                   j["variant"] = r.variant;
                   if (r.force) j["force"] = true;
                 },
                 [&](const RolloutRequest& r) {
                   j["service"] = r.service;
                   j["action"] = to_string(r.action);
                   if (r.full) j["full"] = true;
                 },
                 [&](const PushRequest& r) {
                   j["service"] = r.service;
                   j["variant"] = r.variant;
                   j["values"] = r.values;
                 },
                 [&](const EventsRequest& r) {
                   if (r.service) j["service"] = *r.service;
                   j["since"] = r.since;
                   if (r.limit) j["limit"] = *r.limit;
                 },
                 [&](const AbRequest& r) { j["service"] = r.service; },
                 [&](const ViewRequest& r) { j["service"] = r.service; },
                 [&](const WhichRequest& r) {
                   j["service"] = r.service;
                   if (r.client_port) {
                     j["client"] = Endpoint{r.client_ip, *r.client_port}.to_string();
                   } else {
                     j["client"] = r.client_ip.to_string();
                   }
                 },
                 [&](const DrainRequest& r) {
                   j["service"] = r.service;
                   j["backend"] = r.backend.to_string();
                   j["undo"] = r.undo;
                 },
             },
             request);
  return j;
}

std::string ok_answer(const json& result) {
  json a = json::object();
  a["ok"] = true;
  a["result"] = result;
  return dump_line(a);
}

std::string error_answer(ErrorCode code, std::string_view message) {
  json a = json::object();
  a["ok"] = false;
  a["error"] = json{{"code", to_string(code)}, {"message", std::string(message)}};
  return dump_line(a);
}

Answer parse_answer(std::string_view line) {
  if (!line.empty() && line.back() == '\n') line.remove_suffix(1);
  json a;
  try {
    a = json::parse(line.begin(), line.end());
  } catch (const json::parse_error& e) {
    throw ProtocolError(ErrorCode::BadJson, std::string("malformed answer: ") + e.what());
  }
  if (!a.is_object()) bad_request("answer is not a JSON object");
  auto ok = a.find("ok");
  if (ok == a.end() || !ok->is_boolean()) bad_request("answer has no boolean \"ok\"");
  Answer out;
  out.ok = ok->get<bool>();
  if (out.ok) {
    auto r = a.find("result");
    out.result = r == a.end() ? json::object() : *r;
    return out;
  }
  auto e = a.find("error");
  if (e == a.end() || !e->is_object()) bad_request("error answer has no \"error\" object");
  out.code = e->value("code", std::string("internal"));
  out.message = e->value("message", std::string());
  return out;
}

json to_json(const ServiceStatus& s) {
  json variants = json::array();
  for (const auto& v : s.variants) {
    json backends = json::array();
    for (const auto& b : v.backends) {
      backends.push_back(json{{"address", b.address.to_string()}, {"draining", b.draining}});
    }
    variants.push_back(json{
        {"name", v.name},
        {"weight_desired", format_weight(v.weight_desired_bp)},
        {"weight_applied", format_weight(v.weight_applied_bp)},
        {"backends", backends},
        {"flows", v.flows},
        {"packets_in", v.packets_in},
        {"bytes_in", v.bytes_in},
        {"packets_out", v.packets_out},
        {"bytes_out", v.bytes_out},
    });
  }
  return json{
      {"name", s.name},
      {"id", s.id},
      {"vip", s.vip.to_string()},
      {"port", s.port},
      {"protocol", s.protocol},
      {"affinity", s.affinity},
      {"stable", s.stable},
      {"generation", s.generation},
      {"active_table", s.active_table},
      {"variants", variants},
  };
}

}  // namespace veer::protocol
