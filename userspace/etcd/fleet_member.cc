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
      sync_timer_(io),
      leader_timer_(io) {}

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
  if (options_.campaign) check_leader();
}

void FleetMember::stop(std::function<void()> done) {
  stopped_ = true;
  lease_timer_.cancel();
  sync_timer_.cancel();
  leader_timer_.cancel();
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
  // A new reason while still away is news too: a node that never reached etcd says why (a TLS handshake
  // refused, no such host), not only a node that lost it. The same reason again is not repeated.
  if (connected == connected_ && (connected || why == away_why_)) return;
  connected_ = connected;
  away_why_ = connected ? std::string() : why;
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
      if (a.ttl <= 0) {  // expired while we were cut off (or revoked): the report went with it
        return self->lease_lost();
      }
      self->keepalive_later();
    });
  });
}

void FleetMember::publish(std::string report_json, std::function<void(const Status&)> done) {
  report_ = std::move(report_json);
  put_report(std::move(done));
}

void FleetMember::put_report(std::function<void(const Status&)> done) {
  if (lease_ == 0 || report_.empty() || stopped_) {
    if (done)
      boost::asio::post(io_, [done] { done(Status{false, "no lease with etcd yet (etcd away?)", {}, true}); });
    return;
  }
  client_.put(keys_.node(options_.node), report_, lease_, [self = shared_from_this(), done](Status s, Header) {
    if (!s.ok && !s.unreachable && s.error.find("lease not found") != std::string::npos && !self->stopped_)
      self->lease_lost();
    if (done) done(s);
  });
}

void FleetMember::lease_lost() {
  // Everything under the lease went with it: the report, and the leader key if this member led.
  lease_ = 0;
  lease_timer_.cancel();
  if (leader_.self) set_leader("", 0);
  grant();
}

// ---- the leader: P/leader under the leader's lease, taken when free

void FleetMember::set_leader(std::string leader, int64_t term) {
  LeaderView next{std::move(leader), term > 0, term};
  if (next.leader == leader_.leader && next.self == leader_.self && next.term == leader_.term) return;
  leader_ = std::move(next);
  if (callbacks_.on_leader) callbacks_.on_leader(leader_);
}

void FleetMember::check_leader() {
  auto again = [self = shared_from_this()] {
    self->later(self->leader_timer_, self->options_.leader_poll, [self] { self->check_leader(); });
  };
  if (lease_ == 0) {  // no lease yet: nothing to campaign with; look again soon
    auto self = shared_from_this();
    return later(leader_timer_, std::min(options_.leader_poll, std::chrono::milliseconds(100)),
                 [self] { self->check_leader(); });
  }
  const std::string key = keys_.leader();
  client_.range(key, false, [self = shared_from_this(), key, again](Status s, RangeAnswer a) {
    if (self->stopped_) return;
    // etcd away: what this member believes stays; its writes are guarded by the term anyway.
    if (!s.ok) return again();
    auto read = [self](const KeyValue& kv) {
      const bool mine = kv.value == self->options_.node && kv.lease == self->lease_ && self->lease_ != 0;
      self->set_leader(kv.value, mine ? kv.create_revision : 0);
    };
    if (!a.kvs.empty()) {
      read(a.kvs[0]);
      return again();
    }
    // No leader: take the key if it is still absent (create revision 0), under this member's lease.
    const int64_t lease = self->lease_;
    Compare absent{key, Compare::Target::CreateRevision, Compare::Result::Equal, 0, {}};
    Op put{Op::Kind::Put, key, self->options_.node, lease};
    Op get{Op::Kind::Range, key, {}, 0};
    self->client_.txn({absent}, {put}, {get}, [self, again, read, lease](Status s, TxnAnswer t) {
      if (self->stopped_) return;
      if (!s.ok) {
        if (!s.unreachable && s.error.find("lease not found") != std::string::npos && lease == self->lease_)
          self->lease_lost();
        return again();
      }
      if (t.succeeded) {
        self->set_leader(self->options_.node, t.header.revision);  // the put's revision is the key's create revision
      } else if (!t.ranges.empty() && !t.ranges[0].empty()) {
        read(t.ranges[0][0]);
      }
      again();
    });
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
  WatchOptions watch_options;
  watch_options.tls = client_.options().tls;
  watch_ = watch(
      io_, endpoint, keys_.services_prefix(), true, revision, watch_options,
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
  if (const auto rollout = keys_.rollout_service(kv.key)) {
    fleet::RolloutRecord r;
    try {
      r = fleet::rollout_record_from_string(kv.value);
      if (r.service != *rollout) throw fleet::RolloutRecordError("the record names service '" + r.service + "'");
    } catch (const std::exception& e) {
      if (callbacks_.on_bad_record) callbacks_.on_bad_record(kv.key, e.what());
      return;
    }
    if (callbacks_.on_rollout) callbacks_.on_rollout(r, kv.mod_revision);
    return;
  }
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
  commit(
      service, false,
      [make = std::move(make)](const ServiceRecords& current) { return Writes{make(current.table), std::nullopt}; },
      [done = std::move(done)](CommitResult c) {
        ProposeResult r;
        r.ok = c.ok;
        r.error = std::move(c.error);
        r.unreachable = c.unreachable;
        if (c.written.table) r.version = *c.written.table;
        r.revision = c.revision;
        done(std::move(r));
      });
}

void FleetMember::commit(const std::string& service, bool as_leader, MakeWrites make,
                         std::function<void(CommitResult)> done) {
  commit_attempt(service, as_leader, std::move(make), std::move(done), 1);
}

void FleetMember::commit_attempt(std::string service, bool as_leader, MakeWrites make,
                                 std::function<void(CommitResult)> done, int attempt) {
  const std::string table_key = keys_.table(service);
  const std::string rollout_key = keys_.rollout(service);
  client_.range(keys_.service_prefix(service), true, [self = shared_from_this(), service, as_leader, make, done,
                                                      attempt, table_key, rollout_key](Status s, RangeAnswer a) {
    CommitResult r;
    if (!s.ok) {
      r.error = "reading the fleet's records of '" + service + "': " + s.error;
      r.unreachable = s.unreachable;
      return done(std::move(r));
    }
    const int64_t term = self->leader_.self ? self->leader_.term : 0;
    if (as_leader && term == 0) {
      r.deposed = true;
      r.error = "this node does not lead the fleet";
      return done(std::move(r));
    }
    ServiceRecords current;  // a key that does not exist compares as mod revision 0
    try {
      for (const auto& kv : a.kvs) {
        if (kv.key == table_key) {
          current.table = fleet::table_version_from_string(kv.value);
          current.table_revision = kv.mod_revision;
        } else if (kv.key == rollout_key) {
          current.rollout = fleet::rollout_record_from_string(kv.value);
          current.rollout_revision = kv.mod_revision;
        }
      }
      r.written = make(current);
    } catch (const std::exception& e) {
      r.error = e.what();
      return done(std::move(r));
    }
    if (!r.written.table && !r.written.rollout) {
      r.ok = true;  // nothing to write
      return done(std::move(r));
    }
    using T = Compare::Target;
    std::vector<Compare> compares{{table_key, T::ModRevision, Compare::Result::Equal, current.table_revision, {}},
                                  {rollout_key, T::ModRevision, Compare::Result::Equal, current.rollout_revision, {}}};
    if (as_leader) compares.push_back({self->keys_.leader(), T::CreateRevision, Compare::Result::Equal, term, {}});
    std::vector<Op> puts;
    if (r.written.table) puts.push_back({Op::Kind::Put, table_key, fleet::table_version_to_string(*r.written.table), 0});
    if (r.written.rollout)
      puts.push_back({Op::Kind::Put, rollout_key, fleet::rollout_record_to_string(*r.written.rollout), 0});
    const std::vector<Op> failure{{Op::Kind::Range, self->keys_.leader(), {}, 0}};
    self->client_.txn(compares, puts, failure, [self, service, as_leader, make, done, attempt, term, r](
                                                   Status s, TxnAnswer t) mutable {
      if (!s.ok) {
        r.error = "writing the fleet's records of '" + service + "': " + s.error;
        r.unreachable = s.unreachable;
        r.written = {};
        return done(std::move(r));
      }
      if (!t.succeeded) {
        r.written = {};
        const bool still_leads = !t.ranges.empty() && !t.ranges[0].empty() &&
                                 t.ranges[0][0].create_revision == term;
        if (as_leader && !still_leads) {
          // Deposed: another node holds the key now (or no one does). Nothing was written.
          self->set_leader(t.ranges.empty() || t.ranges[0].empty() ? std::string() : t.ranges[0][0].value, 0);
          r.deposed = true;
          r.error = "no longer the fleet's leader (term " + std::to_string(term) + " is over): nothing written";
          return done(std::move(r));
        }
        if (attempt < self->options_.propose_attempts) {
          // Another writer won: read again after a random pause that grows with the attempts, so two
          // writers in a loop do not keep colliding.
          auto timer = std::make_shared<boost::asio::steady_timer>(self->io_);
          std::uniform_int_distribution<int> pause(1, 10 << std::min(attempt, 4));
          timer->expires_after(std::chrono::milliseconds(pause(self->jitter_)));
          return timer->async_wait([self, service, as_leader, make, done, attempt, timer](
                                       const boost::system::error_code&) {
            self->commit_attempt(service, as_leader, make, done, attempt + 1);
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
