// SPDX-License-Identifier: MIT
// Activation functions of the MLP, over the caller's arrays (a public building block: no model, file
// or JSON header; docs/embedding.md). Plain loops with std::exp (no _with<Ops> form).
#pragma once

#include <cmath>
#include <cstddef>

namespace pith::kernels {

/// gate[i] = silu(gate[i]) * up[i] = gate[i] / (1 + exp(-gate[i])) * up[i] (SwiGLU), in place, for
/// i < count ([t, intermediate] rows packed: count = t * intermediate). `up` must not alias `gate`.
inline void silu_mul(float* gate, const float* up, std::size_t count) noexcept {
  for (std::size_t i = 0; i < count; ++i) gate[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
}

}  // namespace pith::kernels
