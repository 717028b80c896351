// Wall-clock time as veerd stamps events, reports and table versions.
#pragma once
#include <chrono>
#include <cstdint>

namespace veer {

inline int64_t unix_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace veer
