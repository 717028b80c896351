// TLS for veerd's HTTP clients (etcd's JSON gateway over https://): one
// client context built from the files of `cluster.tls`, shared by every
// connection, and the stream an HTTP exchange runs on, plain TCP or TLS over
// TCP, so the operations (http_get/http_post, the etcd watch) are written once.
//
// The peer is always verified: its chain against the CA file and its name
// (DNS name or IP address in subjectAltName) against the server name, which is
// the URL's host unless TlsConfig::server_name overrides it.
#pragma once
#include <utility>  // Boost 1.74 asio needs it first

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <variant>

namespace veer::net {

struct TlsConfig {
  std::string ca_file;      // PEM: the CA(s) the server's certificate must chain to
  std::string cert_file;    // PEM: the client certificate (etcd's --client-cert-auth); empty: none
  std::string key_file;     // PEM: its private key; set with cert_file or not at all
  std::string server_name;  // the name checked in the server certificate; empty: the URL's host
};

// A TLS file OpenSSL cannot use, with the file and OpenSSL's reason.
class TlsSetupError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The client side of TLS: the shared OpenSSL context of one TlsConfig.
class TlsClient {
 public:
  // Loads and checks the files (throws TlsSetupError).
  explicit TlsClient(TlsConfig config);
  const TlsConfig& config() const { return config_; }
  // The name the server's certificate must hold for a URL with HOST.
  const std::string& name_for(const std::string& host) const {
    return config_.server_name.empty() ? host : config_.server_name;
  }
  // Streams are made on it; OpenSSL's SSL_CTX is safe to share between them.
  boost::asio::ssl::context& context() const { return context_; }

 private:
  TlsConfig config_;
  mutable boost::asio::ssl::context context_;
};

std::shared_ptr<const TlsClient> make_tls_client(const TlsConfig& config);

struct HttpUrl;
// Why URL cannot be spoken with TLS (nullptr: none): https without a TLS configuration; nullopt when it can.
std::optional<std::string> refuse_scheme(const HttpUrl& url, const TlsClient* tls);

// An error of the TLS layer (handshake, alert, record), not of TCP or HTTP.
bool is_tls_error(const boost::system::error_code& ec);

// The connection of one HTTP exchange. Beast reads and writes it as any
// AsyncReadStream/AsyncWriteStream; the plain alternative behaves exactly as
// the tcp::socket it holds.
class ClientStream {
 public:
  using tcp = boost::asio::ip::tcp;
  using Tls = boost::asio::ssl::stream<tcp::socket>;
  using executor_type = tcp::socket::executor_type;

  // TLS: nullptr for plain TCP.
  ClientStream(boost::asio::io_context& io, const TlsClient* tls);

  bool tls() const { return std::holds_alternative<Tls>(stream_); }
  tcp::socket& socket();  // to connect; the TCP connection under TLS too
  executor_type get_executor() { return socket().get_executor(); }

  // TLS only: the handshake, sending SNI (for a name, not an IP address) and
  // checking the certificate's chain and its name for HOST (or server_name).
  void async_handshake(const std::string& host, std::function<void(boost::system::error_code)> done);
  // EC's text, for a TLS error with the certificate verification's result when it failed.
  std::string describe(const boost::system::error_code& ec);
  // Closes the TCP connection at once. No TLS close_notify exchange: the peer
  // need not answer one and nothing read after the answer matters.
  void close();

  template <typename MutableBuffers, typename Handler>
  void async_read_some(const MutableBuffers& buffers, Handler&& handler) {
    std::visit([&](auto& s) { s.async_read_some(buffers, std::forward<Handler>(handler)); }, stream_);
  }
  template <typename ConstBuffers, typename Handler>
  void async_write_some(const ConstBuffers& buffers, Handler&& handler) {
    std::visit([&](auto& s) { s.async_write_some(buffers, std::forward<Handler>(handler)); }, stream_);
  }

 private:
  static std::variant<tcp::socket, Tls> open(boost::asio::io_context& io, const TlsClient* tls);
  const TlsClient* tls_;
  std::variant<tcp::socket, Tls> stream_;
};

}  // namespace veer::net
