// host:port and http:// URL parsing of veer_net (pure).
#include "veer/host_port.h"

#include <gtest/gtest.h>

namespace veer::net {
namespace {

TEST(HostPort, AcceptsIpv4Ipv6AndNames) {
  auto a = parse_host_port("127.0.0.1:9469");
  ASSERT_TRUE(a);
  EXPECT_EQ(a->host, "127.0.0.1");
  EXPECT_EQ(a->port, 9469);
  auto b = parse_host_port("[::1]:0");
  ASSERT_TRUE(b);
  EXPECT_EQ(b->host, "::1");
  EXPECT_EQ(b->port, 0);
  EXPECT_EQ(b->host_for_url(), "[::1]");
  auto c = parse_host_port("localhost:65535");
  ASSERT_TRUE(c);
  EXPECT_EQ(c->host, "localhost");
  EXPECT_EQ(c->port, 65535);
}

TEST(HostPort, RejectsWithAMessage) {
  for (const char* bad : {"", "9469", "127.0.0.1", "127.0.0.1:", "127.0.0.1:65536", "127.0.0.1:-1", "127.0.0.1:9x",
                          "::1:9469", "[::1]", "[::1]9469", "[nothost]:1", "[::1:1", "ho st:1", "h_st:1", ":9469"}) {
    std::string error;
    EXPECT_FALSE(parse_host_port(bad, &error)) << bad;
    EXPECT_FALSE(error.empty()) << bad;
  }
}

TEST(HttpUrl, Parses) {
  auto u = parse_http_url("http://10.1.3.2:8080/metrics");
  ASSERT_TRUE(u);
  EXPECT_EQ(u->authority.host, "10.1.3.2");
  EXPECT_EQ(u->authority.port, 8080);
  EXPECT_EQ(u->target, "/metrics");
  u = parse_http_url("HTTP://example.org");
  ASSERT_TRUE(u);
  EXPECT_EQ(u->authority.port, 80);
  EXPECT_EQ(u->target, "/");
  u = parse_http_url("http://[fd00::2]:9100/m?x=1&y=2#frag");
  ASSERT_TRUE(u);
  EXPECT_EQ(u->authority.host, "fd00::2");
  EXPECT_EQ(u->authority.port, 9100);
  EXPECT_EQ(u->target, "/m?x=1&y=2");
  u = parse_http_url("http://h?q");
  ASSERT_TRUE(u);
  EXPECT_EQ(u->target, "/?q");
}

TEST(HttpUrl, HttpsIsMarkedWithPort443ByDefault) {
  auto u = parse_http_url("https://10.0.0.1/metrics");
  ASSERT_TRUE(u);
  EXPECT_TRUE(u->https);
  EXPECT_EQ(u->authority.port, 443);
  u = parse_http_url("HTTPS://[::1]:2379");
  ASSERT_TRUE(u);
  EXPECT_TRUE(u->https);
  EXPECT_EQ(u->authority.host, "::1");
  EXPECT_EQ(u->authority.port, 2379);
  EXPECT_FALSE(parse_http_url("http://10.0.0.1/")->https);
}

TEST(HttpUrl, RejectsWithAMessage) {
  std::string error;
  for (const char* bad : {"", "10.0.0.1:80/metrics", "ftp://h/", "http://", "http:///x", "http://h:0/",
                          "http://h:99999/", "http://user@h/", "http://h /", "http://h/a b", "http://fd00::2/",
                          "http://[fd00::2/", "http://h/\n"}) {
    error.clear();
    EXPECT_FALSE(parse_http_url(bad, &error)) << bad;
    EXPECT_FALSE(error.empty()) << bad;
  }
}

}  // namespace
}  // namespace veer::net
