// SPDX-License-Identifier: MIT
// pith's version, kept equal to project(VERSION) in CMakeLists.txt (a test checks it).
#pragma once

#define PITH_VERSION_MAJOR 0
#define PITH_VERSION_MINOR 1
#define PITH_VERSION_PATCH 0
#define PITH_VERSION_STRING "0.1.0"

namespace pith {
inline constexpr int version_major = PITH_VERSION_MAJOR;
inline constexpr int version_minor = PITH_VERSION_MINOR;
inline constexpr int version_patch = PITH_VERSION_PATCH;
inline constexpr const char* version_string = PITH_VERSION_STRING;
}  // namespace pith
