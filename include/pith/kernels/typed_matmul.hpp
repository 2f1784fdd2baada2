// SPDX-License-Identifier: MIT
// Y (+)= X W^T with W a tensor_view in its storage type (F32, F16, BF16): the matrix products of
// every layer, for weights used where they lie in a mapped checkpoint.
//
// Float32 weights go to matmul.hpp's kernels unchanged. Other types are converted to float a
// block of rows at a time into this thread's scratch and multiplied there: the GEMM reuses each
// converted block for every row of X.
#pragma once

#include <algorithm>
#include <cstddef>

#include "pith/core/aligned_buffer.hpp"
#include "pith/core/error.hpp"
#include "pith/core/parallel.hpp"
#include "pith/core/tensor.hpp"
#include "pith/kernels/matmul.hpp"

namespace pith::kernels {

namespace detail {
/// Rows of a non-float32 W converted per step (and the floats of scratch they take at most).
inline constexpr std::size_t typed_rows_per_step = 64;

inline float* typed_thread_scratch(std::size_t floats) {
  thread_local aligned_buffer<float> scratch;
  if (scratch.size() < floats) scratch.resize(floats);
  return scratch.data();
}
}  // namespace detail

inline namespace PITH_ISA_NAMESPACE {

/// Y[:, begin:end] (+)= X W[begin:end, :]^T on the calling thread, for X [rows, w.cols()].
inline void matmul_transposed_range(const float* x, std::size_t rows, std::size_t x_stride, const tensor_view& w,
                                    std::size_t begin, std::size_t end, float* y, std::size_t y_stride,
                                    bool accumulate) {
  const std::size_t in = w.cols();
  if (const float* f = w.f32()) {
    matmul_transposed_range(x, rows, in, x_stride, f, begin, end, y, y_stride, accumulate);
    return;
  }
  float* block = detail::typed_thread_scratch(detail::typed_rows_per_step * in);
  for (std::size_t o0 = begin; o0 < end; o0 += detail::typed_rows_per_step) {
    const std::size_t count = std::min(detail::typed_rows_per_step, end - o0);
    for (std::size_t r = 0; r < count; ++r) row_to_float(w, o0 + r, block + r * in);
    // The converted rows are W[o0, o0 + count): features [0, count) of Y's columns from o0.
    matmul_transposed_range(x, rows, in, x_stride, block, 0, count, y + o0, y_stride, accumulate);
  }
}

/// Y = X W^T (or Y += X W^T) for X [rows, w.cols()] (rows x_stride apart) and Y [rows, w.rows()]
/// (rows y_stride apart), output features split across the pool as matmul.hpp's float version.
/// Y must not alias X or W.
inline void matmul_transposed(const float* x, std::size_t rows, std::size_t x_stride, const tensor_view& w, float* y,
                              std::size_t y_stride, bool accumulate = false) {
  const std::size_t in = w.cols(), out = w.rows();
  constexpr std::size_t grain = 64;
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
