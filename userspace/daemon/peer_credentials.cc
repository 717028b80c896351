// SO_PEERCRED checks and creation of the control socket.
#include "peer_credentials.h"

#include <grp.h>
#include <pwd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <vector>

namespace veer {

namespace {

std::string errno_text(int err) { return std::strerror(err); }

bool in_proc_groups(pid_t pid, gid_t gid) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("Groups:", 0) != 0) continue;
    std::istringstream groups(line.substr(7));
    unsigned long g;
    while (groups >> g) {
      if (static_cast<gid_t>(g) == gid) return true;
    }
    return false;
  }
  return false;
}

bool in_group_database(uid_t uid, gid_t primary, gid_t gid) {
  std::vector<char> buf(16384);
  passwd pw{};
  passwd* result = nullptr;
  if (getpwuid_r(uid, &pw, buf.data(), buf.size(), &result) != 0 || result == nullptr) return false;
  int n = 64;
  std::vector<gid_t> groups(static_cast<size_t>(n));
  if (getgrouplist(pw.pw_name, primary, groups.data(), &n) < 0) {
    groups.resize(static_cast<size_t>(n));
    if (getgrouplist(pw.pw_name, primary, groups.data(), &n) < 0) return false;
  }
  for (int i = 0; i < n; ++i) {
    if (groups[static_cast<size_t>(i)] == gid) return true;
  }
  return false;
}

sockaddr_un unix_address(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof addr.sun_path) {
    throw std::runtime_error("control socket path " + path + ": empty or longer than " +
                             std::to_string(sizeof addr.sun_path - 1) + " bytes");
  }
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  return addr;
}

}  // namespace

std::optional<PeerCredentials> peer_credentials(int socket_fd) {
  ucred cred{};
  socklen_t len = sizeof cred;
  if (getsockopt(socket_fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) return std::nullopt;
  return PeerCredentials{cred.pid, cred.uid, cred.gid};
}

std::optional<gid_t> veer_group_id() {
  std::vector<char> buf(16384);
  group gr{};
  group* result = nullptr;
  if (getgrnam_r("veer", &gr, buf.data(), buf.size(), &result) != 0 || result == nullptr) return std::nullopt;
  return gr.gr_gid;
}

bool peer_allowed(const PeerCredentials& peer, std::optional<gid_t> veer_gid, std::string& reason) {
  if (peer.uid == 0) return true;
  if (!veer_gid) {
    reason = "uid " + std::to_string(peer.uid) + " is not root and group veer does not exist";
    return false;
  }
  if (peer.gid == *veer_gid || in_proc_groups(peer.pid, *veer_gid) ||
      in_group_database(peer.uid, peer.gid, *veer_gid)) {
    return true;
  }
  reason = "uid " + std::to_string(peer.uid) + " is neither root nor a member of group veer";
  return false;
}

int open_control_socket(const std::string& path, std::optional<gid_t> veer_gid) {
  const sockaddr_un addr = unix_address(path);
  const std::filesystem::path parent = std::filesystem::path(path).parent_path();
  if (!parent.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(parent, ec);
    if (ec) throw std::runtime_error("control socket folder " + parent.string() + ": " + ec.message());
  }

  struct stat st {};
  if (lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      throw std::runtime_error("control socket path " + path + " exists and is not a socket; not removing it");
    }
    // A socket file may be stale (veerd killed) or live (another veerd):
    // only a refused connect proves nobody listens.
    const int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (probe >= 0) {
      const bool live = connect(probe, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0;
      close(probe);
      if (live) throw std::runtime_error("another process is serving the control socket " + path);
    }
    if (unlink(path.c_str()) != 0 && errno != ENOENT) {
      throw std::runtime_error("remove stale control socket " + path + ": " + errno_text(errno));
    }
  }

  const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw std::runtime_error("socket: " + errno_text(errno));
  // umask so the socket is never, even briefly, wider than 0660.
  const mode_t old_mask = umask(0117);
  const int bound = bind(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr);
  const int bind_errno = errno;
  umask(old_mask);
  if (bound != 0) {
    close(fd);
    throw std::runtime_error("bind control socket " + path + ": " + errno_text(bind_errno));
  }
  auto fail = [&](const std::string& what) {
    const int err = errno;
    close(fd);
    unlink(path.c_str());
    throw std::runtime_error(what + " " + path + ": " + errno_text(err));
  };
  if (chmod(path.c_str(), 0660) != 0) fail("chmod 0660");
  if (veer_gid && chown(path.c_str(), static_cast<uid_t>(-1), *veer_gid) != 0) fail("chown :veer");
  if (listen(fd, SOMAXCONN) != 0) fail("listen on");
  return fd;
}

}  // namespace veer
