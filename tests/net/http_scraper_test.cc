// The HTTP scraper (veer/http_scraper.h) against a tiny scripted server on
// 127.0.0.1: what each failure looks like to the gates, and that a good
// answer arrives whole.
#include "veer/http_scraper.h"

#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <mutex>

#include "net_test_support.h"

namespace veer::net {
namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using test::IoThread;
using namespace std::chrono_literals;

// Accepts connections on 127.0.0.1:0, reads one request head, then answers
// with `reply` (possibly nothing, and then holds the connection open).
class ScriptedServer {
 public:
  enum class Mode { Reply, Silent, CloseAtOnce };

  ScriptedServer(IoThread& io, std::string reply, Mode mode = Mode::Reply) : io_(io), reply_(std::move(reply)), mode_(mode) {
    port = io_.run([&] {
      acceptor_ = std::make_unique<tcp::acceptor>(io_.io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
      accept();
      return acceptor_->local_endpoint().port();
    });
  }
  ~ScriptedServer() {
    io_.run([&] {
      acceptor_.reset();
      for (auto& s : held_) {
        boost::system::error_code ignored;
        s->close(ignored);
      }
      held_.clear();
    });
  }
  std::string request() {
    std::lock_guard lock(mutex_);
    return request_;
  }
  std::string url(const std::string& path = "/metrics") const {
    return "http://127.0.0.1:" + std::to_string(port) + path;
  }

  uint16_t port = 0;

 private:
  void accept() {
    acceptor_->async_accept([this](boost::system::error_code ec, tcp::socket socket) {
      if (ec) return;
      auto s = std::make_shared<tcp::socket>(std::move(socket));
      held_.push_back(s);
      auto buf = std::make_shared<asio::streambuf>();
      asio::async_read_until(*s, *buf, "\r\n\r\n", [this, s, buf](boost::system::error_code ec, std::size_t n) {
        if (ec) return;
        {
          std::lock_guard lock(mutex_);
          request_.assign(asio::buffers_begin(buf->data()), asio::buffers_begin(buf->data()) + static_cast<long>(n));
        }
        if (mode_ == Mode::CloseAtOnce) {
          s->close();
          return;
        }
        if (mode_ == Mode::Silent) return;
        auto out = std::make_shared<std::string>(reply_);
        asio::async_write(*s, asio::buffer(*out), [s, out](boost::system::error_code, std::size_t) {
          boost::system::error_code ignored;
          s->shutdown(tcp::socket::shutdown_send, ignored);
        });
      });
      accept();
    });
  }

  IoThread& io_;
  std::string reply_;
  Mode mode_;
  std::unique_ptr<tcp::acceptor> acceptor_;
  std::vector<std::shared_ptr<tcp::socket>> held_;
  std::mutex mutex_;
  std::string request_;
};

std::string response(const std::string& status_line, const std::string& body,
                     const std::string& extra_headers = "Content-Type: text/plain; version=0.0.4\r\n") {
  return "HTTP/1.1 " + status_line + "\r\n" + extra_headers + "Content-Length: " + std::to_string(body.size()) +
         "\r\n\r\n" + body;
}

TEST(HttpScraper, GetsA200BodyAndSendsAPlainTextRequest) {
  IoThread io;
  const std::string body = "# TYPE model_predictions_total counter\nmodel_predictions_total{class=\"cat\"} 5\n";
  ScriptedServer server(io, response("200 OK", body));
  auto r = io.fetch(server.url("/metrics?x=1"));
  ASSERT_TRUE(r.ok()) << r.message;
  EXPECT_EQ(r.status, 200u);
  EXPECT_EQ(r.body, body);
  EXPECT_EQ(r.content_type, "text/plain; version=0.0.4");
  EXPECT_TRUE(r.message.empty());
  const std::string req = server.request();
  EXPECT_EQ(req.rfind("GET /metrics?x=1 HTTP/1.1\r\n", 0), 0u) << req;
  EXPECT_NE(req.find("Host: 127.0.0.1:" + std::to_string(server.port) + "\r\n"), std::string::npos) << req;
  EXPECT_NE(req.find("Accept: text/plain;version=0.0.4"), std::string::npos) << req;
}

TEST(HttpScraper, ReadsChunkedAndCloseDelimitedBodies) {
  IoThread io;
  ScriptedServer chunked(io, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nup 1\n\r\n6\r\ndown 0\r\n0\r\n\r\n");
  auto r = io.fetch(chunked.url());
  ASSERT_TRUE(r.ok()) << r.message;
  EXPECT_EQ(r.body, "up 1\ndown 0");
  ScriptedServer until_close(io, "HTTP/1.0 200 OK\r\n\r\nup 1\n");
  r = io.fetch(until_close.url());
  ASSERT_TRUE(r.ok()) << r.message;
  EXPECT_EQ(r.body, "up 1\n");
}

TEST(HttpScraper, Non200IsAnHttpStatusError) {
  IoThread io;
  ScriptedServer server(io, response("500 Internal Server Error", "boom\n"));
  auto r = io.fetch(server.url());
  EXPECT_EQ(r.error, ScrapeError::HttpStatus);
  EXPECT_EQ(r.status, 500u);
  EXPECT_NE(r.message.find("HTTP 500"), std::string::npos) << r.message;
  EXPECT_EQ(r.body, "boom\n") << "the error's body is kept (etcd's gateway explains errors there)";
  ScriptedServer moved(io, response("301 Moved Permanently", "", "Location: http://elsewhere/\r\n"));
  r = io.fetch(moved.url());
  EXPECT_EQ(r.error, ScrapeError::HttpStatus) << "redirects are not followed";
  EXPECT_EQ(r.status, 301u);
}

TEST(HttpScraper, SilentServerTimesOutAtTheDeadline) {
  IoThread io;
  ScriptedServer server(io, "", ScriptedServer::Mode::Silent);
  ScrapeOptions o;
  o.timeout = 400ms;
  auto r = io.fetch(server.url(), o);
  EXPECT_EQ(r.error, ScrapeError::Timeout) << r.message;
  EXPECT_NE(r.message.find("400 ms"), std::string::npos) << r.message;
  EXPECT_GE(r.elapsed, 390ms);
  EXPECT_LT(r.elapsed, 3s);
}

TEST(HttpScraper, TruncatedBodyIsAProtocolError) {
  IoThread io;
  // Headers promise 100 bytes, 4 arrive, then the server closes its side.
  ScriptedServer server(io, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nup 1");
  auto r = io.fetch(server.url());
  EXPECT_EQ(r.error, ScrapeError::Protocol) << r.message;
}

TEST(HttpScraper, RefusedConnectionIsAConnectError) {
  IoThread io;
  const uint16_t port = test::closed_port();
  auto r = io.fetch("http://127.0.0.1:" + std::to_string(port) + "/metrics");
  EXPECT_EQ(r.error, ScrapeError::Connect) << r.message;
  EXPECT_NE(r.message.find("refused"), std::string::npos) << r.message;
}

TEST(HttpScraper, ServerClosingWithoutAnswerIsAProtocolError) {
  IoThread io;
  ScriptedServer server(io, "", ScriptedServer::Mode::CloseAtOnce);
  auto r = io.fetch(server.url());
  EXPECT_EQ(r.error, ScrapeError::Protocol) << r.message;
}

TEST(HttpScraper, TooLargeBodiesAreRefused) {
  IoThread io;
  ScrapeOptions o;
  o.max_body_bytes = 1000;
  // Announced: refused from the header, before the body.
  ScriptedServer announced(io, "HTTP/1.1 200 OK\r\nContent-Length: 5000000\r\n\r\n" + std::string(100, 'x'));
  auto r = io.fetch(announced.url(), o);
  EXPECT_EQ(r.error, ScrapeError::TooLarge) << r.message;
  EXPECT_NE(r.message.find("1000 bytes"), std::string::npos) << r.message;
  // Chunked: refused while reading.
  std::string chunks = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
  for (int i = 0; i < 4; ++i) chunks += "1f4\r\n" + std::string(500, 'y') + "\r\n";
  chunks += "0\r\n\r\n";
  ScriptedServer chunked(io, chunks);
  r = io.fetch(chunked.url(), o);
  EXPECT_EQ(r.error, ScrapeError::TooLarge) << r.message;
  // Exactly at the limit is fine.
  ScriptedServer at_limit(io, response("200 OK", std::string(1000, 'z')));
  r = io.fetch(at_limit.url(), o);
  EXPECT_TRUE(r.ok()) << r.message;
  EXPECT_EQ(r.body.size(), 1000u);
  // The default limit is 4 MiB.
  EXPECT_EQ(ScrapeOptions{}.max_body_bytes, 4u << 20);
}

TEST(HttpScraper, GarbageAnswerIsAProtocolError) {
  IoThread io;
  ScriptedServer server(io, "SSH-2.0-OpenSSH_9.2\r\n\r\n");
  auto r = io.fetch(server.url());
  EXPECT_EQ(r.error, ScrapeError::Protocol) << r.message;
}

TEST(HttpScraper, BadUrlsAreRefusedAsynchronously) {
  IoThread io;
  for (const char* url : {"https://127.0.0.1/metrics", "ftp://h/", "127.0.0.1:80/metrics", "http://h:99999/", ""}) {
    // Set on the io thread only; read after the future is ready.
    auto returned = std::make_shared<bool>(false);
    auto called_inside = std::make_shared<bool>(true);
    auto promise = std::make_shared<std::promise<ScrapeResult>>();
    auto future = promise->get_future();
    io.run([&] {
      http_get(io.io, url, {}, [returned, called_inside, promise](ScrapeResult r) {
        *called_inside = !*returned;
        promise->set_value(std::move(r));
      });
      *returned = true;
      return 0;
    });
    ASSERT_EQ(future.wait_for(5s), std::future_status::ready) << url;
    const auto r = future.get();
    EXPECT_FALSE(*called_inside) << url << ": callback ran inside http_get";
    EXPECT_EQ(r.error, ScrapeError::BadUrl) << url;
    EXPECT_NE(r.message.find("bad URL"), std::string::npos) << r.message;
  }
  auto r = io.fetch("https://127.0.0.1/metrics");
  EXPECT_NE(r.message.find("https is not supported"), std::string::npos) << r.message;
}

TEST(HttpScraper, UnresolvableHostIsAResolveError) {
  IoThread io;
  // .invalid never resolves (RFC 6761); no network needed to learn that.
  auto r = io.fetch("http://veer-test.invalid:9100/metrics");
  EXPECT_TRUE(r.error == ScrapeError::Resolve || r.error == ScrapeError::Timeout) << r.message;
}

TEST(HttpScraper, CancelCallsBackOnceWithCancelled) {
  IoThread io;
  ScriptedServer server(io, "", ScriptedServer::Mode::Silent);
  std::atomic<int> calls{0};
  auto promise = std::make_shared<std::promise<ScrapeResult>>();
  auto future = promise->get_future();
  auto op = io.run([&] {
    return http_get(io.io, server.url(), {}, [&calls, promise](ScrapeResult r) {
      if (++calls == 1) promise->set_value(std::move(r));
    });
  });
  std::this_thread::sleep_for(100ms);
  io.run([&] {
    op->cancel();
    op->cancel();
    return 0;
  });
  ASSERT_EQ(future.wait_for(5s), std::future_status::ready);
  EXPECT_EQ(future.get().error, ScrapeError::Cancelled);
  io.run([] { return 0; });  // drain
  EXPECT_EQ(calls.load(), 1);
}

}  // namespace
}  // namespace veer::net
