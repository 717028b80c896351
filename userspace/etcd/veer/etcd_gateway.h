// etcd's v3 JSON gateway (etcd 3.4: POST /v3/kv/range, /v3/kv/put,
// /v3/kv/txn, /v3/lease/grant, /v3/lease/keepalive, /v3/lease/revoke): the
// request bodies veer sends and the answers it reads, as pure functions. Keys
// and values travel in base64, 64-bit numbers as JSON strings, fields equal
// to their default are left out of answers (a failed txn has no
// "succeeded"). Every answer is outside input: a reader checks what it uses
// and throws EtcdAnswerError naming what is wrong.
#pragma once
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace veer::etcd {

class EtcdAnswerError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct KeyValue {
  std::string key;
  std::string value;
  int64_t create_revision = 0;
  int64_t mod_revision = 0;
  int64_t version = 0;
  int64_t lease = 0;
};

// The end of the range of keys that start with PREFIX: PREFIX with its last
// byte below 0xff incremented (bytes 0xff dropped first); "\0" (every key)
// for an empty or all-0xff prefix, as etcd's clientv3.GetPrefixRangeEnd.
std::string prefix_range_end(const std::string& prefix);

std::string range_body(const std::string& key, bool prefix);
std::string put_body(const std::string& key, const std::string& value, int64_t lease = 0);

// A txn: every compare holds -> the success ops run, else the failure ops.
struct Compare {
  enum class Target { CreateRevision, ModRevision, Version, Value };
  enum class Result { Equal, NotEqual, Greater, Less };
  std::string key;
  Target target = Target::CreateRevision;
  Result result = Result::Equal;
  int64_t number = 0;  // create/mod revision, version
  std::string value;   // Target::Value
};
struct Op {
  enum class Kind { Put, Delete, Range };
  Kind kind = Kind::Put;
  std::string key;
  std::string value;  // Put
  int64_t lease = 0;  // Put
};
std::string txn_body(const std::vector<Compare>& compares, const std::vector<Op>& success,
                     const std::vector<Op>& failure);
std::string lease_grant_body(int64_t ttl_seconds);
std::string lease_id_body(int64_t id);  // keepalive, revoke

struct Header {
  int64_t revision = 0;
  uint64_t member_id = 0;
  int64_t raft_term = 0;
};
struct RangeAnswer {
  Header header;
  std::vector<KeyValue> kvs;
};
struct TxnAnswer {
  Header header;
  bool succeeded = false;
  std::vector<std::vector<KeyValue>> ranges;  // per Range op that ran, in order
};
struct LeaseAnswer {
  Header header;
  int64_t id = 0;
  int64_t ttl = 0;  // seconds; 0 or less: the lease is gone (keepalive of an expired lease)
};

// The gateway's error object ({"error", "code", "message"}) as a message, or
// nullopt if BODY is not one.
std::optional<std::string> error_message(const std::string& body);

RangeAnswer read_range(const std::string& body);
Header read_put(const std::string& body);
TxnAnswer read_txn(const std::string& body);
LeaseAnswer read_lease_grant(const std::string& body);
LeaseAnswer read_lease_keepalive(const std::string& body);  // {"result": {...}}
Header read_lease_revoke(const std::string& body);

}  // namespace veer::etcd
