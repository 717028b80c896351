#include "veer/fleet_member.h"

#include <boost/asio/post.hpp>

#include <algorithm>

namespace veer::etcd {

FleetMember::FleetMember(boost::asio::io_context& io, std::vector<std::string> endpoints, MemberOptions options,
                         MemberCallbacks callbacks, ClientOptions client_options)
    : io_(io),
      client_(io, std::move(endpoints), client_options),
      options_(std::move(options)),
      callbacks_(std::move(callbacks)),
      keys_(options_.prefix),
      lease_timer_(io),
      sync_timer_(io) {}

void FleetMember::later(boost::asio::steady_timer& timer, std::chrono::milliseconds after,
                        std::function<void()> then) {
  timer.expires_after(after);
  timer.async_wait([self = shared_from_this(), then = std::move(then)](const boost::system::error_code& ec) {
    if (!ec && !self->stopped_) then();
  });
}

void FleetMember::start() {
  grant();
  catch_up();
}

void FleetMember::stop(std::function<void()> done) {
  stopped_ = true;
  lease_timer_.cancel();
  sync_timer_.cancel();
  if (watch_) watch_->cancel();
  watch_.reset();
  if (lease_ == 0) {
    if (done) boost::asio::post(io_, done);
    return;
  }
  client_.lease_revoke(lease_, [self = shared_from_this(), done](Status, Header) {
    self->lease_ = 0;
    if (done) done();
  });
}

void FleetMember::set_connected(bool connected, const std::string& why) {
  if (connected == connected_) return;
  connected_ = connected;
  if (callbacks_.on_connection) callbacks_.on_connection(connected, why);
}

// ---- the lease and the report under it

void FleetMember::grant() {
  client_.lease_grant(options_.lease_ttl_seconds, [self = shared_from_this()](Status s, LeaseAnswer a) {
    if (self->stopped_) return;
    if (!s.ok || a.id == 0) {
      self->later(self->lease_timer_, self->options_.retry, [self] { self->grant(); });
      return;
    }
    self->lease_ = a.id;
    self->put_report();
    self->keepalive_later();
  });
}

void FleetMember::keepalive_later() {
  // Three keepalives a TTL: one lost answer does not let the lease lapse.
  const auto every = std::chrono::milliseconds(options_.lease_ttl_seconds * 1000 / 3);
  later(lease_timer_, every, [this] {
    client_.lease_keepalive(lease_, [self = shared_from_this()](Status s, LeaseAnswer a) {
      if (self->stopped_) return;
      if (!s.ok) {
        // etcd away or without quorum: a watch would stay silent, not fail, so the catch-up loop is
        // restarted from here and holds until etcd answers again.
        self->set_connected(false, "lease keepalive failed: " + s.error);
        if (self->watch_) self->watch_->cancel();
        self->later(self->lease_timer_, self->options_.retry, [self] { self->keepalive_later(); });
        return;
      }
      if (a.ttl <= 0) {  // expired while we were cut off: the report went with it
        self->lease_ = 0;
        return self->grant();
      }
      self->keepalive_later();
    });
  });
}

void FleetMember::publish(std::string report_json) {
  report_ = std::move(report_json);
  put_report();
}

void FleetMember::put_report() {
  if (lease_ == 0 || report_.empty() || stopped_) return;
  client_.put(keys_.node(options_.node), report_, lease_, [self = shared_from_this()](Status s, Header) {
    if (!s.ok && !s.unreachable && s.error.find("lease not found") != std::string::npos && !self->stopped_) {
      self->lease_ = 0;
      self->lease_timer_.cancel();
      self->grant();
    }
  });
}

// ---- table versions: catch-up read, then a watch from the revision after it

void FleetMember::catch_up() {
  client_.range(keys_.services_prefix(), true, [self = shared_from_this()](Status s, RangeAnswer a) {
    if (self->stopped_) return;
    if (!s.ok) {
      self->set_connected(false, "catch-up read failed: " + s.error);
      self->later(self->sync_timer_, self->options_.retry, [self] { self->catch_up(); });
      return;
    }
    for (const auto& kv : a.kvs) self->take(kv);
    self->watch_from(a.header.revision + 1);
  });
}

void FleetMember::watch_from(int64_t revision) {
  const auto& endpoints = client_.endpoints();
  const std::string endpoint = endpoints[watch_endpoint_ % endpoints.size()];
  auto self = shared_from_this();
  watch_ = watch(
      io_, endpoint, keys_.services_prefix(), true, revision, WatchOptions{},
      [self](const WatchMessage& m) {
        if (m.created) self->set_connected(true, "watching from the catch-up read");
        for (const auto& e : m.events)
          if (e.type == WatchEvent::Type::Put) self->take(e.kv);
      },
      [self](Status s) {
        if (self->stopped_) return;
        self->watch_.reset();
        self->set_connected(false, "watch ended: " + s.error);
        ++self->watch_endpoint_;  // the next try starts elsewhere
        self->later(self->sync_timer_, self->options_.retry, [self] { self->catch_up(); });
      });
}

void FleetMember::take(const KeyValue& kv) {
  const auto service = keys_.table_service(kv.key);
  if (!service) return;  // another key under the services prefix
  fleet::TableVersion v;
  try {
    v = fleet::table_version_from_string(kv.value);
    if (v.service != *service) throw fleet::TableVersionError("the record names service '" + v.service + "'");
  } catch (const std::exception& e) {
    if (callbacks_.on_bad_record) callbacks_.on_bad_record(kv.key, e.what());
    return;
  }
  auto& latest = latest_[*service];
  if (v.version >= latest.version) latest = v;
  if (callbacks_.on_version) callbacks_.on_version(v);
}

std::optional<fleet::TableVersion> FleetMember::latest(const std::string& service) const {
  const auto it = latest_.find(service);
  if (it == latest_.end()) return std::nullopt;
  return it->second;
}

// ---- writes: read, build the successor, compare-and-swap

void FleetMember::propose(const std::string& service, Make make, std::function<void(ProposeResult)> done) {
  propose_attempt(service, std::move(make), std::move(done), 1);
}

void FleetMember::propose_attempt(std::string service, Make make, std::function<void(ProposeResult)> done,
                                  int attempt) {
  const std::string key = keys_.table(service);
  client_.range(key, false, [self = shared_from_this(), service, key, make, done, attempt](Status s,
                                                                                         RangeAnswer a) {
    ProposeResult r;
    if (!s.ok) {
      r.error = "reading the current version of '" + service + "': " + s.error;
      r.unreachable = s.unreachable;
      return done(std::move(r));
    }
    std::optional<fleet::TableVersion> current;
    int64_t mod_revision = 0;  // a key that does not exist compares as mod revision 0
    try {
      if (!a.kvs.empty()) {
        mod_revision = a.kvs[0].mod_revision;
        current = fleet::table_version_from_string(a.kvs[0].value);
      }
      r.version = make(current);
    } catch (const std::exception& e) {
      r.error = e.what();
      return done(std::move(r));
    }
    const std::string value = fleet::table_version_to_string(r.version);
    Compare unchanged{key, Compare::Target::ModRevision, Compare::Result::Equal, mod_revision, {}};
    Op put{Op::Kind::Put, key, value, 0};
    self->client_.txn({unchanged}, {put}, {}, [self, service, make, done, attempt, r](Status s, TxnAnswer t) mutable {
      if (!s.ok) {
        r.error = "writing version " + std::to_string(r.version.version) + " of '" + service + "': " + s.error;
        r.unreachable = s.unreachable;
        return done(std::move(r));
      }
      if (!t.succeeded) {
        if (attempt < self->options_.propose_attempts) {
          // Another writer won: read again after a random pause that grows with the attempts, so two
          // writers in a loop do not keep colliding.
          auto timer = std::make_shared<boost::asio::steady_timer>(self->io_);
          std::uniform_int_distribution<int> pause(1, 10 << std::min(attempt, 4));
          timer->expires_after(std::chrono::milliseconds(pause(self->jitter_)));
          return timer->async_wait([self, service, make, done, attempt, timer](const boost::system::error_code&) {
            self->propose_attempt(service, make, done, attempt + 1);
          });
        }
        r.error = "another node wrote '" + service + "' " + std::to_string(attempt) + " times in a row: not written";
        return done(std::move(r));
      }
      r.ok = true;
      r.revision = t.header.revision;
      done(std::move(r));
    });
  });
}

}  // namespace veer::etcd
