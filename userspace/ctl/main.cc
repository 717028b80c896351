// veerctl: one request to veerd's control socket, one answer printed.
// Exit status: 0 ok, 1 refused (ok:false) or daemon unreachable, 2 usage.
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <boost/program_options.hpp>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include "status_table.h"
#include "veer/config.h"
#include "veer/protocol.h"

namespace po = boost::program_options;
using namespace veer;
using namespace veer::protocol;

namespace {

constexpr int kExitOk = 0;
constexpr int kExitRefused = 1;
constexpr int kExitUsage = 2;
constexpr int kAnswerTimeoutMs = 60000;

const char* kUsage =
    "usage: veerctl [--socket PATH] [--json] COMMAND ...\n"
    "  status [SERVICE]\n"
    "  weights SERVICE VARIANT=PCT... [--force]\n"
    "  switch SERVICE VARIANT\n"
    "  which SERVICE CLIENT_IP[:PORT]\n"
    "  drain SERVICE BACKEND [--undo]\n"
    "  reload\n"
    "  ping\n"
    "  shutdown [--unload]   veerd exits; the data plane keeps forwarding on pinned state,\n"
    "                        or with --unload every program is detached and every pin removed\n"
    "Socket: --socket, else $VEER_SOCKET, else /run/veer/veer.sock.\n";

struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

void expect_args(const std::string& cmd, const std::vector<std::string>& args, size_t min, size_t max) {
  if (args.size() < min || args.size() > max) throw UsageError("wrong number of arguments for " + cmd);
}

Request build_request(const std::string& cmd, const std::vector<std::string>& args, bool force, bool undo,
                      bool unload) {
  if (force && cmd != "weights") throw UsageError("--force only applies to weights");
  if (undo && cmd != "drain") throw UsageError("--undo only applies to drain");
  if (unload && cmd != "shutdown") throw UsageError("--unload only applies to shutdown");
  if (cmd == "shutdown") {
    expect_args(cmd, args, 0, 0);
    return ShutdownRequest{unload};
  }
  if (cmd == "ping") {
    expect_args(cmd, args, 0, 0);
    return PingRequest{};
  }
  if (cmd == "reload") {
    expect_args(cmd, args, 0, 0);
    return ReloadRequest{};
  }
  if (cmd == "status") {
    expect_args(cmd, args, 0, 1);
    StatusRequest r;
    if (!args.empty()) r.service = args[0];
    return r;
  }
  if (cmd == "weights") {
    if (args.size() < 2) throw UsageError("weights needs SERVICE and at least one VARIANT=PCT");
    WeightsRequest r;
    r.service = args[0];
    r.force = force;
    for (size_t i = 1; i < args.size(); ++i) {
      const auto eq = args[i].find('=');
      if (eq == std::string::npos || eq == 0) throw UsageError("expected VARIANT=PCT, got \"" + args[i] + "\"");
      const std::string variant = args[i].substr(0, eq);
      std::string pct = args[i].substr(eq + 1);
      if (!pct.empty() && pct.back() == '%') pct.pop_back();
      auto bp = parse_weight_bp(pct);
      if (!bp) throw UsageError("weight \"" + args[i].substr(eq + 1) + "\" of " + variant +
                                " is not a percentage 0..100 with at most two decimals");
      if (!r.weights_bp.emplace(variant, *bp).second) throw UsageError("variant " + variant + " given twice");
    }
    return r;
  }
  if (cmd == "switch") {
    expect_args(cmd, args, 2, 2);
    return SwitchRequest{args[0], args[1]};
  }
  if (cmd == "which") {
    expect_args(cmd, args, 2, 2);
    auto client = parse_client_address(args[1]);
    if (!client) throw UsageError("\"" + args[1] + "\" is not CLIENT_IP or CLIENT_IP:PORT ([IPv6]:PORT)");
    return WhichRequest{args[0], client->ip, client->port};
  }
  if (cmd == "drain") {
    expect_args(cmd, args, 2, 2);
    auto backend = Endpoint::parse(args[1]);
    if (!backend) throw UsageError("\"" + args[1] + "\" is not a backend IP:PORT ([IPv6]:PORT)");
    return DrainRequest{args[0], *backend, undo};
  }
  throw UsageError("unknown command \"" + cmd + "\"");
}

// Sends one line, returns the answer line (without newline). Throws
// std::runtime_error if the daemon cannot be reached or does not answer.
std::string send_request(const std::string& socket_path, const std::string& request_line) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (socket_path.size() >= sizeof addr.sun_path) throw std::runtime_error("socket path too long: " + socket_path);
  std::memcpy(addr.sun_path, socket_path.c_str(), socket_path.size() + 1);
  const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw std::runtime_error(std::string("socket: ") + std::strerror(errno));
  struct Closer {
    int fd;
    ~Closer() { close(fd); }
  } closer{fd};
  if (connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
    throw std::runtime_error("cannot connect to veerd at " + socket_path + ": " + std::strerror(errno));
  }
  const std::string out = request_line + "\n";
  size_t sent = 0;
  std::string send_error;
  while (sent < out.size()) {
    const ssize_t n = send(fd, out.data() + sent, out.size() - sent, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      // veerd may answer and close before reading the request (e.g.
      // permission_denied): its answer is still waiting to be read.
      send_error = std::string("send to veerd: ") + std::strerror(errno);
      break;
    }
    sent += static_cast<size_t>(n);
  }
  std::string answer;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(kAnswerTimeoutMs);
  char buf[8192];
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) throw std::runtime_error("no answer from veerd within 60 s");
    pollfd p{fd, POLLIN, 0};
    const int ready = poll(&p, 1, static_cast<int>(left.count()));
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) continue;
    const ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (!send_error.empty()) throw std::runtime_error(send_error);
      throw std::runtime_error(std::string("read from veerd: ") + std::strerror(errno));
    }
    if (n == 0) {
      if (answer.empty()) {
        throw std::runtime_error(send_error.empty() ? "veerd closed the connection without an answer" : send_error);
      }
      return answer;
    }
    answer.append(buf, static_cast<size_t>(n));
    if (auto nl = answer.find('\n'); nl != std::string::npos) return answer.substr(0, nl);
  }
}

}  // namespace

int main(int argc, char** argv) {
  po::options_description visible("options");
  visible.add_options()                                                           //
      ("help,h", "show this help")                                                //
      ("socket,s", po::value<std::string>(), "control socket path")               //
      ("json", "print the daemon's answer line as is")                            //
      ("force", "weights: apply even while a rollout runs")                       //
      ("undo", "drain: take the backend back into service")                     //
      ("unload", "shutdown: detach every program and remove every pin and map first");
  po::options_description hidden;
  hidden.add_options()("command", po::value<std::string>())("args", po::value<std::vector<std::string>>());
  po::options_description all;
  all.add(visible).add(hidden);
  po::positional_options_description positional;
  positional.add("command", 1).add("args", -1);

  po::variables_map vm;
  try {
    po::store(po::command_line_parser(argc, argv).options(all).positional(positional).run(), vm);
    po::notify(vm);
  } catch (const po::error& e) {
    std::cerr << "veerctl: " << e.what() << "\n" << kUsage;
    return kExitUsage;
  }
  if (vm.count("help")) {
    std::cout << kUsage << "\n" << visible;
    return kExitOk;
  }
  if (!vm.count("command")) {
    std::cerr << kUsage;
    return kExitUsage;
  }
  const std::string cmd = vm["command"].as<std::string>();
  const std::vector<std::string> args =
      vm.count("args") ? vm["args"].as<std::vector<std::string>>() : std::vector<std::string>{};

  Request request;
  try {
    request = build_request(cmd, args, vm.count("force") > 0, vm.count("undo") > 0, vm.count("unload") > 0);
  } catch (const UsageError& e) {
    std::cerr << "veerctl: " << e.what() << "\n" << kUsage;
    return kExitUsage;
  }

  std::string socket_path = "/run/veer/veer.sock";
  if (const char* env = std::getenv("VEER_SOCKET"); env != nullptr && *env != '\0') socket_path = env;
  if (vm.count("socket")) socket_path = vm["socket"].as<std::string>();

  std::string line;
  try {
    line = send_request(socket_path, to_json(request).dump());
  } catch (const std::exception& e) {
    std::cerr << "veerctl: " << e.what() << "\n";
    return kExitRefused;
  }

  Answer answer;
  try {
    answer = parse_answer(line);
  } catch (const ProtocolError& e) {
    if (vm.count("json")) std::cout << line << "\n";
    std::cerr << "veerctl: unreadable answer from veerd: " << e.what() << "\n";
    return kExitRefused;
  }
  if (vm.count("json")) {
    std::cout << line << "\n";
    return answer.ok ? kExitOk : kExitRefused;
  }
  if (!answer.ok) {
    std::cerr << "veerctl: " << cmd << " refused (" << answer.code << "): " << answer.message << "\n";
    return kExitRefused;
  }
  if (cmd == "status") {
    std::cout << ctl::format_status(answer.result);
  } else if (cmd == "weights" || cmd == "switch" || cmd == "drain") {
    std::cout << ctl::format_service(answer.result);
  } else if (cmd == "which") {
    std::cout << ctl::format_which(answer.result);
  } else if (cmd == "reload") {
    std::cout << ctl::format_reload(answer.result);
  } else if (cmd == "ping") {
    std::cout << ctl::format_ping(answer.result);
  } else if (cmd == "shutdown") {
    std::cout << ctl::format_shutdown(answer.result);
  }
  return kExitOk;
}
