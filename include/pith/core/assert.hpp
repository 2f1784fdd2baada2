// SPDX-License-Identifier: MIT
// PITH_ASSERT: hot-path precondition checks, active in debug builds or with PITH_ENABLE_ASSERTS.
#pragma once

#include <cstdio>
#include <cstdlib>

namespace pith::detail {
[[noreturn]] inline void assert_failed(const char* expression, const char* message, const char* file,
                                       int line) {
  std::fprintf(stderr, "pith: assertion failed at %s:%d: %s (%s)\n", file, line, expression, message);
  std::fflush(stderr);
  std::abort();
}
}  // namespace pith::detail

#if !defined(NDEBUG) || defined(PITH_ENABLE_ASSERTS)
#define PITH_ASSERTS_ENABLED 1
#define PITH_ASSERT(condition, message)                                                  \
  do {                                                                                   \
    if (!(condition)) ::pith::detail::assert_failed(#condition, message, __FILE__, __LINE__); \
  } while (false)
#else
#define PITH_ASSERTS_ENABLED 0
#define PITH_ASSERT(condition, message) \
  do {                                  \
  } while (false)
#endif
