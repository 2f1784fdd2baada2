// SPDX-License-Identifier: MIT
// Second translation unit of the link test.
#include <pith/pith.hpp>

int pith_link_test_other_unit() {
  pith::aligned_buffer<float> buffer(16);
  return static_cast<int>(buffer.size());
}
