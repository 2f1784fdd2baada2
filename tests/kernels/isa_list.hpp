// SPDX-License-Identifier: MIT
// The primitive sets compiled into a test binary, for running one test on every ISA the CPU has.
#pragma once

#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

#include <pith/kernels/gemm.hpp>
#include <pith/kernels/softmax_importance.hpp>
#include <pith/kernels/typed_matmul.hpp>

namespace pith::testing {

struct compiled_isa {
  std::string name;
  std::size_t width;
  bool supported;  // the running CPU can execute it
  void (*softmax_importance)(const kernels::softmax_importance_args&, float*);
  void (*gemm_transposed)(const float*, std::size_t, std::size_t, std::size_t, const float*, std::size_t, std::size_t,
                          float*, std::size_t, bool, float*);
  void (*typed_matmul)(const float*, std::size_t, std::size_t, const tensor_view&, std::size_t, std::size_t, float*,
                       std::size_t, bool, kernels::bf16_decode);
  bool bf16_dot;  // bf16_decode::dot_pairs takes vdpbf16ps (AVX512_BF16 compiled in)
  void (*load_f16)(const std::uint16_t*, std::size_t count, float* lanes);   // count <= width: partial below
  void (*load_bf16)(const std::uint16_t*, std::size_t count, float* lanes);
};

/// Ops::load_f16 (count == width) or load_f16_partial, stored to `lanes` (width floats).
template <class Ops>
void load_f16_lanes(const std::uint16_t* p, std::size_t count, float* lanes) {
  Ops::store(lanes, count == Ops::width ? Ops::load_f16(p) : Ops::load_f16_partial(p, count));
}
template <class Ops>
void load_bf16_lanes(const std::uint16_t* p, std::size_t count, float* lanes) {
  Ops::store(lanes, count == Ops::width ? Ops::load_bf16(p) : Ops::load_bf16_partial(p, count));
}

template <class Ops>
compiled_isa make_isa() {
  bool bf16_dot = false;
#if defined(PITH_SIMD_HAS_AVX512_BF16_DOT)
  bf16_dot = std::is_same_v<Ops, simd::avx512::ops>;
#endif
  return {Ops::name,
          Ops::width,
          simd::cpu_supports<Ops>() && (!bf16_dot || simd::cpu_supports_bf16_dot()),
          &kernels::softmax_importance_with<Ops>,
          &kernels::gemm_transposed_with<Ops>,
          &kernels::matmul_transposed_range_with<Ops>,
          bf16_dot,
          &load_f16_lanes<Ops>,
          &load_bf16_lanes<Ops>};
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
