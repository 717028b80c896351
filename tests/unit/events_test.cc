// veerd's event ring and events.jsonl (control/events.h).
#include "control/events.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>

namespace veer {
namespace {

Event ev(const std::string& service, const std::string& kind, int64_t t = 1700000000123) {
  return Event{0, t, service, kind, kind + " of " + service, {{"value", 1.5}}};
}

TEST(EventTime, Rfc3339WithMilliseconds) {
  EXPECT_EQ(format_rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
  EXPECT_EQ(format_rfc3339_ms(1700000000123), "2023-11-14T22:13:20.123Z");
  EXPECT_EQ(parse_rfc3339_ms("2023-11-14T22:13:20.123Z"), 1700000000123);
  EXPECT_FALSE(parse_rfc3339_ms("2023-11-14 22:13:20"));
}

TEST(EventLog, NumbersAndPagesBySince) {
  EventLog log(100);
  for (int i = 0; i < 5; ++i) log.append(ev(i % 2 ? "b" : "a", "gate"));
  EXPECT_EQ(log.next_seq(), 6u);
  auto all = log.since(0, std::nullopt, 0);
  ASSERT_EQ(all.events.size(), 5u);
  EXPECT_EQ(all.events.front().seq, 1u);
  EXPECT_EQ(all.next, 6u);
  auto from3 = log.since(3, std::nullopt, 0);
  ASSERT_EQ(from3.events.size(), 3u);
  EXPECT_EQ(from3.events.front().seq, 3u);
  auto only_a = log.since(0, std::string("a"), 0);
  ASSERT_EQ(only_a.events.size(), 3u);
  for (const auto& e : only_a.events) EXPECT_EQ(e.service, "a");
  EXPECT_EQ(only_a.next, 6u);
  auto limited = log.since(0, std::nullopt, 2);
  ASSERT_EQ(limited.events.size(), 2u);
  EXPECT_EQ(limited.next, 3u);  // continue from the third
  auto rest = log.since(limited.next, std::nullopt, 0);
  EXPECT_EQ(rest.events.size(), 3u);
  auto none = log.since(6, std::nullopt, 0);
  EXPECT_TRUE(none.events.empty());
  EXPECT_EQ(none.next, 6u);
}

TEST(EventLog, RingKeepsTheNewest) {
  EventLog log(3);
  for (int i = 0; i < 10; ++i) log.append(ev("a", "weights"));
  EXPECT_EQ(log.size(), 3u);
  auto all = log.since(0, std::nullopt, 0);
  ASSERT_EQ(all.events.size(), 3u);
  EXPECT_EQ(all.events.front().seq, 8u);
  EXPECT_EQ(all.next, 11u);
}

TEST(EventJson, RoundTripAndNonFinite) {
  Event e = ev("svc", "abort");
  e.seq = 42;
  e.values["inf"] = INFINITY;
  const auto j = to_json(e);
  EXPECT_TRUE(j["values"]["inf"].is_null());
  EXPECT_EQ(j["time"], "2023-11-14T22:13:20.123Z");
  auto back = event_from_json(j);
  ASSERT_TRUE(back);
  EXPECT_EQ(back->seq, 42u);
  EXPECT_EQ(back->message, e.message);
  EXPECT_DOUBLE_EQ(back->values.at("value"), 1.5);
  EXPECT_FALSE(event_from_json(nlohmann::json{{"seq", -1}}));
}

TEST(EventFile, AppendRotateRestore) {
  const std::string dir = ::testing::TempDir() + "veer-events-" + std::to_string(::getpid());
  std::filesystem::remove_all(dir);
  const std::string path = dir + "/events.jsonl";
  {
    EventFile file(path, 600);  // a few events per file
    EventLog log;
    for (int i = 0; i < 12; ++i) file.append(log.append(ev("a", "gate")));
    std::ofstream(path, std::ios::app) << "not json\n";  // a damaged line is skipped
  }
  EXPECT_TRUE(std::filesystem::exists(path + ".1"));
  EXPECT_LE(std::filesystem::file_size(path), 700u);
  EventFile file(path, 600);
  const auto events = file.read_all();
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events.back().seq, 12u);
  for (size_t i = 1; i < events.size(); ++i) EXPECT_LT(events[i - 1].seq, events[i].seq);
  EventLog restored;
  restored.restore(events);
  EXPECT_EQ(restored.next_seq(), 13u);  // numbering continues after a restart
  EXPECT_EQ(restored.append(ev("a", "x")).seq, 13u);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace veer
