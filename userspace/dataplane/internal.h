// Internals of veer_dataplane shared by its .cc files: bpffs handling and
// the pinned attachments under <pin>/links. Not part of the public interface.
#pragma once
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "veer/dataplane.h"

namespace veer::detail {

// "what failed: strerror(err) (errno N)"; err may be negative (libbpf style).
std::string errno_text(int err);
[[noreturn]] void fail(const std::string& what, int err);

// --- bpffs -------------------------------------------------------------------
bool is_bpffs(const std::string& path);
// Makes sure `pin_path` is a folder on a bpffs, mounting one if needed:
// nothing to do if the nearest existing ancestor is already a bpffs (just
// mkdir); a pin path under /sys/fs/bpf gets bpffs mounted on /sys/fs/bpf (what
// `ip netns exec` needs: it gives a fresh sysfs without bpffs); any other pin
// path gets bpffs mounted on the pin folder itself. Returns the mount point
// if it mounted one.
std::optional<std::string> ensure_bpffs(const std::string& pin_path);
void make_dirs(const std::string& path, unsigned mode);
bool path_exists(const std::string& path);
// The names in a folder (no . and ..); empty if the folder does not exist.
std::vector<std::string> list_dir(const std::string& path);

// --- attachments -------------------------------------------------------------
// The kernel hooks veer uses; their tag is the suffix of the pin name
// <pin>/links/<ifname>:<tag> (see pin_name) and the mode reported in
// Attachment::mode.
enum class Hook { XdpNative, XdpGeneric, Tcx, ClsBpf };
std::string hook_tag(Hook hook);
std::optional<Hook> hook_from_tag(std::string_view tag);

struct PinnedHook {
  std::string interface;
  Hook hook;
  std::string pin;  // full path of the pinned link (or, for cls_bpf, of the marker)
};

// The file name under <pin>/links of `ifname`'s attachment by `hook`.
std::string pin_name(const std::string& ifname, Hook hook);

// Everything pinned under links_dir, in name order. Unknown names are skipped.
std::vector<PinnedHook> list_pinned(const std::string& links_dir);

// The interface index a pinned hook is live on, or 0 if it is gone (interface
// deleted, link detached, filter removed by someone else).
int live_ifindex(const PinnedHook& pinned);

// Attach `prog_fd` with `hook` to `ifindex` and pin it at `pin`. If the pin
// exists and is live, the program is replaced atomically instead (link update,
// or cls_bpf replace at veer's fixed handle and priority). Throws
// AttachRefused when the kernel refuses to create the attachment (the caller
// may fall back: tcx -> cls_bpf, native -> generic XDP), DataplaneError else.
struct AttachRefused : DataplaneError {
  AttachRefused(const std::string& what, int err) : DataplaneError(what), err(err) {}
  int err;  // positive errno
};
void attach_hook(Hook hook, const std::string& ifname, int ifindex, int prog_fd, const std::string& pin);

// Whether `ifname`'s driver is veth (asked with ETHTOOL_GDRVINFO in this
// process's namespace; false when it cannot be asked).
bool is_veth(const std::string& ifname);

// Whether `ifname` (index `ifindex`) is a veth whose peer lives in another
// network namespace: the TC hook may then hand it packets with
// bpf_redirect_peer (abi.h VEER_EGRESS_F_PEER). False when unsure (e.g. /sys
// describes another namespace): plain bpf_redirect is always right.
bool veth_peer_in_other_netns(const std::string& ifname, int ifindex);

// Detach and unpin. Already-gone attachments are fine; other errors throw.
void detach_hook(const PinnedHook& pinned);

// Detach every pinned hook, remove every pin and the pin folder (unmounting
// the bpffs if veer mounted it on the pin folder itself).
void unload_pins(const std::string& pin_path);

}  // namespace veer::detail
