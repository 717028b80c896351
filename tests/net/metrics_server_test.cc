// veer's Prometheus endpoint (veer/metrics_server.h) on 127.0.0.1, port 0:
// fetched with the scraper and with raw sockets; errors, limits, slow and many
// clients, stop.
#include "veer/metrics_server.h"

#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <thread>
#include <vector>

#include "net_test_support.h"
#include "metrics/metrics_registry.h"
#include "metrics/prom_text.h"

namespace veer::net {
namespace {

using test::IoThread;
using test::RawClient;
using namespace std::chrono_literals;

// A server on the io thread whose render callback builds a SPEC §7 registry
// and counts its calls.
class MetricsServerTest : public ::testing::Test {
 protected:
  void start(MetricsServer::Options options = {}) {
    port_ = io_.run([&] {
      server_ = std::make_unique<MetricsServer>(io_.io, [this] { return render(); }, options);
      server_->start("127.0.0.1:0");
      return server_->local_endpoint().port();
    });
    ASSERT_NE(port_, 0);
  }
  void TearDown() override {
    io_.run([&] { server_.reset(); });
  }
  std::string render() {
    const int call = ++render_calls_;
    if (throw_in_render_) throw std::runtime_error("telemetry unavailable");
    metrics::Registry registry;
    metrics::VeerMetrics m(registry);
    m.weight("api", "canary", 20, 20);
    m.drops("no_backend", static_cast<uint64_t>(call));
    return registry.render();
  }
  std::string url(const std::string& path) const { return "http://127.0.0.1:" + std::to_string(port_) + path; }
  std::size_t connections() {
    return io_.run([&] { return server_->connection_count(); });
  }
  // Polls (bounded) until the server holds `n` connections.
  bool wait_for_connections(std::size_t n) {
    for (int i = 0; i < 200; ++i) {
      if (connections() == n) return true;
      std::this_thread::sleep_for(10ms);
    }
    return false;
  }

  IoThread io_;
  std::unique_ptr<MetricsServer> server_;
  uint16_t port_ = 0;
  std::atomic<int> render_calls_{0};
  std::atomic<bool> throw_in_render_{false};
};

TEST_F(MetricsServerTest, ScraperGetsTheRenderedTextWhichParses) {
  start();
  auto first = io_.fetch(url("/metrics"));
  ASSERT_TRUE(first.ok()) << first.message;
  EXPECT_EQ(first.status, 200u);
  EXPECT_EQ(first.content_type, "text/plain; version=0.0.4; charset=utf-8");
  auto second = io_.fetch(url("/metrics"));
  ASSERT_TRUE(second.ok()) << second.message;
  EXPECT_EQ(render_calls_.load(), 2) << "one render per scrape";

  const auto parsed = prom::parse_prometheus_text(second.body);
  ASSERT_TRUE(parsed.ok);
  EXPECT_EQ(parsed.error_count, 0u);
  const auto* drops = parsed.find("veer_drops_total");
  ASSERT_NE(drops, nullptr);
  EXPECT_EQ(prom::counter_sum(*drops, {{"reason", "no_backend"}}), 2);
  const auto* weight = parsed.find("veer_weight");
  ASSERT_NE(weight, nullptr);
  EXPECT_EQ(prom::counter_sum(*weight, {{"variant", "canary"}, {"kind", "applied"}}), 20);
}

TEST_F(MetricsServerTest, RawRequestsIndexNotFoundMethodAndHead) {
  start();
  {
    RawClient c(port_);
    c.send("GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    const std::string res = c.read_all();
    EXPECT_EQ(res.rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << res;
    EXPECT_NE(res.find("Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"), std::string::npos) << res;
    EXPECT_NE(res.find("\r\n\r\n# HELP veer_drops_total "), std::string::npos) << res;
  }
  {
    RawClient c(port_);
    c.send("GET / HTTP/1.0\r\n\r\n");  // HTTP/1.0: closes after the answer
    const std::string res = c.read_all();
    EXPECT_EQ(res.rfind("HTTP/1.0 200 OK\r\n", 0), 0u) << res;
    EXPECT_NE(res.find("text/html"), std::string::npos);
    EXPECT_NE(res.find("href=\"/metrics\""), std::string::npos);
  }
  {
    RawClient c(port_);
    c.send("GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    const std::string res = c.read_all();
    EXPECT_EQ(res.rfind("HTTP/1.1 404 Not Found\r\n", 0), 0u) << res;
  }
  {
    RawClient c(port_);
    c.send("POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc");
    const std::string res = c.read_all();
    EXPECT_EQ(res.rfind("HTTP/1.1 405 Method Not Allowed\r\n", 0), 0u) << res;
    EXPECT_NE(res.find("Allow: GET, HEAD\r\n"), std::string::npos) << res;
  }
  {
    RawClient c(port_);
    c.send("HEAD /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    const std::string res = c.read_all();
    EXPECT_EQ(res.rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << res;
    const auto cl = res.find("Content-Length: ");
    ASSERT_NE(cl, std::string::npos);
    EXPECT_GT(std::stoul(res.substr(cl + 16)), 100u) << "HEAD announces the body length";
    EXPECT_EQ(res.size(), res.find("\r\n\r\n") + 4) << "HEAD sends no body";
  }
  EXPECT_EQ(render_calls_.load(), 2) << "GET and HEAD of /metrics rendered; /, 404, 405 did not";
}

TEST_F(MetricsServerTest, KeepAliveAnswersPipelinedRequestsInOrder) {
  start();
  RawClient c(port_);
  c.send("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\nGET /missing HTTP/1.1\r\nHost: x\r\n\r\n"
         "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  const std::string res = c.read_all();
  const auto a = res.find("HTTP/1.1 200 OK");
  const auto b = res.find("HTTP/1.1 404 Not Found");
  const auto h = res.find("<html>");
  ASSERT_NE(a, std::string::npos) << res;
  ASSERT_NE(b, std::string::npos) << res;
  ASSERT_NE(h, std::string::npos) << res;
  EXPECT_LT(a, b);
  EXPECT_LT(b, h);
}

TEST_F(MetricsServerTest, OversizedAndMalformedRequestsAreRefusedAndClosed) {
  MetricsServer::Options o;
  o.max_request_header_bytes = 4096;
  o.max_request_body_bytes = 100;
  start(o);
  {
    RawClient c(port_);
    // Not sent whole: the server answers as soon as the limit is crossed.
    c.send("GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(8000, 'a') + "\r\n\r\n");
    bool closed = false;
    const std::string res = c.read_all(&closed);
    EXPECT_EQ(res.rfind("HTTP/1.1 431 ", 0), 0u) << res.substr(0, 80);
    EXPECT_TRUE(closed);
  }
  {
    RawClient c(port_);
    c.send("GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n");
    bool closed = false;
    const std::string res = c.read_all(&closed);
    EXPECT_EQ(res.rfind("HTTP/1.1 413 ", 0), 0u) << res.substr(0, 80);
    EXPECT_TRUE(closed);
  }
  {
    // The same with body bytes in the same segment as the header.
    RawClient c(port_);
    c.send("POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n" + std::string(3000, 'b'));
    bool closed = false;
    const std::string res = c.read_all(&closed);
    EXPECT_EQ(res.rfind("HTTP/1.1 413 ", 0), 0u) << res.substr(0, 80);
    EXPECT_TRUE(closed);
  }
  {
    // Chunked, growing past the limit.
    RawClient c(port_);
    c.send("POST /metrics HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n");
    try {
      for (int i = 0; i < 5; ++i) c.send("40\r\n" + std::string(64, 'c') + "\r\n");
    } catch (const std::runtime_error&) {
      // The server answered at the limit and closed while chunks were still
      // coming: a send after that may fail (EPIPE). That is the behaviour under test.
    }
    bool closed = false;
    const std::string res = c.read_all(&closed);
    EXPECT_EQ(res.rfind("HTTP/1.1 413 ", 0), 0u) << res.substr(0, 80);
    EXPECT_TRUE(closed);
  }
  {
    RawClient c(port_);
    c.send("NOT HTTP AT ALL\r\n\r\n");
    bool closed = false;
    const std::string res = c.read_all(&closed);
    EXPECT_EQ(res.rfind("HTTP/1.1 400 ", 0), 0u) << res.substr(0, 80);
    EXPECT_TRUE(closed);
  }
  EXPECT_EQ(render_calls_.load(), 0);
  // The server still serves.
  auto ok = io_.fetch(url("/metrics"));
  EXPECT_TRUE(ok.ok()) << ok.message;
}

TEST_F(MetricsServerTest, SlowClientDoesNotBlockOthersAndIsCutOffAtTheDeadline) {
  MetricsServer::Options o;
  o.request_timeout = 1500ms;
  start(o);
  RawClient slow(port_);
  const auto t0 = std::chrono::steady_clock::now();
  slow.send("GET /metrics HTTP/1.1\r\nHo");  // and then nothing
  ASSERT_TRUE(wait_for_connections(1));
  for (int i = 0; i < 5; ++i) {
    auto r = io_.fetch(url("/metrics"));
    ASSERT_TRUE(r.ok()) << r.message;
  }
  const auto others_done = std::chrono::steady_clock::now() - t0;
  EXPECT_LT(others_done, 1500ms) << "other clients were served while the slow one held its connection";
  bool closed = false;
  const std::string res = slow.read_all(&closed);
  const auto cut = std::chrono::steady_clock::now() - t0;
  EXPECT_TRUE(closed);
  EXPECT_EQ(res, "") << "no answer to an incomplete request";
  EXPECT_GE(cut, 1400ms);
  EXPECT_LT(cut, 4500ms);
  EXPECT_TRUE(wait_for_connections(0));
}

TEST_F(MetricsServerTest, TrickleClientIsCutOffAtTheRequestDeadline) {
  MetricsServer::Options o;
  o.request_timeout = 1000ms;
  start(o);
  RawClient slow(port_);
  ASSERT_TRUE(wait_for_connections(1));
  const auto t0 = std::chrono::steady_clock::now();
  // One byte every 100 ms keeps a per-read timeout alive forever; the whole-
  // request deadline does not.
  bool send_failed = false;
  const std::string header = "GET /metrics HTTP/1.1\r\nX-Slow: " + std::string(100, 'a');
  for (std::size_t i = 0; i < header.size() && std::chrono::steady_clock::now() - t0 < 3s; ++i) {
    try {
      slow.send(header.substr(i, 1));
    } catch (const std::exception&) {
      send_failed = true;
      break;
    }
    if (connections() == 0) break;
    std::this_thread::sleep_for(100ms);
  }
  const auto cut = std::chrono::steady_clock::now() - t0;
  EXPECT_TRUE(send_failed || connections() == 0);
  EXPECT_LT(cut, 2500ms);
  EXPECT_GE(cut, 900ms);
}

TEST_F(MetricsServerTest, ManyConcurrentClients) {
  start();
  constexpr int kClients = 50;
  std::vector<std::unique_ptr<RawClient>> clients;
  for (int i = 0; i < kClients; ++i) clients.push_back(std::make_unique<RawClient>(port_));
  // All requests are in flight before any answer is read.
  for (auto& c : clients) c->send("GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  int ok = 0;
  for (auto& c : clients) {
    const std::string res = c->read_all();
    if (res.rfind("HTTP/1.1 200 OK\r\n", 0) == 0 && res.find("veer_drops_total") != std::string::npos) ++ok;
  }
  EXPECT_EQ(ok, kClients);
  EXPECT_EQ(render_calls_.load(), kClients);
}

TEST_F(MetricsServerTest, ConnectionsAboveTheLimitGet503) {
  MetricsServer::Options o;
  o.max_connections = 2;
  start(o);
  RawClient a(port_), b(port_);
  ASSERT_TRUE(wait_for_connections(2));
  {
    RawClient c(port_);
    bool closed = false;
    const std::string res = c.read_all(&closed);
    EXPECT_EQ(res.rfind("HTTP/1.1 503 ", 0), 0u) << res;
    EXPECT_TRUE(closed);
  }
  a.shutdown_write();  // a leaves: its slot frees
  ASSERT_TRUE(wait_for_connections(1));
  auto r = io_.fetch(url("/metrics"));
  EXPECT_TRUE(r.ok()) << r.message;
}

TEST_F(MetricsServerTest, RenderFailureIs500AndTheServerGoesOn) {
  start();
  throw_in_render_ = true;
  auto r = io_.fetch(url("/metrics"));
  EXPECT_EQ(r.error, ScrapeError::HttpStatus);
  EXPECT_EQ(r.status, 500u);
  throw_in_render_ = false;
  r = io_.fetch(url("/metrics"));
  EXPECT_TRUE(r.ok()) << r.message;
}

TEST_F(MetricsServerTest, StopClosesIdleConnectionsAndRefusesNewOnes) {
  start();
  RawClient idle(port_);
  ASSERT_TRUE(wait_for_connections(1));
  io_.run([&] { server_->stop(); });
  bool closed = false;
  idle.read_all(&closed);
  EXPECT_TRUE(closed);
  auto r = io_.fetch(url("/metrics"));
  EXPECT_EQ(r.error, ScrapeError::Connect) << r.message;
  EXPECT_EQ(render_calls_.load(), 0);
}

TEST(MetricsServerStart, BadOrBusyAddressesThrowClearly) {
  IoThread io;
  auto start = [&](const std::string& listen) -> std::string {
    return io.run([&]() -> std::string {
      MetricsServer s(io.io, [] { return std::string(); });
      try {
        s.start(listen);
      } catch (const std::runtime_error& e) {
        return e.what();
      }
      return "";
    });
  };
  EXPECT_NE(start("nonsense").find("metrics_listen nonsense"), std::string::npos);
  EXPECT_NE(start("127.0.0.1:99999").find("port"), std::string::npos);
  EXPECT_NE(start("192.0.2.1:9469").find("bind"), std::string::npos) << "an address this host does not have";

  // In use: a second server on the first one's port.
  io.run([&] {
    MetricsServer first(io.io, [] { return std::string(); });
    first.start("127.0.0.1:0");
    const std::string port = std::to_string(first.local_endpoint().port());
    MetricsServer second(io.io, [] { return std::string(); });
    try {
      second.start("127.0.0.1:" + port);
      ADD_FAILURE() << "second bind succeeded";
    } catch (const std::runtime_error& e) {
      EXPECT_NE(std::string(e.what()).find("bind"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("in use"), std::string::npos) << e.what();
    }
    return 0;
  });
}

TEST(MetricsServerStart, ServesOnIpv6LoopbackAndHostNames) {
  IoThread io;
  std::vector<std::shared_ptr<MetricsServer>> keep;  // touched on the io thread only
  for (const std::string listen : {"[::1]:0", "localhost:0"}) {
    std::string error;
    const uint16_t port = io.run([&]() -> uint16_t {
      try {
        auto s = std::make_shared<MetricsServer>(io.io, [] { return std::string("up 1\n"); });
        s->start(listen);
        const uint16_t p = s->local_endpoint().port();
        // Kept alive by the io thread until the end of the test.
        keep.push_back(s);
        return p;
      } catch (const std::exception& e) {
        error = e.what();
        return 0;
      }
    });
    if (listen == "[::1]:0" && error.find("Cannot assign") != std::string::npos)
      GTEST_SKIP() << "no IPv6 loopback here: " << error;
    ASSERT_NE(port, 0) << listen << ": " << error;
    const std::string host = listen == "[::1]:0" ? "[::1]" : "localhost";
    auto r = io.fetch("http://" + host + ":" + std::to_string(port) + "/metrics");
    ASSERT_TRUE(r.ok()) << listen << ": " << r.message;
    EXPECT_EQ(r.body, "up 1\n");
  }
  io.run([&] {
    keep.clear();
    return 0;
  });
}

}  // namespace
}  // namespace veer::net

namespace veer::net {
namespace {

using test::IoThread;
using test::RawClient;

// The route callback (veerd's live view): its pages, 404 for nullopt, 500 for
// an exception, and no call at all for a method that is not GET or HEAD.
class MetricsServerRoutesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    port_ = io_.run([&] {
      server_ = std::make_unique<MetricsServer>(
          io_.io, [] { return std::string("# metrics\n"); },
          [this](std::string_view path) -> std::optional<MetricsServer::Page> {
            paths_.emplace_back(path);
            if (path == "/") return MetricsServer::Page{200, "text/html; charset=utf-8", "<html>view</html>"};
            if (path == "/api/v1/services") return MetricsServer::Page{200, "application/json", R"({"services":[]})"};
            if (path == "/api/v1/services/gone")
              return MetricsServer::Page{404, "application/json", R"({"error":"no service"})"};
            if (path == "/boom") throw std::runtime_error("status unavailable");
            return std::nullopt;
          },
          MetricsServer::Options{});
      server_->start("127.0.0.1:0");
      return server_->local_endpoint().port();
    });
  }
  void TearDown() override {
    io_.run([&] { server_.reset(); });
  }
  std::string request(const std::string& text) {
    RawClient c(port_);
    c.send(text);
    return c.read_all();
  }
  std::vector<std::string> paths() {
    return io_.run([&] { return paths_; });
  }

  IoThread io_;
  std::unique_ptr<MetricsServer> server_;
  uint16_t port_ = 0;
  std::vector<std::string> paths_;  // on the io thread
};

TEST_F(MetricsServerRoutesTest, PagesComeFromTheRoutesWithTheirTypeAndNoStore) {
  const std::string page = request("GET /?refresh=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  EXPECT_EQ(page.rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << page;
  EXPECT_NE(page.find("Content-Type: text/html; charset=utf-8\r\n"), std::string::npos) << page;
  EXPECT_NE(page.find("Cache-Control: no-store\r\n"), std::string::npos) << page;
  EXPECT_NE(page.find("\r\n\r\n<html>view</html>"), std::string::npos) << page;
  const std::string api = request("GET /api/v1/services HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  EXPECT_NE(api.find("Content-Type: application/json\r\n"), std::string::npos) << api;
  EXPECT_NE(api.find("\r\n\r\n{\"services\":[]}"), std::string::npos) << api;
  const std::string gone = request("GET /api/v1/services/gone HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  EXPECT_EQ(gone.rfind("HTTP/1.1 404 Not Found\r\n", 0), 0u) << gone;
  EXPECT_NE(gone.find("{\"error\":\"no service\"}"), std::string::npos) << gone;
  const std::string none = request("GET /nothing HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  EXPECT_EQ(none.rfind("HTTP/1.1 404 Not Found\r\n", 0), 0u) << none;
  const std::string boom = request("GET /boom HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  EXPECT_EQ(boom.rfind("HTTP/1.1 500 Internal Server Error\r\n", 0), 0u) << boom;
  EXPECT_NE(boom.find("status unavailable"), std::string::npos) << boom;
  const std::string metrics = request("GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  EXPECT_NE(metrics.find("\r\n\r\n# metrics\n"), std::string::npos) << metrics;
  // The query is not part of the path; /metrics never reaches the routes.
  EXPECT_EQ(paths(), (std::vector<std::string>{"/", "/api/v1/services", "/api/v1/services/gone", "/nothing", "/boom"}));
}

TEST_F(MetricsServerRoutesTest, HeadSendsHeadersOnlyAndOtherMethodsNeverReachTheRoutes) {
  const std::string head = request("HEAD /api/v1/services HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  EXPECT_EQ(head.rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << head;
  EXPECT_NE(head.find("Content-Length: 15\r\n"), std::string::npos) << head;
  EXPECT_EQ(head.size(), head.find("\r\n\r\n") + 4) << "HEAD sends no body";
  for (const char* method : {"POST", "PUT", "DELETE", "PATCH", "OPTIONS"}) {
    const std::string res = request(std::string(method) +
                                    " /api/v1/services HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
                                    "Connection: close\r\n\r\n{}");
    EXPECT_EQ(res.rfind("HTTP/1.1 405 Method Not Allowed\r\n", 0), 0u) << method << ": " << res;
    EXPECT_NE(res.find("Allow: GET, HEAD\r\n"), std::string::npos) << res;
  }
  EXPECT_EQ(paths(), (std::vector<std::string>{"/api/v1/services"})) << "only the HEAD was routed";
}

}  // namespace
}  // namespace veer::net
