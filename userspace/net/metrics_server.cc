#include "veer/metrics_server.h"

#include <spdlog/spdlog.h>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <exception>
#include <optional>
#include <stdexcept>
#include <unordered_map>

#include "veer/host_port.h"

namespace veer::net {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using error_code = boost::system::error_code;

namespace {

constexpr const char* kMetricsContentType = "text/plain; version=0.0.4; charset=utf-8";
constexpr std::string_view kIndexPage =
    "<html><head><title>veer</title></head><body><h1>veer</h1>"
    "<p><a href=\"/metrics\">Metrics</a></p></body></html>\n";

class Session;

}  // namespace

struct MetricsServer::Shared {
  MetricsServer::RenderCallback render;
  MetricsServer::RouteCallback routes;  // may be empty
  MetricsServer::Options options;
  bool stopped = false;
  // Live sessions; a session removes itself when it ends.
  std::unordered_map<Session*, std::weak_ptr<Session>> sessions;
};

namespace {

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(std::shared_ptr<MetricsServer::Shared> shared, tcp::socket socket)
      : shared_(std::move(shared)),
        stream_(std::move(socket)),
        // Room for one whole request; the parser's own limits answer first.
        buffer_(shared_->options.max_request_header_bytes + shared_->options.max_request_body_bytes + 1) {}

  ~Session() { shared_->sessions.erase(this); }

  void start() {
    shared_->sessions.emplace(this, weak_from_this());
    read_request();
  }

  void close() {
    error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
    stream_.socket().close(ignored);
  }

 private:
  void read_request() {
    parser_.emplace();
    parser_->header_limit(static_cast<std::uint32_t>(shared_->options.max_request_header_bytes));
    parser_->body_limit(shared_->options.max_request_body_bytes);
    // One deadline for the whole request: a client that trickles bytes
    // (slowloris) is cut off like a silent one.
    stream_.expires_after(shared_->options.request_timeout);
    // Header first (non-eager parse): Boost 1.74's eager parse, as in
    // http::async_read, can step past a body_limit error raised at the end of
    // the header (see http_scraper.cc). The deadline above covers both reads.
    http::async_read_header(stream_, buffer_, *parser_,
                            [self = shared_from_this()](error_code ec, std::size_t) { self->on_header(ec); });
  }

  void on_header(error_code ec) {
    if (!ec) {
      const auto length = parser_->content_length();
      if (length && *length > shared_->options.max_request_body_bytes) ec = http::error::body_limit;
    }
    if (ec || parser_->is_done()) return on_read(ec);
    http::async_read(stream_, buffer_, *parser_,
                     [self = shared_from_this()](error_code ec, std::size_t) { self->on_read(ec); });
  }

  void on_read(error_code ec) {
    if (shared_->stopped) return;
    if (ec == http::error::end_of_stream || ec == asio::error::operation_aborted || ec == beast::error::timeout ||
        ec == asio::error::connection_reset || ec == asio::error::eof) {
      // Closed between requests, timed out (slow client) or stopped: no answer owed.
      close();
      return;
    }
    if (ec == http::error::header_limit) return send_error(http::status::request_header_fields_too_large);
    if (ec == http::error::body_limit || ec == http::error::buffer_overflow)
      return send_error(http::status::payload_too_large);
    // Any other parse error (bad method, target, version, header syntax, chunk).
    if (ec.category() == http::make_error_code(http::error::bad_target).category())
      return send_error(http::status::bad_request);
    if (ec) {
      spdlog::debug("metrics: read: {}", ec.message());
      close();
      return;
    }
    handle(parser_->get());
  }

  void handle(const http::request<http::string_body>& req) {
    auto res = std::make_shared<http::response<http::string_body>>();
    res->version(req.version());
    res->keep_alive(req.keep_alive());
    res->set(http::field::server, "veer");
    std::string_view target(req.target().data(), req.target().size());
    if (const auto q = target.find('?'); q != std::string_view::npos) target = target.substr(0, q);
    const bool head = req.method() == http::verb::head;
    std::string body;
    if (req.method() != http::verb::get && !head) {
      res->result(http::status::method_not_allowed);
      res->set(http::field::allow, "GET, HEAD");
      res->set(http::field::content_type, "text/plain; charset=utf-8");
      body = "method not allowed\n";
    } else if (target == "/metrics") {
      try {
        body = shared_->render();
        res->result(http::status::ok);
        res->set(http::field::content_type, kMetricsContentType);
      } catch (const std::exception& e) {
        res->result(http::status::internal_server_error);
        res->set(http::field::content_type, "text/plain; charset=utf-8");
        body = std::string("error rendering metrics: ") + e.what() + "\n";
        spdlog::warn("metrics: render failed: {}", e.what());
      }
    } else if (shared_->routes) {
      try {
        if (auto page = shared_->routes(target)) {
          res->result(static_cast<http::status>(page->status));
          res->set(http::field::content_type, page->content_type);
          // Live data: a browser or proxy must ask again, not reuse an old answer.
          res->set(http::field::cache_control, "no-store");
          res->set("X-Content-Type-Options", "nosniff");
          body = std::move(page->body);
        } else {
          not_found(*res, body);
        }
      } catch (const std::exception& e) {
        res->result(http::status::internal_server_error);
        res->set(http::field::content_type, "text/plain; charset=utf-8");
        body = std::string("error rendering ") + std::string(target) + ": " + e.what() + "\n";
        spdlog::warn("metrics: route {} failed: {}", target, e.what());
      }
    } else if (target == "/") {
      res->result(http::status::ok);
      res->set(http::field::content_type, "text/html; charset=utf-8");
      body = std::string(kIndexPage);
    } else {
      not_found(*res, body);
    }
    res->content_length(body.size());
    if (!head) res->body() = std::move(body);
    write(std::move(res));
  }

  static void not_found(http::response<http::string_body>& res, std::string& body) {
    res.result(http::status::not_found);
    res.set(http::field::content_type, "text/plain; charset=utf-8");
    body = "not found; try /metrics\n";
  }

  // After a request that could not be read whole the stream's state is
  // unknown: answer and close.
  void send_error(http::status status) {
    auto res = std::make_shared<http::response<http::string_body>>(status, 11);
    res->set(http::field::server, "veer");
    res->set(http::field::content_type, "text/plain; charset=utf-8");
    res->keep_alive(false);
    res->body() = std::string(http::obsolete_reason(status)) + "\n";
    res->prepare_payload();
    write(std::move(res));
  }

  void write(std::shared_ptr<http::response<http::string_body>> res) {
    stream_.expires_after(shared_->options.write_timeout);
    // The serializer reads the response while writing: keep it alive in the handler.
    http::async_write(stream_, *res, [self = shared_from_this(), res](error_code ec, std::size_t) {
      if (self->shared_->stopped) return;
      if (ec || !res->keep_alive()) {
        if (ec && ec != asio::error::operation_aborted) spdlog::debug("metrics: write: {}", ec.message());
        self->close();
        return;
      }
      self->read_request();
    });
  }

  std::shared_ptr<MetricsServer::Shared> shared_;
  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
};

}  // namespace

MetricsServer::MetricsServer(asio::io_context& io, RenderCallback render)
    : MetricsServer(io, std::move(render), Options{}) {}

MetricsServer::MetricsServer(asio::io_context& io, RenderCallback render, Options options)
    : MetricsServer(io, std::move(render), RouteCallback{}, options) {}

MetricsServer::MetricsServer(asio::io_context& io, RenderCallback render, RouteCallback routes, Options options)
    : io_(io), acceptor_(io), retry_timer_(io), shared_(std::make_shared<Shared>()) {
  shared_->render = std::move(render);
  shared_->routes = std::move(routes);
  shared_->options = options;
}

MetricsServer::~MetricsServer() { stop(); }

void MetricsServer::start(std::string_view listen) {
  const std::string where = "metrics_listen " + std::string(listen);
  std::string error;
  const auto hp = parse_host_port(listen, &error);
  if (!hp) throw std::runtime_error(where + ": " + error);
  error_code ec;
  tcp::resolver resolver(io_);
  const auto results = resolver.resolve(hp->host, std::to_string(hp->port),
                                        tcp::resolver::passive | tcp::resolver::numeric_service, ec);
  if (ec || results.empty())
    throw std::runtime_error(where + ": cannot resolve '" + hp->host + "': " + (ec ? ec.message() : "no address"));
  const tcp::endpoint endpoint = results.begin()->endpoint();
  const auto fail = [&](const char* what) {
    error_code ignored;
    acceptor_.close(ignored);
    throw std::runtime_error(where + ": " + what + " " + endpoint.address().to_string() + ": " + ec.message());
  };
  if (acceptor_.open(endpoint.protocol(), ec)) fail("socket for");
  if (acceptor_.set_option(tcp::acceptor::reuse_address(true), ec)) fail("SO_REUSEADDR on");
  if (acceptor_.bind(endpoint, ec)) fail("bind");
  if (acceptor_.listen(asio::socket_base::max_listen_connections, ec)) fail("listen on");
  accept();
}

tcp::endpoint MetricsServer::local_endpoint() const {
  error_code ec;
  return acceptor_.local_endpoint(ec);
}

std::size_t MetricsServer::connection_count() const { return shared_->sessions.size(); }

void MetricsServer::accept() {
  acceptor_.async_accept([this, shared = shared_](error_code ec, tcp::socket socket) {
    if (shared->stopped || ec == asio::error::operation_aborted) return;
    if (ec) {
      // EMFILE and the like: try again shortly instead of spinning.
      spdlog::warn("metrics: accept: {}", ec.message());
      retry_timer_.expires_after(std::chrono::milliseconds(100));
      retry_timer_.async_wait([this, shared](error_code wait_ec) {
        if (!wait_ec && !shared->stopped) accept();
      });
      return;
    }
    if (shared->sessions.size() >= shared->options.max_connections) {
      // Over the limit: a best-effort 503 that never blocks the loop, then close.
      static constexpr std::string_view busy =
          "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
      error_code ignored;
      socket.non_blocking(true, ignored);
      socket.write_some(asio::buffer(busy), ignored);
      socket.shutdown(tcp::socket::shutdown_both, ignored);
      socket.close(ignored);
    } else {
      std::make_shared<Session>(shared, std::move(socket))->start();
    }
    accept();
  });
}

void MetricsServer::stop() {
  if (shared_->stopped) return;
  shared_->stopped = true;
  error_code ignored;
  acceptor_.close(ignored);
  retry_timer_.cancel();
  // close() may end a session (and erase it from the map): iterate over a copy.
  auto sessions = shared_->sessions;
  for (auto& [ptr, weak] : sessions)
    if (auto s = weak.lock()) s->close();
}

}  // namespace veer::net
