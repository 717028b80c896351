#include "veer/http_scraper.h"

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <optional>

#include "veer/host_port.h"
#include "veer/tls.h"

namespace veer::net {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using error_code = boost::system::error_code;

const char* to_string(ScrapeError error) {
  switch (error) {
    case ScrapeError::None: return "none";
    case ScrapeError::BadUrl: return "bad_url";
    case ScrapeError::Resolve: return "resolve";
    case ScrapeError::Connect: return "connect";
    case ScrapeError::Timeout: return "timeout";
    case ScrapeError::HttpStatus: return "http_status";
    case ScrapeError::TooLarge: return "too_large";
    case ScrapeError::Protocol: return "protocol";
    case ScrapeError::Tls: return "tls";
    case ScrapeError::Cancelled: return "cancelled";
  }
  return "unknown";
}

namespace {

class HttpGetOperation : public HttpGet, public std::enable_shared_from_this<HttpGetOperation> {
 public:
  HttpGetOperation(asio::io_context& io, std::string url, ScrapeOptions options, Callback callback,
                   std::optional<std::string> post_body = std::nullopt)
      : io_(io),
        url_(std::move(url)),
        post_body_(std::move(post_body)),
        options_(std::move(options)),
        callback_(std::move(callback)),
        resolver_(io),
        deadline_(io),
        started_(std::chrono::steady_clock::now()) {}

  void start() {
    std::string error;
    auto parsed = parse_http_url(url_, &error);
    if (!parsed) {
      // Never call back from inside http_get: post it.
      asio::post(io_, [self = shared_from_this(), error] { self->finish(ScrapeError::BadUrl, "bad URL '" + self->url_ + "': " + error); });
      return;
    }
    if (const auto refused = refuse_scheme(*parsed, options_.tls.get())) {
      asio::post(io_, [self = shared_from_this(), error = *refused] {
        self->finish(ScrapeError::BadUrl, "bad URL '" + self->url_ + "': " + error);
      });
      return;
    }
    url_parts_ = std::move(*parsed);
    stream_.emplace(io_, url_parts_.https ? options_.tls.get() : nullptr);
    deadline_.expires_after(options_.timeout);
    deadline_.async_wait([self = shared_from_this()](error_code ec) {
      if (ec || self->done_) return;
      self->timed_out_ = true;
      self->abort_io();  // pending handlers see operation_aborted and report the timeout
    });
    resolver_.async_resolve(url_parts_.authority.host, std::to_string(url_parts_.authority.port),
                            tcp::resolver::numeric_service,
                            [self = shared_from_this()](error_code ec, tcp::resolver::results_type results) {
                              self->on_resolve(ec, std::move(results));
                            });
  }

  void cancel() override {
    if (done_) return;
    abort_io();
    finish(ScrapeError::Cancelled, "cancelled");
  }

 private:
  std::string where() const { return url_; }

  // An aborted operation after a timeout or cancel is reported as such.
  bool interrupted(error_code ec) {
    if (done_) return true;
    if (timed_out_) {
      finish(ScrapeError::Timeout, where() + ": no complete answer within " + std::to_string(options_.timeout.count()) +
                                       " ms");
      return true;
    }
    (void)ec;
    return false;
  }

  void on_resolve(error_code ec, tcp::resolver::results_type results) {
    if (interrupted(ec)) return;
    if (ec || results.empty())
      return finish(ScrapeError::Resolve,
                    where() + ": cannot resolve '" + url_parts_.authority.host + "': " + (ec ? ec.message() : "no address"));
    asio::async_connect(stream_->socket(), results, [self = shared_from_this()](error_code ec, const tcp::endpoint&) {
      self->on_connect(ec);
    });
  }

  void on_connect(error_code ec) {
    if (interrupted(ec)) return;
    if (ec) return finish(ScrapeError::Connect, where() + ": connect: " + ec.message());
    if (!stream_->tls()) return send_request();
    stream_->async_handshake(url_parts_.authority.host, [self = shared_from_this()](error_code ec) {
      if (self->interrupted(ec)) return;
      if (ec) return self->finish(ScrapeError::Tls, self->where() + ": TLS handshake: " + self->stream_->describe(ec));
      self->send_request();
    });
  }

  void send_request() {
    request_.method(post_body_ ? http::verb::post : http::verb::get);
    request_.target(url_parts_.target);
    request_.version(11);
    request_.set(http::field::host,
                 url_parts_.authority.host_for_url() + ":" + std::to_string(url_parts_.authority.port));
    request_.set(http::field::user_agent, "veer");
    request_.set(http::field::accept, options_.accept);
    request_.keep_alive(false);
    if (post_body_) {
      request_.set(http::field::content_type, options_.content_type);
      request_.body() = *post_body_;
      request_.prepare_payload();
    }
    http::async_write(*stream_, request_, [self = shared_from_this()](error_code ec, std::size_t) { self->on_write(ec); });
  }

  void on_write(error_code ec) {
    if (interrupted(ec)) return;
    if (ec) return failed_io("sending the request", ec);
    parser_.emplace();
    parser_->header_limit(static_cast<std::uint32_t>(options_.max_header_bytes));
    parser_->body_limit(options_.max_body_bytes);
    // The header first, then the body. Boost 1.74's response parser does not
    // stop at a Content-Length above body_limit when it parses eagerly (as
    // http::async_read does): finish_header sets the error, and the eager
    // loop goes on into the body and clears it, so an announced 10 GB body
    // would be read into memory. async_read_header parses non-eagerly and
    // reports body_limit; on_header checks the length once more.
    http::async_read_header(*stream_, buffer_, *parser_, [self = shared_from_this()](error_code ec, std::size_t) {
      self->on_header(ec);
    });
  }

  void on_header(error_code ec) {
    if (interrupted(ec)) return;
    if (!ec) {
      const auto length = parser_->content_length();
      if (length && *length > options_.max_body_bytes) ec = http::error::body_limit;
    }
    if (ec) return on_read(ec);
    if (parser_->is_done()) return on_read(ec);
    http::async_read(*stream_, buffer_, *parser_, [self = shared_from_this()](error_code ec, std::size_t) {
      self->on_read(ec);
    });
  }

  void on_read(error_code ec) {
    if (interrupted(ec)) return;
    if (ec == http::error::body_limit)
      return finish(ScrapeError::TooLarge,
                    where() + ": body larger than " + std::to_string(options_.max_body_bytes) + " bytes");
    if (ec == http::error::header_limit)
      return finish(ScrapeError::TooLarge,
                    where() + ": header larger than " + std::to_string(options_.max_header_bytes) + " bytes");
    if (ec) return failed_io("reading the answer", ec);
    auto& res = parser_->get();
    ScrapeResult result;
    result.status = res.result_int();
    result.content_type = std::string(res[http::field::content_type]);
    if (res.result() != http::status::ok) {
      result.error = ScrapeError::HttpStatus;
      result.message = where() + ": HTTP " + std::to_string(result.status) + " " + std::string(res.reason());
    }
    result.body = std::move(res.body());  // an error's body too: etcd's gateway explains itself there
    deliver(std::move(result));
  }

  // A broken exchange: TLS's errors (an alert such as a refused client
  // certificate, which TLS 1.3 sends after the handshake) are told apart.
  void failed_io(const char* doing, error_code ec) {
    if (is_tls_error(ec)) return finish(ScrapeError::Tls, where() + ": " + doing + ": TLS: " + stream_->describe(ec));
    finish(ScrapeError::Protocol, where() + ": " + doing + ": " + ec.message());
  }

  void abort_io() {
    resolver_.cancel();
    if (stream_) stream_->close();
  }

  void finish(ScrapeError error, std::string message) {
    ScrapeResult result;
    result.error = error;
    result.message = std::move(message);
    deliver(std::move(result));
  }

  void deliver(ScrapeResult result) {
    if (done_) return;
    done_ = true;
    deadline_.cancel();
    abort_io();
    result.elapsed = std::chrono::steady_clock::now() - started_;
    // Move the callback out first: it may start the next scrape and drop us.
    auto callback = std::move(callback_);
    callback_ = nullptr;
    if (callback) callback(std::move(result));
  }

  asio::io_context& io_;
  std::string url_;
  std::optional<std::string> post_body_;
  ScrapeOptions options_;
  Callback callback_;
  HttpUrl url_parts_;
  tcp::resolver resolver_;
  std::optional<ClientStream> stream_;  // made once the URL says plain or TLS
  asio::steady_timer deadline_;
  beast::flat_buffer buffer_;
  http::request<http::string_body> request_;
  std::optional<http::response_parser<http::string_body>> parser_;
  std::chrono::steady_clock::time_point started_;
  bool done_ = false;
  bool timed_out_ = false;
};

}  // namespace

std::shared_ptr<HttpGet> http_get(asio::io_context& io, std::string_view url, const ScrapeOptions& options,
                                  HttpGet::Callback callback) {
  auto op = std::make_shared<HttpGetOperation>(io, std::string(url), options, std::move(callback));
  op->start();
  return op;
}

std::shared_ptr<HttpGet> http_post(asio::io_context& io, std::string_view url, std::string body,
                                   const ScrapeOptions& options, HttpGet::Callback callback) {
  auto op = std::make_shared<HttpGetOperation>(io, std::string(url), options, std::move(callback), std::move(body));
  op->start();
  return op;
}

}  // namespace veer::net
