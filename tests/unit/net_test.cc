#include <gtest/gtest.h>

#include "config/net.h"

namespace veer {
namespace {

TEST(IpAddress, ParsesAndFormatsIPv4) {
  auto ip = IpAddress::parse("10.0.0.100");
  ASSERT_TRUE(ip);
  EXPECT_EQ(ip->family, VEER_AF_INET);
  EXPECT_EQ(ip->to_string(), "10.0.0.100");
  const veer_addr a = ip->to_abi();
  const uint8_t* b = reinterpret_cast<const uint8_t*>(&a.addr[0]);
  EXPECT_EQ(b[0], 10);
  EXPECT_EQ(b[3], 100);
  EXPECT_EQ(a.addr[1], 0u);
  EXPECT_EQ(a.addr[2], 0u);
  EXPECT_EQ(a.addr[3], 0u);
  EXPECT_EQ(IpAddress::from_abi(a, VEER_AF_INET), *ip);
}

TEST(IpAddress, ParsesAndFormatsIPv6) {
  auto ip = IpAddress::parse("FD00:0::2");
  ASSERT_TRUE(ip);
  EXPECT_EQ(ip->family, VEER_AF_INET6);
  EXPECT_EQ(ip->to_string(), "fd00::2");
  const veer_addr a = ip->to_abi();
  const uint8_t* b = reinterpret_cast<const uint8_t*>(a.addr);
  EXPECT_EQ(b[0], 0xfd);
  EXPECT_EQ(b[15], 2);
  EXPECT_EQ(IpAddress::from_abi(a, VEER_AF_INET6), *ip);
}

TEST(IpAddress, RefusesGarbage) {
  for (const char* bad : {"", "10.0.0", "10.0.0.256", "abc", "10.0.0.1 ", "fd00:::2", "1.2.3.4/24"})
    EXPECT_FALSE(IpAddress::parse(bad)) << bad;
}

TEST(Endpoint, ParsesBothFamilies) {
  auto v4 = Endpoint::parse("10.1.1.2:8080");
  ASSERT_TRUE(v4);
  EXPECT_EQ(v4->port, 8080);
  EXPECT_EQ(v4->to_string(), "10.1.1.2:8080");
  auto v6 = Endpoint::parse("[fd00::2]:443");
  ASSERT_TRUE(v6);
  EXPECT_EQ(v6->ip.family, VEER_AF_INET6);
  EXPECT_EQ(v6->port, 443);
  EXPECT_EQ(v6->to_string(), "[fd00::2]:443");
}

TEST(Endpoint, RefusesBadForms) {
  for (const char* bad : {"10.1.1.2", "10.1.1.2:", "10.1.1.2:0", "10.1.1.2:65536", "10.1.1.2:80x", "fd00::2:80",
                          "[10.1.1.2]:80", "[fd00::2]80", "[fd00::2]:", ":80", "host:80"})
    EXPECT_FALSE(Endpoint::parse(bad)) << bad;
}

}  // namespace
}  // namespace veer
