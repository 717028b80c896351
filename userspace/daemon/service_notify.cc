// sd_notify wrappers; see service_notify.h.
#include "service_notify.h"

#include <spdlog/spdlog.h>
#include <systemd/sd-daemon.h>
#include <time.h>

#include <cstring>

namespace veer::service {

namespace {

void notify(const std::string& text) {
  // unset_environment=0: a child veerd (there is none today) could notify too.
  const int rc = sd_notify(0, text.c_str());
  if (rc < 0) spdlog::warn("sd_notify({}): {}", text, std::strerror(-rc));
}

// STATUS= ends at the newline: keep it on one line.
std::string one_line(std::string s) {
  for (char& c : s)
    if (c == '\n') c = ' ';
  return s;
}

}  // namespace

void ready(const std::string& status) { notify("READY=1\nSTATUS=" + one_line(status)); }

void status(const std::string& status) { notify("STATUS=" + one_line(status)); }

void reloading() {
  timespec now{};
  clock_gettime(CLOCK_MONOTONIC, &now);
  const unsigned long long usec =
      static_cast<unsigned long long>(now.tv_sec) * 1000000ULL + static_cast<unsigned long long>(now.tv_nsec) / 1000ULL;
  notify("RELOADING=1\nSTATUS=reloading the config\nMONOTONIC_USEC=" + std::to_string(usec));
}

void stopping(const std::string& status) { notify("STOPPING=1\nSTATUS=" + one_line(status)); }

void watchdog() { notify("WATCHDOG=1"); }

std::optional<std::chrono::microseconds> watchdog_interval() {
  uint64_t usec = 0;
  // > 0: enabled for this pid (WATCHDOG_PID, if set, names us).
  if (sd_watchdog_enabled(0, &usec) <= 0 || usec == 0) return std::nullopt;
  return std::chrono::microseconds(usec / 2);
}

}  // namespace veer::service
