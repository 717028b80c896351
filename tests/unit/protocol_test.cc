// Control protocol: request parsing/validation and answer format.
#include "control/protocol.h"

#include <gtest/gtest.h>

#include <string>

using namespace veer;
using namespace veer::protocol;
using nlohmann::json;

namespace {

// The code of the ProtocolError parse_request throws, or "" if it parsed.
std::string error_code_of(std::string_view line) {
  try {
    parse_request(line);
  } catch (const ProtocolError& e) {
    return to_string(e.code());
  } catch (...) {
    return "other exception";
  }
  return "";
}

std::string error_message_of(std::string_view line) {
  try {
    parse_request(line);
  } catch (const ProtocolError& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST(ProtocolParse, Ping) {
  auto r = parse_request(R"({"cmd":"ping"})");
  EXPECT_TRUE(std::holds_alternative<PingRequest>(r));
  EXPECT_EQ(command_name(r), "ping");
}

TEST(ProtocolParse, Nodes) {
  auto r = parse_request(R"({"cmd":"nodes"})");
  EXPECT_TRUE(std::holds_alternative<NodesRequest>(r));
  EXPECT_EQ(command_name(r), "nodes");
  EXPECT_EQ(to_json(r), nlohmann::json::parse(R"({"cmd":"nodes"})"));
}

TEST(ProtocolParse, AcceptsTrailingNewlineAndCrLf) {
  EXPECT_TRUE(std::holds_alternative<PingRequest>(parse_request("{\"cmd\":\"ping\"}\n")));
  EXPECT_TRUE(std::holds_alternative<PingRequest>(parse_request("{\"cmd\":\"ping\"}\r\n")));
}

TEST(ProtocolParse, StatusWithAndWithoutService) {
  auto all = std::get<StatusRequest>(parse_request(R"({"cmd":"status"})"));
  EXPECT_FALSE(all.service.has_value());
  auto one = std::get<StatusRequest>(parse_request(R"({"cmd":"status","service":"ranker"})"));
  ASSERT_TRUE(one.service.has_value());
  EXPECT_EQ(*one.service, "ranker");
}

TEST(ProtocolParse, WeightsAsStringsAndNumbers) {
  auto r = std::get<WeightsRequest>(parse_request(
      R"({"cmd":"weights","service":"ranker","weights":{"blue":"94.5","green":5,"canary":0.5},"force":true})"));
  EXPECT_EQ(r.service, "ranker");
  ASSERT_EQ(r.weights_bp.size(), 3u);
  EXPECT_EQ(r.weights_bp.at("blue"), 9450u);
  EXPECT_EQ(r.weights_bp.at("green"), 500u);
  EXPECT_EQ(r.weights_bp.at("canary"), 50u);
  EXPECT_TRUE(r.force);
  auto no_force = std::get<WeightsRequest>(parse_request(R"({"cmd":"weights","service":"s","weights":{"a":"100"}})"));
  EXPECT_FALSE(no_force.force);
}

TEST(ProtocolParse, WeightsWithTwoDecimalsAsNumber) {
  auto r = std::get<WeightsRequest>(parse_request(R"({"cmd":"weights","service":"s","weights":{"a":99.95,"b":0.05}})"));
  EXPECT_EQ(r.weights_bp.at("a"), 9995u);
  EXPECT_EQ(r.weights_bp.at("b"), 5u);
}

TEST(ProtocolParse, BadWeightsAreRefusedNamingTheVariant) {
  EXPECT_EQ(error_code_of(R"({"cmd":"weights","service":"s","weights":{"a":"abc"}})"), "bad_request");
  EXPECT_NE(error_message_of(R"({"cmd":"weights","service":"s","weights":{"canary":"abc"}})").find("canary"),
            std::string::npos);
  EXPECT_EQ(error_code_of(R"({"cmd":"weights","service":"s","weights":{"a":"100.001"}})"), "bad_request");
  EXPECT_EQ(error_code_of(R"({"cmd":"weights","service":"s","weights":{"a":100.001}})"), "bad_request");
  EXPECT_EQ(error_code_of(R"({"cmd":"weights","service":"s","weights":{"a":101}})"), "bad_request");
  EXPECT_EQ(error_code_of(R"({"cmd":"weights","service":"s","weights":{"a":-5}})"), "bad_request");
  EXPECT_EQ(error_code_of(R"({"cmd":"weights","service":"s","weights":{"a":true}})"), "bad_request");
  EXPECT_EQ(error_code_of(R"({"cmd":"weights","service":"s","weights":{"a":null}})"), "bad_request");
  EXPECT_EQ(error_code_of(R"({"cmd":"weights","service":"s","weights":{"a":[50]}})"), "bad_request");
  EXPECT_EQ(error_code_of(R"({"cmd":"weights","service":"s","weights":["a"]})"), "bad_request");
  EXPECT_EQ(error_code_of(R"({"cmd":"weights","service":"s","weights":{}})"), "bad_request");
  EXPECT_EQ(error_code_of(R"({"cmd":"weights","service":"s"})"), "bad_request");
  EXPECT_EQ(error_code_of(R"({"cmd":"weights","weights":{"a":"100"}})"), "bad_request");
  EXPECT_EQ(error_code_of(R"({"cmd":"weights","service":"s","weights":{"a":"100"},"force":"yes"})"), "bad_request");
  EXPECT_NE(error_message_of(R"({"cmd":"weights","service":"s","weights":{"a":"100"},"force":1})").find("force"),
            std::string::npos);
}

TEST(ProtocolParse, Switch) {
  auto r = std::get<SwitchRequest>(parse_request(R"({"cmd":"switch","service":"ranker","variant":"green"})"));
  EXPECT_EQ(r.service, "ranker");
  EXPECT_EQ(r.variant, "green");
  EXPECT_EQ(error_code_of(R"({"cmd":"switch","service":"ranker"})"), "bad_request");
  EXPECT_NE(error_message_of(R"({"cmd":"switch","service":"ranker","variant":7})").find("variant"),
            std::string::npos);
}

TEST(ProtocolParse, WhichClientForms) {
  auto v4 = std::get<WhichRequest>(parse_request(R"({"cmd":"which","service":"s","client":"10.0.1.10:43210"})"));
  EXPECT_EQ(v4.client_ip, *IpAddress::parse("10.0.1.10"));
  ASSERT_TRUE(v4.client_port.has_value());
  EXPECT_EQ(*v4.client_port, 43210);

  auto bare = std::get<WhichRequest>(parse_request(R"({"cmd":"which","service":"s","client":"10.0.1.10"})"));
  EXPECT_FALSE(bare.client_port.has_value());

  auto v6 = std::get<WhichRequest>(parse_request(R"({"cmd":"which","service":"s","client":"[fd00::10]:80"})"));
  EXPECT_EQ(v6.client_ip, *IpAddress::parse("fd00::10"));
  EXPECT_EQ(v6.client_port.value_or(0), 80);

  auto v6bare = std::get<WhichRequest>(parse_request(R"({"cmd":"which","service":"s","client":"fd00::10"})"));
  EXPECT_EQ(v6bare.client_ip.family, VEER_AF_INET6);
  EXPECT_FALSE(v6bare.client_port.has_value());

  EXPECT_EQ(error_code_of(R"({"cmd":"which","service":"s","client":"10.0.1.300"})"), "bad_request");
  EXPECT_EQ(error_code_of(R"({"cmd":"which","service":"s","client":"10.0.1.1:0"})"), "bad_request");
  EXPECT_EQ(error_code_of(R"({"cmd":"which","service":"s","client":"10.0.1.1:70000"})"), "bad_request");
  EXPECT_EQ(error_code_of(R"({"cmd":"which","service":"s"})"), "bad_request");
}

TEST(ProtocolParse, Drain) {
  auto r = std::get<DrainRequest>(parse_request(R"({"cmd":"drain","service":"s","backend":"10.1.1.2:8080"})"));
  EXPECT_EQ(r.backend.to_string(), "10.1.1.2:8080");
  EXPECT_FALSE(r.undo);
  auto undo = std::get<DrainRequest>(
      parse_request(R"({"cmd":"drain","service":"s","backend":"[fd00:1::2]:8080","undo":true})"));
  EXPECT_TRUE(undo.undo);
  EXPECT_EQ(undo.backend.port, 8080);
  EXPECT_EQ(error_code_of(R"({"cmd":"drain","service":"s","backend":"10.1.1.2"})"), "bad_request");
  EXPECT_EQ(error_code_of(R"({"cmd":"drain","service":"s","backend":"10.1.1.2:8080","undo":"no"})"), "bad_request");
}

TEST(ProtocolParse, Reload) { EXPECT_TRUE(std::holds_alternative<ReloadRequest>(parse_request(R"({"cmd":"reload"})"))); }

TEST(ProtocolParse, Shutdown) {
  EXPECT_FALSE(std::get<ShutdownRequest>(parse_request(R"({"cmd":"shutdown"})")).unload);
  EXPECT_FALSE(std::get<ShutdownRequest>(parse_request(R"({"cmd":"shutdown","unload":false})")).unload);
  EXPECT_TRUE(std::get<ShutdownRequest>(parse_request(R"({"cmd":"shutdown","unload":true})")).unload);
  // A typo must not turn into "keep the data plane" silently.
  EXPECT_EQ(error_code_of(R"({"cmd":"shutdown","unload":"yes"})"), "bad_request");
  EXPECT_EQ(error_code_of(R"({"cmd":"shutdown","unload":1})"), "bad_request");
  for (bool unload : {false, true}) {
    const Request r = ShutdownRequest{unload};
    EXPECT_EQ(command_name(r), "shutdown");
    EXPECT_EQ(std::get<ShutdownRequest>(parse_request(to_json(r).dump())).unload, unload);
  }
}

TEST(ProtocolParse, ExtraFieldsAreIgnored) {
  EXPECT_TRUE(std::holds_alternative<PingRequest>(parse_request(R"({"cmd":"ping","id":42,"x":{"y":[1]}})")));
}

TEST(ProtocolParse, MalformedJson) {
  EXPECT_EQ(error_code_of("garbage"), "bad_json");
  EXPECT_EQ(error_code_of(""), "bad_json");
  EXPECT_EQ(error_code_of("{cmd:ping}"), "bad_json");
  EXPECT_EQ(error_code_of("{\"cmd\":\"ping\"} trailing"), "bad_json");
  EXPECT_EQ(error_code_of("\x01\x02\xff\xfe"), "bad_json");
  EXPECT_EQ(error_code_of("{\"cmd\":\"p\xffng\"}"), "bad_json");  // invalid UTF-8 in a string
}

TEST(ProtocolParse, TruncatedJson) {
  const std::string full = R"({"cmd":"weights","service":"s","weights":{"a":"100"}})";
  // Every proper prefix is malformed JSON, never a crash or a parsed request.
  for (size_t n = 0; n < full.size(); ++n) {
    EXPECT_EQ(error_code_of(full.substr(0, n)), "bad_json") << "prefix of " << n << " bytes";
  }
  EXPECT_EQ(error_code_of(full), "");
}

TEST(ProtocolParse, NotAnObject) {
  EXPECT_EQ(error_code_of("[]"), "bad_request");
  EXPECT_EQ(error_code_of("\"ping\""), "bad_request");
  EXPECT_EQ(error_code_of("42"), "bad_request");
  EXPECT_EQ(error_code_of("null"), "bad_request");
  EXPECT_EQ(error_code_of(R"([{"cmd":"ping"}])"), "bad_request");
}

TEST(ProtocolParse, MissingOrNonStringCmd) {
  EXPECT_EQ(error_code_of("{}"), "bad_request");
  EXPECT_EQ(error_code_of(R"({"command":"ping"})"), "bad_request");
  EXPECT_EQ(error_code_of(R"({"cmd":1})"), "bad_request");
  EXPECT_EQ(error_code_of(R"({"cmd":null})"), "bad_request");
  EXPECT_EQ(error_code_of(R"({"cmd":["ping"]})"), "bad_request");
  EXPECT_NE(error_message_of("{}").find("cmd"), std::string::npos);
}

TEST(ProtocolParse, UnknownCommand) {
  EXPECT_EQ(error_code_of(R"({"cmd":"format_disk"})"), "unknown_command");
  EXPECT_EQ(error_code_of(R"({"cmd":""})"), "unknown_command");
  EXPECT_EQ(error_code_of(R"({"cmd":"PING"})"), "unknown_command");
  EXPECT_NE(error_message_of(R"({"cmd":"format_disk"})").find("format_disk"), std::string::npos);
}

TEST(ProtocolParse, WrongFieldTypes) {
  EXPECT_EQ(error_code_of(R"({"cmd":"status","service":5})"), "bad_request");
  EXPECT_EQ(error_code_of(R"({"cmd":"status","service":""})"), "bad_request");
  EXPECT_EQ(error_code_of(R"({"cmd":"which","service":"s","client":10})"), "bad_request");
  EXPECT_EQ(error_code_of(R"({"cmd":"drain","service":{"a":1},"backend":"10.1.1.2:80"})"), "bad_request");
  EXPECT_NE(error_message_of(R"({"cmd":"status","service":5})").find("service"), std::string::npos);
}

TEST(ProtocolParse, OversizedLine) {
  // A valid request padded past the limit is refused on size alone.
  std::string line = R"({"cmd":"ping","pad":")";
  line += std::string(kMaxLineBytes, 'x');
  line += "\"}";
  EXPECT_EQ(error_code_of(line), "too_large");
  // One byte under the limit is parsed.
  std::string fits = R"({"cmd":"ping","pad":")";
  fits += std::string(kMaxLineBytes - fits.size() - 2, 'x');
  fits += "\"}";
  ASSERT_EQ(fits.size(), kMaxLineBytes);
  EXPECT_EQ(error_code_of(fits), "");
  EXPECT_EQ(error_code_of(std::string(1 << 20, '{')), "too_large");
}

TEST(ProtocolParse, DeepNestingWithinLimitIsHandled) {
  // Tens of thousands of nesting levels: an error answer, not a stack overflow.
  EXPECT_EQ(error_code_of(std::string(60000, '[')), "bad_json");
  EXPECT_EQ(error_code_of(std::string(30000, '[') + std::string(30000, ']')), "bad_request");
}

TEST(ProtocolAnswer, OkAnswerFormat) {
  const std::string line = ok_answer(json{{"version", "0.1.0"}, {"pid", 7}});
  EXPECT_EQ(line.find('\n'), std::string::npos);
  auto j = json::parse(line);
  EXPECT_EQ(j.at("ok"), true);
  EXPECT_EQ(j.at("result").at("pid"), 7);
  EXPECT_FALSE(j.contains("error"));
}

TEST(ProtocolAnswer, ErrorAnswerFormat) {
  const std::string line = error_answer(ErrorCode::UnknownCommand, "unknown command \"x\"\nsecond line");
  EXPECT_EQ(line.find('\n'), std::string::npos);
  auto j = json::parse(line);
  EXPECT_EQ(j.at("ok"), false);
  EXPECT_EQ(j.at("error").at("code"), "unknown_command");
  EXPECT_EQ(j.at("error").at("message"), "unknown command \"x\"\nsecond line");
  EXPECT_FALSE(j.contains("result"));
}

TEST(ProtocolAnswer, InvalidUtf8InMessageDoesNotThrow) {
  std::string line;
  EXPECT_NO_THROW(line = error_answer(ErrorCode::NotFound, "no service \"\xff\xfe\""));
  EXPECT_NO_THROW(json::parse(line));
}

TEST(ProtocolAnswer, EveryCodeRoundTrips) {
  for (auto code : {ErrorCode::BadJson, ErrorCode::BadRequest, ErrorCode::UnknownCommand, ErrorCode::TooLarge,
                    ErrorCode::NotFound, ErrorCode::Refused, ErrorCode::ConfigInvalid, ErrorCode::PermissionDenied,
                    ErrorCode::Internal}) {
    auto a = parse_answer(error_answer(code, "m"));
    EXPECT_FALSE(a.ok);
    EXPECT_EQ(error_code_from_string(a.code), code);
    EXPECT_EQ(a.message, "m");
  }
  EXPECT_EQ(to_string(ErrorCode::TooLarge), "too_large");
  EXPECT_EQ(to_string(ErrorCode::ConfigInvalid), "config_invalid");
  EXPECT_FALSE(error_code_from_string("nope").has_value());
}

TEST(ProtocolAnswer, ParseAnswerRejectsNonAnswers) {
  auto ok = parse_answer(ok_answer(json{{"x", 1}}));
  EXPECT_TRUE(ok.ok);
  EXPECT_EQ(ok.result.at("x"), 1);
  EXPECT_THROW(parse_answer("nope"), ProtocolError);
  EXPECT_THROW(parse_answer("{}"), ProtocolError);
  EXPECT_THROW(parse_answer(R"({"ok":false})"), ProtocolError);
}

TEST(ProtocolRequestJson, RoundTripsThroughTheParser) {
  WeightsRequest w{"ranker", {{"blue", 9000}, {"canary", 500}, {"green", 500}}, true};
  auto back = std::get<WeightsRequest>(parse_request(to_json(Request{w}).dump()));
  EXPECT_EQ(back.service, "ranker");
  EXPECT_EQ(back.weights_bp, w.weights_bp);
  EXPECT_TRUE(back.force);
  EXPECT_FALSE(back.adopt);
  w.adopt = true;
  EXPECT_TRUE(std::get<WeightsRequest>(parse_request(to_json(Request{w}).dump())).adopt);
  EXPECT_EQ(error_code_of(R"({"cmd":"weights","service":"s","weights":{"a":"100"},"adopt":"yes"})"), "bad_request");

  WhichRequest which{"ranker", *IpAddress::parse("fd00::10"), uint16_t{443}};
  auto wb = std::get<WhichRequest>(parse_request(to_json(Request{which}).dump()));
  EXPECT_EQ(wb.client_ip, which.client_ip);
  EXPECT_EQ(wb.client_port, which.client_port);

  DrainRequest drain{"ranker", *Endpoint::parse("10.1.1.2:8080"), true};
  auto db = std::get<DrainRequest>(parse_request(to_json(Request{drain}).dump()));
  EXPECT_EQ(db.backend, drain.backend);
  EXPECT_TRUE(db.undo);
}

TEST(ProtocolStatus, ServiceStatusShape) {
  ServiceStatus s;
  s.name = "ranker";
  s.vip = *IpAddress::parse("10.0.0.100");
  s.port = 80;
  s.protocol = "tcp";
  s.affinity = "connection";
  s.stable = "blue";
  s.generation = 3;
  s.active_table = 1;
  VariantStatus blue;
  blue.name = "blue";
  blue.weight_desired_bp = 9000;
  blue.weight_applied_bp = 9950;
  blue.backends = {{*Endpoint::parse("10.1.1.2:8080"), false}, {*Endpoint::parse("10.1.1.3:8080"), true}};
  blue.flows = 12;
  blue.packets_in = 100;
  blue.bytes_in = 6400;
  s.variants.push_back(blue);
  auto j = to_json(s);
  EXPECT_EQ(j.at("vip"), "10.0.0.100");
  EXPECT_EQ(j.at("port"), 80);
  EXPECT_EQ(j.at("generation"), 3);
  EXPECT_EQ(j.at("active_table"), 1);
  const auto& v = j.at("variants").at(0);
  EXPECT_EQ(v.at("weight_desired"), "90.00");
  EXPECT_EQ(v.at("weight_applied"), "99.50");
  EXPECT_EQ(v.at("backends").at(1).at("address"), "10.1.1.3:8080");
  EXPECT_EQ(v.at("backends").at(1).at("draining"), true);
  EXPECT_EQ(v.at("flows"), 12);
  EXPECT_EQ(v.at("bytes_in"), 6400);
  EXPECT_EQ(v.at("packets_out"), 0);
}

// ---- issue 4 requests ----

TEST(ProtocolIssue4, RolloutRequest) {
  auto r = std::get<RolloutRequest>(parse_request(R"({"cmd":"rollout","service":"m","action":"promote","full":true})"));
  EXPECT_EQ(r.service, "m");
  EXPECT_EQ(r.action, RolloutAction::Promote);
  EXPECT_TRUE(r.full);
  auto a = std::get<RolloutRequest>(parse_request(R"({"cmd":"rollout","service":"m","action":"abort"})"));
  EXPECT_EQ(a.action, RolloutAction::Abort);
  EXPECT_FALSE(a.full);
  for (const char* bad : {R"({"cmd":"rollout","service":"m"})", R"({"cmd":"rollout","service":"m","action":"go"})",
                          R"({"cmd":"rollout","action":"start"})",
                          R"({"cmd":"rollout","service":"m","action":"start","full":true})",
                          R"({"cmd":"rollout","service":"m","action":"promote","full":"yes"})"}) {
    try {
      parse_request(bad);
      ADD_FAILURE() << bad;
    } catch (const ProtocolError& e) {
      EXPECT_EQ(e.code(), ErrorCode::BadRequest) << bad;
    }
  }
  // Round trip through the client's request line.
  EXPECT_EQ(std::get<RolloutRequest>(parse_request(to_json(Request{r}).dump())).full, true);
}

TEST(ProtocolIssue4, PushEventsAbSwitchForce) {
  auto p = std::get<PushRequest>(
      parse_request(R"({"cmd":"push","service":"m","variant":"canary","values":{"conversion":"1*130","revenue":12.5}})"));
  EXPECT_EQ(p.variant, "canary");
  EXPECT_EQ(p.values.at("conversion"), "1*130");
  EXPECT_THROW(parse_request(R"({"cmd":"push","service":"m","variant":"c","values":{}})"), ProtocolError);
  EXPECT_THROW(parse_request(R"({"cmd":"push","service":"m","variant":"c","values":[1]})"), ProtocolError);
  EXPECT_THROW(parse_request(R"({"cmd":"push","service":"m","values":{"a":1}})"), ProtocolError);

  auto e = std::get<EventsRequest>(parse_request(R"({"cmd":"events","since":7,"limit":3})"));
  EXPECT_FALSE(e.service);
  EXPECT_EQ(e.since, 7u);
  EXPECT_EQ(e.limit, 3u);
  auto e2 = std::get<EventsRequest>(parse_request(R"({"cmd":"events","service":"m"})"));
  EXPECT_EQ(e2.service, "m");
  EXPECT_EQ(e2.since, 0u);
  EXPECT_FALSE(e2.limit);
  EXPECT_THROW(parse_request(R"({"cmd":"events","since":-1})"), ProtocolError);
  EXPECT_THROW(parse_request(R"({"cmd":"events","since":"3"})"), ProtocolError);

  EXPECT_EQ(std::get<AbRequest>(parse_request(R"({"cmd":"ab","service":"m"})")).service, "m");
  EXPECT_THROW(parse_request(R"({"cmd":"ab"})"), ProtocolError);

  EXPECT_TRUE(std::get<SwitchRequest>(parse_request(R"({"cmd":"switch","service":"m","variant":"g","force":true})")).force);
  EXPECT_FALSE(std::get<SwitchRequest>(parse_request(R"({"cmd":"switch","service":"m","variant":"g"})")).force);
  EXPECT_EQ(command_name(Request{AbRequest{"m"}}), "ab");

  EXPECT_EQ(std::get<ViewRequest>(parse_request(R"({"cmd":"view","service":"m"})")).service, "m");
  EXPECT_THROW(parse_request(R"({"cmd":"view"})"), ProtocolError);
  EXPECT_THROW(parse_request(R"({"cmd":"view","service":7})"), ProtocolError);
  EXPECT_EQ(command_name(Request{ViewRequest{"m"}}), "view");
  EXPECT_EQ(to_json(Request{ViewRequest{"m"}}), (nlohmann::json{{"cmd", "view"}, {"service", "m"}}));
}
