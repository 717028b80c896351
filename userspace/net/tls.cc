#include "veer/tls.h"

#include "config/openssl_errors.h"
#include "veer/host_port.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <boost/asio/ip/address.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl/error.hpp>

namespace veer::net {

namespace asio = boost::asio;
namespace ssl = asio::ssl;
using error_code = boost::system::error_code;

TlsClient::TlsClient(TlsConfig config) : config_(std::move(config)), context_(ssl::context::tls_client) {
  SSL_CTX* ctx = context_.native_handle();
  ERR_clear_error();
  if (config_.ca_file.empty()) throw TlsSetupError("TLS needs a CA file to verify the server's certificate");
  if (config_.cert_file.empty() != config_.key_file.empty())
    throw TlsSetupError("TLS client certificate and key go together: set both or neither");
  // TLS 1.2 is the oldest etcd 3.4 offers by default; older ones are broken.
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  if (SSL_CTX_load_verify_locations(ctx, config_.ca_file.c_str(), nullptr) != 1)
    throw TlsSetupError("cannot load the CA file '" + config_.ca_file + "': " + openssl_errors());
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
  if (!config_.cert_file.empty()) {
    if (SSL_CTX_use_certificate_chain_file(ctx, config_.cert_file.c_str()) != 1)
      throw TlsSetupError("cannot load the client certificate '" + config_.cert_file + "': " + openssl_errors());
    if (SSL_CTX_use_PrivateKey_file(ctx, config_.key_file.c_str(), SSL_FILETYPE_PEM) != 1)
      throw TlsSetupError("cannot load the client key '" + config_.key_file + "': " + openssl_errors());
    if (SSL_CTX_check_private_key(ctx) != 1)
      throw TlsSetupError("the client key '" + config_.key_file + "' does not belong to the certificate '" +
                          config_.cert_file + "': " + openssl_errors());
  }
}

std::shared_ptr<const TlsClient> make_tls_client(const TlsConfig& config) {
  return std::make_shared<const TlsClient>(config);
}

std::optional<std::string> refuse_scheme(const HttpUrl& url, const TlsClient* tls) {
  if (url.https && !tls) return std::string("https is not supported without a TLS configuration");
  return std::nullopt;
}

bool is_tls_error(const error_code& ec) {
  return ec.category() == asio::error::get_ssl_category() || ec.category() == ssl::error::get_stream_category();
}

std::variant<ClientStream::tcp::socket, ClientStream::Tls> ClientStream::open(asio::io_context& io,
                                                                             const TlsClient* tls) {
  if (!tls) return std::variant<tcp::socket, Tls>(std::in_place_index<0>, io);
  return std::variant<tcp::socket, Tls>(std::in_place_index<1>, io, tls->context());
}

ClientStream::ClientStream(asio::io_context& io, const TlsClient* tls) : tls_(tls), stream_(open(io, tls)) {}

ClientStream::tcp::socket& ClientStream::socket() {
  if (auto* s = std::get_if<Tls>(&stream_)) return s->next_layer();
  return std::get<tcp::socket>(stream_);
}

void ClientStream::async_handshake(const std::string& host, std::function<void(error_code)> done) {
  auto& s = std::get<Tls>(stream_);
  SSL* handle = s.native_handle();
  const std::string& name = tls_->name_for(host);
  // OpenSSL checks the name during verification itself (rather than asio's
  // host_name_verification callback), so a mismatch comes back as the
  // verification result "hostname mismatch" / "IP address mismatch".
  error_code not_ip;
  asio::ip::make_address(name, not_ip);
  bool set = false;
  if (!not_ip) {
    set = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(handle), name.c_str()) == 1;
  } else {
    // SNI carries names only (RFC 6066), never an IP literal.
    set = SSL_set_tlsext_host_name(handle, name.c_str()) == 1 && SSL_set1_host(handle, name.c_str()) == 1;
  }
  if (!set) {
    ERR_clear_error();
    asio::post(socket().get_executor(), [done] { done(asio::error::invalid_argument); });
    return;
  }
  s.async_handshake(ssl::stream_base::client, std::move(done));
}

std::string ClientStream::describe(const error_code& ec) {
  std::string text = ec.message();
  if (auto* s = std::get_if<Tls>(&stream_)) {
    const long verified = SSL_get_verify_result(s->native_handle());
    if (verified != X509_V_OK)
      text += " (" + std::string(X509_verify_cert_error_string(verified)) + ")";
  }
  return text;
}

void ClientStream::close() {
  error_code ignored;
  socket().shutdown(tcp::socket::shutdown_both, ignored);
  socket().close(ignored);
}

}  // namespace veer::net
