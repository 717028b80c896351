#include "veer/etcd_gateway.h"

#include <nlohmann/json.hpp>

#include "fleet/encoding.h"

namespace veer::etcd {
namespace {

using nlohmann::json;
using fleet::base64_decode;
using fleet::base64_encode;

[[noreturn]] void fail(const std::string& what) { throw EtcdAnswerError("etcd answer: " + what); }

json parse(const std::string& body) {
  try {
    json j = json::parse(body);
    if (!j.is_object()) fail("not a JSON object");
    return j;
  } catch (const json::exception& e) {
    fail(std::string("not JSON: ") + e.what());
  }
}

// A 64-bit number the gateway writes as a string ("42"), or as a number; absent means 0.
int64_t number(const json& j, const char* name) {
  const auto it = j.find(name);
  if (it == j.end() || it->is_null()) return 0;
  if (it->is_number_integer()) return it->get<int64_t>();
  if (!it->is_string()) fail(std::string("\"") + name + "\" is not a number");
  const std::string& s = it->get_ref<const std::string&>();
  if (s.empty() || s.size() > 20) fail(std::string("\"") + name + "\" is not a number: '" + s + "'");
  size_t used = 0;
  int64_t v = 0;
  try {
    v = std::stoll(s, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used != s.size()) fail(std::string("\"") + name + "\" is not a number: '" + s + "'");
  return v;
}

// member_id and cluster_id are unsigned 64-bit (often above INT64_MAX).
uint64_t unsigned_number(const json& j, const char* name) {
  const auto it = j.find(name);
  if (it == j.end() || it->is_null()) return 0;
  if (it->is_number_unsigned()) return it->get<uint64_t>();
  if (!it->is_string()) fail(std::string("\"") + name + "\" is not a number");
  const std::string& s = it->get_ref<const std::string&>();
  size_t used = 0;
  uint64_t v = 0;
  try {
    if (!s.empty() && s[0] != '-') v = std::stoull(s, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (s.empty() || used != s.size()) fail(std::string("\"") + name + "\" is not a number: '" + s + "'");
  return v;
}

std::string bytes(const json& j, const char* name) {
  const auto it = j.find(name);
  if (it == j.end() || it->is_null()) return {};
  if (!it->is_string()) fail(std::string("\"") + name + "\" is not a string");
  try {
    return base64_decode(it->get_ref<const std::string&>());
  } catch (const std::invalid_argument& e) {
    fail(std::string("\"") + name + "\": " + e.what());
  }
}

Header header_of(const json& j) {
  const auto it = j.find("header");
  if (it == j.end() || !it->is_object()) fail("no header");
  Header h;
  h.revision = number(*it, "revision");
  h.member_id = unsigned_number(*it, "member_id");
  h.raft_term = number(*it, "raft_term");
  return h;
}

std::vector<KeyValue> kvs_of(const json& j) {
  std::vector<KeyValue> out;
  const auto it = j.find("kvs");
  if (it == j.end() || it->is_null()) return out;
  if (!it->is_array()) fail("\"kvs\" is not an array");
  for (const auto& kv : *it) {
    if (!kv.is_object()) fail("a kv is not an object");
    KeyValue v;
    v.key = bytes(kv, "key");
    v.value = bytes(kv, "value");
    v.create_revision = number(kv, "create_revision");
    v.mod_revision = number(kv, "mod_revision");
    v.version = number(kv, "version");
    v.lease = number(kv, "lease");
    out.push_back(std::move(v));
  }
  return out;
}

json op_json(const Op& op) {
  switch (op.kind) {
    case Op::Kind::Put: {
      json put = {{"key", base64_encode(op.key)}, {"value", base64_encode(op.value)}};
      if (op.lease) put["lease"] = std::to_string(op.lease);
      return {{"request_put", put}};
    }
    case Op::Kind::Delete: return {{"request_delete_range", {{"key", base64_encode(op.key)}}}};
    case Op::Kind::Range: return {{"request_range", {{"key", base64_encode(op.key)}}}};
  }
  return json::object();
}

const char* target_name(Compare::Target t) {
  switch (t) {
    case Compare::Target::CreateRevision: return "CREATE";
    case Compare::Target::ModRevision: return "MOD";
    case Compare::Target::Version: return "VERSION";
    case Compare::Target::Value: return "VALUE";
  }
  return "CREATE";
}

const char* result_name(Compare::Result r) {
  switch (r) {
    case Compare::Result::Equal: return "EQUAL";
    case Compare::Result::NotEqual: return "NOT_EQUAL";
    case Compare::Result::Greater: return "GREATER";
    case Compare::Result::Less: return "LESS";
  }
  return "EQUAL";
}

LeaseAnswer lease_of(const json& j) {
  LeaseAnswer a;
  a.header = header_of(j);
  a.id = number(j, "ID");
  a.ttl = number(j, "TTL");
  return a;
}

}  // namespace

std::string prefix_range_end(const std::string& prefix) {
  std::string end = prefix;
  while (!end.empty()) {
    if (static_cast<unsigned char>(end.back()) < 0xff) {
      end.back() = static_cast<char>(static_cast<unsigned char>(end.back()) + 1);
      return end;
    }
    end.pop_back();
  }
  return std::string(1, '\0');
}

std::string range_body(const std::string& key, bool prefix) {
  json j = {{"key", base64_encode(key)}};
  if (prefix) j["range_end"] = base64_encode(prefix_range_end(key));
  return j.dump();
}

std::string put_body(const std::string& key, const std::string& value, int64_t lease) {
  json j = {{"key", base64_encode(key)}, {"value", base64_encode(value)}};
  if (lease) j["lease"] = std::to_string(lease);
  return j.dump();
}

std::string txn_body(const std::vector<Compare>& compares, const std::vector<Op>& success,
                     const std::vector<Op>& failure) {
  json cs = json::array();
  for (const auto& c : compares) {
    json cj = {{"key", base64_encode(c.key)}, {"target", target_name(c.target)}, {"result", result_name(c.result)}};
    switch (c.target) {
      case Compare::Target::CreateRevision: cj["create_revision"] = std::to_string(c.number); break;
      case Compare::Target::ModRevision: cj["mod_revision"] = std::to_string(c.number); break;
      case Compare::Target::Version: cj["version"] = std::to_string(c.number); break;
      case Compare::Target::Value: cj["value"] = base64_encode(c.value); break;
    }
    cs.push_back(std::move(cj));
  }
  json ok = json::array(), ko = json::array();
  for (const auto& op : success) ok.push_back(op_json(op));
  for (const auto& op : failure) ko.push_back(op_json(op));
  return json{{"compare", cs}, {"success", ok}, {"failure", ko}}.dump();
}

std::string lease_grant_body(int64_t ttl_seconds) { return json{{"TTL", std::to_string(ttl_seconds)}}.dump(); }
std::string lease_id_body(int64_t id) { return json{{"ID", std::to_string(id)}}.dump(); }

std::optional<std::string> error_message(const std::string& body) {
  json j;
  try {
    j = json::parse(body);
  } catch (const json::exception&) {
    return std::nullopt;
  }
  if (!j.is_object()) return std::nullopt;
  for (const char* field : {"message", "error"}) {
    const auto it = j.find(field);
    if (it != j.end() && it->is_string()) return it->get<std::string>();
  }
  return std::nullopt;
}

RangeAnswer read_range(const std::string& body) {
  const json j = parse(body);
  return {header_of(j), kvs_of(j)};
}

Header read_put(const std::string& body) { return header_of(parse(body)); }

TxnAnswer read_txn(const std::string& body) {
  const json j = parse(body);
  TxnAnswer a;
  a.header = header_of(j);
  const auto s = j.find("succeeded");
  if (s != j.end() && !s->is_null()) {
    if (!s->is_boolean()) fail("\"succeeded\" is not a boolean");
    a.succeeded = s->get<bool>();
  }
  const auto r = j.find("responses");
  if (r != j.end() && !r->is_null()) {
    if (!r->is_array()) fail("\"responses\" is not an array");
    for (const auto& resp : *r) {
      if (!resp.is_object()) fail("a txn response is not an object");
      const auto range = resp.find("response_range");
      if (range != resp.end()) {
        if (!range->is_object()) fail("a response_range is not an object");
        a.ranges.push_back(kvs_of(*range));
      }
    }
  }
  return a;
}

LeaseAnswer read_lease_grant(const std::string& body) {
  const json j = parse(body);
  if (const auto e = j.find("error"); e != j.end() && e->is_string() && !e->get<std::string>().empty())
    fail("lease grant: " + e->get<std::string>());
  LeaseAnswer a = lease_of(j);
  if (a.id == 0 || a.ttl <= 0) fail("lease grant without an ID and TTL");
  return a;
}

LeaseAnswer read_lease_keepalive(const std::string& body) {
  const json j = parse(body);
  const auto r = j.find("result");
  if (r == j.end() || !r->is_object()) {
    if (const auto m = error_message(body)) fail("lease keepalive: " + *m);
    fail("lease keepalive: no result");
  }
  return lease_of(*r);
}

Header read_lease_revoke(const std::string& body) { return header_of(parse(body)); }

}  // namespace veer::etcd
