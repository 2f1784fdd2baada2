// SPDX-License-Identifier: MIT
// Rotary position embeddings in both layouts: half rotation (Hugging Face) and adjacent pairs (llama2.c, GGUF).
// Public building blocks over the caller's vectors (no model, file or JSON header; docs/embedding.md):
// compute inv_freq once per model, the angles once per position, then rotate any number of heads
// in place. Plain loops (no _with<Ops> form); float arithmetic as llama2.c.
#pragma once

#include <cmath>
#include <cstddef>

namespace pith::kernels {

/// Which dimensions a rotation pairs: (i, i + head_dim/2) for Hugging Face checkpoints, (2i, 2i+1)
/// for llama2.c and GGUF. The two are the same rotation after a permutation of the q/k weight rows.
enum class rope_layout { half, interleaved };

/// inv_freq[i] = theta^(-2i / head_dim) for i < head_dim / 2, computed in float as llama2.c does.
inline void rope_inverse_frequencies(float theta, std::size_t head_dim, float* inv_freq) noexcept {
  for (std::size_t i = 0; i < head_dim / 2; ++i)
    inv_freq[i] = 1.0f / std::pow(theta, static_cast<float>(2 * i) / static_cast<float>(head_dim));
}

/// cos and sin of position * inv_freq[i] for i < head_dim / 2 (the angle is formed in float). A
/// negative position gives the inverse rotation: re-rotating a key from position p to q applies the
/// angles of q - p.
inline void rope_angles(double position, const float* inv_freq, std::size_t head_dim, float* cos_out,
                        float* sin_out) noexcept {
  const float p = static_cast<float>(position);
  for (std::size_t i = 0; i < head_dim / 2; ++i) {
    const float angle = p * inv_freq[i];
    cos_out[i] = std::cos(angle);
    sin_out[i] = std::sin(angle);
  }
}

/// Rotates `heads` vectors of head_dim floats (heads `head_stride` apart, head_dim even) in place by
/// the angles given (cos_angle, sin_angle: head_dim / 2 floats from rope_angles). Pairs (i, i + head_dim/2).
inline void apply_rope_half(float* x, std::size_t heads, std::size_t head_stride, std::size_t head_dim,
                            const float* cos_angle, const float* sin_angle) noexcept {
  const std::size_t half = head_dim / 2;
  for (std::size_t h = 0; h < heads; ++h) {
    float* v = x + h * head_stride;
    for (std::size_t i = 0; i < half; ++i) {
      const float a = v[i], b = v[i + half];
      v[i] = a * cos_angle[i] - b * sin_angle[i];
      v[i + half] = b * cos_angle[i] + a * sin_angle[i];
    }
  }
}

/// The same rotation on adjacent pairs (2i, 2i+1).
inline void apply_rope_interleaved(float* x, std::size_t heads, std::size_t head_stride, std::size_t head_dim,
                                   const float* cos_angle, const float* sin_angle) noexcept {
  for (std::size_t h = 0; h < heads; ++h) {
    float* v = x + h * head_stride;
    for (std::size_t i = 0; i < head_dim / 2; ++i) {
      const float a = v[2 * i], b = v[2 * i + 1];
      v[2 * i] = a * cos_angle[i] - b * sin_angle[i];
      v[2 * i + 1] = a * sin_angle[i] + b * cos_angle[i];
    }
  }
}

/// apply_rope_half or apply_rope_interleaved as `layout` says.
inline void apply_rope(rope_layout layout, float* x, std::size_t heads, std::size_t head_stride, std::size_t head_dim,
                       const float* cos_angle, const float* sin_angle) noexcept {
  if (layout == rope_layout::half)
    apply_rope_half(x, heads, head_stride, head_dim, cos_angle, sin_angle);
  else
    apply_rope_interleaved(x, heads, head_stride, head_dim, cos_angle, sin_angle);
}

}  // namespace pith::kernels
