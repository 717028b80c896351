// An etcd v3 client over its JSON gateway (HTTP/1.1 POSTs, Boost.Beast via
// veer_net's http_post), asynchronous on the caller's io_context. Each call
// tries the endpoints in turn, starting with the one that answered last, until
// one answers; an answer that is an error (HTTP status, the gateway's error
// object, a malformed body) ends the call with that error, it is not retried
// elsewhere (a txn must not run twice). Callbacks run on the io_context's
// thread, exactly once, never from inside the call.
#pragma once
#include <utility>  // Boost 1.74 asio needs it first

#include <boost/asio/io_context.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "veer/etcd_gateway.h"

namespace veer::net {
class TlsClient;
}

namespace veer::etcd {

struct ClientOptions {
  std::chrono::milliseconds timeout{2000};  // per endpoint tried
  std::size_t max_answer_bytes = 16u << 20;
  // Speaks https:// endpoints (cluster.tls); a failed handshake counts as no answer.
  std::shared_ptr<const net::TlsClient> tls;
};

struct Status {
  bool ok = false;
  std::string error;     // empty when ok: what failed, with the endpoint(s)
  std::string endpoint;  // the one that answered
  bool unreachable = false;  // no endpoint answered at all (down, no quorum for the gateway, cut off)
};

class Client {
 public:
  // ENDPOINTS: "http://127.0.0.1:2379" ..., or https:// ones with options.tls.
  Client(boost::asio::io_context& io, std::vector<std::string> endpoints, ClientOptions options = {});

  void range(const std::string& key, bool prefix, std::function<void(Status, RangeAnswer)> done);
  void put(const std::string& key, const std::string& value, int64_t lease,
           std::function<void(Status, Header)> done);
  void txn(const std::vector<Compare>& compares, const std::vector<Op>& success, const std::vector<Op>& failure,
           std::function<void(Status, TxnAnswer)> done);
  void lease_grant(int64_t ttl_seconds, std::function<void(Status, LeaseAnswer)> done);
  void lease_keepalive(int64_t id, std::function<void(Status, LeaseAnswer)> done);
  void lease_revoke(int64_t id, std::function<void(Status, Header)> done);

  const std::vector<std::string>& endpoints() const { return endpoints_; }
  const ClientOptions& options() const { return options_; }

 private:
  using Raw = std::function<void(Status, std::string body)>;
  void call(const std::string& path, std::string body, Raw done);
  template <typename Answer>
  void typed(const std::string& path, std::string body, Answer (*read)(const std::string&),
             std::function<void(Status, Answer)> done);

  boost::asio::io_context& io_;
  std::vector<std::string> endpoints_;
  ClientOptions options_;
  std::shared_ptr<size_t> preferred_;  // index of the endpoint that answered last
};

}  // namespace veer::etcd
