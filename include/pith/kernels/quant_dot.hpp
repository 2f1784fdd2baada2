// SPDX-License-Identifier: MIT
// Integer dot products of GGUF block-quantized weight rows with 8-bit quantized activations.
//
// Activations (../shared/notes/quantization.md §3.2, §3.3): before a product with weights of type
// T, each activation row is quantized once to the 8-bit format T pairs with,
// activation_type(T): Q8_0 for Q4_0, Q5_0, Q8_0, IQ4_NL; Q8_1 for Q4_1, Q5_1; Q8_K for the
// K-quants and IQ4_XS. The values are those of §3.3, with one rounding for every ISA:
//   Q8_0 / Q8_1, per 32 values: amax = max |x|, d = amax / 127 (kept as its f16 value, as the
//     block stores it), q = nint(x · 127 / amax) (0 when amax is 0), so |q| <= 127. Q8_1 adds
//     s = f16(d · Σ q) with the unrounded d.
//   Q8_K, per 256 values: max = the value of largest |x| (first one), iscale = −127 / max,
//     q = min(127, nint(iscale · x)), d = 1 / iscale (f32), bsums = sums of 16 consecutive q.
//   nint rounds to nearest, ties to even (llama.cpp's AVX2 and NEON Q8_0 quantizers do the same;
//   its scalar fallback rounds ties away from zero: the bytes can differ on exact ties).
// The row is stored as a structure of arrays (activation_row): the quants contiguous (whole
// vectors load without skipping block headers), then the per-block scales, Q8_1's s, integer
// sums of the quants (Σ q per 32-block for Q8_0 / Q8_1, the 16-element bsums for Q8_K, with which
// the kernels remove the offset of unsigned weight codes in the integer domain) and, for Q8_0, the
// quants plus 128 as unsigned bytes (vpdpbusd multiplies unsigned by signed bytes) and, for
// products with Q4_0, a copy of the quants in Q4_0's nibble order (activation_row::q4x).
//
// Dot products (§3.4): per weight block, an integer sum of code × activation quant, then one float
// multiply-add with the block's scales; K-quant sub-block scales are applied in the integer domain
// (vpmaddubsw pair sums times the scale with vpmaddwd) and their mins through bsums. Signed weights
// (Q8_0, Q4_0 − 8, Q5_0 − 16, IQ4 table values) go through the sign trick of §3.5, or, with VNNI
// and several activation rows, vpdpbusd of the biased activations less 128 Σ w (once per block).
// Every integer sum is exact: |activation| <= 127, and vpmaddubsw's int16 pair sums stay below
// 2 · 128 · 127 (Q8_0 magnitudes) or 2 · 63 · 127 (K-quant codes). vec_dot_reference<T> is the scalar reference for every type; the
// x86 kernels (AVX2 maddubs/madd, or vpdpbusd with AVX512-VNNI for the avx512 set) cover all
// twelve weight types; NEON (SDOT with the dot-product extension, widening multiplies without)
// covers Q8_0, Q4_0, Q4_K, Q5_K, Q6_K; every other (type, ISA) pair runs the reference. Results differ from the
// reference only by float accumulation order (the integer sums are exact).
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>

#include "pith/core/dtype.hpp"
#include "pith/core/half.hpp"
#include "pith/core/quant.hpp"
#include "pith/simd/simd.hpp"

namespace pith::kernels {
// Every function here is compiled for the including unit's ISA (even the scalar ones, which the
// compiler vectorizes): the ISA's inline namespace keeps units built for different ISAs apart.
inline namespace PITH_ISA_NAMESPACE {

/// The 8-bit activation format weights of type `w` are multiplied with (note §3.2).
constexpr dtype activation_type(dtype w) noexcept {
  switch (w) {
    case dtype::q4_1:
    case dtype::q5_1: return dtype::q8_1;
    case dtype::q2_k:
    case dtype::q3_k:
    case dtype::q4_k:
    case dtype::q5_k:
    case dtype::q6_k:
    case dtype::iq4_xs: return dtype::q8_k;
    default: return dtype::q8_0;
  }
}

/// One quantized activation row (views into an activation buffer; see the file comment).
struct activation_row {
  const std::int8_t* q;        // cols quants
  const float* d;              // one scale per block (32 for Q8_0 / Q8_1, 256 for Q8_K)
  const float* s;              // Q8_1: f16(d · Σ q) per block, as float
  const std::int16_t* sums;    // Q8_0 / Q8_1: Σ q per block; Q8_K: Σ q per 16 elements (bsums)
  const std::uint8_t* biased;  // Q8_0: q + 128 as unsigned bytes (vpdpbusd's unsigned operand)
  const std::int32_t* minus8;  // Q8_0: −8 · Σ of each 4 consecutive quants (Q4_0's offset, lane-wise)
  // Q8_0, for Q4_0 decode with 512-bit VNNI, per group of four blocks (128 values; whole groups
  // only): the quants in Q4_0's nibble order, [q_b[0:16] for b = 0..3, then q_b[16:32] for b =
  // 0..3], so the low and the high nibbles of the four blocks' codes each meet their quants in one
  // vector; the −8 offset of the 16 int32 lanes those two vpdpbusd fill (lane 4b + t: quants
  // 4t..4t+3 and 16+4t..16+4t+3 of block b); each block's scale d_b in its four lanes.
  const std::int8_t* q4x;
  const std::int32_t* start4x;
  const float* d4x;
};

namespace quant_detail {
constexpr std::size_t round_up_64(std::size_t n) noexcept { return (n + 63) / 64 * 64; }
constexpr std::size_t activation_block(dtype act) noexcept { return act == dtype::q8_k ? quant::qk_k : quant::qk; }
constexpr std::size_t activation_sums(dtype act, std::size_t cols) noexcept {
  return act == dtype::q8_k ? cols / 16 : cols / quant::qk;
}
constexpr std::size_t activation_scales_offset(std::size_t cols) noexcept { return round_up_64(cols); }
constexpr std::size_t activation_s_offset(dtype act, std::size_t cols) noexcept {
  return activation_scales_offset(cols) + round_up_64(cols / activation_block(act) * sizeof(float));
}
constexpr std::size_t activation_sums_offset(dtype act, std::size_t cols) noexcept {
  return activation_s_offset(act, cols) + round_up_64(cols / activation_block(act) * sizeof(float));
}
constexpr std::size_t activation_biased_offset(dtype act, std::size_t cols) noexcept {
  return activation_sums_offset(act, cols) + round_up_64(activation_sums(act, cols) * sizeof(std::int16_t));
}
/// Q8_0: values in whole groups of four blocks (the interleaved copy of activation_row::q4x).
constexpr std::size_t activation_groups4(std::size_t cols) noexcept { return cols / (4 * quant::qk); }
constexpr std::size_t activation_q4x_offset(std::size_t cols) noexcept {
  return activation_biased_offset(dtype::q8_0, cols) + 2 * round_up_64(cols);
}
constexpr std::size_t activation_start4x_offset(std::size_t cols) noexcept {
  return activation_q4x_offset(cols) + round_up_64(activation_groups4(cols) * 4 * quant::qk);
}
constexpr std::size_t activation_d4x_offset(std::size_t cols) noexcept {
  return activation_start4x_offset(cols) + activation_groups4(cols) * 16 * sizeof(std::int32_t);
}
}  // namespace quant_detail

/// Bytes of one quantized activation row of `cols` values (a multiple of 64: rows stay aligned).
constexpr std::size_t activation_row_bytes(dtype act, std::size_t cols) noexcept {
  // Q8_0 adds the biased bytes (cols), the lane sums (one int32 per 4 quants: cols bytes) and the
  // interleaved groups of four blocks (their quants, lane offsets and lane scales: 2 bytes a value).
  if (act == dtype::q8_0)
    return quant_detail::activation_d4x_offset(cols) + quant_detail::activation_groups4(cols) * 16 * sizeof(float);
  return quant_detail::activation_biased_offset(act, cols);
}

/// The activation row stored at `p` (4-byte aligned; activation_row_bytes(act, cols) bytes).
inline activation_row activation_view(dtype act, const std::byte* p, std::size_t cols) noexcept {
  return {reinterpret_cast<const std::int8_t*>(p),
          reinterpret_cast<const float*>(p + quant_detail::activation_scales_offset(cols)),
          reinterpret_cast<const float*>(p + quant_detail::activation_s_offset(act, cols)),
          reinterpret_cast<const std::int16_t*>(p + quant_detail::activation_sums_offset(act, cols)),
          reinterpret_cast<const std::uint8_t*>(p + quant_detail::activation_biased_offset(act, cols)),
          reinterpret_cast<const std::int32_t*>(p + quant_detail::activation_biased_offset(act, cols) +
                                                quant_detail::round_up_64(cols)),
          reinterpret_cast<const std::int8_t*>(p + quant_detail::activation_q4x_offset(cols)),
          reinterpret_cast<const std::int32_t*>(p + quant_detail::activation_start4x_offset(cols)),
          reinterpret_cast<const float*>(p + quant_detail::activation_d4x_offset(cols))};
}

/// The rows of X quantized to one activation format (rows `stride` bytes apart).
struct quantized_rows {
  dtype type = dtype::q8_0;  // Q8_0, Q8_1 or Q8_K
  std::size_t rows = 0, cols = 0, stride = 0;
  const std::byte* data = nullptr;

  activation_row row(std::size_t i) const noexcept { return activation_view(type, data + i * stride, cols); }
};

/// Quantizes x[0, cols) (cols a multiple of the format's block) to the activation format `act`
/// (Q8_0, Q8_1 or Q8_K) at `dst` (4-byte aligned, activation_row_bytes(act, cols) bytes); note §3.3.
/// `q4_0_copy`: for Q8_0, also write the interleaved groups activation_row::q4x (read only by Q4_0
/// products; the other Q8_0 weight types can skip the copy).
inline void quantize_activation_row(dtype act, const float* x, std::size_t cols, std::byte* dst,
                                    bool q4_0_copy = true) noexcept {
  auto* q = reinterpret_cast<std::int8_t*>(dst);
  auto* d = reinterpret_cast<float*>(dst + quant_detail::activation_scales_offset(cols));
  auto* s = reinterpret_cast<float*>(dst + quant_detail::activation_s_offset(act, cols));
  auto* sums = reinterpret_cast<std::int16_t*>(dst + quant_detail::activation_sums_offset(act, cols));
  if (act == dtype::q8_k) {
    for (std::size_t b = 0; b < cols / quant::qk_k; ++b) {
      const float* xb = x + b * quant::qk_k;
      std::int8_t* qb = q + b * quant::qk_k;
      float amax = 0.0f, max = 0.0f;
      bool finite = true;
      for (std::size_t j = 0; j < quant::qk_k; ++j) {
        const float a = std::fabs(xb[j]);
        finite = finite && std::isfinite(a);
        if (a > amax) {
          amax = a;
          max = xb[j];
        }
      }
      // A NaN or infinity cannot be scaled to int8 (the conversion would be undefined): the block
      // becomes zeros with a NaN scale, so every product with it is NaN, as in float arithmetic. A
      // block whose largest magnitude is below 127/FLT_MAX (the inverse scale would overflow) counts
      // as zeros.
      if (amax == 0.0f || !finite || !std::isfinite(127.0f / amax)) {
        d[b] = finite ? 0.0f : std::numeric_limits<float>::quiet_NaN();
        std::memset(qb, 0, quant::qk_k);
        std::memset(sums + b * 16, 0, 16 * sizeof(std::int16_t));
        continue;
      }
      const float iscale = -127.0f / max;
      for (std::size_t j = 0; j < quant::qk_k; ++j)
        qb[j] = static_cast<std::int8_t>(std::min(127.0f, std::nearbyint(iscale * xb[j])));
      for (std::size_t g = 0; g < 16; ++g) {
        int sum = 0;
        for (std::size_t i = 0; i < 16; ++i) sum += qb[16 * g + i];
        sums[b * 16 + g] = static_cast<std::int16_t>(sum);
      }
      d[b] = 1.0f / iscale;
    }
    return;
  }
  for (std::size_t b = 0; b < cols / quant::qk; ++b) {
    const float* xb = x + b * quant::qk;
    std::int8_t* qb = q + b * quant::qk;
    float amax = 0.0f;
    bool finite = true;
    for (std::size_t j = 0; j < quant::qk; ++j) {
      const float a = std::fabs(xb[j]);
      finite = finite && std::isfinite(a);
      amax = std::max(amax, a);
    }
    // A non-finite block: zeros with NaN scales; a block too small to scale: zeros (see Q8_K above).
    const float scale = finite ? amax / 127.0f : std::numeric_limits<float>::quiet_NaN();
    const float inverse = finite && amax != 0.0f ? 127.0f / amax : 0.0f;
    const bool scalable = finite && std::isfinite(inverse);
    int sum = 0;
    for (std::size_t j = 0; j < quant::qk; ++j) {
      qb[j] = scalable ? static_cast<std::int8_t>(std::nearbyint(xb[j] * inverse)) : std::int8_t{0};
      sum += qb[j];
    }
    if (act == dtype::q8_0) {
      auto* biased = reinterpret_cast<std::uint8_t*>(dst + quant_detail::activation_biased_offset(act, cols)) + b * quant::qk;
      for (std::size_t j = 0; j < quant::qk; ++j) biased[j] = static_cast<std::uint8_t>(qb[j] + 128);
      auto* minus8 = reinterpret_cast<std::int32_t*>(dst + quant_detail::activation_biased_offset(act, cols) +
                                                     quant_detail::round_up_64(cols)) +
                     b * (quant::qk / 4);
      for (std::size_t j = 0; j < quant::qk / 4; ++j)
        minus8[j] = -8 * (qb[4 * j] + qb[4 * j + 1] + qb[4 * j + 2] + qb[4 * j + 3]);
    }
    d[b] = half_to_float(float_to_half(scale));
    s[b] = act == dtype::q8_1 ? half_to_float(float_to_half(scale * static_cast<float>(sum))) : 0.0f;
    sums[b] = static_cast<std::int16_t>(sum);
  }
  if (act == dtype::q8_0 && q4_0_copy) {
    // The interleaved groups of four blocks (activation_row::q4x).
    auto* q4x = reinterpret_cast<std::int8_t*>(dst + quant_detail::activation_q4x_offset(cols));
    auto* start4x = reinterpret_cast<std::int32_t*>(dst + quant_detail::activation_start4x_offset(cols));
    auto* d4x = reinterpret_cast<float*>(dst + quant_detail::activation_d4x_offset(cols));
    for (std::size_t g = 0; g < quant_detail::activation_groups4(cols); ++g) {
      for (std::size_t k = 0; k < 4; ++k) {
        const std::int8_t* qb = q + (4 * g + k) * quant::qk;
        std::memcpy(q4x + g * 128 + 16 * k, qb, 16);
        std::memcpy(q4x + g * 128 + 64 + 16 * k, qb + 16, 16);
        for (std::size_t t = 0; t < 4; ++t) {
          int lane = 0;
          for (std::size_t i = 0; i < 4; ++i) lane += qb[4 * t + i] + qb[16 + 4 * t + i];
          start4x[g * 16 + 4 * k + t] = -8 * lane;
          d4x[g * 16 + 4 * k + t] = d[4 * g + k];
        }
      }
    }
  }
}

namespace quant_detail {

inline std::uint16_t load_u16(const std::byte* p) noexcept {
  std::uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}

/// The scales and mins of a Q4_K / Q5_K super-block as four little-endian words of four bytes:
/// scales 0-3, scales 4-7, mins 0-3, mins 4-7 (the word-parallel unpacking of note §1.2).
struct k4_scale_words {
  std::uint32_t scales_low, scales_high, mins_low, mins_high;
};
inline k4_scale_words unpack_scale_words_k4(const std::uint8_t* bytes) noexcept {
  std::uint32_t w[3];
  std::memcpy(w, bytes, 12);
  return {w[0] & 0x3f3f3f3fu, (w[2] & 0x0f0f0f0fu) | (((w[0] >> 6) & 0x03030303u) << 4), w[1] & 0x3f3f3f3fu,
          ((w[2] >> 4) & 0x0f0f0f0fu) | (((w[1] >> 6) & 0x03030303u) << 4)};
}

/// The eight 6-bit scales and mins of a Q4_K / Q5_K super-block from its 12 scale bytes.
inline void unpack_scales_k4(const std::uint8_t* bytes, std::uint8_t* scales, std::uint8_t* mins) noexcept {
  const k4_scale_words w = unpack_scale_words_k4(bytes);
  std::memcpy(scales, &w.scales_low, 4);
  std::memcpy(scales + 4, &w.scales_high, 4);
  std::memcpy(mins, &w.mins_low, 4);
  std::memcpy(mins + 4, &w.mins_high, 4);
}

}  // namespace quant_detail

/// The scalar reference: W row (cols elements of T at `w`, any alignment) · the activation row
/// quantized to activation_type(T), by the formulas of note §3.4 with integer inner sums.
template <dtype T>
inline float vec_dot_reference(const std::byte* w, const activation_row& a, std::size_t cols) noexcept {
  constexpr std::size_t n = dtype_block_elements(T);
  const std::size_t blocks = cols / n;
  float sum = 0.0f;
  for (std::size_t b = 0; b < blocks; ++b) {
    const quant::block_t<T> x = quant::load_block<T>(w, b);
    const std::int8_t* y = a.q + b * n;
    if constexpr (T == dtype::q4_0 || T == dtype::q4_1 || T == dtype::iq4_nl || T == dtype::q5_0 ||
                  T == dtype::q5_1) {
      std::uint32_t qh = 0;
      if constexpr (T == dtype::q5_0 || T == dtype::q5_1) std::memcpy(&qh, x.qh, 4);
      int isum = 0;
      for (std::size_t j = 0; j < 16; ++j) {
        int lo = x.qs[j] & 0xF, hi = x.qs[j] >> 4;
        if constexpr (T == dtype::q5_0 || T == dtype::q5_1) {
          lo |= static_cast<int>((qh >> j) & 1u) << 4;
          hi |= static_cast<int>((qh >> (j + 16)) & 1u) << 4;
        }
        if constexpr (T == dtype::q4_0) {
          lo -= 8;
          hi -= 8;
        } else if constexpr (T == dtype::q5_0) {
          lo -= 16;
          hi -= 16;
        } else if constexpr (T == dtype::iq4_nl) {
          lo = quant::iq4nl_values[lo];
          hi = quant::iq4nl_values[hi];
        }
        isum += lo * y[j] + hi * y[j + 16];
      }
      // §3.4: Q4_0 / Q5_0 / IQ4_NL: d·dY·Σ; Q4_1 / Q5_1: d·dY·Σ + m·sY.
      sum += half_to_float(x.d) * a.d[b] * static_cast<float>(isum);
      if constexpr (T == dtype::q4_1 || T == dtype::q5_1) sum += half_to_float(x.m) * a.s[b];
    } else if constexpr (T == dtype::q8_0) {
      int isum = 0;
      for (std::size_t j = 0; j < quant::qk; ++j) isum += x.qs[j] * y[j];
      sum += half_to_float(x.d) * a.d[b] * static_cast<float>(isum);
    } else {
      // Super-blocks against Q8_K (§3.4): sub-block integer sums times their integer scales.
      const std::int16_t* bsums = a.sums + b * 16;
      const float dy = a.d[b];
      if constexpr (T == dtype::q4_k || T == dtype::q5_k) {
        std::uint8_t sc[8], mn[8];
        quant_detail::unpack_scales_k4(x.scales, sc, mn);
        int isum = 0, msum = 0;
        for (std::size_t e = 0; e < quant::qk_k; ++e) {
          const std::size_t c = e >> 6, l = e & 63;
          const std::uint8_t byte = x.qs[32 * c + (l & 31)];
          int q = l < 32 ? (byte & 0xF) : (byte >> 4);
          if constexpr (T == dtype::q5_k) q += 16 * ((x.qh[e & 31] >> (e >> 5)) & 1);
          isum += sc[e >> 5] * q * y[e];
        }
        for (std::size_t j = 0; j < 8; ++j) msum += mn[j] * (bsums[2 * j] + bsums[2 * j + 1]);
        sum += dy * half_to_float(x.d) * static_cast<float>(isum) -
               dy * half_to_float(x.dmin) * static_cast<float>(msum);
      } else if constexpr (T == dtype::q2_k) {
        int isum = 0, msum = 0;
        for (std::size_t e = 0; e < quant::qk_k; ++e) {
          const std::size_t n2 = e >> 7, k = (e >> 5) & 3, l = e & 31;
          isum += (x.scales[e >> 4] & 0xF) * ((x.qs[32 * n2 + l] >> (2 * k)) & 3) * y[e];
        }
        for (std::size_t s = 0; s < 16; ++s) msum += (x.scales[s] >> 4) * bsums[s];
        sum += dy * half_to_float(x.d) * static_cast<float>(isum) -
               dy * half_to_float(x.dmin) * static_cast<float>(msum);
      } else if constexpr (T == dtype::q3_k) {
        int isum = 0;
        for (std::size_t e = 0; e < quant::qk_k; ++e) {
          const std::size_t n2 = e >> 7, k = (e >> 5) & 3, l = e & 31;
          const int hbit = (x.hmask[l] >> (e >> 5)) & 1;
          const int q = ((x.qs[32 * n2 + l] >> (2 * k)) & 3) - (hbit ? 0 : 4);
          isum += quant::q3_k_scale(x.scales, e >> 4) * q * y[e];
        }
        sum += dy * half_to_float(x.d) * static_cast<float>(isum);
      } else if constexpr (T == dtype::q6_k) {
        int isum = 0;
        for (std::size_t e = 0; e < quant::qk_k; ++e) {
          const std::size_t n2 = e >> 7, g = (e >> 5) & 3, l = e & 31;
          const std::uint8_t byte = x.ql[64 * n2 + 32 * (g & 1) + l];
          const int low4 = g < 2 ? (byte & 0xF) : (byte >> 4);
          const int q = (low4 | (((x.qh[32 * n2 + l] >> (2 * g)) & 3) << 4)) - 32;
          isum += x.scales[e >> 4] * q * y[e];
        }
        sum += dy * half_to_float(x.d) * static_cast<float>(isum);
      } else if constexpr (T == dtype::iq4_xs) {
        int isum = 0;
        for (std::size_t ib = 0; ib < 8; ++ib) {
          const int ls = ((x.scales_l[ib >> 1] >> (4 * (ib & 1))) & 15) | (((x.scales_h >> (2 * ib)) & 3) << 4);
          int sub = 0;
          for (std::size_t j = 0; j < 16; ++j) {
            const std::uint8_t byte = x.qs[16 * ib + j];
            sub += quant::iq4nl_values[byte & 0xF] * y[32 * ib + j] + quant::iq4nl_values[byte >> 4] * y[32 * ib + j + 16];
          }
          isum += (ls - 32) * sub;
        }
        sum += half_to_float(x.d) * dy * static_cast<float>(isum);
      } else {
        static_assert(T == dtype::q4_k, "no dot product for this dtype");
      }
    }
  }
  return sum;
}

#if defined(PITH_SIMD_HAS_AVX2)
namespace quant_detail::x86 {

/// acc + Σ of four u8 × s8 products per int32 lane: vpdpbusd with AVX512-VNNI (exact), else
/// vpmaddubsw + vpmaddwd (exact while each pair sum stays within int16, true for every caller:
/// |activation| <= 127 and weight codes <= 63, or the sign trick's |w| <= 128).
template <bool Vnni>
inline __m256i dot_u8s8(__m256i acc, __m256i u, __m256i s) noexcept {
#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
  if constexpr (Vnni) return _mm256_dpbusd_epi32(acc, u, s);
#endif
  return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1)));
}

/// Σ of u8 × s8 pairs scaled by int16 `scale` per pair-sum lane: int32 lanes.
inline __m256i dot_scaled(__m256i u, __m256i s, __m256i scale16) noexcept {
  return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), scale16);
}

inline float hsum(__m256 v) noexcept {
  __m128 x = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  x = _mm_add_ps(x, _mm_movehl_ps(x, x));
  x = _mm_add_ss(x, _mm_movehdup_ps(x));
  return _mm_cvtss_f32(x);
}

inline __m256i load256(const void* p) noexcept { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }

/// 16 packed bytes of 4-bit codes as 32 bytes 0 … 15: low nibbles (elements 0-15), then high
/// (the bytes loaded into both halves, the upper half shifted right by 4).
inline __m256i nibbles_32(const void* p) noexcept {
  const __m256i both = _mm256_broadcastsi128_si256(_mm_loadu_si128(static_cast<const __m128i*>(p)));
  const __m256i shifted = _mm256_srlv_epi64(both, _mm256_setr_epi64x(0, 0, 4, 4));
  return _mm256_and_si256(shifted, _mm256_set1_epi8(0x0F));
}

/// An f16 scale as float: vcvtph2ps with F16C, else the portable conversion.
inline float f16(const std::byte* p) noexcept {
#if defined(__F16C__)
  return _cvtsh_ss(load_u16(p));
#else
  return half_to_float(load_u16(p));
#endif
}

/// The shuffle taking 16-bit word j to lanes 0-15 and word j + 1 to lanes 16-31 (two sub-blocks
/// of 16 elements in one vector of 32).
inline __m256i pair_mask(int j) noexcept {
  return _mm256_setr_m128i(_mm_set1_epi16(static_cast<short>(2 * j | ((2 * j + 1) << 8))),
                           _mm_set1_epi16(static_cast<short>((2 * j + 2) | ((2 * j + 3) << 8))));
}

/// Bit e of the little-endian 32-bit word at p as byte e: 0xFF where set, 0 where clear.
inline __m256i bits_32(const void* p) noexcept {
  std::uint32_t bits;
  std::memcpy(&bits, p, 4);
  const __m256i spread = _mm256_shuffle_epi8(
      _mm256_set1_epi32(static_cast<int>(bits)),
      _mm256_setr_epi64x(0x0000000000000000, 0x0101010101010101, 0x0202020202020202, 0x0303030303030303));
  // Byte e keeps every bit but bit e mod 8 set, so it is all ones exactly when that bit is set.
  const __m256i others = _mm256_set1_epi64x(0x7fbfdfeff7fbfdfe);
  return _mm256_cmpeq_epi8(_mm256_or_si256(spread, others), _mm256_set1_epi64x(-1));
}

/// 16-bit lanes all equal to word `j` of a 128-bit vector of 8 words (in both 128-bit halves).
inline __m256i broadcast_word(__m256i words_in_both_halves, int j) noexcept {
  const int lo = 2 * j, hi = 2 * j + 1;
  const __m256i mask = _mm256_set1_epi16(static_cast<short>(lo | (hi << 8)));
  return _mm256_shuffle_epi8(words_in_both_halves, mask);
}

/// out[r] = W row · activation row r for NX rows, W read once (every block decoded once for all).
/// Legacy blocks go two at a time into two sets of accumulators (the FMA latency would otherwise
/// bound decode at one block per 4 cycles).
template <dtype T, bool Vnni, std::size_t NX>
inline void dot_rows(const std::byte* w, const activation_row* a, std::size_t cols, float* out) noexcept {
  __m256 acc[2][NX];
  for (std::size_t r = 0; r < NX; ++r) acc[0][r] = acc[1][r] = _mm256_setzero_ps();
  float extra[NX] = {};  // Q4_1 / Q5_1: Σ m · s_Y
  if constexpr (dtype_block_elements(T) == quant::qk) {
    using block = quant::block_t<T>;
    const auto block_step = [&](std::size_t b, __m256* accumulators) {
      const std::byte* base = w + b * sizeof(block);
      // (p · d_W) · d_Y: d_W broadcast once for the NX rows, d_Y folded into the FMA as a
      // broadcast memory operand (one instruction fewer per row and block than d_W · d_Y first).
      const __m256 dwv = _mm256_set1_ps(f16(base));
      if constexpr (T == dtype::q4_1 || T == dtype::q5_1) {
        // Unsigned codes times signed activations directly; the min through Q8_1's s (§3.4).
        __m256i codes = nibbles_32(base + offsetof(block, qs));
        if constexpr (T == dtype::q5_1)
          codes = _mm256_or_si256(codes, _mm256_and_si256(bits_32(base + offsetof(block, qh)), _mm256_set1_epi8(0x10)));
        const float m = f16(base + offsetof(block, m));
        for (std::size_t r = 0; r < NX; ++r) {
          const __m256i p = dot_u8s8<Vnni>(_mm256_setzero_si256(), codes, load256(a[r].q + b * quant::qk));
          accumulators[r] = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(p), dwv), _mm256_set1_ps(a[r].d[b]),
                                            accumulators[r]);
          extra[r] += m * a[r].s[b];
        }
      } else {
        // Signed weights (Q8_0's bytes, Q4_0's codes − 8, Q5_0's codes − 16, IQ4_NL's table
        // values; §3.4) through the sign trick: |w| · (y with w's sign) (§3.5).
        __m256i wq;
        if constexpr (T == dtype::q4_0 && !(Vnni && NX > 1)) {
          // Unsigned codes 0 … 15 times y, the −8 Σ y of §3.4 as the accumulator's start: the
          // activation's lane sums (one per 4 quants, as the dot instructions group them). With
          // VNNI and several rows, the biased path below loads less per row.
          const __m256i codes = nibbles_32(base + 2);
          for (std::size_t r = 0; r < NX; ++r) {
            const __m256i start = load256(a[r].minus8 + b * (quant::qk / 4));
            const __m256i p = dot_u8s8<Vnni>(start, codes, load256(a[r].q + b * quant::qk));
            accumulators[r] = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(p), dwv), _mm256_set1_ps(a[r].d[b]),
                                              accumulators[r]);
          }
          return;
        }
        if constexpr (T == dtype::q8_0) {
          wq = load256(base + 2);
        } else if constexpr (T == dtype::q4_0) {
          wq = _mm256_sub_epi8(nibbles_32(base + 2), _mm256_set1_epi8(8));
        } else if constexpr (T == dtype::q5_0) {
          // Q5_0 (§3.5): OR 0xF0 into the codes whose 5th bit is clear: lo − 16 in two's complement.
          const __m256i clear = _mm256_andnot_si256(bits_32(base + offsetof(block, qh)), _mm256_set1_epi8(-16));
          wq = _mm256_or_si256(nibbles_32(base + offsetof(block, qs)), clear);
        } else {
          const __m256i table = _mm256_broadcastsi128_si256(
              _mm_loadu_si128(reinterpret_cast<const __m128i*>(quant::iq4nl_values)));
          wq = _mm256_shuffle_epi8(table, nibbles_32(base + 2));
        }
        if constexpr (Vnni && NX > 1) {
          // vpdpbusd on the biased activations: Σ (y + 128) w − 128 Σ w = Σ y w, the second sum
          // once per block for all rows (lane by lane), instead of the sign trick per row.
          const __m256i bias = _mm256_sub_epi32(
              _mm256_setzero_si256(), dot_u8s8<Vnni>(_mm256_setzero_si256(), _mm256_set1_epi8(-128), wq));
          for (std::size_t r = 0; r < NX; ++r) {
            const __m256i p = dot_u8s8<Vnni>(bias, load256(a[r].biased + b * quant::qk), wq);
            accumulators[r] = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(p), dwv), _mm256_set1_ps(a[r].d[b]),
                                              accumulators[r]);
          }
        } else {
          const __m256i magnitude = _mm256_sign_epi8(wq, wq);
          for (std::size_t r = 0; r < NX; ++r) {
            const __m256i y = load256(a[r].q + b * quant::qk);
            const __m256i p = dot_u8s8<Vnni>(_mm256_setzero_si256(), magnitude, _mm256_sign_epi8(y, wq));
            accumulators[r] = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(p), dwv), _mm256_set1_ps(a[r].d[b]),
                                              accumulators[r]);
          }
        }
      }
    };
    const std::size_t blocks = cols / quant::qk;
    std::size_t b = 0;
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VNNI__) && defined(__F16C__)
    if constexpr (Vnni && NX == 1 && T == dtype::q4_0) {
      // Decode of Q4_0 two blocks per 512-bit vector: half the instructions of the 256-bit loop,
      // which is bound by issuing them (Zen 4: 17-18 GB/s with W in L3).
      const __m512i pair_lanes = _mm512_setr_epi64(0, 1, 0, 1, 2, 3, 2, 3);  // [b0, b0, b1, b1] 128-bit lanes
      const __m512i nibble_shift = _mm512_setr_epi64(0, 0, 4, 4, 0, 0, 4, 4);
      const __m512i scale_lanes = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
      __m512 acc512 = _mm512_setzero_ps();
#if defined(__AVX512VBMI__)
      {
        // Four blocks (72 bytes) per step from two loads: bytes 0-63 and 56-71 of the group form a
        // 128-byte table from which vpermt2b gathers the four blocks' 64 code bytes, and vpermw
        // their four d_W, each into four 16-bit lanes. The low nibbles (elements 0-15 of each
        // block) and the high nibbles (16-31) meet the activation's interleaved copy (q4x) in two
        // vpdpbusd into the same 16 lanes, four per block, which start at the −8 offset (start4x);
        // one conversion and one multiply-add per four blocks. About 12 vector instructions per
        // four blocks, against 24 for the earlier loop that spread each pair of blocks over
        // [qs, qs, qs', qs'] lanes, and 42 for two steps of the pair loop below. One idle core of
        // a Zen 4, W [5632 x 2048] and [2048 x 5632] in L3 (pith_bench_kernels BM_qmatvec_q4_0):
        // 19.6 / 19.2 GB/s with the earlier loop.
        static constexpr std::array<std::uint8_t, 64> code_index = [] {
          std::array<std::uint8_t, 64> index{};
          for (int k = 0; k < 4; ++k)
            for (int i = 0; i < 16; ++i) {
              const int byte = 18 * k + 2 + i;  // byte of the group
              index[static_cast<std::size_t>(16 * k + i)] = static_cast<std::uint8_t>(byte < 64 ? byte : 64 + (byte - 56));
            }
          return index;
        }();
        const __m512i index = _mm512_loadu_si512(code_index.data());
        // Words 0, 9, 18, 27 of the group (the four d_W), each four times, in the low 256 bits.
        const __m512i d_words = _mm512_castsi256_si512(
            _mm256_setr_epi16(0, 0, 0, 0, 9, 9, 9, 9, 18, 18, 18, 18, 27, 27, 27, 27));
        const __m512i low = _mm512_set1_epi8(0x0F);
        __m512 acc_b = _mm512_setzero_ps();
        const auto group_step = [&](std::size_t g, __m512& accumulator) {
          const std::byte* group = w + 4 * g * sizeof(block);
          const __m512i head = _mm512_loadu_si512(group);
          const __m512i tail = _mm512_castsi128_si512(_mm_loadu_si128(reinterpret_cast<const __m128i*>(group + 56)));
          const __m512i codes = _mm512_permutex2var_epi8(head, index, tail);
          const std::int8_t* y = a[0].q4x + g * 128;
          __m512i p = _mm512_loadu_si512(a[0].start4x + g * 16);
          p = _mm512_dpbusd_epi32(p, _mm512_and_si512(codes, low), _mm512_loadu_si512(y));
          p = _mm512_dpbusd_epi32(p, _mm512_and_si512(_mm512_srli_epi16(codes, 4), low), _mm512_loadu_si512(y + 64));
          const __m512 dw = _mm512_cvtph_ps(_mm512_castsi512_si256(_mm512_permutexvar_epi16(d_words, head)));
          accumulator =
              _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), _mm512_mul_ps(dw, _mm512_loadu_ps(a[0].d4x + g * 16)), accumulator);
        };
        const std::size_t groups = blocks / 4;
        std::size_t g = 0;
        for (; g + 2 <= groups; g += 2) {
          group_step(g, acc512);
          group_step(g + 1, acc_b);
        }
        if (g < groups) group_step(g, acc512);
        b = 4 * groups;
        acc512 = _mm512_add_ps(acc512, acc_b);
      }
#endif
      for (; b + 2 <= blocks; b += 2) {
        const std::byte* b0 = w + b * sizeof(block);
        const std::byte* b1 = b0 + sizeof(block);
        const __m256i both = _mm256_inserti128_si256(
            _mm256_castsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b0 + 2))),
            _mm_loadu_si128(reinterpret_cast<const __m128i*>(b1 + 2)), 1);
        const __m512i codes = _mm512_and_si512(
            _mm512_srlv_epi64(_mm512_permutexvar_epi64(pair_lanes, _mm512_castsi256_si512(both)), nibble_shift),
            _mm512_set1_epi8(0x0F));
        // d_W of both blocks (lanes 0, 1) times d_Y of both, spread to lanes 0-7 and 8-15.
        const __m128 dw = _mm_cvtph_ps(_mm_cvtsi32_si128(static_cast<int>(load_u16(b0) | (std::uint32_t{load_u16(b1)} << 16))));
        const __m128 dy = _mm_castpd_ps(_mm_load_sd(reinterpret_cast<const double*>(a[0].d + b)));
        const __m512 scale = _mm512_permutexvar_ps(scale_lanes, _mm512_castps128_ps512(_mm_mul_ps(dw, dy)));
        const __m512i start = _mm512_loadu_si512(a[0].minus8 + b * (quant::qk / 4));
        const __m512i p = _mm512_dpbusd_epi32(start, codes, _mm512_loadu_si512(a[0].q + b * quant::qk));
        acc512 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), scale, acc512);
      }
      acc[1][0] = _mm256_add_ps(_mm512_castps512_ps256(acc512),
                                _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(acc512), 1)));
    }
#endif
    for (; b + 2 <= blocks; b += 2) {
      block_step(b, acc[0]);
      block_step(b + 1, acc[1]);
    }
    if (b < blocks) block_step(b, acc[0]);
  } else if constexpr (T == dtype::iq4_xs) {
    using block = quant::block_iq4_xs;
    const __m256i table =
        _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(quant::iq4nl_values)));
    for (std::size_t sb = 0; sb < cols / quant::qk_k; ++sb) {
      const std::byte* base = w + sb * sizeof(block);
      const quant::block_iq4_xs x = quant::load_block<dtype::iq4_xs>(base, 0);
      __m256i sumi[NX];
      for (std::size_t r = 0; r < NX; ++r) sumi[r] = _mm256_setzero_si256();
      for (std::size_t ib = 0; ib < 8; ++ib) {
        // Sub-block ib: table values of its 32 codes (Q4_0 nibble order), scale ls − 32 (§1.2).
        const int ls = ((x.scales_l[ib >> 1] >> (4 * (ib & 1))) & 15) | (((x.scales_h >> (2 * ib)) & 3) << 4);
        const __m256i scale16 = _mm256_set1_epi16(static_cast<short>(ls - 32));
        const __m256i wq = _mm256_shuffle_epi8(table, nibbles_32(base + offsetof(block, qs) + 16 * ib));
        const __m256i magnitude = _mm256_sign_epi8(wq, wq);
        for (std::size_t r = 0; r < NX; ++r) {
          const __m256i y = load256(a[r].q + sb * quant::qk_k + 32 * ib);
          sumi[r] = _mm256_add_epi32(sumi[r], dot_scaled(magnitude, _mm256_sign_epi8(y, wq), scale16));
        }
      }
      const float d = f16(base);
      for (std::size_t r = 0; r < NX; ++r)
        acc[sb & 1][r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sumi[r]), _mm256_set1_ps(a[r].d[sb] * d), acc[sb & 1][r]);
    }
  } else if constexpr (T == dtype::q2_k || T == dtype::q3_k) {
    using block = quant::block_t<T>;
    const __m256i three = _mm256_set1_epi8(3);
    for (std::size_t sb = 0; sb < cols / quant::qk_k; ++sb) {
      const std::byte* base = w + sb * sizeof(block);
      // Sub-block scales (lane s = sub-block s) and, for Q2_K, mins.
      __m256i scales16, mins16 = _mm256_setzero_si256();
      if constexpr (T == dtype::q2_k) {
        const __m128i packed = _mm_loadu_si128(reinterpret_cast<const __m128i*>(base + offsetof(block, scales)));
        scales16 = _mm256_cvtepu8_epi16(_mm_and_si128(packed, _mm_set1_epi8(0x0F)));
        mins16 = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(packed, 4), _mm_set1_epi8(0x0F)));
      } else {
        std::uint8_t packed[12];
        std::memcpy(packed, base + offsetof(block, scales), 12);
        alignas(16) std::int8_t sc[16];
        for (std::size_t s = 0; s < 16; ++s) sc[s] = static_cast<std::int8_t>(quant::q3_k_scale(packed, s));
        scales16 = _mm256_cvtepi8_epi16(_mm_load_si128(reinterpret_cast<const __m128i*>(sc)));
      }
      __m256i high_bits = _mm256_setzero_si256();
      if constexpr (T == dtype::q3_k) high_bits = load256(base + offsetof(block, hmask));
      __m256i sumi[NX];
      for (std::size_t r = 0; r < NX; ++r) sumi[r] = _mm256_setzero_si256();
      for (std::size_t n = 0; n < 2; ++n) {
        const __m256i q = load256(base + offsetof(block, qs) + 32 * n);
        const __m256i half_scales = n == 0 ? _mm256_permute2x128_si256(scales16, scales16, 0x00)
                                           : _mm256_permute2x128_si256(scales16, scales16, 0x11);
        for (std::size_t k = 0; k < 4; ++k) {
          // Elements 128n + 32k + l: bits 2k, 2k + 1 of qs[32n + l] (§1.2); Q3_K adds its high bit
          // (bit 4n + k of hmask[l]) as 4: codes u = q + 4 in 0 … 7, the −4 through bsums.
          __m256i codes = _mm256_and_si256(_mm256_srli_epi16(q, static_cast<int>(2 * k)), three);
          if constexpr (T == dtype::q3_k)
            codes = _mm256_or_si256(
                codes, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(high_bits, static_cast<int>(4 * n + k)),
                                                          _mm256_set1_epi8(1)),
                                         2));
          const __m256i scale16 = _mm256_shuffle_epi8(half_scales, pair_mask(static_cast<int>(2 * k)));
          for (std::size_t r = 0; r < NX; ++r) {
            const std::int8_t* y = a[r].q + sb * quant::qk_k + 128 * n + 32 * k;
            sumi[r] = _mm256_add_epi32(sumi[r], dot_scaled(codes, load256(y), scale16));
          }
        }
      }
      const float d = f16(base + offsetof(block, d));
      for (std::size_t r = 0; r < NX; ++r) {
        const __m256i bsums = load256(a[r].sums + sb * 16);
        const float dy = a[r].d[sb];
        __m256i total = sumi[r];
        if constexpr (T == dtype::q3_k) {
          total = _mm256_sub_epi32(total, _mm256_slli_epi32(_mm256_madd_epi16(bsums, scales16), 2));
        } else {
          const float dmin = f16(base + offsetof(block, dmin));
          acc[1][r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_madd_epi16(bsums, mins16)), _mm256_set1_ps(-dy * dmin),
                                      acc[1][r]);
        }
        acc[0][r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(total), _mm256_set1_ps(dy * d), acc[0][r]);
      }
    }
  } else if constexpr (T == dtype::q4_k || T == dtype::q5_k) {
    using block = quant::block_t<T>;
    const __m256i low = _mm256_set1_epi8(0x0F);
    // Bytes 8 8 9 9 … 15 15: each min twice, against the two bsums of its 32 elements.
    const __m128i pairs = _mm_setr_epi8(8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13, 14, 14, 15, 15);
    for (std::size_t sb = 0; sb < cols / quant::qk_k; ++sb) {
      const std::byte* base = w + sb * sizeof(block);
      // Scales in bytes 0-7, mins in 8-15, built in registers (a vector load of bytes just stored
      // as two words would wait for a failed store-to-load forwarding).
      const k4_scale_words words =
          unpack_scale_words_k4(reinterpret_cast<const std::uint8_t*>(base + offsetof(block, scales)));
      const __m128i packed =
          _mm_setr_epi32(static_cast<int>(words.scales_low), static_cast<int>(words.scales_high),
                         static_cast<int>(words.mins_low), static_cast<int>(words.mins_high));
      const __m256i scales16 = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(packed));
      const __m256i mins16 = _mm256_cvtepu8_epi16(_mm_shuffle_epi8(packed, pairs));
      const std::byte* qs = base + offsetof(block, qs);
      __m256i high_bits = _mm256_setzero_si256();
      if constexpr (T == dtype::q5_k) high_bits = load256(base + offsetof(block, qh));
      __m256i sumi[NX];
      for (std::size_t r = 0; r < NX; ++r) sumi[r] = _mm256_setzero_si256();
      for (std::size_t c = 0; c < 4; ++c) {
        // Chunk c: low nibbles are sub-block 2c, high nibbles 2c + 1 (§1.2).
        const __m256i bytes = load256(qs + 32 * c);
        __m256i lo = _mm256_and_si256(bytes, low);
        __m256i hi = _mm256_and_si256(_mm256_srli_epi16(bytes, 4), low);
        if constexpr (T == dtype::q5_k) {
          const __m256i one = _mm256_set1_epi8(1);
          // Bit 2c (2c + 1) of qh[l] is the 16s bit of the low (high) nibble's element.
          lo = _mm256_or_si256(
              lo, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(high_bits, static_cast<int>(2 * c)), one), 4));
          hi = _mm256_or_si256(
              hi,
              _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(high_bits, static_cast<int>(2 * c + 1)), one), 4));
        }
        const __m256i s_lo = broadcast_word(scales16, static_cast<int>(2 * c));
        const __m256i s_hi = broadcast_word(scales16, static_cast<int>(2 * c + 1));
        for (std::size_t r = 0; r < NX; ++r) {
          const std::int8_t* y = a[r].q + sb * quant::qk_k + 64 * c;
          sumi[r] = _mm256_add_epi32(sumi[r], dot_scaled(lo, load256(y), s_lo));
          sumi[r] = _mm256_add_epi32(sumi[r], dot_scaled(hi, load256(y + 32), s_hi));
        }
      }
      const float d = f16(base), dmin = f16(base + 2);
      for (std::size_t r = 0; r < NX; ++r) {
        // §3.4: dY·d·Σ sc·(q·y) − dY·dmin·Σ m·(bsums pair); the mins through bsums, lane-wise.
        const __m256i msum = _mm256_madd_epi16(load256(a[r].sums + sb * 16), mins16);
        const float dy = a[r].d[sb];
        acc[0][r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sumi[r]), _mm256_set1_ps(dy * d), acc[0][r]);
        acc[1][r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(msum), _mm256_set1_ps(-dy * dmin), acc[1][r]);
      }
    }
  } else if constexpr (T == dtype::q6_k) {
    using block = quant::block_q6_k;
    const __m256i low = _mm256_set1_epi8(0x0F);
    for (std::size_t sb = 0; sb < cols / quant::qk_k; ++sb) {
      const std::byte* base = w + sb * sizeof(block);
      const __m128i sc8 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(base + offsetof(block, scales)));
      const __m256i scales16 = _mm256_cvtepi8_epi16(sc8);  // lane s = scale of sub-block s
      __m256i sumi[NX];
      for (std::size_t r = 0; r < NX; ++r) sumi[r] = _mm256_setzero_si256();
      for (std::size_t n = 0; n < 2; ++n) {
        const __m256i ql0 = load256(base + offsetof(block, ql) + 64 * n);
        const __m256i ql1 = load256(base + offsetof(block, ql) + 64 * n + 32);
        const __m256i qh = load256(base + offsetof(block, qh) + 32 * n);
        // Unsigned codes 0 … 63 of elements 128n + 32g + l (§1.2); the −32 offset through bsums.
        // Bits 2g, 2g + 1 of qh moved to bits 4, 5 (shifts within 16-bit words, then masked).
        const __m256i top = _mm256_set1_epi8(0x30);
        __m256i codes[4];
        codes[0] = _mm256_or_si256(_mm256_and_si256(ql0, low), _mm256_and_si256(_mm256_slli_epi16(qh, 4), top));
        codes[1] = _mm256_or_si256(_mm256_and_si256(ql1, low), _mm256_and_si256(_mm256_slli_epi16(qh, 2), top));
        codes[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), low), _mm256_and_si256(qh, top));
        codes[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), low),
                                   _mm256_and_si256(_mm256_srli_epi16(qh, 2), top));
        // Scales of half n in both 128-bit halves, words 0-7 = sub-blocks 8n … 8n + 7.
        const __m256i half_scales = n == 0 ? _mm256_permute2x128_si256(scales16, scales16, 0x00)
                                           : _mm256_permute2x128_si256(scales16, scales16, 0x11);
        for (std::size_t g = 0; g < 4; ++g) {
          // Lanes 0-15 take sub-block 8n + 2g's scale, lanes 16-31 sub-block 8n + 2g + 1's.
          const __m256i scale16 = _mm256_shuffle_epi8(half_scales, pair_mask(static_cast<int>(2 * g)));
          for (std::size_t r = 0; r < NX; ++r) {
            const std::int8_t* y = a[r].q + sb * quant::qk_k + 128 * n + 32 * g;
            sumi[r] = _mm256_add_epi32(sumi[r], dot_scaled(codes[g], load256(y), scale16));
          }
        }
      }
      const float d = f16(base + offsetof(block, d));
      for (std::size_t r = 0; r < NX; ++r) {
        // −32 Σ_s scale_s · bsums_s (§3.4), lane-wise.
        const __m256i offset = _mm256_madd_epi16(load256(a[r].sums + sb * 16), scales16);
        const __m256i total = _mm256_sub_epi32(sumi[r], _mm256_slli_epi32(offset, 5));
        acc[sb & 1][r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(total), _mm256_set1_ps(a[r].d[sb] * d), acc[sb & 1][r]);
      }
    }
  }
  for (std::size_t r = 0; r < NX; ++r) out[r] = hsum(_mm256_add_ps(acc[0][r], acc[1][r])) + extra[r];
}

template <dtype T>
inline constexpr bool has_kernel = !dtype_is_activation_only(T);

}  // namespace quant_detail::x86
#endif

#if defined(PITH_SIMD_HAS_NEON)
namespace quant_detail::arm {

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
template <dtype T, std::size_t NX>
inline void dot_rows(const std::byte* w, const activation_row* a, std::size_t cols, float* out) noexcept {
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

}  // namespace quant_detail::arm
#endif

/// Whether the primitive set Ops has an integer SIMD kernel for weights of type T (else the
/// scalar reference runs).
template <class Ops, dtype T>
constexpr bool has_quant_kernel() noexcept {
#if defined(PITH_SIMD_HAS_AVX2)
  if constexpr (std::is_same_v<Ops, simd::avx2::ops>) return quant_detail::x86::has_kernel<T>;
#endif
#if defined(PITH_SIMD_HAS_AVX512)
  if constexpr (std::is_same_v<Ops, simd::avx512::ops>) return quant_detail::x86::has_kernel<T>;
#endif
#if defined(PITH_SIMD_HAS_NEON)
  if constexpr (std::is_same_v<Ops, simd::neon::ops>) return quant_detail::arm::has_kernel<T>;
#endif
  return false;
}

/// Whether the avx512 set's kernels use vpdpbusd (AVX512-VNNI compiled in).
inline constexpr bool quant_dot_vnni =
#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
    true;
#else
    false;
#endif

/// out[r] = W row (cols elements of T at `w`, any alignment) · a[r] for r < NX, with Ops's kernel
/// (W's blocks decoded once for the NX rows) or the scalar reference.
template <class Ops, dtype T, std::size_t NX>
inline void quant_dot_rows(const std::byte* w, const activation_row* a, std::size_t cols, float* out) noexcept {
  if constexpr (has_quant_kernel<Ops, T>()) {
#if defined(PITH_SIMD_HAS_AVX2)
    constexpr bool vnni = quant_dot_vnni && !std::is_same_v<Ops, simd::avx2::ops>;
    quant_detail::x86::dot_rows<T, vnni, NX>(w, a, cols, out);
#elif defined(PITH_SIMD_HAS_NEON)
    quant_detail::arm::dot_rows<T, NX>(w, a, cols, out);
#endif
  } else {
    for (std::size_t r = 0; r < NX; ++r) out[r] = vec_dot_reference<T>(w, a[r], cols);
  }
}

}  // namespace PITH_ISA_NAMESPACE
}  // namespace pith::kernels
