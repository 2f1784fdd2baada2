// SPDX-License-Identifier: MIT
// First of two translation units that include the umbrella header; the test is that they link.
#include <gtest/gtest.h>

#include <pith/pith.hpp>

int pith_link_test_other_unit();

TEST(Link, TwoTranslationUnitsShareInlineDefinitions) {
  pith::aligned_buffer<float> buffer(4);
  EXPECT_EQ(buffer.size(), 4u);
  EXPECT_EQ(pith_link_test_other_unit(), 16);
}
