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
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include <csignal>
#include <thread>

#include "status_table.h"
#include "config/config.h"
#include "rollout/gate_inputs.h"
#include "control/completion.h"
#include "control/protocol.h"
#include "veer/view_assets.h"
#include "view/documents.h"

namespace po = boost::program_options;
using namespace veer;
using namespace veer::protocol;

namespace {

constexpr int kExitOk = 0;
constexpr int kExitRefused = 1;
constexpr int kExitUsage = 2;
constexpr int kAnswerTimeoutMs = 60000;
// Shell completion waits on veerd while the user waits on the shell: a veerd
// that does not answer within this gives no names rather than a stuck prompt.
constexpr int kCompletionTimeoutMs = 2000;

const char* kUsage =
    "usage: veerctl [--socket PATH] [--json] COMMAND ...\n"
    "  status [SERVICE] [--watch]   --watch: redraw every interval (1 s) until Ctrl-C\n"
    "  weights SERVICE VARIANT=PCT... [--force] [--adopt]   --adopt: fleet mode, this node's definition\n"
    "  switch SERVICE VARIANT [--force]\n"
    "  rollout start|promote|pause|abort|retry SERVICE   (promote [--full])\n"
    "  push SERVICE VARIANT NAME=VALUE...   VALUE*N: N observations; NAME.LABEL=COUNT: a label count\n"
    "  events [SERVICE] [--follow] [--since SEQ]\n"
    "  ab SERVICE\n"
    "  which SERVICE CLIENT_IP[:PORT]\n"
    "  drain SERVICE BACKEND [--undo]\n"
    "  reload\n"
    "  nodes                 fleet mode: every node's applied versions and report age\n"
    "  report SERVICE -o FILE   one self-contained HTML page of the last rollout (docs/view.md)\n"
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

struct Flags {
  bool force = false, undo = false, unload = false, full = false, watch = false, follow = false, adopt = false;
  uint64_t since = 0;
  std::optional<std::string> output;  // report -o FILE
};

Request build_request(const std::string& cmd, const std::vector<std::string>& args, const Flags& flags) {
  const bool force = flags.force, undo = flags.undo, unload = flags.unload;
  if (force && cmd != "weights" && cmd != "switch") throw UsageError("--force only applies to weights and switch");
  if (flags.watch && cmd != "status") throw UsageError("--watch only applies to status");
  if (flags.adopt && cmd != "weights") throw UsageError("--adopt only applies to weights");
  if ((flags.follow || flags.since) && cmd != "events") throw UsageError("--follow/--since only apply to events");
  if (flags.full && cmd != "rollout") throw UsageError("--full only applies to rollout promote");
  if (flags.output && cmd != "report") throw UsageError("-o/--output only applies to report");
  if (cmd == "report") {
    expect_args(cmd, args, 1, 1);
    if (!flags.output || flags.output->empty()) throw UsageError("report needs -o FILE");
    return ViewRequest{args[0]};
  }
  if (cmd == "rollout") {
    expect_args(cmd, args, 2, 2);
    RolloutRequest r;
    r.service = args[1];
    const std::string& a = args[0];
    if (a == "start") r.action = RolloutAction::Start;
    else if (a == "promote") r.action = RolloutAction::Promote;
    else if (a == "pause") r.action = RolloutAction::Pause;
    else if (a == "abort") r.action = RolloutAction::Abort;
    else if (a == "retry") r.action = RolloutAction::Retry;
    else throw UsageError("rollout action \"" + a + "\" is not start, promote, pause, abort or retry");
    if (flags.full && r.action != RolloutAction::Promote) throw UsageError("--full only applies to rollout promote");
    r.full = flags.full;
    return r;
  }
  if (cmd == "push") {
    if (args.size() < 3) throw UsageError("push needs SERVICE VARIANT and at least one NAME=VALUE");
    PushRequest r{args[0], args[1], nlohmann::json::object()};
    for (size_t i = 2; i < args.size(); ++i) {
      const auto eq = args[i].find('=');
      if (eq == std::string::npos || eq == 0) throw UsageError("expected NAME=VALUE, got \"" + args[i] + "\"");
      const std::string name = args[i].substr(0, eq);
      if (r.values.contains(name)) throw UsageError(name + " given twice");
      try {
        parse_push_item(name, args[i].substr(eq + 1));  // the daemon checks again; this gives a usage error
      } catch (const PushError& e) {
        throw UsageError(e.what());
      }
      r.values[name] = args[i].substr(eq + 1);
    }
    return r;
  }
  if (cmd == "events") {
    expect_args(cmd, args, 0, 1);
    EventsRequest r;
    if (!args.empty()) r.service = args[0];
    r.since = flags.since;
    return r;
  }
  if (cmd == "ab") {
    expect_args(cmd, args, 1, 1);
    return AbRequest{args[0]};
  }
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
  if (cmd == "nodes") {
    expect_args(cmd, args, 0, 0);
    return NodesRequest{};
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
    r.adopt = flags.adopt;
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
    return SwitchRequest{args[0], args[1], force};
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
std::string send_request(const std::string& socket_path, const std::string& request_line,
                         int timeout_ms = kAnswerTimeoutMs) {
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
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  char buf[8192];
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      throw std::runtime_error("no answer from veerd within " + std::to_string(timeout_ms / 1000) + " s");
    }
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

// One request, its answer parsed; throws std::runtime_error (unreachable,
// refused) with a message for the user.
Answer ask(const std::string& socket_path, const Request& request) {
  const std::string line = send_request(socket_path, to_json(request).dump());
  Answer a = parse_answer(line);
  if (!a.ok) throw std::runtime_error(command_name(request) + " refused (" + a.code + "): " + a.message);
  return a;
}

// status --watch: redraws in place (cursor home, clear) every interval of the
// fastest rollout shown, 1 s otherwise. Ends on Ctrl-C (default SIGINT) or,
// with exit status 1, when veerd stops answering.
int watch_status(const std::string& socket_path, const Request& request) {
  const bool tty = isatty(STDOUT_FILENO) == 1;
  for (;;) {
    Answer a;
    try {
      a = ask(socket_path, request);
    } catch (const std::exception& e) {
      std::cout << std::flush;
      std::cerr << "veerctl: " << e.what() << "\n";
      return kExitRefused;
    }
    long interval_ms = 1000;
    if (auto svcs = a.result.find("services"); svcs != a.result.end() && svcs->is_array()) {
      for (const auto& s : *svcs) {
        if (auto r = s.find("rollout"); r != s.end() && r->is_object() && r->contains("interval_ms")) {
          interval_ms = std::min<long>(interval_ms, std::max<long>(100, r->value("interval_ms", 1000)));
        }
      }
    }
    std::string screen = ctl::format_status(a.result);
    if (tty) {
      // Home, draw, clear what is left of the previous (longer) frame.
      std::string framed = "\033[H";
      size_t pos = 0;
      while (pos < screen.size()) {
        const size_t nl = screen.find('\n', pos);
        framed += screen.substr(pos, nl - pos) + "\033[K\n";
        if (nl == std::string::npos) break;
        pos = nl + 1;
      }
      framed += "\033[J";
      std::cout << framed << std::flush;
    } else {
      std::cout << screen << "\n" << std::flush;
    }
    if (!std::cout) return kExitRefused;  // stdout went away (pipe closed)
    std::this_thread::sleep_for(std::chrono::milliseconds(interval_ms));
  }
}

// events [--follow]: pages through the log; --follow polls every 0.5 s
// until Ctrl-C, or ends with exit status 1 when veerd goes away.
int print_events(const std::string& socket_path, EventsRequest r, bool follow, bool json_out) {
  for (;;) {
    Answer a;
    std::string line;
    try {
      line = send_request(socket_path, to_json(r).dump());
      a = parse_answer(line);
    } catch (const std::exception& e) {
      std::cerr << "veerctl: " << e.what() << "\n";
      return kExitRefused;
    }
    if (!a.ok) {
      if (json_out) std::cout << line << "\n";
      else std::cerr << "veerctl: events refused (" << a.code << "): " << a.message << "\n";
      return kExitRefused;
    }
    const auto& list = a.result.contains("events") ? a.result["events"] : nlohmann::json::array();
    // --json: each answer line as the daemon sent it (one per page or poll).
    if (json_out) std::cout << line << "\n";
    else
      for (const auto& e : list) std::cout << ctl::format_event(e);
    std::cout << std::flush;
    const uint64_t next = a.result.value("next", r.since);
    const bool more = next > r.since && !list.empty();
    r.since = std::max(next, r.since);
    if (more) continue;  // a full page: ask again at once
    if (!follow) return kExitOk;
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
}

// veerctl __complete services | variants SERVICE | backends SERVICE: the
// names the bash completion offers (packaging/bash-completion/veerctl), one a
// line, from a status request (read-only) to the running veerd. Hidden from
// --help. Quiet by design: no daemon, a refused request or a bad word give
// exit status 1 and no output, so completion offers nothing.
int print_completion_names(const std::string& socket_path, const std::vector<std::string>& args) {
  if (args.empty() || args.size() > 2) return kExitRefused;
  const std::optional<CompletionKind> kind = completion_kind_from_string(args[0]);
  if (!kind || (*kind == CompletionKind::Services) != (args.size() == 1)) return kExitRefused;
  StatusRequest request;
  if (args.size() == 2) request.service = args[1];
  try {
    const Answer answer = parse_answer(send_request(socket_path, to_json(Request{request}).dump(), kCompletionTimeoutMs));
    if (!answer.ok) return kExitRefused;
    for (const auto& name : completion_names(answer.result, *kind, args.size() == 2 ? args[1] : "")) {
      std::cout << name << "\n";
    }
  } catch (const std::exception&) {
    return kExitRefused;
  }
  return kExitOk;
}

// veerctl report: the service's view document (the `view` command) written
// into one HTML file with the live view's renderer inlined: no server, no
// fetch. Written to a temporary file beside FILE and renamed over it, so a
// failure leaves FILE as it was.
int write_report(const std::string& socket_path, const ViewRequest& r, const std::string& file) {
  Answer a;
  try {
    a = ask(socket_path, r);
  } catch (const std::exception& e) {
    std::cerr << "veerctl: " << e.what() << "\n";
    return kExitRefused;
  }
  if (!a.result.is_object() || a.result.value("rollout", nlohmann::json()).is_null()) {
    std::cerr << "veerctl: service \"" << r.service << "\" has had no rollout yet (no \"started\" event in its log): "
              << "nothing to report\n";
    return kExitRefused;
  }
  const auto page = view_assets::get("index.html");
  const auto css = view_assets::get("veer-view.css");
  const auto js = view_assets::get("veer-view.js");
  if (!page || !css || !js) {
    std::cerr << "veerctl: this build lacks the live view's assets\n";
    return kExitRefused;
  }
  const std::string html = view::report_html(*page, *css, *js, a.result);
  const std::string tmp = file + ".tmp." + std::to_string(::getpid());
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (out) out.write(html.data(), static_cast<std::streamsize>(html.size()));
    out.close();
    if (!out) {
      const std::string why = std::strerror(errno);
      std::remove(tmp.c_str());
      std::cerr << "veerctl: cannot write " << file << ": " << why << "\n";
      return kExitRefused;
    }
  }
  if (std::rename(tmp.c_str(), file.c_str()) != 0) {
    const std::string why = std::strerror(errno);
    std::remove(tmp.c_str());
    std::cerr << "veerctl: cannot write " << file << ": " << why << "\n";
    return kExitRefused;
  }
  const auto& outcome = a.result["rollout"]["outcome"];
  std::cout << "wrote " << file << " (" << html.size() << " bytes): the last rollout of " << r.service << ", "
            << (outcome.is_null() ? std::string("still running") : outcome.value("kind", std::string())) << ", "
            << a.result["rollout"]["steps"].size() << " weight change(s)\n";
  return kExitOk;
}

}  // namespace

int main(int argc, char** argv) {
  po::options_description visible("options");
  visible.add_options()                                                           //
      ("help,h", "show this help")                                                //
      ("version", "print veerctl's version and exit")                             //
      ("socket,s", po::value<std::string>(), "control socket path")               //
      ("json", "print the daemon's answer line as is")                            //
      ("force", "weights/switch: apply even while a rollout runs")                //
      ("full", "rollout promote: straight to 100 %")                              //
      ("adopt", "weights, fleet mode: make this node's definition the fleet's")    //
      ("watch,w", "status: redraw in place every interval (1 s) until Ctrl-C")     //
      ("follow,f", "events: keep printing new events until Ctrl-C")               //
      ("since", po::value<uint64_t>(), "events: from this sequence number on")    //
      ("output,o", po::value<std::string>(), "report: the HTML file to write")    //
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
    std::cout << "veerctl " << veer::kVersion << "\n" << kUsage << "\n" << visible;
    return kExitOk;
  }
  if (vm.count("version")) {
    std::cout << "veerctl " << veer::kVersion << "\n";
    return kExitOk;
  }
  if (!vm.count("command")) {
    std::cerr << kUsage;
    return kExitUsage;
  }
  const std::string cmd = vm["command"].as<std::string>();
  const std::vector<std::string> args =
      vm.count("args") ? vm["args"].as<std::vector<std::string>>() : std::vector<std::string>{};

  std::string socket_path = "/run/veer/veer.sock";
  if (const char* env = std::getenv("VEER_SOCKET"); env != nullptr && *env != '\0') socket_path = env;
  if (vm.count("socket")) socket_path = vm["socket"].as<std::string>();
  if (cmd == "__complete") return print_completion_names(socket_path, args);

  Flags flags;
  flags.force = vm.count("force") > 0;
  flags.undo = vm.count("undo") > 0;
  flags.unload = vm.count("unload") > 0;
  flags.full = vm.count("full") > 0;
  flags.adopt = vm.count("adopt") > 0;
  flags.watch = vm.count("watch") > 0;
  flags.follow = vm.count("follow") > 0;
  if (vm.count("since")) flags.since = vm["since"].as<uint64_t>();
  if (vm.count("output")) flags.output = vm["output"].as<std::string>();
  Request request;
  try {
    request = build_request(cmd, args, flags);
  } catch (const UsageError& e) {
    std::cerr << "veerctl: " << e.what() << "\n" << kUsage;
    return kExitUsage;
  }

  if (flags.watch) return watch_status(socket_path, request);
  if (cmd == "report") {
    if (vm.count("json")) {
      std::cerr << "veerctl: --json does not apply to report (it writes FILE)\n" << kUsage;
      return kExitUsage;
    }
    return write_report(socket_path, std::get<ViewRequest>(request), *flags.output);
  }
  if (cmd == "events") return print_events(socket_path, std::get<EventsRequest>(request), flags.follow, vm.count("json") > 0);

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
  } else if (cmd == "nodes") {
    std::cout << ctl::format_nodes(answer.result);
  } else if (cmd == "shutdown") {
    std::cout << ctl::format_shutdown(answer.result);
  } else if (cmd == "rollout") {
    std::cout << ctl::format_rollout(answer.result);
  } else if (cmd == "push") {
    std::cout << "accepted " << answer.result.value("accepted", 0) << " value(s)\n";
  } else if (cmd == "ab") {
    std::cout << ctl::format_ab(answer.result);
  }
  return kExitOk;
}
