// veer_dataplane against the real kernel: loads the real BPF object, pins,
// attaches to veths in every mode, adopts, replaces, unloads. Needs root.
//
// main() moves the whole process into a new network namespace and a private
// mount namespace first, so the veths, bpffs mounts and pins of this test are
// invisible outside and vanish with the process, even if it crashes.
#include <arpa/inet.h>
#include <linux/if_ether.h>
#include <linux/if_link.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <regex>
#include <sstream>
#include <thread>

#include "veer/dataplane.h"

namespace veer {
namespace {

constexpr unsigned long kBpfFsMagic = 0xcafe4a11;
// BPF_TCX_INGRESS (Linux 6.6); not in Debian 12's uapi header.
constexpr auto kTcxIngress = static_cast<bpf_attach_type>(46);

std::string g_scratch;  // a private tmpfs for this run

const std::vector<std::string> kMapNames = {"veer_services", "veer_slots",     "veer_backends",
                                            "veer_flows",    "veer_backend_rev", "veer_variant_stats",
                                            "veer_reasons",  "veer_port_filter", "veer_meta",
                                            "veer_latency",  "veer_handshakes", "veer_handshake_timeouts",
                                            "veer_fib_cache", "veer_egress", "veer_tcp_port_service",
                                            "veer_service_keys"};

void run(const std::string& cmd) {
  const int rc = std::system(cmd.c_str());
  ASSERT_EQ(rc, 0) << cmd;
}

std::string capture(const std::string& cmd) {
  std::string out;
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return out;
  char buf[4096];
  while (size_t n = fread(buf, 1, sizeof(buf), p)) out.append(buf, n);
  pclose(p);
  return out;
}

bool exists(const std::string& path) {
  struct stat st {};
  return lstat(path.c_str(), &st) == 0;
}

unsigned long fs_type(const std::string& path) {
  struct statfs st {};
  return statfs(path.c_str(), &st) == 0 ? static_cast<unsigned long>(st.f_type) : 0;
}

bool wait_for(const std::function<bool()>& pred, std::chrono::milliseconds limit = std::chrono::milliseconds(3000)) {
  const auto until = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < until) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return pred();
}

int ifindex_of(const std::string& name) { return static_cast<int>(if_nametoindex(name.c_str())); }

std::string prog_name(uint32_t id) {
  const int fd = bpf_prog_get_fd_by_id(id);
  if (fd < 0) return "";
  bpf_prog_info info{};
  uint32_t len = sizeof(info);
  std::string name;
  if (bpf_obj_get_info_by_fd(fd, &info, &len) == 0) name = info.name;
  close(fd);
  return name;
}

bool prog_alive(uint32_t id) {
  const int fd = bpf_prog_get_fd_by_id(id);
  if (fd < 0) return false;
  close(fd);
  return true;
}

bool map_alive(uint32_t id) {
  const int fd = bpf_map_get_fd_by_id(id);
  if (fd < 0) return false;
  close(fd);
  return true;
}

// tcx arrived in kernel 6.6: before it, querying the tcx attach point is
// EINVAL and `attach: tc` means cls_bpf. Probed on loopback, as the loader does.
bool kernel_has_tcx() {
  uint32_t ids[1] = {}, count = 1, flags = 0;
  return bpf_prog_query(1, kTcxIngress, 0, &flags, ids, &count) == 0;
}

// What `attach: tc` gives on this kernel.
std::string tc_kind() { return kernel_has_tcx() ? "tcx" : "tc"; }

// Every BPF program on the interface's receive path, as (kind, id), from the
// kernel: XDP (native/generic), tcx ingress, and tc ingress filters.
std::vector<std::pair<std::string, uint32_t>> programs_on(const std::string& ifname) {
  std::vector<std::pair<std::string, uint32_t>> out;
  const int ifindex = ifindex_of(ifname);
  LIBBPF_OPTS(bpf_xdp_query_opts, xdp);
  if (bpf_xdp_query(ifindex, 0, &xdp) == 0) {
    if (xdp.drv_prog_id) out.emplace_back("xdp", xdp.drv_prog_id);
    if (xdp.skb_prog_id) out.emplace_back("xdp-generic", xdp.skb_prog_id);
  }
  uint32_t ids[16] = {}, count = 16, flags = 0;
  if (bpf_prog_query(ifindex, kTcxIngress, 0, &flags, ids, &count) == 0)
    for (uint32_t i = 0; i < count; ++i) out.emplace_back("tcx", ids[i]);
  // cls_bpf: from `tc`, as an operator would look.
  const std::string tc = capture("tc filter show dev " + ifname + " ingress 2>/dev/null");
  static const std::regex id_re(R"( bpf .* id (\d+))");
  std::istringstream lines(tc);
  for (std::string line; std::getline(lines, line);) {
    std::smatch m;
    if (std::regex_search(line, m, id_re)) out.emplace_back("tc", static_cast<uint32_t>(std::stoul(m[1])));
  }
  return out;
}

// Non-IP frames (local experimental ethertype 0x88b5) sent from the peer, so
// they arrive on `ifname`'s receive path where veer's program sees them.
void send_frames_into(const std::string& peer, int count) {
  const int fd = socket(AF_PACKET, SOCK_RAW, 0);
  ASSERT_GE(fd, 0) << strerror(errno);
  sockaddr_ll addr{};
  addr.sll_family = AF_PACKET;
  addr.sll_ifindex = ifindex_of(peer);
  addr.sll_halen = ETH_ALEN;
  std::memset(addr.sll_addr, 0xff, ETH_ALEN);
  uint8_t frame[60] = {};
  std::memset(frame, 0xff, 6);
  const uint8_t src[6] = {0x02, 0, 0, 0, 0, 0x01};
  std::memcpy(frame + 6, src, 6);
  frame[12] = 0x88;
  frame[13] = 0xb5;
  for (int i = 0; i < count; ++i)
    ASSERT_EQ(sendto(fd, frame, sizeof(frame), 0, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)),
              static_cast<ssize_t>(sizeof(frame)))
        << strerror(errno);
  close(fd);
}

uint32_t pinned_map_id(const std::string& path) {
  const int fd = bpf_obj_get(path.c_str());
  if (fd < 0) return 0;
  bpf_map_info info{};
  uint32_t len = sizeof(info);
  bpf_obj_get_info_by_fd(fd, &info, &len);
  close(fd);
  return info.id;
}

veer_meta read_meta(const std::string& pin) {
  veer_meta meta{};
  const int fd = bpf_obj_get((pin + "/maps/veer_meta").c_str());
  EXPECT_GE(fd, 0);
  const uint32_t zero = 0;
  EXPECT_EQ(bpf_map_lookup_elem(fd, &zero, &meta), 0);
  close(fd);
  return meta;
}

veer_service_key sample_service_key() {
  veer_service_key key{};
  key.vip.addr[0] = htonl(0x0a000064);  // 10.0.0.100
  key.port = htons(80);
  key.proto = VEER_PROTO_TCP;
  key.family = VEER_AF_INET;
  return key;
}

class DataplaneTest : public ::testing::Test {
 protected:
  void SetUp() override {
    static int n = 0;
    bpffs_ = g_scratch + "/bpffs" + std::to_string(++n);
    ASSERT_EQ(mkdir(bpffs_.c_str(), 0700), 0);
    ASSERT_EQ(mount("bpf", bpffs_.c_str(), "bpf", 0, "mode=0700"), 0) << strerror(errno);
    options_.pin_path = bpffs_ + "/veer";
    options_.flow_table_size = 4096;
    options_.hash_seed = 0x1234;
    run("ip link add vtest0 type veth peer name vtest1 && ip link set vtest0 up && ip link set vtest1 up");
  }
  void TearDown() override {
    try {
      Dataplane::unload_pinned(options_.pin_path);
    } catch (const std::exception& e) {
      ADD_FAILURE() << "cleanup: " << e.what();
    }
    std::system("ip link del vtest0 2>/dev/null");
    umount2(bpffs_.c_str(), MNT_DETACH);
    rmdir(bpffs_.c_str());
  }

  uint64_t not_ip(const Dataplane& dp) const { return dp.reason_counters()[VEER_R_PASS_NOT_IP]; }

  // Sends frames into vtest0 and waits until the program counted all of them.
  void expect_counted(const Dataplane& dp, int frames) {
    const uint64_t before = not_ip(dp);
    send_frames_into("vtest1", frames);
    EXPECT_TRUE(wait_for([&] { return not_ip(dp) >= before + frames; }))
        << "counted " << not_ip(dp) - before << " of " << frames;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    EXPECT_EQ(not_ip(dp), before + frames);
  }

  std::string bpffs_;
  DataplaneOptions options_;
};

TEST_F(DataplaneTest, FreshOpenCreatesAndPinsEveryMap) {
  auto dp = Dataplane::open(options_);
  EXPECT_FALSE(dp->adopted());
  for (const auto& name : kMapNames) EXPECT_NE(pinned_map_id(options_.pin_path + "/maps/" + name), 0u) << name;
  const veer_meta meta = read_meta(options_.pin_path);
  EXPECT_EQ(meta.abi_version, static_cast<uint32_t>(VEER_ABI_VERSION));
  EXPECT_EQ(meta.hash_seed, 0x1234u);
  EXPECT_GT(meta.created_ns, 0u);
  // flow_table_size sizes the flow table (the only map it sizes); the
  // backend -> service map holds every backend a config can have.
  for (const auto& [name, entries] : std::vector<std::pair<std::string, uint32_t>>{
           {"veer_flows", 4096u}, {"veer_backend_rev", VEER_BACKEND_REV_MAX}}) {
    const int fd = bpf_obj_get((options_.pin_path + "/maps/" + name).c_str());
    ASSERT_GE(fd, 0);
    bpf_map_info info{};
    uint32_t len = sizeof(info);
    ASSERT_EQ(bpf_obj_get_info_by_fd(fd, &info, &len), 0);
    EXPECT_EQ(info.max_entries, entries) << name;
    close(fd);
  }
  EXPECT_TRUE(dp->attachments().empty());
}

TEST_F(DataplaneTest, MountsBpffsOnThePinFolderWhenItIsNotOnBpffs) {
  const std::string plain = g_scratch + "/plain";
  options_.pin_path = plain + "/state/veer";
  auto dp = Dataplane::open(options_);
  EXPECT_EQ(fs_type(options_.pin_path), kBpfFsMagic);
  EXPECT_NE(fs_type(plain), kBpfFsMagic);
  EXPECT_TRUE(exists(options_.pin_path + "/maps/veer_meta"));
  dp->unload();
  EXPECT_FALSE(exists(options_.pin_path)) << "unload removes the pin folder (and the bpffs veer mounted there)";
  EXPECT_TRUE(exists(plain + "/state"));
}

TEST_F(DataplaneTest, MountsBpffsOnSysFsBpfLikeInsideIpNetnsExec) {
  // What `ip netns exec` gives: a fresh sysfs whose /sys/fs/bpf is no bpffs.
  ASSERT_EQ(mount("sysfs", "/sys", "sysfs", 0, nullptr), 0) << strerror(errno);
  ASSERT_NE(fs_type("/sys/fs/bpf"), kBpfFsMagic);
  options_.pin_path = "/sys/fs/bpf/veer-selftest";
  {
    auto dp = Dataplane::open(options_);
    EXPECT_EQ(fs_type("/sys/fs/bpf"), kBpfFsMagic);
    EXPECT_TRUE(exists("/sys/fs/bpf/veer-selftest/maps/veer_meta"));
    dp->unload();
    EXPECT_FALSE(exists("/sys/fs/bpf/veer-selftest"));
  }
  umount2("/sys/fs/bpf", MNT_DETACH);
  umount2("/sys", MNT_DETACH);
}

struct ModeCase {
  AttachMode mode;
  bool allow_tcx;
  std::string expected;  // Attachment::mode and the kind seen in the kernel
};

class AttachModeTest : public DataplaneTest, public ::testing::WithParamInterface<ModeCase> {};

// One whole life per mode: attach, survive the process, adopt, replace the
// program in place, unload.
TEST_P(AttachModeTest, AttachSurviveAdoptReplaceUnload) {
  const ModeCase& c = GetParam();
  options_.allow_tcx = c.allow_tcx;
  const int ifindex = ifindex_of("vtest0");
  // A kernel without tcx falls back to cls_bpf (kernels before 6.6).
  const std::string expected = c.expected == "tcx" ? tc_kind() : c.expected;

  auto dp = Dataplane::open(options_);
  const auto attached = dp->attach({"vtest0"}, c.mode);
  ASSERT_EQ(attached.size(), 1u);
  EXPECT_EQ(attached[0].interface, "vtest0");
  EXPECT_EQ(attached[0].ifindex, ifindex);
  EXPECT_EQ(attached[0].mode, expected);
  const auto listed = dp->attachments();
  ASSERT_EQ(listed.size(), 1u);
  EXPECT_EQ(listed[0].mode, expected);
  EXPECT_EQ(listed[0].ifindex, ifindex);

  auto progs = programs_on("vtest0");
  ASSERT_EQ(progs.size(), 1u) << "exactly one program on vtest0";
  EXPECT_EQ(progs[0].first, expected);
  const uint32_t first_prog = progs[0].second;
  EXPECT_EQ(prog_name(first_prog), expected.starts_with("xdp") ? "veer_xdp" : "veer_tc");
  EXPECT_TRUE(programs_on("vtest1").empty());
  expect_counted(*dp, 5);

  // State the next veerd must find.
  veer_service svc{};
  svc.id = 7;
  svc.hash_seed = 0x1234;
  svc.n_variants = 2;
  svc.generation = 3;
  dp->writer().put_service(sample_service_key(), svc);
  const uint64_t counted = not_ip(*dp);

  // veerd exits: the pinned link (or the clsact filter) keeps the program on
  // the interface, and it keeps counting into the pinned maps.
  dp.reset();
  progs = programs_on("vtest0");
  ASSERT_EQ(progs.size(), 1u);
  EXPECT_EQ(progs[0].second, first_prog);
  send_frames_into("vtest1", 3);
  std::this_thread::sleep_for(std::chrono::milliseconds(200));

  auto dp2 = Dataplane::open(options_);
  EXPECT_TRUE(dp2->adopted());
  EXPECT_EQ(not_ip(*dp2), counted + 3) << "counters continue across the restart";
  const auto seen = dp2->writer().get_service(sample_service_key());
  ASSERT_TRUE(seen.has_value());
  EXPECT_EQ(seen->id, 7u);
  EXPECT_EQ(seen->generation, 3u);
  EXPECT_EQ(dp2->attachments().size(), 1u) << "adopted attachments are listed before any attach";

  // Re-attach: the new program replaces the old one in place.
  const auto again = dp2->attach({"vtest0"}, c.mode);
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(again[0].mode, expected);
  progs = programs_on("vtest0");
  ASSERT_EQ(progs.size(), 1u) << "still one program after the replacement";
  EXPECT_EQ(progs[0].first, expected);
  const uint32_t second_prog = progs[0].second;
  EXPECT_NE(second_prog, first_prog);
  EXPECT_TRUE(wait_for([&] { return !prog_alive(first_prog); })) << "the old program is freed";
  expect_counted(*dp2, 4);

  // Unload: nothing of veer is left.
  std::vector<uint32_t> map_ids;
  for (const auto& name : kMapNames) map_ids.push_back(pinned_map_id(options_.pin_path + "/maps/" + name));
  dp2->unload();
  EXPECT_FALSE(exists(options_.pin_path));
  EXPECT_TRUE(programs_on("vtest0").empty());
  EXPECT_TRUE(wait_for([&] { return !prog_alive(second_prog); }));
  EXPECT_TRUE(wait_for([&] {
    for (uint32_t id : map_ids)
      if (map_alive(id)) return false;
    return true;
  })) << "every map is freed";
  EXPECT_THROW(dp2->writer(), DataplaneError);
}

INSTANTIATE_TEST_SUITE_P(Modes, AttachModeTest,
                         ::testing::Values(ModeCase{AttachMode::Xdp, true, "xdp"},
                                           ModeCase{AttachMode::XdpGeneric, true, "xdp-generic"},
                                           ModeCase{AttachMode::Tc, true, "tcx"},
                                           ModeCase{AttachMode::Tc, false, "tc"},
                                           ModeCase{AttachMode::ClsBpf, true, "tc"},
                                           // vtest0 is a veth: auto takes the TC hook there.
                                           ModeCase{AttachMode::Auto, true, "tcx"},
                                           ModeCase{AttachMode::Auto, false, "tc"}),
                         [](const auto& info) {
                           std::string name = info.param.expected;
                           for (auto& ch : name)
                             if (ch == '-') ch = '_';
                           if (info.param.mode == AttachMode::ClsBpf) return name + "_forced_cls_bpf";
                           if (info.param.mode == AttachMode::Auto) return name + "_auto_on_veth";
                           return name + (info.param.allow_tcx ? "" : "_without_tcx");
                         });

TEST_F(DataplaneTest, ModeChangeLeavesOnlyTheNewKind) {
  auto dp = Dataplane::open(options_);
  for (auto [mode, kind] : std::vector<std::pair<AttachMode, std::string>>{{AttachMode::Xdp, "xdp"},
                                                                          {AttachMode::Tc, tc_kind()},
                                                                          {AttachMode::XdpGeneric, "xdp-generic"},
                                                                          {AttachMode::Xdp, "xdp"}}) {
    EXPECT_EQ(dp->attach({"vtest0"}, mode).at(0).mode, kind);
    const auto progs = programs_on("vtest0");
    ASSERT_EQ(progs.size(), 1u) << kind;
    EXPECT_EQ(progs[0].first, kind);
    ASSERT_EQ(dp->attachments().size(), 1u);
    EXPECT_EQ(dp->attachments()[0].mode, kind);
  }
}

// Off veths, auto means XDP: native where the driver has it, else generic. A bridge has no native
// XDP (nor has a dummy device, which not every kernel here has), so auto must fall back to generic XDP there.
TEST_F(DataplaneTest, AutoOffVethTakesXdpFallingBackToGeneric) {
  run("ip link add vbridge0 type bridge && ip link set vbridge0 up");
  struct DeleteBridge {
    ~DeleteBridge() { std::system("ip link del vbridge0 2>/dev/null"); }
  } delete_bridge;  // also when an assertion returns early
  {
    auto dp = Dataplane::open(options_);
    const auto attached = dp->attach({"vbridge0", "vtest0"}, AttachMode::Auto);
    ASSERT_EQ(attached.size(), 2u);
    EXPECT_EQ(attached[0].mode, "xdp-generic");
    EXPECT_EQ(attached[1].mode, tc_kind()) << "vtest0 is a veth";
    const auto progs = programs_on("vbridge0");
    ASSERT_EQ(progs.size(), 1u);
    EXPECT_EQ(progs[0].first, "xdp-generic");
    dp->unload();
    EXPECT_TRUE(programs_on("vbridge0").empty());
  }
}

// veer_egress holds exactly the attached veths whose peer is in another namespace (the TC hook then
// sends with bpf_redirect_peer; anything else must keep bpf_redirect).
TEST_F(DataplaneTest, FlagsVethsWhosePeerIsInAnotherNamespace) {
  // A sysfs of this namespace, as `ip netns exec` gives veerd.
  ASSERT_EQ(mount("sysfs", "/sys", "sysfs", 0, nullptr), 0) << strerror(errno);
  run("ip netns add vdp-other && ip link add vpeer0 type veth peer name vpeer1 && "
      "ip link set vpeer1 netns vdp-other && ip link set vpeer0 up");
  auto flags_in_kernel = [&] {
    std::map<uint32_t, uint32_t> flags;
    const int fd = bpf_obj_get((options_.pin_path + "/maps/veer_egress").c_str());
    EXPECT_GE(fd, 0);
    uint32_t key = 0, next = 0, value = 0;
    for (const uint32_t* prev = nullptr; bpf_map_get_next_key(fd, prev, &next) == 0; prev = &key) {
      key = next;
      EXPECT_EQ(bpf_map_lookup_elem(fd, &key, &value), 0);
      flags[key] = value;
    }
    close(fd);
    return flags;
  };
  {
    auto dp = Dataplane::open(options_);
    dp->attach({"vtest0", "vpeer0"}, AttachMode::Tc);
    const uint32_t vpeer0 = static_cast<uint32_t>(ifindex_of("vpeer0"));
    EXPECT_EQ(flags_in_kernel(), (std::map<uint32_t, uint32_t>{{vpeer0, VEER_EGRESS_F_PEER}}))
        << "vtest0's peer vtest1 is in this namespace: not flagged";
    dp->attach({"vtest0"}, AttachMode::Tc);
    EXPECT_TRUE(flags_in_kernel().empty()) << "an interface no longer listed loses its flag";
  }
  std::system("ip link del vpeer0 2>/dev/null; ip netns del vdp-other 2>/dev/null");
  umount2("/sys", MNT_DETACH);
}

TEST_F(DataplaneTest, InterfacesNoLongerListedAreDetached) {
  auto dp = Dataplane::open(options_);
  ASSERT_EQ(dp->attach({"vtest0", "vtest1"}, AttachMode::Xdp).size(), 2u);
  EXPECT_EQ(programs_on("vtest0").size(), 1u);
  EXPECT_EQ(programs_on("vtest1").size(), 1u);
  const auto now = dp->attach({"vtest1"}, AttachMode::Xdp);
  ASSERT_EQ(now.size(), 1u);
  EXPECT_EQ(now[0].interface, "vtest1");
  EXPECT_TRUE(programs_on("vtest0").empty());
  EXPECT_EQ(programs_on("vtest1").size(), 1u);
  EXPECT_FALSE(exists(options_.pin_path + "/links/vtest0:xdp"));
  ASSERT_EQ(dp->attachments().size(), 1u);
  EXPECT_EQ(dp->attachments()[0].interface, "vtest1");
}

TEST_F(DataplaneTest, InterfaceNamesWithDotsWork) {
  // bpffs allows no '.' in pin names; VLAN-style names have them.
  run("ip link add vt.a type veth peer name vt.b && ip link set vt.a up && ip link set vt.b up");
  {
    auto dp = Dataplane::open(options_);
    EXPECT_EQ(dp->attach({"vt.a"}, AttachMode::Tc).at(0).interface, "vt.a");
    ASSERT_EQ(dp->attachments().size(), 1u);
    EXPECT_EQ(dp->attachments()[0].interface, "vt.a");
    EXPECT_EQ(programs_on("vt.a").size(), 1u);
    dp->attach({"vtest0"}, AttachMode::Tc);
    EXPECT_TRUE(programs_on("vt.a").empty()) << "no longer listed: detached";
  }
  std::system("ip link del vt.a 2>/dev/null");
}

TEST_F(DataplaneTest, UnknownInterfaceIsRefusedAndChangesNothing) {
  auto dp = Dataplane::open(options_);
  dp->attach({"vtest0"}, AttachMode::Xdp);
  const auto before = programs_on("vtest0");
  try {
    dp->attach({"vtest0", "nosuch0"}, AttachMode::Tc);
    FAIL() << "an unknown interface must be refused";
  } catch (const DataplaneError& e) {
    EXPECT_NE(std::string(e.what()).find("'nosuch0' does not exist"), std::string::npos) << e.what();
  }
  EXPECT_EQ(programs_on("vtest0"), before);
  EXPECT_THROW(dp->attach({"bad/name"}, AttachMode::Xdp), DataplaneError);
  EXPECT_EQ(programs_on("vtest0"), before);
}

TEST_F(DataplaneTest, ForeignXdpProgramIsNamedInTheError) {
  auto dp = Dataplane::open(options_);
  // Someone else's XDP program on vtest1, attached by netlink (not a link):
  // for want of another object, veer's own program, taken from vtest0.
  dp->attach({"vtest0"}, AttachMode::Xdp);
  const uint32_t id = programs_on("vtest0").at(0).second;
  const int prog_fd = bpf_prog_get_fd_by_id(id);
  ASSERT_GE(prog_fd, 0);
  ASSERT_EQ(bpf_xdp_attach(ifindex_of("vtest1"), prog_fd, XDP_FLAGS_DRV_MODE, nullptr), 0);
  close(prog_fd);
  try {
    dp->attach({"vtest0", "vtest1"}, AttachMode::Xdp);
    FAIL() << "attaching over a foreign XDP program must fail";
  } catch (const DataplaneError& e) {
    EXPECT_NE(std::string(e.what()).find("another XDP program is attached to vtest1"), std::string::npos) << e.what();
  }
  bpf_xdp_detach(ifindex_of("vtest1"), XDP_FLAGS_DRV_MODE, nullptr);
}

TEST_F(DataplaneTest, WrongAbiVersionIsRefusedAndChangesNothing) {
  auto dp = Dataplane::open(options_);
  dp->attach({"vtest0"}, AttachMode::Xdp);
  const uint32_t prog = programs_on("vtest0").at(0).second;
  dp.reset();
  // Pins of another ABI version.
  const int fd = bpf_obj_get((options_.pin_path + "/maps/veer_meta").c_str());
  ASSERT_GE(fd, 0);
  veer_meta meta = read_meta(options_.pin_path);
  meta.abi_version = 999;
  const uint32_t zero = 0;
  ASSERT_EQ(bpf_map_update_elem(fd, &zero, &meta, BPF_ANY), 0);
  close(fd);
  try {
    Dataplane::open(options_);
    FAIL() << "pins of another ABI version must not be adopted";
  } catch (const DataplaneError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("ABI version 999"), std::string::npos) << what;
    EXPECT_NE(what.find("unload it first"), std::string::npos) << what;
  }
  EXPECT_EQ(read_meta(options_.pin_path).abi_version, 999u);
  ASSERT_EQ(programs_on("vtest0").size(), 1u);
  EXPECT_EQ(programs_on("vtest0")[0].second, prog);
  // The way out: unload without opening.
  Dataplane::unload_pinned(options_.pin_path);
  EXPECT_FALSE(exists(options_.pin_path));
  EXPECT_TRUE(programs_on("vtest0").empty());
  auto fresh = Dataplane::open(options_);
  EXPECT_FALSE(fresh->adopted());
}

TEST_F(DataplaneTest, AdoptionKeepsThePinnedFlowTableSize) {
  Dataplane::open(options_);
  options_.flow_table_size = 8192;
  auto dp = Dataplane::open(options_);
  EXPECT_TRUE(dp->adopted());
  const int fd = bpf_obj_get((options_.pin_path + "/maps/veer_flows").c_str());
  bpf_map_info info{};
  uint32_t len = sizeof(info);
  ASSERT_EQ(bpf_obj_get_info_by_fd(fd, &info, &len), 0);
  close(fd);
  EXPECT_EQ(info.max_entries, 4096u);
}

TEST_F(DataplaneTest, MapWriterRoundTripsAndNamesTheMapInErrors) {
  auto dp = Dataplane::open(options_);
  MapWriter& w = dp->writer();
  EXPECT_FALSE(w.get_service(sample_service_key()).has_value());
  veer_service svc{};
  svc.id = 3;
  w.put_service(sample_service_key(), svc);
  EXPECT_EQ(w.get_service(sample_service_key())->id, 3u);
  w.delete_service(sample_service_key());
  EXPECT_FALSE(w.get_service(sample_service_key()).has_value());
  w.delete_service(sample_service_key());  // already gone: fine

  veer_slot_table table{};
  for (int i = 0; i < VEER_SLOTS; ++i) table.slot[i] = {static_cast<uint8_t>(i % 3), static_cast<uint8_t>(i % 5)};
  w.put_slot_table(5, table);
  const auto back = w.get_slot_table(5);
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(std::memcmp(&*back, &table, sizeof(table)), 0);
  EXPECT_FALSE(w.get_slot_table(VEER_MAX_SERVICES * 2).has_value());
  try {
    w.put_slot_table(VEER_MAX_SERVICES * 2, table);
    FAIL() << "an index past the array must be refused";
  } catch (const DataplaneError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("veer_slots"), std::string::npos) << what;
    EXPECT_NE(what.find(std::strerror(E2BIG)), std::string::npos) << what;
  }
  veer_backend backend{};
  backend.port = htons(8080);
  backend.flags = VEER_BACKEND_F_PRESENT;
  w.put_backend(3 * VEER_MAX_BACKENDS + 1, backend);
  w.put_port_filter(80, VEER_PORT_F_SERVICE_TCP);
  // Read back through the pinned maps, as the BPF program sees them.
  const int bfd = bpf_obj_get((options_.pin_path + "/maps/veer_backends").c_str());
  veer_backend got{};
  uint32_t key = 3 * VEER_MAX_BACKENDS + 1;
  ASSERT_EQ(bpf_map_lookup_elem(bfd, &key, &got), 0);
  EXPECT_EQ(got.port, htons(8080));
  close(bfd);
  const int pfd = bpf_obj_get((options_.pin_path + "/maps/veer_port_filter").c_str());
  uint8_t bits = 0;
  key = 80;
  ASSERT_EQ(bpf_map_lookup_elem(pfd, &key, &bits), 0);
  EXPECT_EQ(bits, VEER_PORT_F_SERVICE_TCP);
  close(pfd);

  veer_backend_rev_key rkey{};
  rkey.addr.addr[0] = htonl(0x0a010102);
  rkey.port = htons(8080);
  rkey.proto = VEER_PROTO_TCP;
  rkey.family = VEER_AF_INET;
  veer_backend_rev rev{};
  rev.vip.addr[0] = htonl(0x0a000064);
  rev.vport = htons(80);
  rev.service_id = 3;
  w.put_backend_rev(rkey, rev);
  const int rfd = bpf_obj_get((options_.pin_path + "/maps/veer_backend_rev").c_str());
  ASSERT_GE(rfd, 0);
  veer_backend_rev rgot{};
  ASSERT_EQ(bpf_map_lookup_elem(rfd, &rkey, &rgot), 0);
  EXPECT_EQ(rgot.service_id, 3);
  EXPECT_EQ(rgot.vport, htons(80));
  EXPECT_EQ(rgot.vip.addr[0], htonl(0x0a000064));
  w.delete_backend_rev(rkey);
  EXPECT_EQ(bpf_map_lookup_elem(rfd, &rkey, &rgot), -ENOENT);
  w.delete_backend_rev(rkey);  // already gone: fine
  close(rfd);
}

TEST_F(DataplaneTest, CountersAreSummedOverCpusAndFlowsAreLookedUp) {
  auto dp = Dataplane::open(options_);
  const int ncpus = libbpf_num_possible_cpus();
  ASSERT_GT(ncpus, 0);
  std::vector<veer_variant_counters> per_cpu(static_cast<size_t>(ncpus));
  for (int i = 0; i < ncpus; ++i)
    per_cpu[i] = {uint64_t(i + 1), uint64_t(100 * (i + 1)), 2, 20, uint64_t(i), 1, 2, 3, 4, 5, 6, uint64_t(i + 7)};
  const int sfd = bpf_obj_get((options_.pin_path + "/maps/veer_variant_stats").c_str());
  const uint32_t key = 5 * VEER_MAX_VARIANTS + 2;
  ASSERT_EQ(bpf_map_update_elem(sfd, &key, per_cpu.data(), BPF_ANY), 0);
  close(sfd);
  const uint64_t n = static_cast<uint64_t>(ncpus);
  const auto sum = dp->variant_counters(5, 2);
  EXPECT_EQ(sum.packets_in, n * (n + 1) / 2);
  EXPECT_EQ(sum.bytes_in, 100 * n * (n + 1) / 2);
  EXPECT_EQ(sum.packets_out, 2 * n);
  EXPECT_EQ(sum.bytes_out, 20 * n);
  EXPECT_EQ(sum.new_flows, n * (n - 1) / 2);
  EXPECT_EQ(sum.backend_resets, n);
  EXPECT_EQ(sum.client_resets, 2 * n);
  EXPECT_EQ(sum.http_2xx, 3 * n);
  EXPECT_EQ(sum.http_3xx, 4 * n);
  EXPECT_EQ(sum.http_4xx, 5 * n);
  EXPECT_EQ(sum.http_5xx, 6 * n);
  EXPECT_EQ(sum.responses, n * (n + 1) / 2 + 6 * n);
  EXPECT_EQ(dp->variant_counters(5, 3).packets_in, 0u);
  EXPECT_THROW(dp->variant_counters(VEER_MAX_SERVICES, 0), DataplaneError);

  veer_flow_key fk{};
  fk.src.addr[0] = htonl(0x0a000201);
  fk.dst.addr[0] = htonl(0x0a000064);
  fk.sport = htons(40000);
  fk.dport = htons(80);
  fk.proto = VEER_PROTO_TCP;
  fk.family = VEER_AF_INET;
  EXPECT_FALSE(dp->lookup_flow(fk).has_value());
  // The flow table is keyed by (client, client port, service): the tuple's
  // VIP names the service.
  veer_flow_id id{};
  id.client = fk.src;
  id.client_port = fk.sport;
  id.service_id = 6;
  id.proto = VEER_PROTO_TCP;
  id.family = VEER_AF_INET;
  veer_flow flow{};
  flow.backend.addr[0] = htonl(0x0a010102);
  flow.backend_port = htons(8080);
  flow.variant = 1;
  const int ffd = bpf_obj_get((options_.pin_path + "/maps/veer_flows").c_str());
  ASSERT_EQ(bpf_map_update_elem(ffd, &id, &flow, BPF_ANY), 0);
  close(ffd);
  EXPECT_FALSE(dp->lookup_flow(fk).has_value()) << "no service at the tuple's VIP: no flow";
  veer_service_key skey{};
  skey.vip = fk.dst;
  skey.port = fk.dport;
  skey.proto = fk.proto;
  skey.family = fk.family;
  veer_service svc{};
  svc.id = 5;
  dp->writer().put_service(skey, svc);
  EXPECT_FALSE(dp->lookup_flow(fk).has_value()) << "the VIP names another service than the flow's";
  svc.id = 6;
  dp->writer().put_service(skey, svc);
  const auto found = dp->lookup_flow(fk);
  ASSERT_TRUE(found.has_value());
  EXPECT_EQ(found->backend.addr[0], htonl(0x0a010102));
  EXPECT_EQ(found->variant, 1);
}


TEST_F(DataplaneTest, TelemetrySumsTheHistogramOverCpus) {
  auto dp = Dataplane::open(options_);
  const int ncpus = libbpf_num_possible_cpus();
  std::vector<veer_latency_hist> per_cpu(static_cast<size_t>(ncpus));
  for (int i = 0; i < ncpus; ++i) {
    per_cpu[i].bucket[0] = 1;
    per_cpu[i].bucket[100] = uint64_t(i + 1);
    per_cpu[i].bucket[VEER_LAT_BUCKETS - 1] = 2;
  }
  const int fd = bpf_obj_get((options_.pin_path + "/maps/veer_latency").c_str());
  ASSERT_GE(fd, 0);
  const uint32_t key = 7 * VEER_MAX_VARIANTS + 3;
  ASSERT_EQ(bpf_map_update_elem(fd, &key, per_cpu.data(), BPF_ANY), 0);
  close(fd);
  const uint64_t n = static_cast<uint64_t>(ncpus);
  const VariantTelemetry t = dp->telemetry(7, 3);
  EXPECT_EQ(t.latency[0], n);
  EXPECT_EQ(t.latency[100], n * (n + 1) / 2);
  EXPECT_EQ(t.latency[VEER_LAT_BUCKETS - 1], 2 * n);
  EXPECT_EQ(latency_count(t.latency), n + n * (n + 1) / 2 + 2 * n);
  EXPECT_EQ(t.handshake_timeouts, 0u);
  EXPECT_EQ(latency_count(dp->telemetry(7, 2).latency), 0u) << "another variant";
  EXPECT_THROW(dp->telemetry(0, VEER_MAX_VARIANTS), DataplaneError);
  EXPECT_THROW(dp->telemetry(VEER_MAX_SERVICES, 0), DataplaneError);
}

TEST_F(DataplaneTest, HandshakesOlderThanTheTimeoutAreCountedOnceAndSurviveAdoption) {
  const uint64_t now = 1000ull * 1000000000ull;  // the kernel never sees these entries: any clock will do
  const uint64_t timeout = 3ull * 1000000000ull;
  {
    auto dp = Dataplane::open(options_);
    const int fd = bpf_obj_get((options_.pin_path + "/maps/veer_handshakes").c_str());
    ASSERT_GE(fd, 0);
    struct Entry {
      uint16_t cport;
      uint64_t age_ns;
      uint16_t service;
      uint8_t variant;
    };
    const std::vector<Entry> entries = {
        {40001, 10ull * 1000000000ull, 3, 1},  // old
        {40002, timeout, 3, 1},                // exactly the timeout: old
        {40003, 5ull * 1000000000ull, 4, 0},   // old, another variant
        {40004, timeout - 1, 3, 1},            // young by 1 ns
        {40005, 0, 3, 1},                      // just now
        {40006, 20ull * 1000000000ull, VEER_MAX_SERVICES, 0},  // old, names no counter: dropped
    };
    auto key_of = [](uint16_t cport) {
      veer_flow_key k{};
      k.src.addr[0] = htonl(0x0a010102);
      k.dst.addr[0] = htonl(0x0a000201);
      k.sport = htons(8080);
      k.dport = htons(cport);
      k.proto = VEER_PROTO_TCP;
      k.family = VEER_AF_INET;
      return k;
    };
    for (const Entry& e : entries) {
      veer_handshake hs{};
      hs.syn_ts_ns = now - e.age_ns;
      hs.service_id = e.service;
      hs.variant = e.variant;
      const veer_flow_key k = key_of(e.cport);
      ASSERT_EQ(bpf_map_update_elem(fd, &k, &hs, BPF_ANY), 0);
    }
    EXPECT_THROW(dp->collect_handshake_timeouts(now, 0), DataplaneError);
    EXPECT_EQ(dp->collect_handshake_timeouts(now, timeout), 3u);
    EXPECT_EQ(dp->telemetry(3, 1).handshake_timeouts, 2u);
    EXPECT_EQ(dp->telemetry(4, 0).handshake_timeouts, 1u);
    EXPECT_EQ(dp->telemetry(3, 0).handshake_timeouts, 0u);
    veer_handshake hs{};
    for (const Entry& e : entries) {
      const veer_flow_key k = key_of(e.cport);
      const bool young = e.age_ns < timeout;
      EXPECT_EQ(bpf_map_lookup_elem(fd, &k, &hs) == 0, young) << "client port " << e.cport;
    }
    // Counted once: a second scan at the same time finds nothing old.
    EXPECT_EQ(dp->collect_handshake_timeouts(now, timeout), 0u);
    EXPECT_EQ(dp->telemetry(3, 1).handshake_timeouts, 2u);
    // Later, the young ones are old too.
    EXPECT_EQ(dp->collect_handshake_timeouts(now + timeout, timeout), 2u);
    EXPECT_EQ(dp->telemetry(3, 1).handshake_timeouts, 4u);
    close(fd);
  }
  // The counts are pinned: a restarted veerd adopts them.
  auto again = Dataplane::open(options_);
  ASSERT_TRUE(again->adopted());
  EXPECT_EQ(again->telemetry(3, 1).handshake_timeouts, 4u);
  EXPECT_EQ(again->telemetry(4, 0).handshake_timeouts, 1u);
  EXPECT_EQ(again->collect_handshake_timeouts(1000000000ull), 0u) << "the map is empty";
}

}  // namespace
}  // namespace veer

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  if (geteuid() != 0) {
    std::fprintf(stderr, "veer_dataplane_selftest needs root (BPF, namespaces): skipped\n");
    return 77;
  }
  if (unshare(CLONE_NEWNET | CLONE_NEWNS) != 0) {
    std::fprintf(stderr, "cannot create namespaces: %s: skipped\n", std::strerror(errno));
    return 77;
  }
  // Nothing mounted here propagates to the host.
  if (mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) {
    std::perror("make / private");
    return 1;
  }
  // New veths get no IPv6, so no neighbour discovery frames muddle the counts.
  for (const char* path : {"/proc/sys/net/ipv6/conf/all/disable_ipv6", "/proc/sys/net/ipv6/conf/default/disable_ipv6"})
    std::ofstream(path) << "1\n";
  char scratch[] = "/tmp/veer-dp-selftest.XXXXXX";
  if (!mkdtemp(scratch) || mount("tmpfs", scratch, "tmpfs", 0, "mode=0700") != 0) {
    std::perror("scratch tmpfs");
    return 1;
  }
  veer::g_scratch = scratch;
  const int rc = RUN_ALL_TESTS();
  umount2(scratch, MNT_DETACH);
  rmdir(scratch);
  return rc;
}
