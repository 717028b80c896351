// A real etcd 3.4 (Debian's etcd-server) of one or more members on loopback,
// its data in a temporary folder, killed with the process that started it
// (PR_SET_PDEATHSIG) and removed by the destructor. Used by the etcd tests
// and by bench/fleet; no test framework needed. With EtcdTls::On its client
// URLs are https:// with certificates it makes (test_pki.h) and it requires a
// client certificate of its CA (--client-cert-auth); peers stay http.
#pragma once
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

#include "test_pki.h"

namespace veer::etcd {

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

enum class EtcdTls { Off, On };

class EtcdCluster {
 public:
  explicit EtcdCluster(size_t members = 1, EtcdTls tls = EtcdTls::Off) {
    char tmpl[] = "/tmp/veer-etcd-XXXXXX";
    if (!::mkdtemp(tmpl)) throw std::runtime_error("mkdtemp");
    dir_ = tmpl;
    if (tls == EtcdTls::On) pki_ = test::make_test_pki(dir_);
    const std::string scheme = tls == EtcdTls::On ? "https://" : "http://";
    for (size_t i = 0; i < members; ++i) {
      urls_.push_back(scheme + "127.0.0.1:" + std::to_string(free_port()));
      peers_.push_back("http://127.0.0.1:" + std::to_string(free_port()));
      initial_ += (i ? "," : "") + name(i) + "=" + peers_[i];
    }
    pids_.assign(members, -1);
    for (size_t i = 0; i < members; ++i) launch(i);
  }
  EtcdCluster(const EtcdCluster&) = delete;
  EtcdCluster& operator=(const EtcdCluster&) = delete;
  ~EtcdCluster() {
    for (size_t i = 0; i < pids_.size(); ++i) kill(i);
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }

  const std::string& url(size_t member = 0) const { return urls_.at(member); }
  const std::vector<std::string>& urls() const { return urls_; }
  // EtcdTls::On: the certificates etcd serves and trusts (else empty paths).
  const test::TestPki& pki() const { return pki_; }

  void kill(size_t member = 0) {
    if (pids_.at(member) > 0) {
      ::kill(pids_[member], SIGKILL);
      ::waitpid(pids_[member], nullptr, 0);
      pids_[member] = -1;
    }
  }
  // After kill(): the same member again, with its data and ports.
  void restart(size_t member = 0) {
    kill(member);
    launch(member);
  }

 private:
  static std::string name(size_t i) { return "m" + std::to_string(i); }

  void launch(size_t i) {
    std::vector<std::string> args = {
        "etcd", "--name", name(i), "--data-dir", dir_ + "/" + name(i), "--listen-client-urls", urls_[i],
        "--advertise-client-urls", urls_[i], "--listen-peer-urls", peers_[i], "--initial-advertise-peer-urls",
        peers_[i], "--initial-cluster", initial_, "--log-level", "error"};
    if (!pki_.ca.empty())
      args.insert(args.end(), {"--cert-file", pki_.server_cert, "--key-file", pki_.server_key, "--trusted-ca-file",
                               pki_.ca, "--client-cert-auth"});
    const pid_t pid = ::fork();
    if (pid < 0) throw std::runtime_error("fork");
    if (pid == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // a test or bench that dies takes its etcd along
      const std::string log = dir_ + "/" + name(i) + ".log";
      if (!freopen(log.c_str(), "a", stdout) || !freopen(log.c_str(), "a", stderr)) _exit(126);
      std::vector<char*> argv;
      for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
      argv.push_back(nullptr);
      ::execvp("etcd", argv.data());
      _exit(127);
    }
    pids_[i] = pid;
  }

  std::string dir_;
  test::TestPki pki_;
  std::vector<std::string> urls_, peers_;
  std::string initial_;
  std::vector<pid_t> pids_;
};

}  // namespace veer::etcd
