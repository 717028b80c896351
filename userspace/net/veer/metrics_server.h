// veer's own Prometheus endpoint (SPEC §7, node.metrics_listen): an HTTP/1.1
// server on Boost.Asio + Boost.Beast that runs on the caller's io_context
// (veerd's single-threaded loop).
//
//   GET /metrics  -> 200, text/plain; version=0.0.4, body from the render callback
//   other paths   -> the route callback's page (veerd's live view: /, /assets/...,
//                    /api/v1/..., docs/view.md), 404 when it has none; without a route
//                    callback, / is a short HTML index
//   methods other than GET and HEAD -> 405 (Allow: GET, HEAD): nothing served here
//   can change state
//
// A scrape costs one render call on the loop thread. Hostile or slow clients
// are bounded: a request (header + body) must arrive whole within
// request_timeout and fit header/body limits (431 / 413 otherwise, then the
// connection closes); a response must be taken within write_timeout; at most
// max_connections are open at once (more get a 503 and are closed). Keep-alive
// is supported (Prometheus reuses connections).
#pragma once
// Boost 1.74 asio (awaitable.hpp) uses std::exchange without including <utility>.
#include <utility>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace veer::net {

class MetricsServer {
 public:
  // Returns the exposition text. Called on the io_context's thread. An
  // exception becomes a 500 whose body is its message.
  using RenderCallback = std::function<std::string()>;

  // What a route answers: status, Content-Type and body.
  struct Page {
    unsigned status = 200;
    std::string content_type;
    std::string body;
  };
  // PATH (the request target without its query) -> its page, or nullopt for
  // a 404. Called on the io_context's thread for GET and HEAD only (HEAD
  // sends the headers of the same page). An exception becomes a 500.
  using RouteCallback = std::function<std::optional<Page>(std::string_view path)>;

  struct Options {
    std::size_t max_connections = 64;
    std::size_t max_request_header_bytes = 8 * 1024;
    std::size_t max_request_body_bytes = 1024;  // GET has no body; a small one is tolerated
    std::chrono::milliseconds request_timeout{10'000};
    std::chrono::milliseconds write_timeout{10'000};
  };

  MetricsServer(boost::asio::io_context& io, RenderCallback render);
  MetricsServer(boost::asio::io_context& io, RenderCallback render, Options options);
  MetricsServer(boost::asio::io_context& io, RenderCallback render, RouteCallback routes, Options options);
  ~MetricsServer();  // stop()
  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;

  // Binds `listen` ("127.0.0.1:9469", "[::1]:9469", "localhost:9469"; port 0
  // picks a free port) and starts accepting. A host name is resolved here,
  // synchronously, and the first address is used. Throws std::runtime_error
  // with a message naming the address (bad address, in use, no permission);
  // nothing is left open then. Call once.
  void start(std::string_view listen);
  // The bound address (after start), e.g. to learn the port picked for 0.
  boost::asio::ip::tcp::endpoint local_endpoint() const;
  // Stops accepting and closes every connection; no render call after this.
  // Idempotent.
  void stop();
  // Open connections (tests, status).
  std::size_t connection_count() const;

  struct Shared;  // state the connections share with the server (outlives it if needed)

 private:
  void accept();

  boost::asio::io_context& io_;
  boost::asio::ip::tcp::acceptor acceptor_;
  boost::asio::steady_timer retry_timer_;
  std::shared_ptr<Shared> shared_;
};

}  // namespace veer::net
