// SPDX-License-Identifier: MIT
// NEON integer kernels of the block-quantized dot products (kernels/quant_dot.hpp describes the
// activation formats and the arithmetic; note §3.4): SDOT with the dot-product extension,
// widening multiplies without, for Q8_0, Q4_0, Q4_K, Q5_K and Q6_K over one W row and NX
// activation rows. `Row` is kernels::activation_row.
#pragma once

#include "pith/core/dtype.hpp"
#include "pith/core/half.hpp"
#include "pith/core/quant.hpp"
#include "pith/simd/simd.hpp"

#include <cstddef>
#include <cstdint>
#include <cstring>

#if defined(PITH_SIMD_HAS_NEON)
#include <arm_neon.h>

namespace pith::simd {
inline namespace PITH_ISA_NAMESPACE {  // compiled for the including unit's target (simd.hpp)
namespace quant_neon {

using quant::load_u16;
using quant::k4_scale_words;
using quant::unpack_scale_words_k4;
using quant::unpack_scales_k4;

/// acc + Σ of four s8 × s8 products per int32 lane: SDOT with the dot-product extension, else
/// widening multiplies and pairwise adds (other lanes, same total; exact either way).
inline int32x4_t dot_s8(int32x4_t acc, int8x16_t a, int8x16_t b) noexcept {
#if defined(__ARM_FEATURE_DOTPROD)
  return vdotq_s32(acc, a, b);
#else
  const int16x8_t low = vmull_s8(vget_low_s8(a), vget_low_s8(b));
  const int16x8_t high = vmull_s8(vget_high_s8(a), vget_high_s8(b));
  return vpadalq_s16(vpadalq_s16(acc, low), high);
#endif
}

inline float f16(const std::byte* p) noexcept { return half_to_float(load_u16(p)); }

inline int8x16_t load_s8(const void* p) noexcept { return vld1q_s8(static_cast<const std::int8_t*>(p)); }

/// out[r] = W row · activation row r for NX rows (Q8_0, Q4_0, Q4_K, Q5_K, Q6_K), W read once.
template <dtype T, std::size_t NX, class Row>
inline void dot_rows(const std::byte* w, const Row* a, std::size_t cols, float* out) noexcept {
  float32x4_t acc[NX];  // legacy blocks
  float minus[NX];      // K-quants: subtracted terms minus the added ones (one scalar per super-block)
  for (std::size_t r = 0; r < NX; ++r) {
    acc[r] = vdupq_n_f32(0.0f);
    minus[r] = 0.0f;
  }
  const uint8x16_t low = vdupq_n_u8(0x0F);
  if constexpr (T == dtype::q8_0 || T == dtype::q4_0) {
    constexpr std::size_t bytes = dtype_block_bytes(T);
    for (std::size_t b = 0; b < cols / quant::qk; ++b) {
      const std::byte* base = w + b * bytes;
      int8x16_t w0, w1;
      if constexpr (T == dtype::q8_0) {
        w0 = load_s8(base + 2);
        w1 = load_s8(base + 18);
      } else {  // codes − 8: low nibbles are elements 0-15, high 16-31 (§1.2, §3.4)
        const uint8x16_t packed = vld1q_u8(reinterpret_cast<const std::uint8_t*>(base + 2));
        w0 = vsubq_s8(vreinterpretq_s8_u8(vandq_u8(packed, low)), vdupq_n_s8(8));
        w1 = vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8(packed, 4)), vdupq_n_s8(8));
      }
      const float dw = f16(base);
      for (std::size_t r = 0; r < NX; ++r) {
        const std::int8_t* y = a[r].q + b * quant::qk;
        const int32x4_t p = dot_s8(dot_s8(vdupq_n_s32(0), w0, load_s8(y)), w1, load_s8(y + 16));
        acc[r] = vmlaq_n_f32(acc[r], vcvtq_f32_s32(p), dw * a[r].d[b]);
      }
    }
  } else if constexpr (T == dtype::q4_k || T == dtype::q5_k) {
    using block = quant::block_t<T>;
    for (std::size_t sb = 0; sb < cols / quant::qk_k; ++sb) {
      const std::byte* base = w + sb * sizeof(block);
      std::uint8_t sc[8], mn[8];
      unpack_scales_k4(reinterpret_cast<const std::uint8_t*>(base + offsetof(block, scales)), sc, mn);
      const auto* qs = reinterpret_cast<const std::uint8_t*>(base + offsetof(block, qs));
      uint8x16_t qh[2] = {vdupq_n_u8(0), vdupq_n_u8(0)};
      if constexpr (T == dtype::q5_k) {
        qh[0] = vld1q_u8(reinterpret_cast<const std::uint8_t*>(base + offsetof(block, qh)));
        qh[1] = vld1q_u8(reinterpret_cast<const std::uint8_t*>(base + offsetof(block, qh)) + 16);
      }
      int sumi[NX] = {};
      for (std::size_t c = 0; c < 4; ++c) {
        // Chunk c: low nibbles are sub-block 2c, high nibbles 2c + 1 (§1.2).
        int8x16_t lo[2], hi[2];
        for (std::size_t h = 0; h < 2; ++h) {
          const uint8x16_t packed = vld1q_u8(qs + 32 * c + 16 * h);
          uint8x16_t l = vandq_u8(packed, low), u = vshrq_n_u8(packed, 4);
          if constexpr (T == dtype::q5_k) {
            // Bit 2c (2c + 1) of qh[l] is the 16s bit of the low (high) nibble's element.
            const uint8x16_t bit_lo = vdupq_n_u8(static_cast<std::uint8_t>(1u << (2 * c)));
            const uint8x16_t bit_hi = vdupq_n_u8(static_cast<std::uint8_t>(1u << (2 * c + 1)));
            l = vorrq_u8(l, vandq_u8(vtstq_u8(qh[h], bit_lo), vdupq_n_u8(16)));
            u = vorrq_u8(u, vandq_u8(vtstq_u8(qh[h], bit_hi), vdupq_n_u8(16)));
          }
          lo[h] = vreinterpretq_s8_u8(l);
          hi[h] = vreinterpretq_s8_u8(u);
        }
        for (std::size_t r = 0; r < NX; ++r) {
          const std::int8_t* y = a[r].q + sb * quant::qk_k + 64 * c;
          const int32x4_t p_lo = dot_s8(dot_s8(vdupq_n_s32(0), lo[0], load_s8(y)), lo[1], load_s8(y + 16));
          const int32x4_t p_hi = dot_s8(dot_s8(vdupq_n_s32(0), hi[0], load_s8(y + 32)), hi[1], load_s8(y + 48));
          sumi[r] += sc[2 * c] * vaddvq_s32(p_lo) + sc[2 * c + 1] * vaddvq_s32(p_hi);
        }
      }
      const float d = f16(base), dmin = f16(base + 2);
      for (std::size_t r = 0; r < NX; ++r) {
        const std::int16_t* bsums = a[r].sums + sb * 16;
        int msum = 0;
        for (std::size_t j = 0; j < 8; ++j) msum += mn[j] * (bsums[2 * j] + bsums[2 * j + 1]);
        const float dy = a[r].d[sb];
        // §3.4: dY·d·Σ sc·(q·y) − dY·dmin·Σ m·(bsums pair).
        minus[r] += dy * dmin * static_cast<float>(msum) - dy * d * static_cast<float>(sumi[r]);
      }
    }
  } else if constexpr (T == dtype::q6_k) {
    using block = quant::block_q6_k;
    const uint8x16_t two = vdupq_n_u8(3);
    for (std::size_t sb = 0; sb < cols / quant::qk_k; ++sb) {
      const std::byte* base = w + sb * sizeof(block);
      std::int8_t sc[16];
      std::memcpy(sc, base + offsetof(block, scales), 16);
      const auto* ql = reinterpret_cast<const std::uint8_t*>(base + offsetof(block, ql));
      const auto* qhp = reinterpret_cast<const std::uint8_t*>(base + offsetof(block, qh));
      int sumi[NX] = {};
      for (std::size_t n = 0; n < 2; ++n) {
        for (std::size_t h = 0; h < 2; ++h) {  // elements l = 16h … 16h + 15 of each group
          const uint8x16_t ql0 = vld1q_u8(ql + 64 * n + 16 * h), ql1 = vld1q_u8(ql + 64 * n + 32 + 16 * h);
          const uint8x16_t qh = vld1q_u8(qhp + 32 * n + 16 * h);
          // Unsigned codes 0 … 63 of elements 128n + 32g + l (§1.2); the −32 offset through bsums.
          int8x16_t codes[4];
          codes[0] = vreinterpretq_s8_u8(vorrq_u8(vandq_u8(ql0, low), vshlq_n_u8(vandq_u8(qh, two), 4)));
          codes[1] = vreinterpretq_s8_u8(vorrq_u8(vandq_u8(ql1, low), vshlq_n_u8(vandq_u8(vshrq_n_u8(qh, 2), two), 4)));
          codes[2] = vreinterpretq_s8_u8(vorrq_u8(vshrq_n_u8(ql0, 4), vshlq_n_u8(vandq_u8(vshrq_n_u8(qh, 4), two), 4)));
          codes[3] = vreinterpretq_s8_u8(vorrq_u8(vshrq_n_u8(ql1, 4), vshlq_n_u8(vshrq_n_u8(qh, 6), 4)));
          for (std::size_t g = 0; g < 4; ++g) {
            const int scale = sc[8 * n + 2 * g + h];  // sub-block of 16 = (128n + 32g + 16h) / 16
            for (std::size_t r = 0; r < NX; ++r) {
              const std::int8_t* y = a[r].q + sb * quant::qk_k + 128 * n + 32 * g + 16 * h;
              sumi[r] += scale * vaddvq_s32(dot_s8(vdupq_n_s32(0), codes[g], load_s8(y)));
            }
          }
        }
      }
      const float d = f16(base + offsetof(block, d));
      for (std::size_t r = 0; r < NX; ++r) {
        const std::int16_t* bsums = a[r].sums + sb * 16;
        int offset = 0;
        for (std::size_t s = 0; s < 16; ++s) offset += sc[s] * bsums[s];
        minus[r] -= a[r].d[sb] * d * static_cast<float>(sumi[r] - 32 * offset);
      }
    }
  }
  for (std::size_t r = 0; r < NX; ++r) out[r] = vaddvq_f32(acc[r]) - minus[r];
}

template <dtype T>
inline constexpr bool has_kernel =
    T == dtype::q8_0 || T == dtype::q4_0 || T == dtype::q4_k || T == dtype::q5_k || T == dtype::q6_k;

}  // namespace quant_neon
}  // namespace PITH_ISA_NAMESPACE
}  // namespace pith::simd
#endif
