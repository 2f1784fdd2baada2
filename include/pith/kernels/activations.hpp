// SPDX-License-Identifier: MIT
// Activation functions of the MLP.
#pragma once

#include <cmath>
#include <cstddef>

namespace pith::kernels {

/// gate[i] = silu(gate[i]) * up[i] = gate[i] / (1 + exp(-gate[i])) * up[i] (SwiGLU), in place.
inline void silu_mul(float* gate, const float* up, std::size_t count) noexcept {
  for (std::size_t i = 0; i < count; ++i) gate[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
}

}  // namespace pith::kernels
