// veerd: wires the config, the data plane, the service tables and the
// control socket together. No logic of its own beyond startup order:
//   config (refused as a whole, nothing touched) -> control socket (refused if
//   another veerd serves it) -> data plane (create or adopt pins) -> services
//   -> attach -> daemonize -> serve until SIGTERM/SIGINT or `veerctl shutdown`.
// Under systemd (Type=notify, --foreground): READY=1 once attached and
// listening, WATCHDOG=1 from the event loop, RELOADING=1/READY=1 around a
// reload, STOPPING=1 on the way out.
#include <fcntl.h>
#include <signal.h>
#include <spdlog/sinks/syslog_sink.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <utility>  // before asio: Boost 1.74 needs std::exchange declared

#include <boost/asio.hpp>
#include <boost/program_options.hpp>
#include <cstring>
#include <filesystem>
#include <functional>
#include <iostream>
#include <optional>

#include "control_server.h"
#include "veer/metrics_server.h"
#include "daemon.h"
#include "peer_credentials.h"
#include "service_notify.h"
#include "config/config.h"
#include "veer/dataplane.h"
#include "control/protocol.h"
#include "control/state_file.h"

namespace po = boost::program_options;
namespace asio = boost::asio;

namespace {

constexpr const char* kDefaultConfig = "/etc/veer/veer.yaml";

int check_config(const std::string& path) {
  try {
    const veer::Config config = veer::load_config_file(path);
    for (const auto& w : config.warnings) std::cerr << path << ": warning: " << w << "\n";
    std::cout << path << ": ok\n";
    return 0;
  } catch (const veer::ConfigError& e) {
    std::cerr << e.what() << "\n";
    return 1;
  }
}

// True if something accepts connections on the control socket: a veerd runs.
bool socket_answers(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof addr.sun_path) return false;
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  const bool connected = connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0;
  close(fd);
  return connected;
}

// The config file, or its error on stderr (a bad config is refused as a whole, nothing touched).
std::optional<veer::Config> load_config_or_report(const std::string& config_path) {
  try {
    return veer::load_config_file(config_path);
  } catch (const veer::ConfigError& e) {
    std::cerr << e.what() << "\n";
    return std::nullopt;
  }
}

// veerd --unload: the data plane of a config, removed without a running
// veerd (after a crash, before removing the package, or when open() refuses
// pins of another ABI version). A running veerd owns the pins: it is asked
// instead (veerctl shutdown --unload), never pulled from under it.
int unload_offline(const std::string& config_path) {
  const std::optional<veer::Config> loaded = load_config_or_report(config_path);
  if (!loaded) return 1;
  const veer::Config& config = *loaded;
  const std::string& pin = config.node.pin_path;
  if (socket_answers(config.node.socket)) {
    std::cerr << "veerd: a veerd serves " << config.node.socket << "; stop it with `veerctl --socket "
              << config.node.socket << " shutdown --unload` instead\n";
    return 1;
  }
  const bool existed = std::filesystem::exists(pin);
  try {
    veer::Dataplane::unload_pinned(pin);
  } catch (const std::exception& e) {
    std::cerr << "veerd: unload of " << pin << ": " << e.what() << "\n";
    return 1;
  }
  std::cout << (existed ? "unloaded the data plane at " : "nothing to unload at ") << pin << "\n";
  return 0;
}

// fork + setsid; the parent exits 0 once the child owns everything (the
// socket already listens, so a client may connect as soon as we return).
// The io_context exists already (the /metrics listener is bound before the
// data plane is touched): it is told about the fork.
void daemonize(asio::io_context& io) {
  io.notify_fork(asio::execution_context::fork_prepare);
  const pid_t pid = fork();
  if (pid < 0) throw std::runtime_error(std::string("fork: ") + std::strerror(errno));
  if (pid > 0) _exit(0);
  io.notify_fork(asio::execution_context::fork_child);
  setsid();
  if (chdir("/") != 0) {
    // "/" always exists; nothing sensible to do otherwise.
  }
  const int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
  if (devnull >= 0) {
    dup2(devnull, STDIN_FILENO);
    dup2(devnull, STDOUT_FILENO);
    dup2(devnull, STDERR_FILENO);
    if (devnull > STDERR_FILENO) close(devnull);
  }
}

}  // namespace

int main(int argc, char** argv) {
  po::options_description options("veerd options");
  options.add_options()                                                           //
      ("help,h", "show this help")                                                //
      ("version", "print the version")                                            //
      ("config,c", po::value<std::string>()->default_value(kDefaultConfig), "config file")  //
      ("check-config", po::value<std::string>(), "validate FILE, print the result, exit 0 (ok) or 1")  //
      ("unload", "detach every program and remove the pins of --config's pin_path (no veerd may run), exit")  //
      ("foreground,f", "do not daemonize; log to stderr")                         //
      ("log-level", po::value<std::string>()->default_value("info"), "trace|debug|info|warn|error");
  po::variables_map vm;
  try {
    po::store(po::command_line_parser(argc, argv).options(options).run(), vm);
    po::notify(vm);
  } catch (const po::error& e) {
    std::cerr << "veerd: " << e.what() << "\n" << options;
    return 2;
  }
  if (vm.count("help")) {
    std::cout << "usage: veerd [--config FILE] [--foreground] [--log-level LEVEL]\n"
                 "       veerd --check-config FILE\n"
                 "       veerd --unload [--config FILE]\n\n"
              << options;
    return 0;
  }
  if (vm.count("version")) {
    std::cout << "veerd " << veer::protocol::kVersion << "\n";
    return 0;
  }
  if (vm.count("check-config")) return check_config(vm["check-config"].as<std::string>());
  if (vm.count("unload")) return unload_offline(vm["config"].as<std::string>());

  const std::string level_name = vm["log-level"].as<std::string>();
  const auto level = spdlog::level::from_str(level_name);
  if (level == spdlog::level::off && level_name != "off") {
    std::cerr << "veerd: unknown --log-level " << level_name << " (trace|debug|info|warn|error)\n";
    return 2;
  }
  spdlog::set_level(level);
  const bool foreground = vm.count("foreground") > 0;

  // The config path is absolute so reload works after chdir("/").
  std::string config_path = vm["config"].as<std::string>();
  {
    std::error_code ec;
    auto abs = std::filesystem::absolute(config_path, ec);
    if (!ec) config_path = abs.lexically_normal().string();
  }

  // 1. Config: refused as a whole, nothing touched.
  const std::optional<veer::Config> loaded = load_config_or_report(config_path);
  if (!loaded) return 1;
  const veer::Config& config = *loaded;
  for (const auto& w : config.warnings) spdlog::warn("{}: {}", config_path, w);

  signal(SIGPIPE, SIG_IGN);
  const std::optional<gid_t> veer_gid = veer::veer_group_id();
  const std::string socket_path = config.node.socket;

  // 2. Control socket before the data plane: a second veerd stops here,
  //    before it touches the maps the first one owns.
  int listen_fd = -1;
  try {
    listen_fd = veer::open_control_socket(socket_path, veer_gid);
  } catch (const std::exception& e) {
    std::cerr << "veerd: " << e.what() << "\n";
    return 1;
  }

  // 2b. veer's own /metrics (SPEC §7), bound before the data plane is
  //     touched: a port in use stops veerd with nothing attached.
  asio::io_context io;
  std::unique_ptr<veer::Daemon> daemon;
  // It also serves the live view (/, /assets/, /api/v1/: docs/view.md), read-only.
  auto metrics_server = std::make_unique<veer::net::MetricsServer>(
      io, [&daemon] { return daemon ? daemon->render_metrics() : std::string(); },
      [&daemon](std::string_view path) -> std::optional<veer::net::MetricsServer::Page> {
        if (!daemon) return std::nullopt;
        auto page = daemon->view_page(path);
        if (!page) return std::nullopt;
        return veer::net::MetricsServer::Page{page->status, std::move(page->content_type), std::move(page->body)};
      },
      veer::net::MetricsServer::Options{});
  try {
    metrics_server->start(config.node.metrics_listen);
    spdlog::info("metrics on http://{}/metrics", config.node.metrics_listen);
  } catch (const std::exception& e) {
    std::cerr << "veerd: metrics endpoint (node.metrics_listen " << config.node.metrics_listen
              << "): " << e.what() << "\n";
    close(listen_fd);
    unlink(socket_path.c_str());
    return 1;
  }

  try {
    // 3. Data plane: create or adopt the pins.
    auto dataplane = veer::Dataplane::open(
        {config.node.pin_path, config.node.flow_table_size, config.node.hash_seed});
    spdlog::info("data plane {} at {}", dataplane->adopted() ? "adopted" : "created", config.node.pin_path);
    // 4. Services, 5. attach.
    auto state = veer::read_state_file(veer::state_file_path(config.node.state_dir));
    daemon = std::make_unique<veer::Daemon>(config_path, config, std::move(dataplane), std::move(state));
    daemon->start();
  } catch (const std::exception& e) {
    std::cerr << "veerd: " << e.what() << "\n";
    close(listen_fd);
    unlink(socket_path.c_str());
    return 1;
  }

  if (!foreground) {
    try {
      daemonize(io);
    } catch (const std::exception& e) {
      std::cerr << "veerd: " << e.what() << "\n";
      close(listen_fd);
      unlink(socket_path.c_str());
      return 1;
    }
    // stderr is /dev/null now: logs go to syslog.
    auto logger = spdlog::syslog_logger_mt("veerd", "veerd", LOG_PID, LOG_DAEMON);
    logger->set_level(level);
    spdlog::set_default_logger(logger);
  }

  asio::signal_set stop_signals(io, SIGTERM, SIGINT);
  asio::steady_timer watchdog_timer(io);
  std::unique_ptr<veer::ControlServer> server;
  auto stop = [&] {
    server->stop();
    metrics_server->stop();
    stop_signals.cancel();
    watchdog_timer.cancel();
    daemon->leave_fleet([&io] { io.stop(); });  // fleet mode: the lease revoked first (bounded)
  };
  server = std::make_unique<veer::ControlServer>(
      io, listen_fd, socket_path, veer_gid,
      [&daemon](std::string_view line, std::function<void(veer::ControlServer::Reply)> reply) {
        daemon->handle_line_async(line, [&daemon, reply](std::string answer) {
          reply(veer::ControlServer::Reply{std::move(answer), daemon->stop_requested()});
        });
      },
      [&] {
        veer::service::stopping("shutdown requested over the control socket");
        stop();
      });
  stop_signals.async_wait([&](const boost::system::error_code& ec, int signo) {
    if (ec) return;
    // Programs stay attached and pins stay: the data plane keeps forwarding
    // while veerd is away (SPEC §2.8).
    spdlog::info("signal {}: stopping; the data plane stays attached", signo);
    veer::service::stopping("stopping on signal " + std::to_string(signo) + "; the data plane stays attached");
    stop();
  });
  // The keep-alive comes from the event loop itself: a loop stuck in a
  // handler stops it, and systemd restarts veerd (which adopts the pins).
  const auto watchdog_every = veer::service::watchdog_interval();
  std::function<void()> arm_watchdog = [&] {
    veer::service::watchdog();
    watchdog_timer.expires_after(*watchdog_every);
    watchdog_timer.async_wait([&](const boost::system::error_code& ec) {
      if (!ec) arm_watchdog();
    });
  };
  if (watchdog_every) {
    spdlog::info("systemd watchdog: keep-alive every {} ms", watchdog_every->count() / 1000);
    arm_watchdog();
  }
  asio::signal_set hup(io, SIGHUP);
  std::function<void()> wait_hup = [&] {
    hup.async_wait([&](const boost::system::error_code& ec, int) {
      if (ec) return;
      spdlog::info("SIGHUP: reload: {}", daemon->reload_now());
      wait_hup();
    });
  };
  wait_hup();

  server->start();
  daemon->run_on(io);
  spdlog::info("veerd {} serving {} (pid {})", veer::protocol::kVersion, socket_path, getpid());
  veer::service::ready(daemon->summary());
  // A handler that throws must not end the daemon (a client never kills
  // it): log and keep serving.
  for (;;) {
    try {
      io.run();
      break;
    } catch (const std::exception& e) {
      spdlog::error("event loop: {}", e.what());
    }
  }
  spdlog::info("veerd stopped");
  return 0;
}
