// SPDX-License-Identifier: MIT
// Weight quantizers: rows of float32 to GGUF's block formats, as llama.cpp's reference quantizers
// (what llama-quantize writes without an importance matrix).
//
// The algorithms are those of ../shared/notes/quantization.md §4: the 32-element legacy types
// (§4.2), the scale searches (§4.3), the K-quants (§4.4) and the IQ4_NL / IQ4_XS search (§4.5,
// no importance matrix: weights x²). They are deterministic and reproduce the reference bytes:
// every sum runs in element order in float32, with the reference's association (`w·x·l` is
// `(w·x)·l`), `nint` rounds half to even (ggml's nearest_int) and `roundf` half away from zero
// where §4 says so, and the first of equal maxima wins.
//
// FMA contraction changes bytes (note §4.6): a compiler allowed to fuse `s += w·x` into one fma
// rounds once instead of twice and picks other scales for about 1% of the K-quant blocks. The
// functions below are compiled with contraction off whatever the build flags (GCC: the
// `fp-contract=off` optimize pragma; clang: `#pragma clang fp contract(off)` inside each body),
// so a -march=native build writes the same bytes as a portable one (checked: GCC 12 at -O3
// -march=native in its default -ffp-contract=fast, clang 14 in its default -ffp-contract=on; clang's
// -ffp-contract=fast overrides every pragma and is not supported here).
//
// Non-finite input (a checkpoint holding NaN or inf) never triggers undefined behaviour: the
// float-to-integer casts saturate as x86 does (truncate_to_int); the blocks it gives are garbage.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>

#include "pith/core/dtype.hpp"
#include "pith/core/error.hpp"
#include "pith/core/half.hpp"
#include "pith/core/quant.hpp"

// PITH_QUANT_NO_CONTRACT (core/quant.hpp) opens each function body: clang's pragma applies to the
// enclosing compound statement.
#if !defined(__clang__) && defined(__GNUC__)
#pragma GCC push_options
#pragma GCC optimize("fp-contract=off")
#endif

namespace pith::quant {

/// The dtypes quantize_row writes (the weight types of note §4; not the activation-only Q8_1, Q8_K).
constexpr bool dtype_has_quantizer(dtype t) noexcept {
  switch (t) {
    case dtype::q4_0:
    case dtype::q4_1:
    case dtype::q5_0:
    case dtype::q5_1:
    case dtype::q8_0:
    case dtype::q2_k:
    case dtype::q3_k:
    case dtype::q4_k:
    case dtype::q5_k:
    case dtype::q6_k:
    case dtype::iq4_nl:
    case dtype::iq4_xs: return true;
    default: return false;
  }
}

namespace detail {

/// Groups whose largest |x| is below this are all zero (ggml's GROUP_MAX_EPS).
inline constexpr float group_max_eps = 1e-15f;

/// nint (note §0): round half to even by adding 1.5·2^23 and reading the low mantissa bits, exactly
/// ggml's nearest_int (valid for |v| ≤ 4194303, which every caller here respects for finite input).
inline int nearest_int(float v) noexcept {
  PITH_QUANT_NO_CONTRACT
  const float shifted = v + 12582912.0f;
  std::int32_t bits;
  std::memcpy(&bits, &shifted, 4);
  return (bits & 0x007fffff) - 0x00400000;
}

/// The C cast float → int (truncation) where it is defined; NaN and values outside int's range give
/// INT_MIN, what x86's cvttss2si returns, instead of undefined behaviour (non-finite weights).
inline int truncate_to_int(float v) noexcept {
  return v > -2147483648.0f && v < 2147483648.0f ? static_cast<int>(v) : std::numeric_limits<int>::min();
}

/// The C cast float → int8_t of the reference (in range: truncation; else the low byte of
/// truncate_to_int, as the compiled reference does).
inline int truncate_to_int8(float v) noexcept { return static_cast<std::int8_t>(truncate_to_int(v)); }

template <class Block>
inline void store_block(const Block& block, std::byte* out) noexcept {
  std::memcpy(out, &block, sizeof(Block));
}

// ---- note §4.2: the 32-element legacy types ------------------------------------------------------

inline void quantize_q8_0(const float* x, std::byte* out) noexcept {
  PITH_QUANT_NO_CONTRACT
  block_q8_0 y{};
  float amax = 0.0f;
  for (std::size_t j = 0; j < qk; ++j) amax = std::max(amax, std::fabs(x[j]));
  const float d = amax / 127.0f;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  y.d = float_to_half(d);
  for (std::size_t j = 0; j < qk; ++j) y.qs[j] = static_cast<std::int8_t>(truncate_to_int8(std::roundf(x[j] * id)));
  store_block(y, out);
}

/// The element of largest |x| with its sign (first occurrence wins).
inline float signed_absolute_max(const float* x, std::size_t n) noexcept {
  float amax = 0.0f, max = 0.0f;
  for (std::size_t j = 0; j < n; ++j)
    if (amax < std::fabs(x[j])) {
      amax = std::fabs(x[j]);
      max = x[j];
    }
  return max;
}

inline void quantize_q4_0(const float* x, std::byte* out) noexcept {
  PITH_QUANT_NO_CONTRACT
  block_q4_0 y{};
  const float d = signed_absolute_max(x, qk) / -8.0f;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  y.d = float_to_half(d);
  for (std::size_t j = 0; j < qk / 2; ++j) {
    const int q0 = std::min(15, truncate_to_int8(x[j] * id + 8.5f));
    const int q1 = std::min(15, truncate_to_int8(x[j + qk / 2] * id + 8.5f));
    y.qs[j] = static_cast<std::uint8_t>(q0 | (q1 << 4));
  }
  store_block(y, out);
}

inline void quantize_q5_0(const float* x, std::byte* out) noexcept {
  PITH_QUANT_NO_CONTRACT
  block_q5_0 y{};
  const float d = signed_absolute_max(x, qk) / -16.0f;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  y.d = float_to_half(d);
  std::uint32_t qh = 0;
  for (std::size_t j = 0; j < qk / 2; ++j) {
    const int q0 = std::min(31, truncate_to_int8(x[j] * id + 16.5f));
    const int q1 = std::min(31, truncate_to_int8(x[j + qk / 2] * id + 16.5f));
    y.qs[j] = static_cast<std::uint8_t>((q0 & 0xF) | ((q1 & 0xF) << 4));
    qh |= static_cast<std::uint32_t>((q0 >> 4) & 1) << j;
    qh |= static_cast<std::uint32_t>((q1 >> 4) & 1) << (j + qk / 2);
  }
  std::memcpy(y.qh, &qh, 4);
  store_block(y, out);
}

/// Q4_1 (levels 15) and Q5_1 (levels 31): affine over [min, max].
template <class Block, int Levels>
inline void quantize_affine_32(const float* x, std::byte* out) noexcept {
  PITH_QUANT_NO_CONTRACT
  Block y{};
  float min = x[0], max = x[0];
  for (std::size_t j = 1; j < qk; ++j) {
    if (x[j] < min) min = x[j];
    if (x[j] > max) max = x[j];
  }
  const float d = (max - min) / static_cast<float>(Levels);
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  y.d = float_to_half(d);
  y.m = float_to_half(min);
  std::uint32_t qh = 0;
  for (std::size_t j = 0; j < qk / 2; ++j) {
    int q0 = truncate_to_int((x[j] - min) * id + 0.5f);
    int q1 = truncate_to_int((x[j + qk / 2] - min) * id + 0.5f);
    if constexpr (Levels == 15) {
      q0 = std::min(15, static_cast<int>(static_cast<std::int8_t>(q0)));  // (int8_t) cast, then min
      q1 = std::min(15, static_cast<int>(static_cast<std::int8_t>(q1)));
      y.qs[j] = static_cast<std::uint8_t>(q0 | (q1 << 4));
    } else {
      // Q5_1 has no clamp in the reference (note §4.2); (x − min)·id ≤ 31 up to rounding.
      q0 &= 0xFF;
      q1 &= 0xFF;
      y.qs[j] = static_cast<std::uint8_t>((q0 & 0xF) | ((q1 & 0xF) << 4));
      qh |= static_cast<std::uint32_t>((q0 >> 4) & 1) << j;
      qh |= static_cast<std::uint32_t>((q1 >> 4) & 1) << (j + qk / 2);
    }
  }
  if constexpr (Levels == 31) std::memcpy(y.qh, &qh, 4);
  store_block(y, out);
}

// ---- note §4.3: the scale searches ----------------------------------------------------------------

/// make_qx_quants with rmse_type 1 and no importance weights (weights x²): the symmetric scale of
/// `n` values on levels [−nmax, nmax − 1], refined over 18 nearby grids. Writes L = l + nmax.
inline float make_qx_quants(int n, int nmax, const float* x, std::int8_t* levels) noexcept {
  PITH_QUANT_NO_CONTRACT
  float max = 0.0f, amax = 0.0f;
  for (int i = 0; i < n; ++i) {
    const float ax = std::fabs(x[i]);
    if (ax > amax) {
      amax = ax;
      max = x[i];
    }
  }
  if (amax < group_max_eps) {
    for (int i = 0; i < n; ++i) levels[i] = 0;
    return 0.0f;
  }
  float iscale = static_cast<float>(-nmax) / max;
  float sumlx = 0.0f, suml2 = 0.0f;
  for (int i = 0; i < n; ++i) {
    const int l = std::clamp(nearest_int(iscale * x[i]), -nmax, nmax - 1);
    levels[i] = static_cast<std::int8_t>(l + nmax);
    const float w = x[i] * x[i];
    const float lf = static_cast<float>(l);
    sumlx += w * x[i] * lf;
    suml2 += w * lf * lf;
  }
  float scale = suml2 != 0.0f ? sumlx / suml2 : 0.0f;
  float best = scale * sumlx;
  for (int is = -9; is <= 9; ++is) {
    if (is == 0) continue;
    iscale = -(static_cast<float>(nmax) + 0.1f * static_cast<float>(is)) / max;
    sumlx = suml2 = 0.0f;
    for (int i = 0; i < n; ++i) {
      const float lf = static_cast<float>(std::clamp(nearest_int(iscale * x[i]), -nmax, nmax - 1));
      const float w = x[i] * x[i];
      sumlx += w * x[i] * lf;
      suml2 += w * lf * lf;
    }
    if (suml2 > 0.0f && sumlx * sumlx > best * suml2) {
      for (int i = 0; i < n; ++i)
        levels[i] = static_cast<std::int8_t>(nmax + std::clamp(nearest_int(iscale * x[i]), -nmax, nmax - 1));
      scale = sumlx / suml2;
      best = scale * sumlx;
    }
  }
  return scale;
}

/// make_q3_quants with do_rmse: make_qx_quants' start, then up to 5 coordinate-descent passes that
/// move one level at a time while Slx²/Sll grows. Writes L = l + nmax.
inline float make_q3_quants(int n, int nmax, const float* x, std::int8_t* levels) noexcept {
  PITH_QUANT_NO_CONTRACT
  float max = 0.0f, amax = 0.0f;
  for (int i = 0; i < n; ++i) {
    const float ax = std::fabs(x[i]);
    if (ax > amax) {
      amax = ax;
      max = x[i];
    }
  }
  if (amax < group_max_eps) {
    for (int i = 0; i < n; ++i) levels[i] = 0;
    return 0.0f;
  }
  const float iscale = static_cast<float>(-nmax) / max;
  float sumlx = 0.0f, suml2 = 0.0f;
  for (int i = 0; i < n; ++i) {
    const int l = std::clamp(nearest_int(iscale * x[i]), -nmax, nmax - 1);
    levels[i] = static_cast<std::int8_t>(l);
    const float w = x[i] * x[i];
    const float lf = static_cast<float>(l);
    sumlx += w * x[i] * lf;
    suml2 += w * lf * lf;
  }
  for (int pass = 0; pass < 5; ++pass) {
    int changed = 0;
    for (int i = 0; i < n; ++i) {
      const float w = x[i] * x[i];
      const float li = static_cast<float>(levels[i]);
      float slx = sumlx - w * x[i] * li;
      if (slx > 0.0f) {
        float sl2 = suml2 - w * li * li;
        const int proposed = std::clamp(nearest_int(x[i] * sl2 / slx), -nmax, nmax - 1);
        if (proposed != levels[i]) {
          const float pf = static_cast<float>(proposed);
          slx += w * x[i] * pf;
          sl2 += w * pf * pf;
          if (sl2 > 0.0f && slx * slx * suml2 > sumlx * sumlx * sl2) {
            levels[i] = static_cast<std::int8_t>(proposed);
            sumlx = slx;
            suml2 = sl2;
            ++changed;
          }
        }
      }
    }
    if (changed == 0) break;
  }
  for (int i = 0; i < n; ++i) levels[i] = static_cast<std::int8_t>(levels[i] + nmax);
  return sumlx / suml2;
}

/// make_qkx2_quants: the affine fit x ≈ scale·L − the_min (the_min ≥ 0) on levels [0, nmax] with
/// weights w, trying nstep + 1 grids and a weighted least-squares fit on each. Writes L.
inline float make_qkx2_quants(int n, int nmax, const float* x, const float* weights, std::uint8_t* levels,
                              float& the_min, std::uint8_t* scratch, float rmin, float rdelta, int nstep,
                              bool use_mad) noexcept {
  PITH_QUANT_NO_CONTRACT
  float min = x[0], max = x[0];
  float sum_w = weights[0];
  float sum_x = sum_w * x[0];
  for (int i = 1; i < n; ++i) {
    if (x[i] < min) min = x[i];
    if (x[i] > max) max = x[i];
    const float w = weights[i];
    sum_w += w;
    sum_x += w * x[i];
  }
  if (min > 0.0f) min = 0.0f;
  if (max == min) {
    for (int i = 0; i < n; ++i) levels[i] = 0;
    the_min = -min;
    return 0.0f;
  }
  float iscale = static_cast<float>(nmax) / (max - min);
  float scale = 1.0f / iscale;
  float best_error = 0.0f;
  for (int i = 0; i < n; ++i) {
    const int l = std::clamp(nearest_int(iscale * (x[i] - min)), 0, nmax);
    levels[i] = static_cast<std::uint8_t>(l);
    float diff = scale * static_cast<float>(l) + min - x[i];
    diff = use_mad ? std::fabs(diff) : diff * diff;
    best_error += weights[i] * diff;
  }
  for (int is = 0; is <= nstep; ++is) {
    iscale = (rmin + rdelta * static_cast<float>(is) + static_cast<float>(nmax)) / (max - min);
    float sum_l = 0.0f, sum_l2 = 0.0f, sum_xl = 0.0f;
    for (int i = 0; i < n; ++i) {
      const int l = std::clamp(nearest_int(iscale * (x[i] - min)), 0, nmax);
      scratch[i] = static_cast<std::uint8_t>(l);
      const float w = weights[i];
      const float lf = static_cast<float>(l);
      sum_l += w * lf;
      sum_l2 += w * lf * lf;
      sum_xl += w * lf * x[i];
    }
    const float determinant = sum_w * sum_l2 - sum_l * sum_l;
    if (determinant > 0.0f) {
      float this_scale = (sum_w * sum_xl - sum_x * sum_l) / determinant;
      float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / determinant;
      if (this_min > 0.0f) {
        this_min = 0.0f;
        this_scale = sum_xl / sum_l2;
      }
      float error = 0.0f;
      for (int i = 0; i < n; ++i) {
        float diff = this_scale * static_cast<float>(scratch[i]) + this_min - x[i];
        diff = use_mad ? std::fabs(diff) : diff * diff;
        error += weights[i] * diff;
      }
      if (error < best_error) {
        std::copy(scratch, scratch + n, levels);
        best_error = error;
        scale = this_scale;
        min = this_min;
      }
    }
  }
  the_min = -min;
  return scale;
}

// ---- note §4.4: the K-quants ----------------------------------------------------------------------

/// Packs the four 2-bit levels of each group of 128 (Q2_K and Q3_K quants, note §1.2).
inline void pack_2bit(const std::uint8_t* levels, std::uint8_t* qs) noexcept {
  for (std::size_t j = 0; j < qk_k; j += 128)
    for (std::size_t l = 0; l < 32; ++l)
      qs[j / 4 + l] = static_cast<std::uint8_t>(levels[j + l] | (levels[j + l + 32] << 2) |
                                                (levels[j + l + 64] << 4) | (levels[j + l + 96] << 6));
}

inline void quantize_q2_k(const float* x, std::byte* out) noexcept {
  PITH_QUANT_NO_CONTRACT
  block_q2_k y{};
  std::uint8_t levels[qk_k], scratch[16];
  float weights[16], mins[qk_k / 16], scales[qk_k / 16];
  float max_scale = 0.0f, max_min = 0.0f;
  for (std::size_t j = 0; j < qk_k / 16; ++j) {
    for (std::size_t l = 0; l < 16; ++l) weights[l] = std::fabs(x[16 * j + l]);
    scales[j] = make_qkx2_quants(16, 3, x + 16 * j, weights, levels + 16 * j, mins[j], scratch, -0.5f, 0.1f, 15, true);
    if (scales[j] > max_scale) max_scale = scales[j];
    if (mins[j] > max_min) max_min = mins[j];
  }
  if (max_scale > 0.0f) {
    const float iscale = 15.0f / max_scale;
    for (std::size_t j = 0; j < qk_k / 16; ++j) y.scales[j] = static_cast<std::uint8_t>(nearest_int(iscale * scales[j]));
    y.d = float_to_half(max_scale / 15.0f);
  } else {
    y.d = float_to_half(0.0f);
  }
  if (max_min > 0.0f) {
    const float iscale = 15.0f / max_min;
    for (std::size_t j = 0; j < qk_k / 16; ++j)
      y.scales[j] = static_cast<std::uint8_t>(y.scales[j] | (nearest_int(iscale * mins[j]) << 4));
    y.dmin = float_to_half(max_min / 15.0f);
  } else {
    y.dmin = float_to_half(0.0f);
  }
  for (std::size_t j = 0; j < qk_k / 16; ++j) {
    const float d = half_to_float(y.d) * static_cast<float>(y.scales[j] & 0xF);
    if (d == 0.0f) continue;
    const float dm = half_to_float(y.dmin) * static_cast<float>(y.scales[j] >> 4);
    for (std::size_t i = 0; i < 16; ++i)
      levels[16 * j + i] = static_cast<std::uint8_t>(std::clamp(nearest_int((x[16 * j + i] + dm) / d), 0, 3));
  }
  pack_2bit(levels, y.qs);
  store_block(y, out);
}

inline void quantize_q3_k(const float* x, std::byte* out) noexcept {
  PITH_QUANT_NO_CONTRACT
  block_q3_k y{};
  std::int8_t levels[qk_k];
  float scales[qk_k / 16];
  float max_scale = 0.0f, amax = 0.0f;
  for (std::size_t j = 0; j < qk_k / 16; ++j) {
    scales[j] = make_q3_quants(16, 4, x + 16 * j, levels + 16 * j);
    const float scale = std::fabs(scales[j]);
    if (scale > amax) {
      amax = scale;
      max_scale = scales[j];
    }
  }
  if (max_scale != 0.0f) {
    const float iscale = -32.0f / max_scale;
    for (std::size_t j = 0; j < qk_k / 16; ++j) {
      // The reference narrows to int8 before clamping.
      int l = static_cast<std::int8_t>(nearest_int(iscale * scales[j]));
      l = std::clamp(l, -32, 31) + 32;
      if (j < 8)
        y.scales[j] = static_cast<std::uint8_t>(l & 0xF);
      else
        y.scales[j - 8] = static_cast<std::uint8_t>(y.scales[j - 8] | ((l & 0xF) << 4));
      y.scales[j % 4 + 8] = static_cast<std::uint8_t>(y.scales[j % 4 + 8] | ((l >> 4) << (2 * (j / 4))));
    }
    y.d = float_to_half(1.0f / iscale);
  } else {
    y.d = float_to_half(0.0f);
  }
  for (std::size_t j = 0; j < qk_k / 16; ++j) {
    const float d = half_to_float(y.d) * static_cast<float>(q3_k_scale(y.scales, j));
    if (d == 0.0f) continue;
    for (std::size_t i = 0; i < 16; ++i)
      levels[16 * j + i] = static_cast<std::int8_t>(std::clamp(nearest_int(x[16 * j + i] / d), -4, 3) + 4);
  }
  std::uint8_t low[qk_k];
  for (std::size_t j = 0; j < qk_k; ++j) {
    int l = levels[j];
    if (l > 3) {
      y.hmask[j % 32] = static_cast<std::uint8_t>(y.hmask[j % 32] | (1u << (j / 32)));
      l -= 4;
    }
    low[j] = static_cast<std::uint8_t>(l);
  }
  pack_2bit(low, y.qs);
  store_block(y, out);
}

/// Q4_K (Bits 4) and Q5_K (Bits 5): 8 sub-blocks of 32 with 6-bit scales and mins.
template <int Bits>
inline void quantize_q45_k(const float* x, std::byte* out) noexcept {
  PITH_QUANT_NO_CONTRACT
  using block = std::conditional_t<Bits == 4, block_q4_k, block_q5_k>;
  constexpr int nmax = (1 << Bits) - 1;
  block y{};
  std::uint8_t levels[qk_k], scratch[32];
  float weights[32], mins[qk_k / 32], scales[qk_k / 32];
  float max_scale = 0.0f, max_min = 0.0f;
  for (std::size_t j = 0; j < qk_k / 32; ++j) {
    const float* xs = x + 32 * j;
    float sum_x2 = 0.0f;
    for (std::size_t l = 0; l < 32; ++l) sum_x2 += xs[l] * xs[l];
    const float av_x = std::sqrt(sum_x2 / 32.0f);
    for (std::size_t l = 0; l < 32; ++l) weights[l] = av_x + std::fabs(xs[l]);
    scales[j] = Bits == 4
                    ? make_qkx2_quants(32, nmax, xs, weights, levels + 32 * j, mins[j], scratch, -1.0f, 0.1f, 20, false)
                    : make_qkx2_quants(32, nmax, xs, weights, levels + 32 * j, mins[j], scratch, -0.5f, 0.1f, 15, false);
    if (scales[j] > max_scale) max_scale = scales[j];
    if (mins[j] > max_min) max_min = mins[j];
  }
  const float inv_scale = max_scale > 0.0f ? 63.0f / max_scale : 0.0f;
  const float inv_min = max_min > 0.0f ? 63.0f / max_min : 0.0f;
  for (std::size_t j = 0; j < qk_k / 32; ++j) {
    // The reference narrows to uint8 before taking the minimum with 63.
    const auto ls = std::min<std::uint8_t>(63, static_cast<std::uint8_t>(nearest_int(inv_scale * scales[j])));
    const auto lm = std::min<std::uint8_t>(63, static_cast<std::uint8_t>(nearest_int(inv_min * mins[j])));
    if (j < 4) {
      y.scales[j] = ls;
      y.scales[j + 4] = lm;
    } else {
      y.scales[j + 4] = static_cast<std::uint8_t>((ls & 0xF) | ((lm & 0xF) << 4));
      y.scales[j - 4] = static_cast<std::uint8_t>(y.scales[j - 4] | ((ls >> 4) << 6));
      y.scales[j] = static_cast<std::uint8_t>(y.scales[j] | ((lm >> 4) << 6));
    }
  }
  y.d = float_to_half(max_scale / 63.0f);
  y.dmin = float_to_half(max_min / 63.0f);
  for (std::size_t j = 0; j < qk_k / 32; ++j) {
    std::uint8_t sc, m;
    scale_min_k4(j, y.scales, sc, m);
    const float d = half_to_float(y.d) * static_cast<float>(sc);
    if (d == 0.0f) continue;
    const float dm = half_to_float(y.dmin) * static_cast<float>(m);
    for (std::size_t i = 0; i < 32; ++i)
      levels[32 * j + i] = static_cast<std::uint8_t>(std::clamp(nearest_int((x[32 * j + i] + dm) / d), 0, nmax));
  }
  for (std::size_t c = 0; c < qk_k / 64; ++c)
    for (std::size_t l = 0; l < 32; ++l) {
      int low = levels[64 * c + l], high = levels[64 * c + 32 + l];
      if constexpr (Bits == 5) {
        if (low > 15) {
          low -= 16;
          y.qh[l] = static_cast<std::uint8_t>(y.qh[l] | (1u << (2 * c)));
        }
        if (high > 15) {
          high -= 16;
          y.qh[l] = static_cast<std::uint8_t>(y.qh[l] | (2u << (2 * c)));
        }
      }
      y.qs[32 * c + l] = static_cast<std::uint8_t>(low | (high << 4));
    }
  store_block(y, out);
}

inline void quantize_q6_k(const float* x, std::byte* out) noexcept {
  PITH_QUANT_NO_CONTRACT
  block_q6_k y{};
  std::int8_t levels[qk_k];
  float scales[qk_k / 16];
  float max_scale = 0.0f, max_abs_scale = 0.0f;
  for (std::size_t s = 0; s < qk_k / 16; ++s) {
    scales[s] = make_qx_quants(16, 32, x + 16 * s, levels + 16 * s);
    const float abs_scale = std::fabs(scales[s]);
    if (abs_scale > max_abs_scale) {
      max_abs_scale = abs_scale;
      max_scale = scales[s];
    }
  }
  if (max_abs_scale < group_max_eps) {
    y.d = float_to_half(0.0f);
    store_block(y, out);
    return;
  }
  const float iscale = -128.0f / max_scale;
  y.d = float_to_half(1.0f / iscale);
  for (std::size_t s = 0; s < qk_k / 16; ++s)
    y.scales[s] = static_cast<std::int8_t>(std::min(127, nearest_int(iscale * scales[s])));
  for (std::size_t s = 0; s < qk_k / 16; ++s) {
    const float d = half_to_float(y.d) * static_cast<float>(y.scales[s]);
    if (d == 0.0f) continue;
    for (std::size_t i = 0; i < 16; ++i)
      levels[16 * s + i] = static_cast<std::int8_t>(std::clamp(nearest_int(x[16 * s + i] / d), -32, 31) + 32);
  }
  for (std::size_t n = 0; n < qk_k / 128; ++n)
    for (std::size_t l = 0; l < 32; ++l) {
      const std::int8_t* q = levels + 128 * n + l;
      y.ql[64 * n + l] = static_cast<std::uint8_t>((q[0] & 0xF) | ((q[64] & 0xF) << 4));
      y.ql[64 * n + 32 + l] = static_cast<std::uint8_t>((q[32] & 0xF) | ((q[96] & 0xF) << 4));
      y.qh[32 * n + l] =
          static_cast<std::uint8_t>((q[0] >> 4) | ((q[32] >> 4) << 2) | ((q[64] >> 4) << 4) | ((q[96] >> 4) << 6));
    }
  store_block(y, out);
}

// ---- note §4.5: IQ4_NL and IQ4_XS (no importance matrix: weights x², 7 tries each side) -----------

/// The index of the table entry nearest to v; a tie picks the upper entry. The reference finds the
/// bracketing pair [lo, hi] (values[lo] ≤ v < values[hi]) by binary search; counting the entries
/// ≤ v finds the same pair without branches, and the final choice is the reference's expression.
/// NaN gives 15, as the reference's search does.
inline int best_index_iq4nl(float v) noexcept {
  const std::int8_t* values = iq4nl_values;
  if (v <= values[0]) return 0;
  if (v >= values[15] || v != v) return 15;
  int hi = 1;
  for (int k = 1; k < 15; ++k) hi += static_cast<float>(values[k]) <= v ? 1 : 0;
  return v - static_cast<float>(values[hi - 1]) < static_cast<float>(values[hi]) - v ? hi - 1 : hi;
}

/// The scale of one 32-element group and its indices (levels), searched over 15 grids.
inline float iq4nl_group_scale(const float* x, std::uint8_t* levels) noexcept {
  PITH_QUANT_NO_CONTRACT
  constexpr int tries = 7;
  float weights[32];
  for (std::size_t j = 0; j < 32; ++j) weights[j] = x[j] * x[j];
  float amax = 0.0f, max = 0.0f;
  for (std::size_t j = 0; j < 32; ++j) {
    const float ax = std::fabs(x[j]);
    if (ax > amax) {
      amax = ax;
      max = x[j];
    }
  }
  if (amax < group_max_eps) return 0.0f;
  const float first = static_cast<float>(iq4nl_values[0]);
  float d = -max / first;
  float id = 1.0f / d;
  float sumqx = 0.0f, sumq2 = 0.0f;
  for (std::size_t j = 0; j < 32; ++j) {
    const int l = best_index_iq4nl(id * x[j]);
    levels[j] = static_cast<std::uint8_t>(l);
    const float q = static_cast<float>(iq4nl_values[l]);
    sumqx += weights[j] * q * x[j];
    sumq2 += weights[j] * q * q;
  }
  d = sumqx / sumq2;
  float best = d * sumqx;
  for (int t = -tries; t <= tries; ++t) {
    id = static_cast<float>(t + iq4nl_values[0]) / max;
    sumqx = sumq2 = 0.0f;
    for (std::size_t j = 0; j < 32; ++j) {
      const float q = static_cast<float>(iq4nl_values[best_index_iq4nl(id * x[j])]);
      sumqx += weights[j] * q * x[j];
      sumq2 += weights[j] * q * q;
    }
    if (sumq2 > 0.0f && sumqx * sumqx > best * sumq2) {
      d = sumqx / sumq2;
      best = d * sumqx;
    }
  }
  return d;
}

inline void pack_iq4(const std::uint8_t* levels, std::size_t count, std::uint8_t* qs) noexcept {
  for (std::size_t i = 0; i < count / 32; ++i)
    for (std::size_t j = 0; j < 16; ++j)
      qs[16 * i + j] = static_cast<std::uint8_t>(levels[32 * i + j] | (levels[32 * i + 16 + j] << 4));
}

inline void quantize_iq4_nl(const float* x, std::byte* out) noexcept {
  PITH_QUANT_NO_CONTRACT
  block_iq4_nl y{};
  std::uint8_t levels[32];
  const float d = iq4nl_group_scale(x, levels);
  y.d = float_to_half(d);
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  for (std::size_t j = 0; j < 32; ++j) levels[j] = static_cast<std::uint8_t>(best_index_iq4nl(id * x[j]));
  pack_iq4(levels, 32, y.qs);
  store_block(y, out);
}

inline void quantize_iq4_xs(const float* x, std::byte* out) noexcept {
  PITH_QUANT_NO_CONTRACT
  block_iq4_xs y{};
  std::uint8_t levels[qk_k];
  float scales[qk_k / 32];
  float max_scale = 0.0f, amax_scale = 0.0f;
  for (std::size_t ib = 0; ib < qk_k / 32; ++ib) {
    scales[ib] = iq4nl_group_scale(x + 32 * ib, levels + 32 * ib);
    const float abs_d = std::fabs(scales[ib]);
    if (abs_d > amax_scale) {
      amax_scale = abs_d;
      max_scale = scales[ib];
    }
  }
  // The super-block scale is kept in float32 for re-picking the indices; only its f16 is stored
  // (an all-zero block stores −0).
  const float d = -max_scale / 32.0f;
  y.d = float_to_half(d);
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  for (std::size_t ib = 0; ib < qk_k / 32; ++ib) {
    const int l = std::clamp(nearest_int(id * scales[ib]), -32, 31);
    const float dl = d * static_cast<float>(l);
    const float idl = dl != 0.0f ? 1.0f / dl : 0.0f;
    for (std::size_t j = 0; j < 32; ++j)
      levels[32 * ib + j] = static_cast<std::uint8_t>(best_index_iq4nl(idl * x[32 * ib + j]));
    const int stored = l + 32;
    y.scales_l[ib / 2] = static_cast<std::uint8_t>(y.scales_l[ib / 2] | ((stored & 0xF) << (4 * (ib % 2))));
    y.scales_h = static_cast<std::uint16_t>(y.scales_h | ((stored >> 4) << (2 * ib)));
  }
  pack_iq4(levels, qk_k, y.qs);
  store_block(y, out);
}

}  // namespace detail

/// Quantizes one row of `count` floats (a multiple of dtype_block_elements(t)) to `t` into
/// out[0, dtype_row_bytes(t, count)): llama.cpp's reference quantizer for each type (note §4;
/// Q8_0 is quantize_row_q8_0_ref bit for bit). Blocks are independent, so rows and threads may be
/// split anywhere on block boundaries. Throws argument_error for a type without a quantizer
/// (F32, F16, BF16, Q8_1, Q8_K) or a count that is not whole blocks.
inline void quantize_row(dtype t, const float* x, std::size_t count, std::byte* out) {
  if (!dtype_has_quantizer(t))
    PITH_THROW(argument_error, "quantize_row: no weight quantizer for " + std::string(dtype_name(t)));
  const std::size_t n = dtype_block_elements(t), bytes = dtype_block_bytes(t);
  if (count % n != 0)
    PITH_THROW(argument_error, "quantize_row: " + std::to_string(count) + " values are not whole " +
                                   std::string(dtype_name(t)) + " blocks of " + std::to_string(n));
  for (std::size_t b = 0; b < count / n; ++b) {
    const float* xb = x + b * n;
    std::byte* yb = out + b * bytes;
    switch (t) {
      case dtype::q4_0: detail::quantize_q4_0(xb, yb); break;
      case dtype::q4_1: detail::quantize_affine_32<block_q4_1, 15>(xb, yb); break;
      case dtype::q5_0: detail::quantize_q5_0(xb, yb); break;
      case dtype::q5_1: detail::quantize_affine_32<block_q5_1, 31>(xb, yb); break;
      case dtype::q8_0: detail::quantize_q8_0(xb, yb); break;
      case dtype::q2_k: detail::quantize_q2_k(xb, yb); break;
      case dtype::q3_k: detail::quantize_q3_k(xb, yb); break;
      case dtype::q4_k: detail::quantize_q45_k<4>(xb, yb); break;
      case dtype::q5_k: detail::quantize_q45_k<5>(xb, yb); break;
      case dtype::q6_k: detail::quantize_q6_k(xb, yb); break;
      case dtype::iq4_nl: detail::quantize_iq4_nl(xb, yb); break;
      case dtype::iq4_xs: detail::quantize_iq4_xs(xb, yb); break;
      default: break;
    }
  }
}

}  // namespace pith::quant

#if !defined(__clang__) && defined(__GNUC__)
#pragma GCC pop_options
#endif
