// SPDX-License-Identifier: MIT
// Under -fno-exceptions PITH_THROW prints its message and aborts instead of throwing.
#include <gtest/gtest.h>

#include <pith/core/error.hpp>

#if defined(__cpp_exceptions) || defined(__EXCEPTIONS)
#error "this test must be compiled with -fno-exceptions"
#endif

namespace {

void raise_config_error() { PITH_THROW(config_error, "config.json: key 'rope_theta' must be positive"); }

TEST(ErrorNoExceptionsDeathTest, ThrowPrintsAndAborts) {
  EXPECT_DEATH(raise_config_error(), "config_error.*key 'rope_theta' must be positive");
}

}  // namespace
