// Shell completion's names (veerctl __complete) from status answers built the
// way veerd builds them (protocol::to_json of ServiceStatus).
#include "control/completion.h"

#include <gtest/gtest.h>

#include "control/protocol.h"

using namespace veer;
using namespace veer::protocol;
using nlohmann::json;
using Names = std::vector<std::string>;

namespace {

VariantStatus variant(const std::string& name, std::vector<std::string> backends) {
  VariantStatus v;
  v.name = name;
  for (const auto& b : backends) v.backends.push_back({*Endpoint::parse(b), false});
  return v;
}

ServiceStatus service(const std::string& name, std::vector<VariantStatus> variants) {
  ServiceStatus s;
  s.name = name;
  s.vip = *IpAddress::parse("10.0.0.100");
  s.port = 80;
  s.protocol = "tcp";
  s.affinity = "connection";
  s.stable = variants.empty() ? "" : variants.front().name;
  s.variants = std::move(variants);
  return s;
}

json status_answer() {
  json services = json::array();
  services.push_back(to_json(service("ranker", {variant("blue", {"10.1.1.2:8080", "10.1.1.3:8080"}),
                                                variant("green", {"10.1.2.2:8080"}),
                                                variant("canary", {"[fd00:13::2]:8080"})})));
  services.push_back(to_json(service("ranker-udp", {variant("blue", {"10.1.1.2:9000"}),
                                                    variant("green", {"10.1.2.2:9000"})})));
  return json{{"node", json::object()}, {"services", services}, {"reasons", json::object()}};
}

}  // namespace

TEST(Completion, KindsByName) {
  EXPECT_EQ(completion_kind_from_string("services"), CompletionKind::Services);
  EXPECT_EQ(completion_kind_from_string("variants"), CompletionKind::Variants);
  EXPECT_EQ(completion_kind_from_string("backends"), CompletionKind::Backends);
  EXPECT_EQ(completion_kind_from_string("Services"), std::nullopt);
  EXPECT_EQ(completion_kind_from_string(""), std::nullopt);
}

TEST(Completion, ServicesInTheDaemonsOrder) {
  EXPECT_EQ(completion_names(status_answer(), CompletionKind::Services), (Names{"ranker", "ranker-udp"}));
}

TEST(Completion, VariantsOfOneService) {
  EXPECT_EQ(completion_names(status_answer(), CompletionKind::Variants, "ranker"),
            (Names{"blue", "green", "canary"}));
  EXPECT_EQ(completion_names(status_answer(), CompletionKind::Variants, "ranker-udp"), (Names{"blue", "green"}));
  EXPECT_EQ(completion_names(status_answer(), CompletionKind::Variants, "rank"), Names{});  // no prefix match
  EXPECT_EQ(completion_names(status_answer(), CompletionKind::Variants), Names{});          // no service
}

TEST(Completion, BackendsOfOneServiceAsDrainTakesThem) {
  const Names backends = completion_names(status_answer(), CompletionKind::Backends, "ranker");
  EXPECT_EQ(backends, (Names{"10.1.1.2:8080", "10.1.1.3:8080", "10.1.2.2:8080", "[fd00:13::2]:8080"}));
  for (const auto& b : backends) EXPECT_TRUE(Endpoint::parse(b).has_value()) << b;  // what drain accepts
}

TEST(Completion, EachNameOnce) {
  json twice = status_answer();
  twice["services"].push_back(twice["services"][0]);
  EXPECT_EQ(completion_names(twice, CompletionKind::Services), (Names{"ranker", "ranker-udp"}));
  EXPECT_EQ(completion_names(twice, CompletionKind::Variants, "ranker"), (Names{"blue", "green", "canary"}));
  json shared = status_answer();
  shared["services"][0]["variants"][1]["backends"] = shared["services"][0]["variants"][0]["backends"];
  EXPECT_EQ(completion_names(shared, CompletionKind::Backends, "ranker"),
            (Names{"10.1.1.2:8080", "10.1.1.3:8080", "[fd00:13::2]:8080"}));
}

TEST(Completion, MalformedAnswersGiveWhatIsReadable) {
  EXPECT_EQ(completion_names(json(nullptr), CompletionKind::Services), Names{});
  EXPECT_EQ(completion_names(json::array(), CompletionKind::Services), Names{});
  EXPECT_EQ(completion_names(json{{"services", "ranker"}}, CompletionKind::Services), Names{});
  json odd{{"services", json::array({7, json{{"name", 3}}, json{{"id", 1}}, json{{"name", "ok"}, {"variants", 5}},
                                     json{{"name", "two"}, {"variants", json::array({"x", json{{"name", "v"}}})}}})}};
  EXPECT_EQ(completion_names(odd, CompletionKind::Services), (Names{"ok", "two"}));
  EXPECT_EQ(completion_names(odd, CompletionKind::Variants, "ok"), Names{});
  EXPECT_EQ(completion_names(odd, CompletionKind::Variants, "two"), Names{"v"});
  EXPECT_EQ(completion_names(odd, CompletionKind::Backends, "two"), Names{});
}

TEST(Completion, NamesThatWouldBreakTheOutputAreLeftOut) {
  json answer{{"services", json::array({json{{"name", ""}}, json{{"name", "two words"}}, json{{"name", "line\nbreak"}},
                                        json{{"name", "tab\t"}}, json{{"name", "del\x7f"}}, json{{"name", "good"}}})}};
  EXPECT_EQ(completion_names(answer, CompletionKind::Services), Names{"good"});
}
