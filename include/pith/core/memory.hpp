// SPDX-License-Identifier: MIT
// peak_resident_bytes and resident_bytes: physical memory of this process (Linux VmHWM, VmRSS), for reports.
#pragma once

#include <cstddef>
#include <fstream>
#include <string>

namespace pith {

namespace detail {
/// A "Field:   N kB" line of /proc/self/status in bytes; 0 where it is unavailable.
inline std::size_t process_status_bytes(const std::string& field) {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line))
    if (line.rfind(field, 0) == 0) return static_cast<std::size_t>(std::stoull(line.substr(field.size()))) * 1024;
  return 0;
}
}  // namespace detail

/// Peak resident set size of this process in bytes; 0 where /proc/self/status is unavailable.
inline std::size_t peak_resident_bytes() { return detail::process_status_bytes("VmHWM:"); }

/// Resident set size of this process now, in bytes; 0 where /proc/self/status is unavailable.
inline std::size_t resident_bytes() { return detail::process_status_bytes("VmRSS:"); }

}  // namespace pith
