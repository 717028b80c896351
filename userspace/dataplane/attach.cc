// Attachments: XDP links, tcx links and cls_bpf filters, each remembered by a
// pin under <pin>/links so they survive veerd and a restart can find them.
#include <linux/ethtool.h>
#include <linux/if_link.h>
#include <linux/sockios.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

#include <spdlog/spdlog.h>

#include "internal.h"

namespace veer::detail {

namespace {

// tcx (Linux 6.6) is newer than Debian 12's uapi header (6.1) and than
// libbpf 1.1, so its constants are spelled out here, with the kernel's values.
// BPF_TCX_INGRESS in enum bpf_attach_type; a kernel without tcx answers
// BPF_LINK_CREATE with EINVAL for it.
constexpr auto kBpfTcxIngress = static_cast<bpf_attach_type>(46);
// BPF_LINK_TYPE_TCX in enum bpf_link_type.
constexpr uint32_t kBpfLinkTypeTcx = 11;

// cls_bpf has no link: veer's filter is the one at this handle and priority
// on clsact ingress. Priority 1 so it runs before other filters.
constexpr uint32_t kTcHandle = 0x7ee7;
constexpr uint32_t kTcPriority = 1;

struct Fd {
  int fd = -1;
  explicit Fd(int f) : fd(f) {}
  ~Fd() {
    if (fd >= 0) close(fd);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
};

bool is_link_hook(Hook hook) { return hook != Hook::ClsBpf; }

// The ifindex a pinned link is attached to; 0 if the link is defunct.
int link_ifindex(int link_fd, Hook hook) {
  bpf_link_info info{};
  uint32_t len = sizeof(info);
  if (bpf_obj_get_info_by_fd(link_fd, &info, &len) != 0) return 0;
  const uint32_t expected = hook == Hook::Tcx ? kBpfLinkTypeTcx : uint32_t{BPF_LINK_TYPE_XDP};
  if (info.type != expected) return 0;
  // xdp.ifindex and tcx.ifindex are both the first field of the union.
  return static_cast<int>(info.xdp.ifindex);
}

bool cls_bpf_present(int ifindex) {
  LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = ifindex, .attach_point = BPF_TC_INGRESS);
  LIBBPF_OPTS(bpf_tc_opts, opts, .handle = kTcHandle, .priority = kTcPriority);
  return bpf_tc_query(&hook, &opts) == 0;
}

void unlink_pin(const std::string& pin) {
  if (unlink(pin.c_str()) != 0 && errno != ENOENT) fail("cannot remove pin " + pin, errno);
}

}  // namespace

std::string hook_tag(Hook hook) {
  switch (hook) {
    case Hook::XdpNative: return "xdp";
    case Hook::XdpGeneric: return "xdp-generic";
    case Hook::Tcx: return "tcx";
    case Hook::ClsBpf: return "tc";
  }
  return "?";
}

std::optional<Hook> hook_from_tag(std::string_view tag) {
  for (Hook h : {Hook::XdpNative, Hook::XdpGeneric, Hook::Tcx, Hook::ClsBpf})
    if (hook_tag(h) == tag) return h;
  return std::nullopt;
}

// bpffs refuses '.' in any name (EPERM), and interface names may hold dots
// (eth0.100) but never ':' (dev_valid_name), so a pin is named
// "<ifname with '.' written as ':'>:<tag>", e.g. "eth0:xdp", "eth0:100:tcx".
std::string pin_name(const std::string& ifname, Hook hook) {
  std::string name = ifname;
  std::replace(name.begin(), name.end(), '.', ':');
  return name + ":" + hook_tag(hook);
}

std::vector<PinnedHook> list_pinned(const std::string& links_dir) {
  std::vector<PinnedHook> out;
  for (const auto& name : list_dir(links_dir)) {
    const auto sep = name.rfind(':');
    if (sep == std::string::npos || sep == 0) continue;
    const auto hook = hook_from_tag(std::string_view(name).substr(sep + 1));
    if (!hook) continue;
    std::string ifname = name.substr(0, sep);
    std::replace(ifname.begin(), ifname.end(), ':', '.');
    out.push_back({ifname, *hook, links_dir + "/" + name});
  }
  return out;
}

int live_ifindex(const PinnedHook& pinned) {
  if (is_link_hook(pinned.hook)) {
    Fd fd(bpf_obj_get(pinned.pin.c_str()));
    return fd.fd < 0 ? 0 : link_ifindex(fd.fd, pinned.hook);
  }
  const int ifindex = static_cast<int>(if_nametoindex(pinned.interface.c_str()));
  return ifindex > 0 && cls_bpf_present(ifindex) ? ifindex : 0;
}

void attach_hook(Hook hook, const std::string& ifname, int ifindex, int prog_fd, const std::string& pin) {
  const std::string where = ifname + " (" + hook_tag(hook) + ")";
  if (hook == Hook::ClsBpf) {
    LIBBPF_OPTS(bpf_tc_hook, tc_hook, .ifindex = ifindex, .attach_point = BPF_TC_INGRESS);
    int err = bpf_tc_hook_create(&tc_hook);
    if (err && err != -EEXIST) throw AttachRefused("cannot create the clsact qdisc on " + ifname + ": " + errno_text(err), -err);
    // REPLACE at a fixed handle/priority: a re-attach swaps the program in
    // one netlink request, no packet sees no filter.
    LIBBPF_OPTS(bpf_tc_opts, opts, .prog_fd = prog_fd, .flags = BPF_TC_F_REPLACE, .handle = kTcHandle,
                .priority = kTcPriority);
    err = bpf_tc_attach(&tc_hook, &opts);
    if (err) throw AttachRefused("cannot attach the cls_bpf filter to " + ifname + ": " + errno_text(err), -err);
    // bpffs holds only BPF objects, so the record of this filter is the
    // program itself pinned under the link name (the handle is fixed).
    unlink_pin(pin);
    if (bpf_obj_pin(prog_fd, pin.c_str()) != 0) {
      const int pin_err = errno;
      LIBBPF_OPTS(bpf_tc_opts, del, .handle = kTcHandle, .priority = kTcPriority);
      bpf_tc_detach(&tc_hook, &del);
      fail("attached " + where + " but cannot pin its record at " + pin + " (detached again)", pin_err);
    }
    return;
  }

  if (path_exists(pin)) {
    Fd link(bpf_obj_get(pin.c_str()));
    if (link.fd >= 0 && link_ifindex(link.fd, hook) == ifindex) {
      // Adoption: swap the program under the existing link, atomically.
      if (int err = bpf_link_update(link.fd, prog_fd, nullptr); err)
        fail("cannot replace the program of the pinned link " + pin + " on " + where, err);
      return;
    }
    spdlog::info("dropping stale pinned link {} (its interface or program is gone)", pin);
    unlink_pin(pin);
  }

  LIBBPF_OPTS(bpf_link_create_opts, opts);
  bpf_attach_type type = BPF_XDP;
  if (hook == Hook::XdpNative) opts.flags = XDP_FLAGS_DRV_MODE;
  if (hook == Hook::XdpGeneric) opts.flags = XDP_FLAGS_SKB_MODE;
  if (hook == Hook::Tcx) type = kBpfTcxIngress;
  const int fd = bpf_link_create(prog_fd, ifindex, type, &opts);
  if (fd < 0) {
    std::string msg = "cannot attach to " + where + ": " + errno_text(fd);
    if (type == BPF_XDP && (fd == -EBUSY || fd == -EEXIST))
      msg += "; another XDP program is attached to " + ifname +
             " outside veer (see `ip link show dev " + ifname + "`; remove it with `ip link set dev " + ifname +
             " xdp off` or `xdpgeneric off`)";
    throw AttachRefused(msg, -fd);
  }
  Fd link(fd);
  if (bpf_obj_pin(link.fd, pin.c_str()) != 0)
    fail("attached " + where + " but cannot pin the link at " + pin + " (detached again)", errno);
}

void detach_hook(const PinnedHook& pinned) {
  if (is_link_hook(pinned.hook)) {
    Fd link(bpf_obj_get(pinned.pin.c_str()));
    // Detach explicitly: another process (bpftool) may hold an fd of the
    // link, and the program must leave the interface now, not when it closes.
    if (link.fd >= 0) {
      if (int err = bpf_link_detach(link.fd); err && err != -ENOLINK)
        spdlog::debug("detach of {} returned {}", pinned.pin, errno_text(err));
    }
  } else if (int ifindex = static_cast<int>(if_nametoindex(pinned.interface.c_str())); ifindex > 0) {
    LIBBPF_OPTS(bpf_tc_hook, tc_hook, .ifindex = ifindex, .attach_point = BPF_TC_INGRESS);
    LIBBPF_OPTS(bpf_tc_opts, opts, .handle = kTcHandle, .priority = kTcPriority);
    const int err = bpf_tc_detach(&tc_hook, &opts);
    // Gone already (filter or clsact removed by someone else) is fine. The
    // clsact qdisc stays: other filters may live there.
    if (err && err != -ENOENT && err != -ENODEV && err != -EINVAL)
      fail("cannot remove the cls_bpf filter from " + pinned.interface, err);
  }
  unlink_pin(pinned.pin);
}

void unload_pins(const std::string& pin_path) {
  const std::string pin = std::filesystem::path(pin_path).lexically_normal().string();
  if (!path_exists(pin)) return;
  const std::string links = pin + "/links", maps = pin + "/maps";
  for (const auto& pinned : list_pinned(links)) detach_hook(pinned);
  for (const std::string& dir : {links, maps}) {
    for (const auto& name : list_dir(dir)) unlink_pin(dir + "/" + name);
    if (rmdir(dir.c_str()) != 0 && errno != ENOENT) fail("cannot remove folder " + dir, errno);
  }
  // A bpffs that veer mounted on the pin folder itself goes with it.
  struct stat self {}, parent {};
  const std::string parent_path = std::filesystem::path(pin).parent_path().string();
  if (stat(pin.c_str(), &self) == 0 && stat(parent_path.c_str(), &parent) == 0 && self.st_dev != parent.st_dev &&
      is_bpffs(pin)) {
    if (umount2(pin.c_str(), MNT_DETACH) != 0) fail("cannot unmount the bpffs on " + pin, errno);
  }
  if (rmdir(pin.c_str()) != 0 && errno != ENOENT) {
    const int err = errno;
    auto left = list_dir(pin);
    std::string names;
    for (const auto& n : left) names += (names.empty() ? "" : ", ") + n;
    fail("detached everything but cannot remove the pin folder " + pin + (names.empty() ? "" : " (it holds: " + names + ")"), err);
  }
}

namespace {

// An integer attribute of an interface under /sys/class/net; -1 if unreadable.
long sysfs_net_value(const std::string& ifname, const char* attribute) {
  std::ifstream in("/sys/class/net/" + ifname + "/" + attribute);
  long value = -1;
  if (!(in >> value)) return -1;
  return value;
}

}  // namespace

bool is_veth(const std::string& ifname) {
  // The driver, asked through a socket of this process's namespace.
  const int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  ethtool_drvinfo info{};
  info.cmd = ETHTOOL_GDRVINFO;
  ifreq ifr{};
  std::strncpy(ifr.ifr_name, ifname.c_str(), IFNAMSIZ - 1);
  ifr.ifr_data = reinterpret_cast<char*>(&info);
  const bool veth = ioctl(fd, SIOCETHTOOL, &ifr) == 0 && std::strcmp(info.driver, "veth") == 0;
  close(fd);
  return veth;
}

bool veth_peer_in_other_netns(const std::string& ifname, int ifindex) {
  if (!is_veth(ifname)) return false;
  // /sys shows the namespace it was mounted in (`ip netns exec` remounts it; nsenter does not): trust it
  // only if it agrees with this namespace about the interface.
  if (sysfs_net_value(ifname, "ifindex") != ifindex) return false;
  const long peer = sysfs_net_value(ifname, "iflink");  // the peer's index, in the peer's namespace
  if (peer <= 0) return false;
  char peer_name[IF_NAMESIZE] = {};
  // No device of that index here: the peer is elsewhere. A device of that index here is the peer only if
  // its own iflink points back.
  if (if_indextoname(static_cast<unsigned>(peer), peer_name) == nullptr) return true;
  return sysfs_net_value(peer_name, "iflink") != ifindex;
}

}  // namespace veer::detail
