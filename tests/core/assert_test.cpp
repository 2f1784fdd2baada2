// SPDX-License-Identifier: MIT
// PITH_ASSERT aborts with the expression and the message when its condition is false.
#include <gtest/gtest.h>

#include <pith/core/assert.hpp>

namespace {

int checked_divide(int a, int b) {
  PITH_ASSERT(b != 0, "divisor must be non-zero");
  return a / b;
}

TEST(AssertDeathTest, FailingConditionAborts) {
  static_assert(PITH_ASSERTS_ENABLED == 1);
  EXPECT_DEATH(checked_divide(1, 0), "b != 0.*divisor must be non-zero");
}

TEST(Assert, PassingConditionContinues) { EXPECT_EQ(checked_divide(6, 3), 2); }

}  // namespace
