// Control socket: accept, peer check, bounded line reads, one answer per line.
#include "control_server.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <array>

#include "peer_credentials.h"
#include "control/protocol.h"

namespace veer {

namespace asio = boost::asio;
using stream = asio::local::stream_protocol;
using protocol::ErrorCode;
using protocol::kMaxLineBytes;

class ControlServer::Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(ControlServer& server, stream::socket socket) : server_(server), socket_(std::move(socket)) {}

  void start() {
    auto peer = peer_credentials(socket_.native_handle());
    std::string reason;
    if (!peer) {
      answer_and_close(protocol::error_answer(ErrorCode::PermissionDenied, "cannot read peer credentials"));
      return;
    }
    if (!peer_allowed(*peer, server_.veer_gid_, reason)) {
      spdlog::warn("control: refused pid {} uid {}: {}", peer->pid, peer->uid, reason);
      answer_and_close(protocol::error_answer(ErrorCode::PermissionDenied, reason));
      return;
    }
    peer_ = *peer;
    spdlog::debug("control: connection from pid {} uid {}", peer_.pid, peer_.uid);
    process();
  }

  void close() {
    boost::system::error_code ignored;
    socket_.shutdown(stream::socket::shutdown_both, ignored);
    socket_.close(ignored);
  }

 private:
  // Handles the next complete line if there is one, else reads more.
  // Exactly one read or write is outstanding at a time: the buffer never
  // holds more than one line plus one chunk.
  void process() {
    const auto newline = buffer_.find('\n');
    if (newline != std::string::npos) {
      // +1: a line may end in "\r\n"; parse_request applies the exact limit.
      if (newline > kMaxLineBytes + 1) {
        too_large();
        return;
      }
      std::string line = buffer_.substr(0, newline);
      buffer_.erase(0, newline + 1);
      answer(line, /*close_after=*/false);
      return;
    }
    if (buffer_.size() > kMaxLineBytes + 1) {
      too_large();
      return;
    }
    if (eof_) {
      // The peer half-closed after a line without newline (e.g. truncated
      // JSON): answer it, then close. Nothing left: just close.
      if (buffer_.empty()) {
        finish();
      } else {
        std::string line = std::move(buffer_);
        buffer_.clear();
        answer(line, /*close_after=*/true);
      }
      return;
    }
    read();
  }

  void read() {
    auto self = shared_from_this();
    socket_.async_read_some(asio::buffer(chunk_), [self](const boost::system::error_code& ec, std::size_t n) {
      if (ec == asio::error::eof) {
        self->eof_ = true;
      } else if (ec) {
        if (ec != asio::error::operation_aborted) spdlog::debug("control: read: {}", ec.message());
        self->finish();
        return;
      }
      self->buffer_.append(self->chunk_.data(), n);
      self->process();
    });
  }

  void too_large() {
    spdlog::warn("control: pid {}: request line longer than {} bytes, closing", peer_.pid, kMaxLineBytes);
    buffer_.clear();
    answer_and_close(protocol::error_answer(
        ErrorCode::TooLarge, "request line longer than " + std::to_string(kMaxLineBytes) + " bytes"));
  }

  // The handler answers now or later (a fleet write waits for etcd); the
  // connection reads nothing more until it has.
  void answer(const std::string& line, bool close_after) {
    server_.handler_(line, [self = shared_from_this(), close_after](ControlServer::Reply r) {
      self->reply(std::move(r), close_after);
    });
  }

  void answer_and_close(std::string answer) { write(std::move(answer), /*close_after=*/true); }

  void reply(ControlServer::Reply r, bool close_after) {
    write(std::move(r.line), close_after || r.then_stop, r.then_stop);
  }

  void write(std::string answer, bool close_after, bool then_stop = false) {
    out_ = std::move(answer);
    out_ += '\n';
    auto self = shared_from_this();
    asio::async_write(socket_, asio::buffer(out_),
                      [self, close_after, then_stop](const boost::system::error_code& ec, std::size_t) {
                        if (ec || close_after) {
                          if (ec && ec != asio::error::operation_aborted) {
                            spdlog::debug("control: write: {}", ec.message());
                          }
                          ControlServer& server = self->server_;
                          self->finish();
                          // A client that vanished before reading its answer
                          // still asked for the stop: stop anyway.
                          if (then_stop && server.on_stop_) server.on_stop_();
                          return;
                        }
                        self->process();
                      });
  }

  void finish() {
    close();
    server_.forget(shared_from_this());
  }

  ControlServer& server_;
  stream::socket socket_;
  PeerCredentials peer_{};
  std::array<char, 4096> chunk_{};
  std::string buffer_;
  std::string out_;
  bool eof_ = false;
};

ControlServer::ControlServer(asio::io_context& io, int listen_fd, std::string path, std::optional<gid_t> veer_gid,
                             Handler handler, StopCallback on_stop)
    : io_(io),
      acceptor_(io),
      path_(std::move(path)),
      veer_gid_(veer_gid),
      handler_(std::move(handler)),
      on_stop_(std::move(on_stop)) {
  acceptor_.assign(stream(), listen_fd);
}

ControlServer::~ControlServer() { stop(); }

void ControlServer::start() { accept(); }

void ControlServer::accept() {
  acceptor_.async_accept([this](const boost::system::error_code& ec, stream::socket socket) {
    if (stopped_) return;
    if (ec) {
      if (ec == asio::error::operation_aborted) return;
      // EMFILE and friends: log and keep accepting; never exit on a client.
      spdlog::warn("control: accept: {}", ec.message());
    } else if (connections_.size() >= kMaxConnections) {
      const std::string answer =
          protocol::error_answer(ErrorCode::Refused, "too many control connections (limit " +
                                                         std::to_string(kMaxConnections) + ")") + "\n";
      boost::system::error_code ignored;
      socket.non_blocking(true, ignored);
      socket.write_some(asio::buffer(answer), ignored);
      socket.close(ignored);
    } else {
      auto c = std::make_shared<Connection>(*this, std::move(socket));
      connections_.insert(c);
      c->start();
    }
    accept();
  });
}

void ControlServer::forget(const std::shared_ptr<Connection>& c) { connections_.erase(c); }

void ControlServer::stop() {
  if (stopped_) return;
  stopped_ = true;
  boost::system::error_code ignored;
  acceptor_.close(ignored);
  for (const auto& c : connections_) c->close();
  connections_.clear();
  if (!path_.empty()) ::unlink(path_.c_str());
}

}  // namespace veer
