// SPDX-License-Identifier: MIT
// Two units built for different ISAs and linked into one program each run their own ISA's kernels:
// the non-template entry points live in an inline namespace named after the ISA (One Definition Rule).
#include <gtest/gtest.h>

#include <string>

#define ISA_UNIT isa_unit_a
#include "isa_link_unit.inc"

namespace {

TEST(isa_namespace_6_2, each_unit_calls_the_kernels_of_its_own_isa) {
  const isa_unit a = isa_unit_a(), b = isa_unit_b();
  // At -O0 these calls go through the linker's symbols: before the inline namespace, both units
  // reached whichever copy of isa_name the linker kept.
  EXPECT_STREQ(a.reported, a.compiled);
  EXPECT_STREQ(b.reported, b.compiled);
  // Same numbers from either ISA (small integers: every sum is exact).
  EXPECT_EQ(a.product, b.product);
  if (std::string(a.compiled) == b.compiled) GTEST_SKIP() << "both units were compiled for " << a.compiled;
  EXPECT_NE(a.softmax_importance, b.softmax_importance);
  EXPECT_NE(a.gemm_transposed, b.gemm_transposed);
  EXPECT_NE(a.matmul_transposed, b.matmul_transposed);
  EXPECT_STRNE(a.session_type, b.session_type);
  EXPECT_STRNE(a.reader_type, b.reader_type);
}

}  // namespace
