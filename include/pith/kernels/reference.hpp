// SPDX-License-Identifier: MIT
// Plain double-precision references of pith's kernels, used by tests and benchmarks as ground truth.
#pragma once

#include <cmath>
#include <cstddef>
#include <limits>
#include <vector>

#include "pith/kernels/softmax_importance.hpp"

namespace pith::kernels::reference {

/// The contract of kernels::gemm_transposed over all `out` output features: Y (+)= X W^T for X
/// [rows, in] (rows x_stride apart), W [out, in] (rows `in` apart), Y rows y_stride apart, each
/// element summed in double and rounded once. When `magnitude` is not null it receives, at the
/// same positions as Y, sum_k |X[i, k] W[o, k]| (+ |Y[i, o]| when accumulating): the scale of the
/// rounding error of a float evaluation of the same sum.
inline void matmul_transposed(const float* x, std::size_t rows, std::size_t in, std::size_t x_stride, const float* w,
                              std::size_t out, float* y, std::size_t y_stride, bool accumulate,
                              double* magnitude = nullptr) {
  for (std::size_t i = 0; i < rows; ++i) {
    for (std::size_t o = 0; o < out; ++o) {
      const double base = accumulate ? static_cast<double>(y[i * y_stride + o]) : 0.0;
      double sum = base, scale = std::abs(base);
      for (std::size_t k = 0; k < in; ++k) {
        const double product = static_cast<double>(x[i * x_stride + k]) * static_cast<double>(w[o * in + k]);
        sum += product;
        scale += std::abs(product);
      }
      y[i * y_stride + o] = static_cast<float>(sum);
      if (magnitude != nullptr) magnitude[i * y_stride + o] = scale;
    }
  }
}

/// The contract of kernels::softmax_importance (same arguments, same outputs), computed one query
/// at a time in double precision with std::exp. A NaN among a query's visible scores makes its
/// output row, row_max, row_sum and importance contributions NaN.
inline void softmax_importance(const softmax_importance_args& a) {
  const std::size_t end = a.importance_end == all_keys ? a.n : a.importance_end;
  const std::size_t width = end - a.importance_begin;
  std::vector<double> importance(width, 0.0), squares(width, 0.0);
  std::vector<double> scores(a.n), output(a.d);
  const double inf = std::numeric_limits<double>::infinity();
  const double nan = std::numeric_limits<double>::quiet_NaN();
  for (std::size_t i = 0; i < a.m; ++i) {
    std::size_t visible = 0;
    bool has_nan = false;
    double row_max = -inf;
    for (std::size_t j = 0; j < a.n; ++j) {
      const bool hidden = (a.key_mask != nullptr && a.key_mask[j] == 0) || (a.causal && j > a.causal_offset + i);
      if (hidden) {
        scores[j] = -inf;
        continue;
      }
      double dot = 0.0;
      for (std::size_t c = 0; c < a.d; ++c)
        dot += static_cast<double>(a.queries[i * a.query_stride + c]) * static_cast<double>(a.keys[j * a.key_stride + c]);
      scores[j] = dot * static_cast<double>(a.scale);
      ++visible;
      has_nan = has_nan || std::isnan(scores[j]);
      if (scores[j] > row_max) row_max = scores[j];
    }
    double row_sum = 0.0;
    if (has_nan) {
      for (double& s : scores) s = std::isinf(s) && s < 0 ? 0.0 : nan;
      row_sum = nan;
      row_max = nan;
    } else if (visible == 0 || row_max == -inf) {
      for (double& s : scores) s = 0.0;
    } else if (row_max == inf) {
      for (double& s : scores) s = s == inf ? 1.0 : 0.0;
      for (double s : scores) row_sum += s;
    } else {
      for (double& s : scores) s = std::exp(s - row_max);
      for (double s : scores) row_sum += s;
    }
    if (a.row_max != nullptr) a.row_max[i] = static_cast<float>(visible == 0 ? -inf : row_max);
    if (a.row_sum != nullptr) a.row_sum[i] = static_cast<float>(row_sum);
    // scores now holds unnormalised probabilities (0 for hidden keys).
    const double inv_sum = row_sum > 0.0 ? 1.0 / row_sum : (std::isnan(row_sum) ? nan : 0.0);
    if (a.output != nullptr) {
      for (double& o : output) o = 0.0;
      for (std::size_t j = 0; j < a.n; ++j) {
        if (scores[j] == 0.0) continue;  // hidden keys may hold anything
        for (std::size_t c = 0; c < a.d; ++c) output[c] += scores[j] * static_cast<double>(a.values[j * a.value_stride + c]);
      }
      for (std::size_t c = 0; c < a.d; ++c)
        a.output[i * a.output_stride + c] = static_cast<float>(visible == 0 ? 0.0 : output[c] * inv_sum);
    }
    for (std::size_t j = a.importance_begin; j < end; ++j) {
      const double p = visible == 0 ? 0.0 : scores[j] * inv_sum;
      const double weight = a.importance_weights != nullptr ? static_cast<double>(a.importance_weights[i]) : 1.0;
      importance[j - a.importance_begin] += weight * p / static_cast<double>(a.m);
      squares[j - a.importance_begin] += p * p / static_cast<double>(a.m);
    }
  }
  if (a.importance != nullptr) {
    for (std::size_t j = 0; j < width; ++j) {
      const double base = a.accumulate ? static_cast<double>(a.importance[j]) : 0.0;
      a.importance[j] = static_cast<float>(base + importance[j]);
    }
  }
  if (a.importance_squares != nullptr) {
    for (std::size_t j = 0; j < width; ++j) {
      const double base = a.accumulate ? static_cast<double>(a.importance_squares[j]) : 0.0;
      a.importance_squares[j] = static_cast<float>(base + squares[j]);
    }
  }
}

}  // namespace pith::kernels::reference
