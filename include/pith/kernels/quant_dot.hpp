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
// 2 · 128 · 127 (Q8_0 magnitudes) or 2 · 63 · 127 (K-quant codes). vec_dot_reference<T> is the
// scalar reference for every type; the x86 kernels (simd/quant_dot_x86.hpp: AVX2 maddubs/madd, or
// vpdpbusd with AVX512-VNNI for the avx512 set) cover all twelve weight types; the NEON kernels
// (simd/quant_dot_neon.hpp: SDOT with the dot-product extension, widening multiplies without) cover
// Q8_0, Q4_0, Q4_K, Q5_K, Q6_K; every other (type, ISA) pair runs the reference. Results differ from
// the reference only by float accumulation order (the integer sums are exact).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>

#include "pith/core/dtype.hpp"
#include "pith/core/half.hpp"
#include "pith/core/quant.hpp"
#include "pith/simd/quant_dot_neon.hpp"
#include "pith/simd/quant_dot_x86.hpp"
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
        quant::unpack_scales_k4(x.scales, sc, mn);
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


/// Whether the primitive set Ops has an integer SIMD kernel for weights of type T (else the
/// scalar reference runs).
template <class Ops, dtype T>
constexpr bool has_quant_kernel() noexcept {
#if defined(PITH_SIMD_HAS_AVX2)
  if constexpr (std::is_same_v<Ops, simd::avx2::ops>) return simd::quant_x86::has_kernel<T>;
#endif
#if defined(PITH_SIMD_HAS_AVX512)
  if constexpr (std::is_same_v<Ops, simd::avx512::ops>) return simd::quant_x86::has_kernel<T>;
#endif
#if defined(PITH_SIMD_HAS_NEON)
  if constexpr (std::is_same_v<Ops, simd::neon::ops>) return simd::quant_neon::has_kernel<T>;
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
    simd::quant_x86::dot_rows<T, vnni, NX>(w, a, cols, out);
#elif defined(PITH_SIMD_HAS_NEON)
    simd::quant_neon::dot_rows<T, NX>(w, a, cols, out);
#endif
  } else {
    for (std::size_t r = 0; r < NX; ++r) out[r] = vec_dot_reference<T>(w, a[r], cols);
  }
}

}  // namespace PITH_ISA_NAMESPACE
}  // namespace pith::kernels
