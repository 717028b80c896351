#include "veer/etcd_watch.h"

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <nlohmann/json.hpp>
#include <optional>

#include "fleet/encoding.h"
#include "veer/host_port.h"
#include "veer/tls.h"

namespace veer::etcd {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using error_code = boost::system::error_code;
using nlohmann::json;

std::string watch_create_body(const std::string& key, bool prefix, int64_t start_revision) {
  json create = {{"key", fleet::base64_encode(key)}};
  if (prefix) create["range_end"] = fleet::base64_encode(prefix_range_end(key));
  if (start_revision > 0) create["start_revision"] = std::to_string(start_revision);
  return json{{"create_request", create}}.dump();
}

WatchMessage read_watch_message(const std::string& line) {
  // The shapes are read_range's: reuse it on the "result" object for the header and events' kvs.
  json j;
  try {
    j = json::parse(line);
  } catch (const json::exception& e) {
    throw EtcdAnswerError(std::string("etcd watch: not JSON: ") + e.what());
  }
  if (!j.is_object()) throw EtcdAnswerError("etcd watch: a message is not an object");
  const auto r = j.find("result");
  if (r == j.end() || !r->is_object()) {
    const auto m = error_message(line);
    throw EtcdAnswerError("etcd watch: " + (m ? *m : std::string("a message without a result")));
  }
  WatchMessage w;
  json as_range = {{"header", r->value("header", json::object())}, {"kvs", json::array()}};
  std::vector<WatchEvent::Type> types;
  if (const auto events = r->find("events"); events != r->end() && !events->is_null()) {
    if (!events->is_array()) throw EtcdAnswerError("etcd watch: \"events\" is not an array");
    for (const auto& e : *events) {
      if (!e.is_object() || !e.contains("kv") || !e["kv"].is_object())
        throw EtcdAnswerError("etcd watch: an event without a kv");
      const std::string type = e.value("type", std::string("PUT"));
      if (type != "PUT" && type != "DELETE") throw EtcdAnswerError("etcd watch: event type '" + type + "'");
      types.push_back(type == "PUT" ? WatchEvent::Type::Put : WatchEvent::Type::Delete);
      as_range["kvs"].push_back(e["kv"]);
    }
  }
  RangeAnswer parsed = read_range(as_range.dump());
  w.header = parsed.header;
  for (size_t i = 0; i < parsed.kvs.size(); ++i) w.events.push_back({types[i], std::move(parsed.kvs[i])});
  auto flag = [&](const char* name) {
    const auto it = r->find(name);
    if (it == r->end() || it->is_null()) return false;
    if (!it->is_boolean()) throw EtcdAnswerError(std::string("etcd watch: \"") + name + "\" is not a boolean");
    return it->get<bool>();
  };
  w.created = flag("created");
  w.canceled = flag("canceled");
  if (const auto c = r->find("compact_revision"); c != r->end() && !c->is_null()) {
    const std::string text = c->is_string() ? c->get<std::string>() : c->dump();
    try {
      w.compact_revision = std::stoll(text);
    } catch (const std::exception&) {
      throw EtcdAnswerError("etcd watch: compact_revision is not a number");
    }
  }
  if (const auto c = r->find("cancel_reason"); c != r->end() && c->is_string()) w.cancel_reason = c->get<std::string>();
  return w;
}

namespace {

class WatchOperation : public Watch, public std::enable_shared_from_this<WatchOperation> {
 public:
  WatchOperation(asio::io_context& io, std::string endpoint, std::string body, WatchOptions options,
                 std::function<void(const WatchMessage&)> on_message, std::function<void(Status)> on_end)
      : io_(io),
        endpoint_(std::move(endpoint)),
        body_(std::move(body)),
        options_(options),
        on_message_(std::move(on_message)),
        on_end_(std::move(on_end)),
        resolver_(io),
        deadline_(io) {}

  void start() {
    std::string error;
    auto url = net::parse_http_url(endpoint_ + "/v3/watch", &error);
    if (!url) {
      asio::post(io_, [self = shared_from_this(), error] { self->end("bad endpoint '" + self->endpoint_ + "': " + error); });
      return;
    }
    if (const auto refused = net::refuse_scheme(*url, options_.tls.get())) {
      asio::post(io_, [self = shared_from_this(), error = *refused] {
        self->end("bad endpoint '" + self->endpoint_ + "': " + error);
      });
      return;
    }
    url_ = std::move(*url);
    stream_.emplace(io_, url_.https ? options_.tls.get() : nullptr);
    deadline_.expires_after(options_.connect_timeout);
    deadline_.async_wait([self = shared_from_this()](error_code ec) {
      if (ec || self->done_ || self->streaming_) return;
      self->end(self->endpoint_ + ": no watch stream within " + std::to_string(self->options_.connect_timeout.count()) +
                " ms", true);
    });
    resolver_.async_resolve(url_.authority.host, std::to_string(url_.authority.port), tcp::resolver::numeric_service,
                            [self = shared_from_this()](error_code ec, tcp::resolver::results_type results) {
                              if (self->done_) return;
                              if (ec) return self->end(self->endpoint_ + ": resolve: " + ec.message(), true);
                              asio::async_connect(self->stream_->socket(), results, [self](error_code ec, const tcp::endpoint&) {
                                self->on_connect(ec);
                              });
                            });
  }

  void cancel() override { end("cancelled"); }

 private:
  void on_connect(error_code ec) {
    if (done_) return;
    if (ec) return end(endpoint_ + ": connect: " + ec.message(), true);
    if (!stream_->tls()) return send_request();
    stream_->async_handshake(url_.authority.host, [self = shared_from_this()](error_code ec) {
      if (self->done_) return;
      if (ec) return self->end(self->endpoint_ + ": TLS handshake: " + self->stream_->describe(ec), true);
      self->send_request();
    });
  }

  void send_request() {
    request_.method(http::verb::post);
    request_.target(url_.target);
    request_.version(11);
    request_.set(http::field::host, url_.authority.host_for_url() + ":" + std::to_string(url_.authority.port));
    request_.set(http::field::user_agent, "veer");
    request_.set(http::field::content_type, "application/json");
    request_.body() = body_;
    request_.prepare_payload();
    http::async_write(*stream_, request_, [self = shared_from_this()](error_code ec, std::size_t) {
      if (self->done_) return;
      if (ec) return self->end(self->endpoint_ + ": sending the watch: " + self->io_error(ec), true);
      self->parser_.emplace();
      self->parser_->body_limit(boost::none);  // a stream: bounded per message instead
      http::async_read_header(*self->stream_, self->buffer_, *self->parser_,
                              [self](error_code ec, std::size_t) { self->on_header(ec); });
    });
  }

  void on_header(error_code ec) {
    if (done_) return;
    if (ec) return end(endpoint_ + ": reading the watch answer: " + io_error(ec), true);
    if (parser_->get().result() != http::status::ok)
      return end(endpoint_ + ": watch: HTTP " + std::to_string(parser_->get().result_int()));
    streaming_ = true;
    deadline_.cancel();
    read_more();
  }

  void read_more() {
    parser_->get().body().data = chunk_;
    parser_->get().body().size = sizeof chunk_;
    // read_some: returns with what arrived (async_read would wait until the chunk buffer is full).
    http::async_read_some(*stream_, buffer_, *parser_, [self = shared_from_this()](error_code ec, std::size_t) {
      self->on_body(ec);
    });
  }

  void on_body(error_code ec) {
    if (done_) return;
    if (ec == http::error::need_buffer) ec = {};  // the chunk buffer is full: not an error
    const std::size_t got = sizeof chunk_ - parser_->get().body().size;
    line_.append(chunk_, got);
    for (std::size_t nl; (nl = line_.find('\n')) != std::string::npos;) {
      const std::string message = line_.substr(0, nl);
      line_.erase(0, nl + 1);
      if (message.find_first_not_of(" \r\t") == std::string::npos) continue;
      WatchMessage m;
      try {
        m = read_watch_message(message);
      } catch (const EtcdAnswerError& e) {
        return end(endpoint_ + ": " + e.what());
      }
      auto on_message = on_message_;  // a copy: the callback may cancel, which drops on_message_
      on_message(m);
      if (done_) return;  // the callback cancelled us
      if (m.canceled) return end(endpoint_ + ": watch canceled by etcd" +
                                 (m.compact_revision ? " (revision compacted: " + std::to_string(m.compact_revision) + ")"
                                                     : std::string()) +
                                 (m.cancel_reason.empty() ? "" : ": " + m.cancel_reason));
    }
    if (line_.size() > options_.max_message_bytes)
      return end(endpoint_ + ": a watch message larger than " + std::to_string(options_.max_message_bytes) + " bytes");
    if (ec) return end(endpoint_ + ": watch stream: " + io_error(ec), true);
    if (parser_->is_done()) return end(endpoint_ + ": the watch stream ended", true);
    read_more();
  }

  // A read or write error's text; TLS's (an alert such as a refused client certificate) say so.
  std::string io_error(error_code ec) { return net::is_tls_error(ec) ? "TLS: " + stream_->describe(ec) : ec.message(); }

  void end(std::string error, bool unreachable = false) {
    if (done_) return;
    done_ = true;
    deadline_.cancel();
    resolver_.cancel();
    if (stream_) stream_->close();
    auto on_end = std::move(on_end_);
    on_end_ = nullptr;
    on_message_ = nullptr;
    if (on_end) on_end(Status{false, std::move(error), endpoint_, unreachable});
  }

  asio::io_context& io_;
  std::string endpoint_;
  std::string body_;
  WatchOptions options_;
  std::function<void(const WatchMessage&)> on_message_;
  std::function<void(Status)> on_end_;
  net::HttpUrl url_;
  tcp::resolver resolver_;
  std::optional<net::ClientStream> stream_;  // made once the endpoint says plain or TLS
  asio::steady_timer deadline_;
  beast::flat_buffer buffer_;
  http::request<http::string_body> request_;
  std::optional<http::response_parser<http::buffer_body>> parser_;
  char chunk_[16384];
  std::string line_;
  bool done_ = false;
  bool streaming_ = false;
};

}  // namespace

std::shared_ptr<Watch> watch(asio::io_context& io, const std::string& endpoint, const std::string& key, bool prefix,
                             int64_t start_revision, const WatchOptions& options,
                             std::function<void(const WatchMessage&)> on_message, std::function<void(Status)> on_end) {
  auto op = std::make_shared<WatchOperation>(io, endpoint, watch_create_body(key, prefix, start_revision), options,
                                             std::move(on_message), std::move(on_end));
  op->start();
  return op;
}

}  // namespace veer::etcd
