// The control protocol of veerd (SPEC §6, notes/protocol.md): one JSON object
// per line each way over a Unix socket. Pure: parsing and validation of
// request lines into typed requests, and building of answer lines. No I/O.
#pragma once
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

#include "config/net.h"
#include "control/version.h"  // generated (CMake): the project version

namespace veer::protocol {

inline constexpr std::size_t kMaxLineBytes = 65536;  // a longer line is "too_large"
inline constexpr const char* kVersion = veer::kVersion;

enum class ErrorCode {
  BadJson,           // not parseable as JSON (also truncated)
  BadRequest,        // not an object, missing/non-string cmd, bad or missing field
  UnknownCommand,    // cmd is a string but names no command
  TooLarge,          // line longer than kMaxLineBytes
  NotFound,          // unknown service / variant / backend
  Refused,           // refused by the daemon's state
  ConfigInvalid,     // reload of a config that does not validate
  PermissionDenied,  // SO_PEERCRED check failed
  Internal,          // anything else; nothing was changed
};

std::string to_string(ErrorCode code);  // "bad_json", "bad_request", ...
std::optional<ErrorCode> error_code_from_string(std::string_view text);

// Thrown by the parser and by the daemon's handlers; becomes an error answer.
class ProtocolError : public std::runtime_error {
 public:
  ProtocolError(ErrorCode code, const std::string& message) : std::runtime_error(message), code_(code) {}
  ErrorCode code() const { return code_; }

 private:
  ErrorCode code_;
};

struct PingRequest {};
struct StatusRequest {
  std::optional<std::string> service;
};
struct WeightsRequest {
  std::string service;
  std::map<std::string, uint32_t> weights_bp;  // variant -> basis points (as sent; not yet summed)
  bool force = false;
  // Fleet mode: make this node's definition of the service the fleet's (the next version is built from
  // this node's table, with its definition); a node of the fleet's definition makes a normal change.
  bool adopt = false;
};
struct SwitchRequest {
  std::string service;
  std::string variant;
  bool force = false;  // apply even while a rollout runs
};
struct WhichRequest {
  std::string service;
  IpAddress client_ip;
  std::optional<uint16_t> client_port;  // host order; absent: only valid for client-ip affinity
};
struct DrainRequest {
  std::string service;
  Endpoint backend;
  bool undo = false;
};
struct ReloadRequest {};
// veerd answers, then exits. unload=false: programs stay attached on pinned
// state (like SIGTERM, for upgrades); unload=true: every program is detached
// and every pin and map removed first.
struct ShutdownRequest {
  bool unload = false;
};

// Issue 4: rollouts, pushed metrics, events, the A/B report.
enum class RolloutAction { Start, Promote, Pause, Abort, Retry };
std::string to_string(RolloutAction action);
struct RolloutRequest {
  std::string service;
  RolloutAction action = RolloutAction::Start;
  bool full = false;  // promote only: straight to 100 %
};
struct PushRequest {
  std::string service;
  std::string variant;
  nlohmann::json values;  // NAME -> VALUE (validated by the daemon: rollout/gate_inputs.h)
};
struct EventsRequest {
  std::optional<std::string> service;
  uint64_t since = 0;
  std::optional<uint64_t> limit;
};
struct AbRequest {
  std::string service;
};
// Fleet mode: every node's report in etcd, as this node reads it.
struct NodesRequest {};
// The live view's document of one service (docs/view.md; the same JSON as
// GET /api/v1/services/NAME): status, history, the last rollout's events,
// steps, gates and outcome, the A/B report. Read-only; `veerctl report`.
struct ViewRequest {
  std::string service;
};

using Request = std::variant<PingRequest, StatusRequest, WeightsRequest, SwitchRequest, WhichRequest,
                             DrainRequest, ReloadRequest, ShutdownRequest, RolloutRequest, PushRequest,
                             EventsRequest, AbRequest, NodesRequest, ViewRequest>;

// Parses one request line (trailing "\n" / "\r\n" allowed). Throws
// ProtocolError: too_large, bad_json, bad_request (message names the field),
// unknown_command. Unknown extra fields are ignored (forward compatibility).
Request parse_request(std::string_view line);

// The cmd name of a request ("ping", "status", ...).
std::string command_name(const Request& request);

// "10.0.1.10:43210", "[fd00::10]:43210", "10.0.1.10", "fd00::10".
// nullopt if the address or port does not parse (port 0 is refused).
struct ClientAddress {
  IpAddress ip;
  std::optional<uint16_t> port;
};
std::optional<ClientAddress> parse_client_address(std::string_view text);

// Answer lines, without the trailing newline; never contain a raw newline.
// Invalid UTF-8 in strings (e.g. echoed names) is replaced, never throws.
std::string ok_answer(const nlohmann::json& result);
std::string error_answer(ErrorCode code, std::string_view message);

// The client side: an answer line -> ok/result or error code/message.
struct Answer {
  bool ok = false;
  nlohmann::json result;  // when ok
  std::string code;       // when !ok
  std::string message;    // when !ok
};
// Throws ProtocolError(bad_json / bad_request) if the line is not an answer.
Answer parse_answer(std::string_view line);

// Request lines as veerctl sends them (no trailing newline).
nlohmann::json to_json(const Request& request);

// Status objects (result of status, weights, switch, drain): pure data -> JSON
// in the shape of protocol.md, weights as strings with two decimals.
struct BackendStatus {
  Endpoint address;
  bool draining = false;
};
struct VariantStatus {
  std::string name;
  uint32_t weight_desired_bp = 0;
  uint32_t weight_applied_bp = 0;
  std::vector<BackendStatus> backends;
  uint64_t flows = 0;  // new_flows counter
  uint64_t packets_in = 0, bytes_in = 0, packets_out = 0, bytes_out = 0;
};
struct ServiceStatus {
  std::string name;
  IpAddress vip;
  uint16_t port = 0;
  std::string protocol;  // "tcp" | "udp"
  std::string affinity;  // "connection" | "client-ip"
  std::string stable;
  uint32_t id = 0;
  uint32_t generation = 0;
  unsigned active_table = 0;
  std::vector<VariantStatus> variants;
};
nlohmann::json to_json(const ServiceStatus& status);

}  // namespace veer::protocol
