// SPDX-License-Identifier: MIT
// The kernels of every compiled primitive set, instantiated once for the test files that run them.
#include "isa_list.hpp"

#include <type_traits>

namespace pith::testing {
namespace {

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
void load_s8_lanes(const std::int8_t* p, std::size_t count, float* lanes) {
  Ops::store(lanes, count == Ops::width ? Ops::load_s8(p) : Ops::load_s8_partial(p, count));
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
          &load_bf16_lanes<Ops>,
          &load_s8_lanes<Ops>};
}

}  // namespace

std::vector<compiled_isa> compiled_isas() {
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

}  // namespace pith::testing
