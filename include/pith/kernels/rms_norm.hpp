// SPDX-License-Identifier: MIT
// rms_norm: y = x / sqrt(mean(x^2) + eps) * gain, row by row, over the caller's rows (a public
// building block: no model, file or JSON header; docs/embedding.md). A plain loop: the compiler
// vectorises the scaling; the sum of squares stays in index order, so there is no _with<Ops> form.
#pragma once

#include <cmath>
#include <cstddef>

namespace pith::kernels {

/// rows x width: out[r] = x[r] * gain / sqrt(mean(x[r]^2) + eps). The sum of squares is taken in
/// float, in index order, as llama2.c and PyTorch's float32 reference do. Rows of x are x_stride
/// floats apart (>= width), rows of out out_stride apart; gain has `width` floats. `out` may alias
/// `x` (same stride). Does not allocate or throw.
inline void rms_norm(const float* x, std::size_t x_stride, const float* gain, std::size_t rows, std::size_t width,
                     float eps, float* out, std::size_t out_stride) noexcept {
  for (std::size_t r = 0; r < rows; ++r) {
    const float* in = x + r * x_stride;
    float* o = out + r * out_stride;
    float squares = 0.0f;
    for (std::size_t i = 0; i < width; ++i) squares += in[i] * in[i];
    const float inv = 1.0f / std::sqrt(squares / static_cast<float>(width) + eps);
    for (std::size_t i = 0; i < width; ++i) o[i] = gain[i] * (inv * in[i]);
  }
}

}  // namespace pith::kernels
