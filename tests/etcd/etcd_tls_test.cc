// TLS to a real etcd (https:// client URLs, --client-cert-auth, certificates
// made by the test): what a client that cannot be trusted or cannot trust
// etcd gets. Each failure is a TLS error that says why, counts as "etcd did
// not answer" (the client goes on to the next endpoint, the status is
// unreachable) and writes nothing. The working path is FleetMemberOverTlsTest.
#include <gtest/gtest.h>

#include <future>
#include <thread>

#include "etcd_test_support.h"
#include "net_test_support.h"
#include "veer/etcd_client.h"
#include "veer/etcd_watch.h"
#include "veer/http_scraper.h"
#include "veer/tls.h"

namespace veer::etcd {
namespace {

using namespace std::chrono_literals;

class EtcdOverTlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (int i = 0; i < 100; ++i) {
      if (range_with(trusted(), server_.url(), "ready").first.ok) return;
      std::this_thread::sleep_for(100ms);
    }
    FAIL() << "etcd on " << server_.url() << " did not answer over TLS within 10 s";
  }
  net::TlsConfig trusted() const {
    const auto& pki = server_.pki();
    return net::TlsConfig{pki.ca, pki.client_cert, pki.client_key, ""};
  }
  // The port of server_'s https:// URL, for the same etcd under another host name.
  std::string port() const { return server_.url().substr(server_.url().rfind(':') + 1); }

  std::pair<Status, RangeAnswer> range_with(const net::TlsConfig& tls, const std::string& endpoint,
                                            const std::string& key) {
    ClientOptions options;
    options.tls = net::make_tls_client(tls);
    Client c(io_.io, {endpoint}, options);
    return wait_call<RangeAnswer>(io_, [&](auto cb) { c.range(key, false, cb); });
  }
  Status put_with(const net::TlsConfig& tls, std::vector<std::string> endpoints, const std::string& key) {
    ClientOptions options;
    options.tls = net::make_tls_client(tls);
    Client c(io_.io, std::move(endpoints), options);
    return wait_call<Header>(io_, [&](auto cb) { c.put(key, "written", 0, cb); }).first;
  }
  // Nothing under KEY, as a trusted client reads it.
  void expect_unwritten(const std::string& key) {
    const auto [s, r] = range_with(trusted(), server_.url(), key);
    ASSERT_TRUE(s.ok) << s.error;
    EXPECT_TRUE(r.kvs.empty()) << key << " was written";
  }
  net::ScrapeResult post_with(const net::TlsConfig& tls, const std::string& key) {
    net::ScrapeOptions options;
    options.tls = net::make_tls_client(tls);
    auto promise = std::make_shared<std::promise<net::ScrapeResult>>();
    auto future = promise->get_future();
    io_.run([&] {
      net::http_post(io_.io, server_.url() + "/v3/kv/put", put_body(key, "written", 0), options,
                     [promise](net::ScrapeResult r) { promise->set_value(std::move(r)); });
      return 0;
    });
    if (future.wait_for(20s) != std::future_status::ready) throw std::runtime_error("no answer within 20 s");
    return future.get();
  }
  Status watch_with(const net::TlsConfig& tls) {
    WatchOptions options;
    options.tls = net::make_tls_client(tls);
    auto ended = std::make_shared<std::promise<Status>>();
    auto future = ended->get_future();
    auto w = io_.run([&] {
      return watch(io_.io, server_.url(), "/veer/", true, 0, options, [](const WatchMessage&) {},
                   [ended](Status s) { ended->set_value(std::move(s)); });
    });
    if (future.wait_for(20s) != std::future_status::ready) throw std::runtime_error("the watch did not end in 20 s");
    return future.get();
  }

  EtcdCluster server_{1, EtcdTls::On};
  net::test::IoThread io_;
};

TEST_F(EtcdOverTlsTest, TheServersNameIsCheckedAsADnsNameOrAnIpAddressAndCanBeOverridden) {
  EXPECT_TRUE(range_with(trusted(), "https://localhost:" + port(), "k").first.ok) << "DNS:localhost is in the certificate";
  net::TlsConfig by_name = trusted();
  by_name.server_name = "localhost";
  EXPECT_TRUE(range_with(by_name, server_.url(), "k").first.ok) << "server_name replaces the URL's 127.0.0.1";
}

TEST_F(EtcdOverTlsTest, AClientWithTheWrongCaGetsAVerificationErrorOnEveryEndpointAndWritesNothing) {
  net::TlsConfig wrong_ca = trusted();
  wrong_ca.ca_file = server_.pki().other_ca;
  const std::string other = "https://localhost:" + port();
  const Status s = put_with(wrong_ca, {server_.url(), other}, "/veer/wrong-ca");
  EXPECT_FALSE(s.ok);
  EXPECT_TRUE(s.unreachable) << "a failed handshake is no answer: " << s.error;
  EXPECT_NE(s.error.find(server_.url()), std::string::npos) << "both endpoints tried: " << s.error;
  EXPECT_NE(s.error.find(other), std::string::npos) << "both endpoints tried: " << s.error;
  EXPECT_NE(s.error.find("TLS handshake: certificate verify failed (unable to get local issuer certificate)"),
            std::string::npos)
      << s.error;

  const net::ScrapeResult r = post_with(wrong_ca, "/veer/wrong-ca");
  EXPECT_EQ(r.error, net::ScrapeError::Tls) << r.message;
  EXPECT_STREQ(net::to_string(r.error), "tls");

  const Status w = watch_with(wrong_ca);
  EXPECT_TRUE(w.unreachable);
  EXPECT_NE(w.error.find("TLS handshake: certificate verify failed"), std::string::npos) << w.error;
  expect_unwritten("/veer/wrong-ca");
}

TEST_F(EtcdOverTlsTest, AServerNameTheCertificateDoesNotHoldFailsTheHandshake) {
  net::TlsConfig elsewhere = trusted();
  elsewhere.server_name = "etcd.example.org";
  const Status s = put_with(elsewhere, {server_.url()}, "/veer/wrong-name");
  EXPECT_FALSE(s.ok);
  EXPECT_TRUE(s.unreachable);
  EXPECT_NE(s.error.find("TLS handshake: certificate verify failed (hostname mismatch)"), std::string::npos) << s.error;
  expect_unwritten("/veer/wrong-name");
}

TEST_F(EtcdOverTlsTest, WithoutAClientCertificateEtcdRefusesTheClient) {
  net::TlsConfig anonymous = trusted();
  anonymous.cert_file.clear();
  anonymous.key_file.clear();
  const Status s = put_with(anonymous, {server_.url()}, "/veer/anonymous");
  EXPECT_FALSE(s.ok);
  EXPECT_TRUE(s.unreachable) << s.error;
  EXPECT_NE(s.error.find("TLS"), std::string::npos) << s.error;
  EXPECT_NE(s.error.find("alert bad certificate"), std::string::npos) << "etcd's alert (Go: no certificate is a bad one): " << s.error;
  const net::ScrapeResult r = post_with(anonymous, "/veer/anonymous");
  EXPECT_EQ(r.error, net::ScrapeError::Tls) << r.message;
  const Status w = watch_with(anonymous);
  EXPECT_TRUE(w.unreachable);
  EXPECT_NE(w.error.find("TLS"), std::string::npos) << w.error;
  expect_unwritten("/veer/anonymous");
}

TEST_F(EtcdOverTlsTest, HttpsWithoutATlsConfigurationIsRefusedAndPlainHttpGetsNoAnswer) {
  Client untrusting(io_.io, {server_.url()});
  const Status s = wait_call<Header>(io_, [&](auto cb) { untrusting.put("/veer/plain", "x", 0, cb); }).first;
  EXPECT_FALSE(s.ok);
  EXPECT_NE(s.error.find("https is not supported without a TLS configuration"), std::string::npos) << s.error;
  Client plain(io_.io, {"http://127.0.0.1:" + port()});
  const Status p = wait_call<Header>(io_, [&](auto cb) { plain.put("/veer/plain", "x", 0, cb); }).first;
  EXPECT_FALSE(p.ok) << "etcd's TLS listener does not take plain HTTP";
  expect_unwritten("/veer/plain");
}

TEST(TlsClient, FilesOpenSslCannotUseAreRefusedWithTheFileAndTheReason) {
  EXPECT_THROW(net::make_tls_client({}), net::TlsSetupError);
  try {
    net::make_tls_client(net::TlsConfig{"/nonexistent/ca.pem", "", "", ""});
    ADD_FAILURE() << "a missing CA file was taken";
  } catch (const net::TlsSetupError& e) {
    EXPECT_NE(std::string(e.what()).find("cannot load the CA file '/nonexistent/ca.pem'"), std::string::npos)
        << e.what();
  }
  EXPECT_THROW(net::make_tls_client(net::TlsConfig{"/etc/hostname", "", "", ""}), net::TlsSetupError);
}

}  // namespace
}  // namespace veer::etcd
