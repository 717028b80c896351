// Human-readable output of veerctl: answers (JSON results) -> text tables.
#pragma once
#include <nlohmann/json.hpp>
#include <string>

namespace veer::ctl {

std::string format_status(const nlohmann::json& result);   // status
std::string format_service(const nlohmann::json& service);  // weights/switch/drain and per service of status
std::string format_which(const nlohmann::json& result);
std::string format_reload(const nlohmann::json& result);
std::string format_ping(const nlohmann::json& result);
std::string format_nodes(const nlohmann::json& result);
std::string format_shutdown(const nlohmann::json& result);
std::string format_rollout(const nlohmann::json& rollout);  // a service's "rollout" object
std::string format_ab(const nlohmann::json& report);
std::string format_event(const nlohmann::json& event);  // one line

}  // namespace veer::ctl
