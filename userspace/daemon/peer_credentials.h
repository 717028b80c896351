// Who may talk to veerd (SPEC §3, §6): the control socket is mode 0660 and
// group `veer`; on top of the file mode every peer is checked with
// SO_PEERCRED, so a socket reached another way (a bind mount, an fd passed
// on) still only serves root or members of group veer.
#pragma once
#include <sys/types.h>

#include <optional>
#include <string>

namespace veer {

struct PeerCredentials {
  pid_t pid = 0;
  uid_t uid = 0;
  gid_t gid = 0;
};

std::optional<PeerCredentials> peer_credentials(int socket_fd);

// gid of group "veer", if the group exists.
std::optional<gid_t> veer_group_id();

// uid 0, or a member of `veer_gid` (primary gid, the process's supplementary
// groups from /proc, or the user's groups in the group database).
// On refusal `reason` says why.
bool peer_allowed(const PeerCredentials& peer, std::optional<gid_t> veer_gid, std::string& reason);

// Creates the listening control socket at `path`: parent folder created,
// a stale socket file removed (refused if another process still listens on
// it, or if the path is not a socket), mode 0660, group `veer_gid` if any.
// Returns the listening fd. Throws std::runtime_error naming path and reason.
int open_control_socket(const std::string& path, std::optional<gid_t> veer_gid);

}  // namespace veer
