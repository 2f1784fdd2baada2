// SPDX-License-Identifier: MIT
// peak_resident_bytes: the most physical memory this process has held (Linux VmHWM), for reports.
#pragma once

#include <cstddef>
#include <fstream>
#include <string>

namespace pith {

/// Peak resident set size of this process in bytes; 0 where /proc/self/status is unavailable.
inline std::size_t peak_resident_bytes() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line))
    if (line.rfind("VmHWM:", 0) == 0) return static_cast<std::size_t>(std::stoull(line.substr(6))) * 1024;
  return 0;
}

}  // namespace pith
