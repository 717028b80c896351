// etcd watches over the JSON gateway: POST /v3/watch answers with a stream,
// one JSON message per line ({"result": {"header", "created", "events", ...}}),
// for as long as the connection lives. veer reads it chunk by chunk (Boost.Beast,
// chunked transfer), hands each message to the caller and ends, exactly once,
// when the stream ends, breaks, is cancelled or a message is malformed.
//
// The stream has no deadline: a watch may be quiet for hours. Whoever owns it
// knows when it should have heard something (a node's lease keepalive failing
// says it is cut off) and cancels and restarts it from the revision after the
// last one it saw. Events may repeat across such restarts; the consumer's
// version fence is what makes that harmless.
#pragma once
#include <utility>

#include <boost/asio/io_context.hpp>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "veer/etcd_client.h"

namespace veer::etcd {

struct WatchEvent {
  enum class Type { Put, Delete };
  Type type = Type::Put;
  KeyValue kv;
};

struct WatchMessage {
  Header header;
  bool created = false;
  bool canceled = false;
  int64_t compact_revision = 0;  // canceled because the start revision was compacted away
  std::string cancel_reason;
  std::vector<WatchEvent> events;
};

// One line of the stream. Throws EtcdAnswerError (an "error" object, or not a
// watch message at all).
WatchMessage read_watch_message(const std::string& line);
std::string watch_create_body(const std::string& key, bool prefix, int64_t start_revision);

struct WatchOptions {
  std::chrono::milliseconds connect_timeout{2000};  // until the stream's header arrived
  std::size_t max_message_bytes = 16u << 20;
  std::shared_ptr<const net::TlsClient> tls;  // for an https:// endpoint (ClientOptions::tls)
};

class Watch {
 public:
  virtual ~Watch() = default;
  // Ends the watch; on_end gets a Status with error "cancelled" unless it ran. io_context thread only.
  virtual void cancel() = 0;
};

// Watches KEY (or every key under it with PREFIX) from START_REVISION (0: from
// now) on ENDPOINT ("http://127.0.0.1:2379", or https:// with options.tls). ON_MESSAGE runs for every message
// (the "created" one first), ON_END once at the end.
std::shared_ptr<Watch> watch(boost::asio::io_context& io, const std::string& endpoint, const std::string& key,
                             bool prefix, int64_t start_revision, const WatchOptions& options,
                             std::function<void(const WatchMessage&)> on_message,
                             std::function<void(Status)> on_end);

}  // namespace veer::etcd
