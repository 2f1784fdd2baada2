// SPDX-License-Identifier: MIT
// GoogleTest type list of the primitive sets compiled into this binary.
#pragma once

#include <gtest/gtest.h>

#include <pith/simd/simd.hpp>

namespace pith::testing {

using compiled_ops = ::testing::Types<simd::scalar::ops
#if defined(PITH_SIMD_HAS_AVX2) && !defined(PITH_DISABLE_SIMD)
                                      , simd::avx2::ops
#endif
#if defined(PITH_SIMD_HAS_AVX512) && !defined(PITH_DISABLE_SIMD)
                                      , simd::avx512::ops
#endif
#if defined(PITH_SIMD_HAS_NEON) && !defined(PITH_DISABLE_SIMD)
                                      , simd::neon::ops
#endif
                                      >;

struct ops_name {
  template <class Ops>
  static std::string GetName(int) {
    return Ops::name;
  }
};

#define PITH_SKIP_IF_CPU_LACKS(Ops)                                                   \
  if (!::pith::simd::cpu_supports<Ops>()) GTEST_SKIP() << "this CPU cannot run " << Ops::name

}  // namespace pith::testing
