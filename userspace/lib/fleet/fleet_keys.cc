#include "fleet/fleet_keys.h"

#include <stdexcept>

namespace veer::fleet {

FleetKeys::FleetKeys(std::string prefix) : prefix_(std::move(prefix)) {
  if (prefix_.size() < 2 || prefix_.front() != '/' || prefix_.back() == '/')
    throw std::invalid_argument("fleet key prefix must start with '/' and not end with it: '" + prefix_ + "'");
}

std::string FleetKeys::table(std::string_view service) const {
  return services_prefix() + std::string(service) + "/table";
}

std::string FleetKeys::rollout(std::string_view service) const {
  return services_prefix() + std::string(service) + "/rollout";
}

std::optional<std::string> FleetKeys::table_service(std::string_view key) const {
  return service_of(key, "/table");
}

std::optional<std::string> FleetKeys::rollout_service(std::string_view key) const {
  return service_of(key, "/rollout");
}

std::optional<std::string> FleetKeys::service_of(std::string_view key, std::string_view tail) const {
  const std::string head = services_prefix();
  if (key.size() <= head.size() + tail.size() || key.substr(0, head.size()) != head ||
      key.substr(key.size() - tail.size()) != tail)
    return std::nullopt;
  const std::string_view name = key.substr(head.size(), key.size() - head.size() - tail.size());
  if (name.find('/') != std::string_view::npos) return std::nullopt;
  return std::string(name);
}

std::optional<std::string> FleetKeys::node_of(std::string_view key) const {
  const std::string head = nodes_prefix();
  if (key.size() <= head.size() || key.substr(0, head.size()) != head) return std::nullopt;
  const std::string_view name = key.substr(head.size());
  if (name.find('/') != std::string_view::npos) return std::nullopt;
  return std::string(name);
}

}  // namespace veer::fleet
