// SPDX-License-Identifier: MIT
// GGUF's block-quantized formats: byte layouts and the scalar (reference) dequantizers.
//
// Layouts and formulas: ../shared/notes/quantization.md §1.2 (bytes of each block) and §2
// (dequantization element by element, with the association of the reference: `(d·sc)·q − (dmin·m)`
// multiplies d by sc first). Every dequantizer here is bit-exact with llama.cpp's
// `dequantize_row_*` (the twin, tools/pith_quant.py, checks it on random and edge blocks).
// Blocks are read with memcpy: a block may start at any address.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "pith/core/dtype.hpp"
#include "pith/core/half.hpp"

// The dequantizers' association `(d·sc)·q − (dmin·m)` is part of the bit-exact contract: compile
// them with FMA contraction off whatever the build flags (note §4.6; GCC: the optimize pragma below,
// clang: PITH_QUANT_NO_CONTRACT at the top of the function body).
#if defined(__clang__)
#define PITH_QUANT_NO_CONTRACT _Pragma("clang fp contract(off)")
#elif defined(__GNUC__)
#pragma GCC push_options
#pragma GCC optimize("fp-contract=off")
#define PITH_QUANT_NO_CONTRACT
#else
#define PITH_QUANT_NO_CONTRACT
#endif

namespace pith::quant {

inline constexpr std::size_t qk = 32;     // elements of a legacy block (Q4_0 ... Q8_1, IQ4_NL)
inline constexpr std::size_t qk_k = 256;  // elements of a K-quant super-block

/// IQ4_NL's and IQ4_XS's non-linear 4-bit table (note §1.2).
inline constexpr std::int8_t iq4nl_values[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                                 1,    13,   25,  38,  53,  69,  89,  113};

// Block structs: exactly the bytes of one block (note §1.2), f16 fields as raw bits.
struct block_q4_0 {
  std::uint16_t d;
  std::uint8_t qs[qk / 2];
};
struct block_q4_1 {
  std::uint16_t d, m;
  std::uint8_t qs[qk / 2];
};
struct block_q5_0 {
  std::uint16_t d;
  std::uint8_t qh[4];
  std::uint8_t qs[qk / 2];
};
struct block_q5_1 {
  std::uint16_t d, m;
  std::uint8_t qh[4];
  std::uint8_t qs[qk / 2];
};
struct block_q8_0 {
  std::uint16_t d;
  std::int8_t qs[qk];
};
struct block_q8_1 {
  std::uint16_t d, s;  // s = f16(d · Σ qs)
  std::int8_t qs[qk];
};
struct block_q2_k {
  std::uint8_t scales[qk_k / 16];
  std::uint8_t qs[qk_k / 4];
  std::uint16_t d, dmin;
};
struct block_q3_k {
  std::uint8_t hmask[qk_k / 8];
  std::uint8_t qs[qk_k / 4];
  std::uint8_t scales[12];
  std::uint16_t d;
};
struct block_q4_k {
  std::uint16_t d, dmin;
  std::uint8_t scales[12];
  std::uint8_t qs[qk_k / 2];
};
struct block_q5_k {
  std::uint16_t d, dmin;
  std::uint8_t scales[12];
  std::uint8_t qh[qk_k / 8];
  std::uint8_t qs[qk_k / 2];
};
struct block_q6_k {
  std::uint8_t ql[qk_k / 2];
  std::uint8_t qh[qk_k / 4];
  std::int8_t scales[qk_k / 16];
  std::uint16_t d;
};
struct block_q8_k {
  float d;
  std::int8_t qs[qk_k];
  std::int16_t bsums[qk_k / 16];
};
struct block_iq4_nl {
  std::uint16_t d;
  std::uint8_t qs[qk / 2];
};
struct block_iq4_xs {
  std::uint16_t d;
  std::uint16_t scales_h;
  std::uint8_t scales_l[qk_k / 64];
  std::uint8_t qs[qk_k / 2];
};

static_assert(sizeof(block_q4_0) == 18 && sizeof(block_q4_1) == 20 && sizeof(block_q5_0) == 22 &&
              sizeof(block_q5_1) == 24 && sizeof(block_q8_0) == 34 && sizeof(block_q8_1) == 36);
static_assert(sizeof(block_q2_k) == 84 && sizeof(block_q3_k) == 110 && sizeof(block_q4_k) == 144 &&
              sizeof(block_q5_k) == 176 && sizeof(block_q6_k) == 210 && sizeof(block_q8_k) == 292);
static_assert(sizeof(block_iq4_nl) == 18 && sizeof(block_iq4_xs) == 136);

/// The C++ block struct of each quantized dtype.
template <dtype T> struct block_of;
template <> struct block_of<dtype::q4_0> { using type = block_q4_0; };
template <> struct block_of<dtype::q4_1> { using type = block_q4_1; };
template <> struct block_of<dtype::q5_0> { using type = block_q5_0; };
template <> struct block_of<dtype::q5_1> { using type = block_q5_1; };
template <> struct block_of<dtype::q8_0> { using type = block_q8_0; };
template <> struct block_of<dtype::q8_1> { using type = block_q8_1; };
template <> struct block_of<dtype::q2_k> { using type = block_q2_k; };
template <> struct block_of<dtype::q3_k> { using type = block_q3_k; };
template <> struct block_of<dtype::q4_k> { using type = block_q4_k; };
template <> struct block_of<dtype::q5_k> { using type = block_q5_k; };
template <> struct block_of<dtype::q6_k> { using type = block_q6_k; };
template <> struct block_of<dtype::q8_k> { using type = block_q8_k; };
template <> struct block_of<dtype::iq4_nl> { using type = block_iq4_nl; };
template <> struct block_of<dtype::iq4_xs> { using type = block_iq4_xs; };
template <dtype T>
using block_t = typename block_of<T>::type;

static_assert(sizeof(block_t<dtype::q4_k>) == dtype_block_bytes(dtype::q4_k));

/// Block `b` of a row of `T` blocks starting at `row` (any alignment), copied out.
template <dtype T>
inline block_t<T> load_block(const std::byte* row, std::size_t b) noexcept {
  block_t<T> block;
  std::memcpy(&block, row + b * sizeof(block_t<T>), sizeof(block_t<T>));
  return block;
}

/// Sub-block j's 6-bit scale and min of a Q4_K / Q5_K super-block (llama.cpp's
/// get_scale_min_k4; note §1.2).
inline void scale_min_k4(std::size_t j, const std::uint8_t* q, std::uint8_t& scale, std::uint8_t& min) noexcept {
  if (j < 4) {
    scale = q[j] & 63;
    min = q[j + 4] & 63;
  } else {
    scale = static_cast<std::uint8_t>((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
    min = static_cast<std::uint8_t>((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
  }
}

/// The little-endian 16-bit word at p (any alignment): f16 scales of the blocks.
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

/// The eight 6-bit scales and mins of a Q4_K / Q5_K super-block from its 12 scale bytes: the values
/// of scale_min_k4(0 … 7), unpacked a word at a time.
inline void unpack_scales_k4(const std::uint8_t* bytes, std::uint8_t* scales, std::uint8_t* mins) noexcept {
  const k4_scale_words w = unpack_scale_words_k4(bytes);
  std::memcpy(scales, &w.scales_low, 4);
  std::memcpy(scales + 4, &w.scales_high, 4);
  std::memcpy(mins, &w.mins_low, 4);
  std::memcpy(mins + 4, &w.mins_high, 4);
}

/// Sub-block s's signed 6-bit scale (−32 … 31) of a Q3_K super-block (note §1.2).
inline int q3_k_scale(const std::uint8_t* scales, std::size_t s) noexcept {
  const int low4 = s < 8 ? (scales[s] & 0xF) : (scales[s - 8] >> 4);
  const int high2 = (scales[8 + (s & 3)] >> (2 * (s >> 2))) & 3;
  return (low4 | (high2 << 4)) - 32;
}

/// Dequantizes one block of `T` at `src` into out[0, dtype_block_elements(T)) (note §2).
template <dtype T>
inline void dequantize_block(const std::byte* src, float* out) noexcept {
  PITH_QUANT_NO_CONTRACT
  const block_t<T> x = load_block<T>(src, 0);
  if constexpr (T == dtype::q4_0 || T == dtype::iq4_nl) {
    const float d = half_to_float(x.d);
    for (std::size_t j = 0; j < qk / 2; ++j) {
      const int lo = x.qs[j] & 0xF, hi = x.qs[j] >> 4;
      if constexpr (T == dtype::q4_0) {
        out[j] = static_cast<float>(lo - 8) * d;
        out[j + qk / 2] = static_cast<float>(hi - 8) * d;
      } else {
        out[j] = d * static_cast<float>(iq4nl_values[lo]);
        out[j + qk / 2] = d * static_cast<float>(iq4nl_values[hi]);
      }
    }
  } else if constexpr (T == dtype::q4_1) {
    const float d = half_to_float(x.d), m = half_to_float(x.m);
    for (std::size_t j = 0; j < qk / 2; ++j) {
      out[j] = static_cast<float>(x.qs[j] & 0xF) * d + m;
      out[j + qk / 2] = static_cast<float>(x.qs[j] >> 4) * d + m;
    }
  } else if constexpr (T == dtype::q5_0 || T == dtype::q5_1) {
    std::uint32_t qh;
    std::memcpy(&qh, x.qh, 4);
    const float d = half_to_float(x.d);
    for (std::size_t j = 0; j < qk / 2; ++j) {
      const int lo = (x.qs[j] & 0xF) | static_cast<int>(((qh >> j) & 1u) << 4);
      const int hi = (x.qs[j] >> 4) | static_cast<int>(((qh >> (j + 16)) & 1u) << 4);
      if constexpr (T == dtype::q5_0) {
        out[j] = static_cast<float>(lo - 16) * d;
        out[j + qk / 2] = static_cast<float>(hi - 16) * d;
      } else {
        const float m = half_to_float(x.m);
        out[j] = static_cast<float>(lo) * d + m;
        out[j + qk / 2] = static_cast<float>(hi) * d + m;
      }
    }
  } else if constexpr (T == dtype::q8_0 || T == dtype::q8_1) {
    const float d = half_to_float(x.d);
    for (std::size_t j = 0; j < qk; ++j) out[j] = static_cast<float>(x.qs[j]) * d;
  } else if constexpr (T == dtype::q8_k) {
    for (std::size_t j = 0; j < qk_k; ++j) out[j] = x.d * static_cast<float>(x.qs[j]);
  } else if constexpr (T == dtype::q2_k) {
    const float d = half_to_float(x.d), dmin = half_to_float(x.dmin);
    for (std::size_t e = 0; e < qk_k; ++e) {
      const std::size_t n = e >> 7, k = (e >> 5) & 3, l = e & 31;
      const int q = (x.qs[32 * n + l] >> (2 * k)) & 3;
      const std::uint8_t s = x.scales[e >> 4];
      out[e] = (d * static_cast<float>(s & 0xF)) * static_cast<float>(q) - dmin * static_cast<float>(s >> 4);
    }
  } else if constexpr (T == dtype::q3_k) {
    const float d = half_to_float(x.d);
    for (std::size_t e = 0; e < qk_k; ++e) {
      const std::size_t n = e >> 7, k = (e >> 5) & 3, l = e & 31;
      const int hbit = (x.hmask[l] >> (e >> 5)) & 1;
      const int q = ((x.qs[32 * n + l] >> (2 * k)) & 3) - (hbit ? 0 : 4);
      out[e] = (d * static_cast<float>(q3_k_scale(x.scales, e >> 4))) * static_cast<float>(q);
    }
  } else if constexpr (T == dtype::q4_k || T == dtype::q5_k) {
    const float d = half_to_float(x.d), dmin = half_to_float(x.dmin);
    for (std::size_t e = 0; e < qk_k; ++e) {
      const std::size_t c = e >> 6, w = e & 63;
      const std::uint8_t b = x.qs[32 * c + (w & 31)];
      int q = w < 32 ? (b & 0xF) : (b >> 4);
      if constexpr (T == dtype::q5_k) q += 16 * ((x.qh[e & 31] >> (e >> 5)) & 1);
      std::uint8_t sc, m;
      scale_min_k4(e >> 5, x.scales, sc, m);
      out[e] = (d * static_cast<float>(sc)) * static_cast<float>(q) - dmin * static_cast<float>(m);
    }
  } else if constexpr (T == dtype::q6_k) {
    const float d = half_to_float(x.d);
    for (std::size_t e = 0; e < qk_k; ++e) {
      const std::size_t n = e >> 7, g = (e >> 5) & 3, l = e & 31;
      const std::uint8_t b = x.ql[64 * n + 32 * (g & 1) + l];
      const int low4 = g < 2 ? (b & 0xF) : (b >> 4);
      const int high2 = (x.qh[32 * n + l] >> (2 * g)) & 3;
      const int q = (low4 | (high2 << 4)) - 32;
      out[e] = (d * static_cast<float>(x.scales[e >> 4])) * static_cast<float>(q);
    }
  } else if constexpr (T == dtype::iq4_xs) {
    const float d = half_to_float(x.d);
    for (std::size_t ib = 0; ib < qk_k / 32; ++ib) {
      const int ls = ((x.scales_l[ib >> 1] >> (4 * (ib & 1))) & 15) | (((x.scales_h >> (2 * ib)) & 3) << 4);
      const float dl = d * static_cast<float>(ls - 32);
      for (std::size_t j = 0; j < 16; ++j) {
        const std::uint8_t b = x.qs[16 * ib + j];
        out[32 * ib + j] = dl * static_cast<float>(iq4nl_values[b & 0xF]);
        out[32 * ib + j + 16] = dl * static_cast<float>(iq4nl_values[b >> 4]);
      }
    }
  } else {
    static_assert(T == dtype::q4_0, "not a block-quantized dtype");
  }
}

/// Calls f(std::integral_constant<dtype, t>) for a quantized t: the one switch over block types.
template <class F>
inline decltype(auto) visit_quantized(dtype t, F&& f) {
  switch (t) {
    case dtype::q4_1: return f(std::integral_constant<dtype, dtype::q4_1>{});
    case dtype::q5_0: return f(std::integral_constant<dtype, dtype::q5_0>{});
    case dtype::q5_1: return f(std::integral_constant<dtype, dtype::q5_1>{});
    case dtype::q8_0: return f(std::integral_constant<dtype, dtype::q8_0>{});
    case dtype::q8_1: return f(std::integral_constant<dtype, dtype::q8_1>{});
    case dtype::q2_k: return f(std::integral_constant<dtype, dtype::q2_k>{});
    case dtype::q3_k: return f(std::integral_constant<dtype, dtype::q3_k>{});
    case dtype::q4_k: return f(std::integral_constant<dtype, dtype::q4_k>{});
    case dtype::q5_k: return f(std::integral_constant<dtype, dtype::q5_k>{});
    case dtype::q6_k: return f(std::integral_constant<dtype, dtype::q6_k>{});
    case dtype::q8_k: return f(std::integral_constant<dtype, dtype::q8_k>{});
    case dtype::iq4_nl: return f(std::integral_constant<dtype, dtype::iq4_nl>{});
    case dtype::iq4_xs: return f(std::integral_constant<dtype, dtype::iq4_xs>{});
    default: break;
  }
  return f(std::integral_constant<dtype, dtype::q4_0>{});
}

/// Dequantizes `count` elements (a multiple of the block size) of a row of quantized `t` at `row`
/// into out[0, count). Precondition: dtype_is_quantized(t).
inline void dequantize_row(dtype t, const std::byte* row, std::size_t count, float* out) noexcept {
  visit_quantized(t, [&](auto type) {
    constexpr dtype T = decltype(type)::value;
    constexpr std::size_t n = dtype_block_elements(T), bytes = dtype_block_bytes(T);
    for (std::size_t b = 0; b < count / n; ++b) dequantize_block<T>(row + b * bytes, out + b * n);
  });
}

}  // namespace pith::quant

#if !defined(__clang__) && defined(__GNUC__)
#pragma GCC pop_options
#endif
