// SPDX-License-Identifier: MIT
// matmul_transposed: Y = X W^T for row-major X [rows, in] and W [out, in] (PyTorch's Linear layout),
// split over output features across pith's thread pool: pith's GEMM for chunks of tokens, Eigen's
// matrix-vector product for a few rows (decode).
#pragma once

#include <algorithm>
#include <cstddef>

#include "pith/core/aligned_buffer.hpp"
#include "pith/core/parallel.hpp"
#include "pith/kernels/gemm.hpp"
#include "pith/kernels/linkage.hpp"
#include "pith/simd/simd.hpp"  // before Eigen: silences GCC 12's false warnings in <immintrin.h>

#include <Eigen/Core>

namespace pith::kernels {

/// From this many rows matmul_transposed uses gemm_transposed. One row (decode) stays with Eigen's
/// matrix-vector product, which streams W at the read bandwidth; packing W costs the GEMM more
/// than the product itself there. From 2 rows the GEMM is ahead with W in cache and out of it
/// (pith_bench_kernels, BM_matmul_eigen and BM_matmul_gemm with rows 1 to 64).
inline constexpr std::size_t gemm_min_rows = 2;

namespace detail {
using row_major = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using const_matrix_map = Eigen::Map<const row_major, Eigen::Unaligned, Eigen::OuterStride<>>;
using matrix_map = Eigen::Map<row_major, Eigen::Unaligned, Eigen::OuterStride<>>;

/// This thread's gemm_transposed scratch: allocated on the thread's first call (the only
/// allocation, which may throw std::bad_alloc), reused by every later call, freed at thread exit.
inline float* gemm_thread_scratch() {
  thread_local aligned_buffer<float> scratch(gemm_transposed_scratch_size());
  return scratch.data();
}
}  // namespace detail

inline namespace PITH_ISA_NAMESPACE {

/// Y[:, begin:end] (+)= X W[begin:end, :]^T through Eigen (a matrix-vector product for one row).
/// Does not allocate beyond Eigen's blocking buffers on the stack; does not throw.
PITH_KERNEL_ENTRY void matmul_transposed_eigen(const float* x, std::size_t rows, std::size_t in,
                                               std::size_t x_stride, const float* w, std::size_t begin,
                                               std::size_t end, float* y, std::size_t y_stride,
                                               bool accumulate) noexcept
#if !PITH_KERNEL_DEFINITIONS
    ;
#else
{
  const auto r = static_cast<Eigen::Index>(rows);
  const auto i = static_cast<Eigen::Index>(in);
  const auto o = static_cast<Eigen::Index>(end - begin);
  detail::const_matrix_map xm(x, r, i, Eigen::OuterStride<>(static_cast<Eigen::Index>(x_stride)));
  detail::const_matrix_map wm(w + begin * in, o, i, Eigen::OuterStride<>(i));
  detail::matrix_map ym(y + begin, r, o, Eigen::OuterStride<>(static_cast<Eigen::Index>(y_stride)));
  if (rows == 1) {
    // One token: a matrix-vector product over W's rows, the memory-bound decode case.
    if (accumulate)
      ym.row(0).noalias() += (wm * xm.row(0).transpose()).transpose();
    else
      ym.row(0).noalias() = (wm * xm.row(0).transpose()).transpose();
  } else if (accumulate) {
    ym.noalias() += xm * wm.transpose();
  } else {
    ym.noalias() = xm * wm.transpose();
  }
}
#endif

/// Y[:, begin:end] (+)= X W[begin:end, :]^T on the calling thread: gemm_transposed (with this
/// thread's scratch, see detail::gemm_thread_scratch) from gemm_min_rows rows, Eigen below.
inline void matmul_transposed_range(const float* x, std::size_t rows, std::size_t in, std::size_t x_stride,
                                    const float* w, std::size_t begin, std::size_t end, float* y,
                                    std::size_t y_stride, bool accumulate) {
  if (rows >= gemm_min_rows)
    gemm_transposed(x, rows, in, x_stride, w, begin, end, y, y_stride, accumulate, detail::gemm_thread_scratch());
  else
    matmul_transposed_eigen(x, rows, in, x_stride, w, begin, end, y, y_stride, accumulate);
}

/// Y = X W^T (or Y += X W^T), output features split across the pool in blocks of at least 64, each
/// thread's share at least min_work_per_thread multiply-adds (a small product runs on the caller).
/// Y must not alias X or W.
inline void matmul_transposed(const float* x, std::size_t rows, std::size_t in, std::size_t x_stride, const float* w,
                              std::size_t out, float* y, std::size_t y_stride, bool accumulate = false) {
  constexpr std::size_t grain = 64;  // a multiple of every ISA's GEMM panel width
  parallel_for(
      (out + grain - 1) / grain,
      [&](std::size_t first, std::size_t last) {
        matmul_transposed_range(x, rows, in, x_stride, w, first * grain, std::min(out, last * grain), y, y_stride,
                                accumulate);
      },
      grain_for_work(rows * in * grain));
}

}  // namespace PITH_ISA_NAMESPACE
}  // namespace pith::kernels
