// How veerd writes a service's variants and weights in answers, logs and
// events (shared by the handlers of daemon.cc and the fleet's of daemon_fleet.cc).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "config/config.h"

namespace veer {

inline std::string variant_list(const ServiceConfig& svc) {
  std::string out;
  for (const auto& v : svc.variants) out += (out.empty() ? "" : ", ") + v.name;
  return out;
}

inline uint32_t sum_of(const std::vector<uint32_t>& w) {
  uint32_t s = 0;
  for (auto x : w) s += x;
  return s;
}

inline std::string weights_text(const ServiceConfig& svc, const std::vector<uint32_t>& w) {
  std::string out;
  for (size_t i = 0; i < svc.variants.size() && i < w.size(); ++i) {
    out += (out.empty() ? "" : " ") + svc.variants[i].name + "=" + format_weight(w[i]);
  }
  return out;
}

}  // namespace veer
