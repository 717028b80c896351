// bpffs: where veer's maps and links live past veerd's exit.
#include <dirent.h>
#include <linux/magic.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include <spdlog/spdlog.h>

#include "internal.h"

namespace veer::detail {

std::string errno_text(int err) {
  if (err < 0) err = -err;
  return std::string(std::strerror(err)) + " (errno " + std::to_string(err) + ")";
}

void fail(const std::string& what, int err) { throw DataplaneError(what + ": " + errno_text(err)); }

bool is_bpffs(const std::string& path) {
  struct statfs st {};
  return statfs(path.c_str(), &st) == 0 && static_cast<unsigned long>(st.f_type) == BPF_FS_MAGIC;
}

bool path_exists(const std::string& path) {
  struct stat st {};
  return lstat(path.c_str(), &st) == 0;
}

void make_dirs(const std::string& path, unsigned mode) {
  std::string partial;
  std::filesystem::path p(path);
  for (const auto& part : p) {
    if (part == "/") {
      partial = "/";
      continue;
    }
    if (!partial.empty() && partial.back() != '/') partial += '/';
    partial += part.string();
    if (mkdir(partial.c_str(), mode) != 0 && errno != EEXIST) {
      const int err = errno;
      if (err == EPERM && part.string().find('.') != std::string::npos && is_bpffs(p.parent_path().string()))
        fail("cannot create folder " + partial + " (bpffs allows no '.' in names)", err);
      fail("cannot create folder " + partial, err);
    }
  }
}

std::vector<std::string> list_dir(const std::string& path) {
  std::vector<std::string> names;
  DIR* dir = opendir(path.c_str());
  if (!dir) return names;
  while (dirent* e = readdir(dir)) {
    std::string name = e->d_name;
    if (name != "." && name != "..") names.push_back(name);
  }
  closedir(dir);
  std::sort(names.begin(), names.end());
  return names;
}

static std::string nearest_existing_ancestor(std::filesystem::path p) {
  while (!p.empty() && !path_exists(p.string())) {
    if (p == p.root_path()) break;
    p = p.parent_path();
  }
  return p.empty() ? "/" : p.string();
}

std::optional<std::string> ensure_bpffs(const std::string& pin_path) {
  if (pin_path.empty() || pin_path.front() != '/')
    throw DataplaneError("pin path must be an absolute path, got '" + pin_path + "'");
  const std::filesystem::path pin = std::filesystem::path(pin_path).lexically_normal();
  if (is_bpffs(nearest_existing_ancestor(pin))) {
    make_dirs(pin.string(), 0700);
    return std::nullopt;
  }
  // Not on a bpffs: mount one. /sys/fs/bpf is the standard place; elsewhere
  // mount on the pin folder itself so no foreign folder is hidden.
  const std::filesystem::path sys_bpf = "/sys/fs/bpf";
  auto [end, _] = std::mismatch(sys_bpf.begin(), sys_bpf.end(), pin.begin(), pin.end());
  const std::string mount_point = end == sys_bpf.end() ? sys_bpf.string() : pin.string();
  make_dirs(mount_point, 0700);
  if (mount("bpf", mount_point.c_str(), "bpf", 0, "mode=0700") != 0)
    fail("cannot mount bpffs on " + mount_point + " (needed for pin path " + pin.string() + ")", errno);
  spdlog::info("mounted bpffs on {} for the pin path {}", mount_point, pin.string());
  make_dirs(pin.string(), 0700);
  if (!is_bpffs(pin.string())) throw DataplaneError("pin path " + pin.string() + " is still not on a bpffs after mounting one on " + mount_point);
  return mount_point;
}

}  // namespace veer::detail
