// Helpers of the loopback network tests: an io_context on its own thread
// (the daemon's loop stand-in) and blocking raw-socket clients with bounded
// waits, so a broken server fails a test instead of hanging it.
#pragma once
#include <utility>

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <boost/asio.hpp>
#include <chrono>
#include <future>
#include <stdexcept>
#include <string>
#include <thread>

#include "veer/http_scraper.h"

namespace veer::net::test {

class IoThread {
 public:
  IoThread() : guard_(boost::asio::make_work_guard(io)), thread_([this] { io.run(); }) {}
  ~IoThread() {
    guard_.reset();
    io.stop();
    thread_.join();
  }
  // Runs f on the io thread and returns its result (rethrows its exception).
  template <class F>
  auto run(F f) -> decltype(f()) {
    std::packaged_task<decltype(f())()> task(std::move(f));
    auto future = task.get_future();
    boost::asio::post(io, [&task] { task(); });
    if (future.wait_for(std::chrono::seconds(20)) != std::future_status::ready)
      throw std::runtime_error("io thread did not run the task within 20 s");
    return future.get();
  }
  // One http_get, waited for (bounded).
  ScrapeResult fetch(const std::string& url, ScrapeOptions options = {}) {
    auto promise = std::make_shared<std::promise<ScrapeResult>>();
    auto future = promise->get_future();
    boost::asio::post(io, [this, url, options, promise] {
      http_get(io, url, options, [promise](ScrapeResult r) { promise->set_value(std::move(r)); });
    });
    if (future.wait_for(std::chrono::seconds(20)) != std::future_status::ready)
      throw std::runtime_error("http_get did not call back within 20 s");
    return future.get();
  }

  boost::asio::io_context io;

 private:
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> guard_;
  std::thread thread_;
};

// A blocking TCP client to 127.0.0.1:port; reads time out after 5 s.
class RawClient {
 public:
  explicit RawClient(uint16_t port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    if (fd_ < 0) throw std::runtime_error("socket");
    timeval tv{5, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
      ::close(fd_);
      throw std::runtime_error("connect");
    }
  }
  ~RawClient() {
    if (fd_ >= 0) ::close(fd_);
  }
  RawClient(const RawClient&) = delete;
  RawClient& operator=(const RawClient&) = delete;

  void send(const std::string& data) {
    std::size_t off = 0;
    while (off < data.size()) {
      const ssize_t n = ::send(fd_, data.data() + off, data.size() - off, MSG_NOSIGNAL);
      if (n <= 0) throw std::runtime_error("send failed");
      off += static_cast<std::size_t>(n);
    }
  }
  // Everything until the peer closes (or a read error/timeout: then
  // *closed = false).
  std::string read_all(bool* closed = nullptr) {
    std::string out;
    char buf[8192];
    for (;;) {
      const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n == 0) {
        if (closed) *closed = true;
        return out;
      }
      if (n < 0) {
        // ECONNRESET counts as closed; a timeout does not.
        if (closed) *closed = errno == ECONNRESET;
        return out;
      }
      out.append(buf, static_cast<std::size_t>(n));
    }
  }
  // Reads until `needle` was seen (or close/timeout).
  std::string read_until(const std::string& needle, std::size_t count = 1) {
    std::string out;
    char buf[8192];
    auto occurrences = [&] {
      std::size_t c = 0;
      for (auto p = out.find(needle); p != std::string::npos; p = out.find(needle, p + needle.size())) ++c;
      return c;
    };
    while (occurrences() < count) {
      const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n <= 0) break;
      out.append(buf, static_cast<std::size_t>(n));
    }
    return out;
  }
  void shutdown_write() { ::shutdown(fd_, SHUT_WR); }

 private:
  int fd_ = -1;
};

// A port nothing listens on (bound, then closed; the kernel does not hand it
// out again at once).
inline uint16_t closed_port() {
  boost::asio::io_context io;
  boost::asio::ip::tcp::acceptor a(io, {boost::asio::ip::make_address("127.0.0.1"), 0});
  const uint16_t port = a.local_endpoint().port();
  a.close();
  return port;
}

}  // namespace veer::net::test
