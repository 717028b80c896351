// The tests' etcd: one real member (Debian's etcd 3.4) on loopback, its data
// in a temporary folder, killed with the test binary; and a bounded wait for
// one asynchronous client call.
#pragma once
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <future>
#include <stdexcept>
#include <string>
#include <vector>

#include "net_test_support.h"
#include "veer/etcd_client.h"

namespace veer::etcd {

using namespace std::chrono_literals;

inline int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0)
    throw std::runtime_error("free_port");
  const int port = ntohs(a.sin_port);
  ::close(fd);
  return port;
}

// One etcd member on loopback, its data in a temporary folder; killed and removed by the destructor.
class EtcdServer {
 public:
  EtcdServer() {
    char tmpl[] = "/tmp/veer-etcd-test-XXXXXX";
    if (!::mkdtemp(tmpl)) throw std::runtime_error("mkdtemp");
    dir_ = tmpl;
    client_port_ = free_port();
    peer_port_ = free_port();
    url_ = "http://127.0.0.1:" + std::to_string(client_port_);
    launch();
  }
  // After kill(): the same member again, with its data and ports.
  void restart() {
    kill();
    launch();
  }

 private:
  void launch() {
    const std::string client = url_;
    const std::string peer = "http://127.0.0.1:" + std::to_string(peer_port_);
    const std::vector<std::string> args = {"etcd", "--name", "t", "--data-dir", dir_ + "/data",
                                           "--listen-client-urls", client, "--advertise-client-urls", client,
                                           "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                                           "--initial-cluster", "t=" + peer, "--log-level", "error"};
    pid_ = ::fork();
    if (pid_ == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // a test binary that dies takes its etcd along
      const std::string log = dir_ + "/etcd.log";
      freopen(log.c_str(), "a", stdout);
      freopen(log.c_str(), "a", stderr);
      std::vector<char*> argv;
      for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
      argv.push_back(nullptr);
      ::execvp("etcd", argv.data());
      _exit(127);
    }
  }

 public:
  ~EtcdServer() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }
  const std::string& url() const { return url_; }
  void kill() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
      pid_ = -1;
    }
  }

 private:
  std::string dir_;
  std::string url_;
  int client_port_ = 0;
  int peer_port_ = 0;
  pid_t pid_ = -1;
};

// Runs one asynchronous client call on the io thread and waits for its callback (bounded).
template <typename Answer, typename Start>
std::pair<Status, Answer> wait_call(net::test::IoThread& io, Start start) {
  auto promise = std::make_shared<std::promise<std::pair<Status, Answer>>>();
  auto future = promise->get_future();
  boost::asio::post(io.io, [start, promise] {
    start([promise](Status s, Answer a) { promise->set_value({std::move(s), std::move(a)}); });
  });
  if (future.wait_for(20s) != std::future_status::ready) throw std::runtime_error("no callback within 20 s");
  return future.get();
}

}  // namespace veer::etcd
