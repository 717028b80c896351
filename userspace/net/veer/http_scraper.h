// One asynchronous HTTP GET of a variant's metrics_url (the `prometheus` gate
// source) on the caller's io_context, Boost.Asio + Boost.Beast.
//
// http://, and https:// with a TlsClient in the options (etcd's gateway);
// the whole operation (resolve, connect, TLS handshake, request, response) has
// one deadline, and the body is bounded. Every failure comes back as a
// ScrapeResult with an error kind and a message: to the gate model each of
// them is Error (source unreachable). The callback runs exactly once, on the
// io_context's thread, never from inside http_get itself.
#pragma once
// Boost 1.74 asio (awaitable.hpp) uses std::exchange without including <utility>.
#include <utility>

#include <boost/asio/io_context.hpp>
#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

namespace veer::net {

class TlsClient;

enum class ScrapeError {
  None,
  BadUrl,      // not http[s]://host[:port]/path (https without options.tls is refused)
  Resolve,     // host name did not resolve
  Connect,     // refused, unreachable
  Timeout,     // the deadline passed (any phase)
  HttpStatus,  // an answer other than 200
  TooLarge,    // body above max_body_bytes
  Protocol,    // not HTTP/1.x, broken framing, connection lost mid-answer
  Tls,         // https: the handshake failed (certificate not verified, refused by the server), a TLS alert
  Cancelled,   // HttpGet::cancel()
};
const char* to_string(ScrapeError error);

struct ScrapeResult {
  ScrapeError error = ScrapeError::None;
  std::string message;       // for logs and events; empty on success
  unsigned status = 0;       // the HTTP status when one was read
  std::string content_type;
  std::string body;          // the answer's body (also with HttpStatus: servers explain errors there)
  std::chrono::steady_clock::duration elapsed{};
  bool ok() const { return error == ScrapeError::None; }
};

struct ScrapeOptions {
  std::chrono::milliseconds timeout{5'000};
  std::size_t max_body_bytes = 4u << 20;
  std::size_t max_header_bytes = 64u << 10;
  // Ask for the text format: exporters that also speak OpenMetrics or
  // protobuf would otherwise pick one.
  std::string accept = "text/plain;version=0.0.4;q=1,*/*;q=0.1";
  std::string content_type = "application/json";  // of an http_post body
  std::shared_ptr<const TlsClient> tls;  // speaks https:// URLs; without it they are refused (BadUrl)
};

class HttpGet {
 public:
  using Callback = std::function<void(ScrapeResult)>;
  virtual ~HttpGet() = default;
  // Ends the request now; the callback gets Cancelled (unless it already ran).
  // Call on the io_context's thread.
  virtual void cancel() = 0;
};

// Starts the GET. Call on the io_context's thread (or before it runs). The
// returned handle may be dropped: the operation keeps itself alive.
std::shared_ptr<HttpGet> http_get(boost::asio::io_context& io, std::string_view url, const ScrapeOptions& options,
                                  HttpGet::Callback callback);
// The same with a POST of BODY (options.content_type), as etcd's JSON gateway takes its requests.
std::shared_ptr<HttpGet> http_post(boost::asio::io_context& io, std::string_view url, std::string body,
                                   const ScrapeOptions& options, HttpGet::Callback callback);

}  // namespace veer::net
