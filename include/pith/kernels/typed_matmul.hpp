// SPDX-License-Identifier: MIT
// Y (+)= X W^T with W a tensor_view in its storage type (F32, F16, BF16): the matrix products of
// every layer, for weights used where they lie in a mapped checkpoint.
//
// Packed, 4-byte aligned float32 weights go to matmul.hpp's kernels unchanged (same results bit
// for bit). Other weights are read in their storage type and converted in registers:
//   - below typed_gemm_min_rows rows of X (decode, short chunks), matvec.hpp's matrix-vector
//     kernel streams W once per row of X; BF16 on AVX512_BF16 targets can take matvec_bf16_dot instead (vdpbf16ps, x split
//     in two bfloat16 parts; see default_bf16_decode for why it is not the default);
//   - from typed_gemm_min_rows rows (prefill), gemm.hpp's GEMM packs W's blocks converted to float, so
//     its register-tiled product runs unchanged and each block is converted once for all rows.
// Error bounds: those of gemm.hpp and matvec.hpp over the converted (exact) weights.
// Block-quantized weights (Q4_0 ... IQ4_XS) take quant_matmul.hpp's integer dot products with X
// quantized to 8 bits per row (its error is that of the activation quantization, note §3.3).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "pith/core/aligned_buffer.hpp"
#include "pith/core/error.hpp"
#include "pith/core/parallel.hpp"
#include "pith/core/tensor.hpp"
#include "pith/kernels/gemm.hpp"
#include "pith/kernels/linkage.hpp"
#include "pith/kernels/matmul.hpp"
#include "pith/kernels/matvec.hpp"
#include "pith/kernels/quant_matmul.hpp"
#include "pith/kernels/typed_rows.hpp"

namespace pith::kernels {

/// From this many rows of X, F16 and BF16 weights (and F32 ones not packed and 4-byte aligned) go
/// through the GEMM; below, the matrix-vector kernel runs once per row. The GEMM's packing reads
/// W in blocks of rows, slower than the kernel's single stream, and converts it in the same pass:
/// with F16 [1376 x 512] and [32000 x 512] on one Zen 4 core, rows one at a time take 0.53-0.46
/// of the GEMM's time at 2 rows, 0.77-0.69 at 4, 1.1-1.4 at 8 (matvec_transposed_with once per
/// row against gemm_transposed_rows_with). The float32 path keeps matmul.hpp's gemm_min_rows.
inline constexpr std::size_t typed_gemm_min_rows = 6;

/// The matrix-vector kernel for BF16 weights: shift each bfloat16 into a float and FMA (every
/// ISA), or vdpbf16ps on x split into two bfloat16 parts (AVX512_BF16 only; elsewhere the same as
/// shift_fma).
enum class bf16_decode { shift_fma, dot_pairs };

/// The BF16 decode kernel matmul_transposed uses with the primitive set Ops: shift_fma on every
/// ISA. One core of an AMD EPYC (Zen 4), one row of X, 512 inputs, best of repeated runs (and
/// pith_bench_kernels, BM_matvec_bf16 against BM_matvec_bf16_dot):
///   W [1376 x 512] in L2:          shift_fma 52-57 GB/s of W, dot_pairs 59-68 GB/s (1.1-1.2x);
///   W [32000 x 512], [64000 x 512]: shift_fma 22-25 GB/s,     dot_pairs 15-20 GB/s (0.65-0.85x).
/// Decoding streams weights far larger than the caches, where shift_fma is ahead; dot_pairs is
/// also less accurate (the split of x, see matvec.hpp).
template <class Ops>
inline constexpr bf16_decode default_bf16_decode = bf16_decode::shift_fma;

namespace detail {
/// This thread's bfloat16 scratch for matvec_bf16_dot's split of x (grown on demand: allocates,
/// and may throw std::bad_alloc, only when `in` exceeds every earlier call's).
inline std::uint16_t* bf16_split_thread_scratch(std::size_t elements) {
  thread_local aligned_buffer<std::uint16_t> scratch;
  if (scratch.size() < elements) scratch.resize(elements);
  return scratch.data();
}

/// This thread's buffer of quantized activations (grown on demand, never shrunk).
inline aligned_buffer<std::byte>& quant_thread_scratch() {
  thread_local aligned_buffer<std::byte> scratch;
  return scratch;
}
}  // namespace detail

/// Y[:, begin:end] (+)= X W[begin:end, :]^T on the calling thread with the primitive set Ops, W read
/// in its storage type at any stride (F32 rows at any address, F16 and BF16 rows at even ones):
/// the matrix-vector kernel for each row of X below typed_gemm_min_rows, the GEMM from there (with
/// this thread's scratch). Allocates only this thread's scratch, on its first call.
template <class Ops>
inline void matmul_transposed_range_with(const float* x, std::size_t rows, std::size_t x_stride, const tensor_view& w,
                                         std::size_t begin, std::size_t end, float* y, std::size_t y_stride,
                                         bool accumulate, bf16_decode bf16 = default_bf16_decode<Ops>) {
  const std::size_t in = w.cols();
  if (dtype_is_quantized(w.type())) {
    // Quantized W: X quantized to W's activation format into this thread's scratch, then integer
    // dot products (quant_matmul.hpp). matmul_transposed quantizes once for all threads instead.
    const quantized_rows xq = quantize_activations(x, rows, x_stride, in, w.type(), detail::quant_thread_scratch());
    quant_matmul_range_with<Ops>(xq, w, begin, end, y, y_stride, accumulate);
    return;
  }
  if (rows >= typed_gemm_min_rows) {
    float* scratch = detail::gemm_thread_scratch();
    visit_typed_rows<Ops>(w, [&](const auto& source) {
      gemm_transposed_rows_with<Ops>(x, rows, in, x_stride, source, begin, end, y, y_stride, accumulate, scratch);
    });
    return;
  }
#if defined(PITH_SIMD_HAS_AVX512_BF16_DOT)
  if constexpr (std::is_same_v<Ops, simd::avx512::ops>) {
    if (w.type() == dtype::bf16 && bf16 == bf16_decode::dot_pairs) {
      std::uint16_t* split = detail::bf16_split_thread_scratch(matvec_bf16_dot_scratch_size(in));
      for (std::size_t i = 0; i < rows; ++i)
        matvec_bf16_dot(x + i * x_stride, in, w.data(), w.row_bytes(), begin, end, y + i * y_stride, accumulate, split);
      return;
    }
  }
#endif
  (void)bf16;
  visit_typed_rows<Ops>(w, [&](const auto& source) {
    for (std::size_t i = 0; i < rows; ++i)
      matvec_transposed_with<Ops>(x + i * x_stride, in, source, begin, end, y + i * y_stride, accumulate);
  });
}

inline namespace PITH_ISA_NAMESPACE {

/// Y[:, begin:end] (+)= X W[begin:end, :]^T on the calling thread, for X [rows, w.cols()].
PITH_KERNEL_ENTRY void matmul_transposed_range(const float* x, std::size_t rows, std::size_t x_stride,
                                               const tensor_view& w, std::size_t begin, std::size_t end, float* y,
                                               std::size_t y_stride, bool accumulate)
#if PITH_KERNEL_DEFINITIONS
{
  if (const float* f = w.f32()) {
    matmul_transposed_range(x, rows, w.cols(), x_stride, f, begin, end, y, y_stride, accumulate);
    return;
  }
  matmul_transposed_range_with<simd::native::ops>(x, rows, x_stride, w, begin, end, y, y_stride, accumulate);
}
#else
    ;
#endif

/// Y = X W^T (or Y += X W^T) for X [rows, w.cols()] (rows x_stride apart) and Y [rows, w.rows()]
/// (rows y_stride apart), output features split across the pool as matmul.hpp's float version.
/// Y must not alias X or W.
inline void matmul_transposed(const float* x, std::size_t rows, std::size_t x_stride, const tensor_view& w, float* y,
                              std::size_t y_stride, bool accumulate = false) {
  const std::size_t in = w.cols(), out = w.rows();
  constexpr std::size_t grain = 64;
  if (dtype_is_quantized(w.type())) {
    // X quantized once (its rows spread over the pool) into the calling thread's scratch; the
    // pool's threads then share it.
    const quantized_rows xq =
        quantize_activations(x, rows, x_stride, in, w.type(), detail::quant_thread_scratch(), true);
    parallel_for(
        (out + grain - 1) / grain,
        [&](std::size_t first, std::size_t last) {
          quant_matmul_range(xq, w, first * grain, std::min(out, last * grain), y, y_stride, accumulate);
        },
        grain_for_work(rows * in * grain));
    return;
  }
  parallel_for(
      (out + grain - 1) / grain,
      [&](std::size_t first, std::size_t last) {
        matmul_transposed_range(x, rows, x_stride, w, first * grain, std::min(out, last * grain), y, y_stride,
                                accumulate);
      },
      grain_for_work(rows * in * grain));
}

}  // namespace PITH_ISA_NAMESPACE

/// Row r of an embedding table in any storage type, converted to float: out[0, table.cols()).
inline void embedding_row(const tensor_view& table, std::size_t r, float* out) noexcept { row_to_float(table, r, out); }

}  // namespace pith::kernels
