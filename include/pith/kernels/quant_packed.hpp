// SPDX-License-Identifier: MIT
// When prefill products of quantized weights take the packed 512-bit VNNI kernels of
// simd/quant_packed_avx512.hpp (W repacked on the fly, 32 rows at a time; that file gives the
// layout, the arithmetic and the measured speed-up): Q8_0, Q4_0, Q4_K, Q5_K and Q6_K weights, at
// least min_rows X rows, a unit compiled with AVX512F, AVX512BW, AVX512-VNNI and F16C. Types
// without a packed kernel (Q4_1, Q5_1, Q2_K, Q3_K, IQ4_NL, IQ4_XS) and products of fewer X rows
// keep quant_dot.hpp's loops.
#pragma once

#include <cstddef>

#include "pith/core/dtype.hpp"
#include "pith/core/tensor.hpp"
#include "pith/kernels/quant_dot.hpp"
#include "pith/simd/quant_packed_avx512.hpp"

namespace pith::kernels {
inline namespace PITH_ISA_NAMESPACE {
namespace quant_detail::packed {
/// Whether weights of type T have the packed prefill kernel in this unit.
template <dtype T>
inline constexpr bool has_packed_kernel =
#if defined(PITH_QUANT_PACKED)
    T == dtype::q8_0 || T == dtype::q4_0 || T == dtype::q4_k || T == dtype::q5_k || T == dtype::q6_k;
#else
    false;
#endif

/// X rows below this count go through quant_dot.hpp's row loop (packing would not pay).
inline constexpr std::size_t min_rows = 4;

#if defined(PITH_QUANT_PACKED)
/// Y[:, begin:end] (+)= X W[begin:end, :]^T through packed chunks (simd/quant_packed_avx512.hpp).
/// False (and nothing written) when W's row offsets within a step do not fit the gathers' 32-bit
/// indices.
template <dtype T>
inline bool matmul_range(const quantized_rows& xq, const tensor_view& w, std::size_t begin, std::size_t end,
                         float* y, std::size_t y_stride, bool accumulate) noexcept {
  return simd::quant_packed::matmul_range<T>(xq, w, begin, end, y, y_stride, accumulate);
}
#endif

}  // namespace quant_detail::packed
}  // namespace PITH_ISA_NAMESPACE
}  // namespace pith::kernels
