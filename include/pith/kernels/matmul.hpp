// SPDX-License-Identifier: MIT
// matmul_transposed: Y = X W^T for row-major X [rows, in] and W [out, in] (PyTorch's Linear layout),
// through Eigen, split over output features across pith's thread pool.
#pragma once

#include <cstddef>

#include "pith/core/parallel.hpp"
#include "pith/simd/simd.hpp"  // before Eigen: silences GCC 12's false warnings in <immintrin.h>

#include <Eigen/Core>

namespace pith::kernels {

namespace detail {
using row_major = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using const_matrix_map = Eigen::Map<const row_major, Eigen::Unaligned, Eigen::OuterStride<>>;
using matrix_map = Eigen::Map<row_major, Eigen::Unaligned, Eigen::OuterStride<>>;
}  // namespace detail

/// Y[:, begin:end] (+)= X W[begin:end, :]^T. Y's rows are y_stride apart. Does not allocate for
/// rows > 1 beyond Eigen's blocking buffers on the stack; does not throw.
inline void matmul_transposed_range(const float* x, std::size_t rows, std::size_t in, std::size_t x_stride,
                                    const float* w, std::size_t begin, std::size_t end, float* y,
                                    std::size_t y_stride, bool accumulate) noexcept {
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

/// Y = X W^T (or Y += X W^T), output features split across the pool in blocks of at least 64.
inline void matmul_transposed(const float* x, std::size_t rows, std::size_t in, std::size_t x_stride, const float* w,
                              std::size_t out, float* y, std::size_t y_stride, bool accumulate = false) {
  constexpr std::size_t grain = 64;
  parallel_for(
      (out + grain - 1) / grain,
      [&](std::size_t first, std::size_t last) {
        matmul_transposed_range(x, rows, in, x_stride, w, first * grain, std::min(out, last * grain), y, y_stride,
                                accumulate);
      },
      1);
}

}  // namespace pith::kernels
