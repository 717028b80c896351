// systemd service notifications (sd_notify) for Type=notify: READY/STATUS/
// RELOADING/STOPPING and the watchdog keep-alive. Every call is a no-op when
// veerd does not run under a service manager ($NOTIFY_SOCKET unset), so the
// same binary runs by hand, in tests and under systemd.
#pragma once
#include <chrono>
#include <optional>
#include <string>

namespace veer::service {

// READY=1 with a STATUS= line: programs attached, control socket listening.
void ready(const std::string& status);
// STATUS= only.
void status(const std::string& status);
// RELOADING=1 (with MONOTONIC_USEC, which systemd >= 253 wants) before a
// reload; ready() again after it, whatever its outcome.
void reloading();
// STOPPING=1 when veerd starts to exit.
void stopping(const std::string& status);
// WATCHDOG=1.
void watchdog();

// The keep-alive interval: half of WatchdogSec= ($WATCHDOG_USEC, for this
// pid), or nullopt when the service has no watchdog.
std::optional<std::chrono::microseconds> watchdog_interval();

}  // namespace veer::service
