// The control socket server: JSON lines over a Unix stream socket, one
// thread (Boost.Asio). Each connection is read asynchronously into a buffer
// bounded at one line (64 KiB), answered one request at a time, so a slow,
// silent or hostile client costs one small buffer and never blocks others.
#pragma once
// Boost 1.74 asio (awaitable.hpp) uses std::exchange without including <utility>.
#include <utility>

#include <boost/asio.hpp>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>

#include <sys/types.h>

namespace veer {

class ControlServer {
 public:
  // One answer line (no newline) for one request line. then_stop: after
  // this answer is written (or fails to be), the connection is closed and
  // the stop callback runs (veerctl shutdown: the client gets its answer
  // before veerd goes away).
  struct Reply {
    std::string line;
    bool then_stop = false;
  };
  // Answers LINE through REPLY, exactly once, now or later on the io
  // thread (a fleet write answers when etcd has). Must not throw.
  using Handler = std::function<void(std::string_view line, std::function<void(Reply)> reply)>;
  using StopCallback = std::function<void()>;

  static constexpr std::size_t kMaxConnections = 128;

  // Takes ownership of `listen_fd` (from open_control_socket).
  ControlServer(boost::asio::io_context& io, int listen_fd, std::string path, std::optional<gid_t> veer_gid,
                Handler handler, StopCallback on_stop);
  ~ControlServer();

  void start();
  // Stops accepting, closes every connection, removes the socket file.
  void stop();

 private:
  class Connection;
  void accept();
  void forget(const std::shared_ptr<Connection>& c);

  boost::asio::io_context& io_;
  boost::asio::local::stream_protocol::acceptor acceptor_;
  std::string path_;
  std::optional<gid_t> veer_gid_;
  Handler handler_;
  StopCallback on_stop_;
  std::set<std::shared_ptr<Connection>> connections_;
  bool stopped_ = false;
};

}  // namespace veer
