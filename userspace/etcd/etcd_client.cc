#include "veer/etcd_client.h"

#include <boost/asio/post.hpp>

#include "veer/http_scraper.h"

namespace veer::etcd {

Client::Client(boost::asio::io_context& io, std::vector<std::string> endpoints, ClientOptions options)
    : io_(io), endpoints_(std::move(endpoints)), options_(options), preferred_(std::make_shared<size_t>(0)) {}

void Client::call(const std::string& path, std::string body, Raw done) {
  if (endpoints_.empty()) {
    boost::asio::post(io_, [done] { done(Status{false, "no etcd endpoint configured", {}, true}, {}); });
    return;
  }
  struct Attempt {
    size_t tried = 0;
    std::string failures;
  };
  auto attempt = std::make_shared<Attempt>();
  net::ScrapeOptions http;
  http.timeout = options_.timeout;
  http.max_body_bytes = options_.max_answer_bytes;
  http.accept = "application/json";
  http.tls = options_.tls;
  // One endpoint after the other, from the preferred one, until one answers.
  auto next = std::make_shared<std::function<void()>>();
  *next = [io = &io_, path, body = std::move(body), done = std::move(done), attempt, http, next,
           preferred = preferred_, endpoints = endpoints_]() {
    const size_t index = (*preferred + attempt->tried) % endpoints.size();
    const std::string endpoint = endpoints[index];
    net::http_post(*io, endpoint + path, body, http,
                   [done, attempt, next, preferred, endpoints, index, endpoint](net::ScrapeResult r) {
                     const bool answered = r.ok() || r.error == net::ScrapeError::HttpStatus ||
                                           r.error == net::ScrapeError::TooLarge;
                     if (!answered) {
                       attempt->failures += (attempt->failures.empty() ? "" : "; ") + r.message;
                       if (++attempt->tried < endpoints.size()) return (*next)();
                       *next = nullptr;  // break the cycle
                       return done(Status{false, "no etcd endpoint answered: " + attempt->failures, {}, true}, {});
                     }
                     *preferred = index;
                     *next = nullptr;
                     if (!r.ok()) {
                       std::string why = r.message;
                       if (const auto m = error_message(r.body)) why += ": " + *m;
                       return done(Status{false, why, endpoint, false}, {});
                     }
                     done(Status{true, {}, endpoint, false}, std::move(r.body));
                   });
  };
  (*next)();
}

template <typename Answer>
void Client::typed(const std::string& path, std::string body, Answer (*read)(const std::string&),
                   std::function<void(Status, Answer)> done) {
  call(path, std::move(body), [read, done = std::move(done)](Status s, std::string answer) {
    if (!s.ok) return done(std::move(s), Answer{});
    try {
      Answer a = read(answer);
      done(std::move(s), std::move(a));
    } catch (const EtcdAnswerError& e) {
      done(Status{false, s.endpoint + ": " + e.what(), s.endpoint, false}, Answer{});
    }
  });
}

void Client::range(const std::string& key, bool prefix, std::function<void(Status, RangeAnswer)> done) {
  typed<RangeAnswer>("/v3/kv/range", range_body(key, prefix), &read_range, std::move(done));
}

void Client::put(const std::string& key, const std::string& value, int64_t lease,
                 std::function<void(Status, Header)> done) {
  typed<Header>("/v3/kv/put", put_body(key, value, lease), &read_put, std::move(done));
}

void Client::txn(const std::vector<Compare>& compares, const std::vector<Op>& success,
                 const std::vector<Op>& failure, std::function<void(Status, TxnAnswer)> done) {
  typed<TxnAnswer>("/v3/kv/txn", txn_body(compares, success, failure), &read_txn, std::move(done));
}

void Client::lease_grant(int64_t ttl_seconds, std::function<void(Status, LeaseAnswer)> done) {
  typed<LeaseAnswer>("/v3/lease/grant", lease_grant_body(ttl_seconds), &read_lease_grant, std::move(done));
}

void Client::lease_keepalive(int64_t id, std::function<void(Status, LeaseAnswer)> done) {
  typed<LeaseAnswer>("/v3/lease/keepalive", lease_id_body(id), &read_lease_keepalive, std::move(done));
}

void Client::lease_revoke(int64_t id, std::function<void(Status, Header)> done) {
  typed<Header>("/v3/lease/revoke", lease_id_body(id), &read_lease_revoke, std::move(done));
}

}  // namespace veer::etcd
