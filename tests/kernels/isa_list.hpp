// SPDX-License-Identifier: MIT
// The primitive sets compiled into a test binary, for running one test on every ISA the CPU has.
#pragma once

#include <string>
#include <vector>

#include <pith/kernels/gemm.hpp>
#include <pith/kernels/softmax_importance.hpp>

namespace pith::testing {

struct compiled_isa {
  std::string name;
  std::size_t width;
  bool supported;  // the running CPU can execute it
  void (*softmax_importance)(const kernels::softmax_importance_args&, float*);
  void (*gemm_transposed)(const float*, std::size_t, std::size_t, std::size_t, const float*, std::size_t, std::size_t,
                          float*, std::size_t, bool, float*);
};

template <class Ops>
compiled_isa make_isa() {
  return {Ops::name, Ops::width, simd::cpu_supports<Ops>(), &kernels::softmax_importance_with<Ops>,
          &kernels::gemm_transposed_with<Ops>};
}

inline std::vector<compiled_isa> compiled_isas() {
  std::vector<compiled_isa> isas{make_isa<simd::scalar::ops>()};
#if defined(PITH_SIMD_HAS_AVX2) && !defined(PITH_DISABLE_SIMD)
  isas.push_back(make_isa<simd::avx2::ops>());
#endif
#if defined(PITH_SIMD_HAS_AVX512) && !defined(PITH_DISABLE_SIMD)
  isas.push_back(make_isa<simd::avx512::ops>());
#endif
#if defined(PITH_SIMD_HAS_NEON) && !defined(PITH_DISABLE_SIMD)
  isas.push_back(make_isa<simd::neon::ops>());
#endif
  return isas;
}

/// Widest vector of the compiled ISAs: the tail sweeps cover 0 .. 3 * widest + 1.
inline std::size_t widest_vector() {
  std::size_t width = 1;
  for (const auto& isa : compiled_isas()) width = std::max(width, isa.width);
  return width;
}

}  // namespace pith::testing
