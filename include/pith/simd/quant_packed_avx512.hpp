// SPDX-License-Identifier: MIT
// Prefill products of Q8_0, Q4_0, Q4_K, Q5_K and Q6_K weights with 512-bit VNNI: W repacked on
// the fly, 32 rows at a time, so that one vpdpbusd multiplies four quants of each of sixteen W
// rows by the same four activation quants of one X row.
//
// kernels/quant_dot.hpp's prefill loop takes one W row against 8 X rows: each vpdpbusd covers one block
// of one (W row, X row) pair (32 multiply-adds in 256 bits), and every pair then needs its own int
// to float conversion and float multiply-adds, so the float work and the activation loads bound it
// at about a quarter of the vpdpbusd peak. Here each int32 lane of a 512-bit vector belongs to one
// W row: a packed tile holds 16 rows' quants as vectors of 16 lanes x 4 quants (vector v: elements
// 4v..4v+3 of each row) and the per-row scales as 16-lane vectors. A step broadcasts 4 activation
// bytes of one X row to every lane; 2 tiles (32 W rows) x 4 X rows share each load, so a block of
// 32 elements takes 64 vpdpbusd (4,096 products) against 8 conversions and 8-16 float operations.
//   Q8_0, Q4_0 (signed w: Q8_0's bytes, Q4_0's code − 8, note §3.4): the biased activations y + 128
//     (unsigned) against w, in lanes that start at −128 Σ w: exactly Σ y w (the identity of
//     kernels/quant_dot.hpp's biased path); then d_W · d_Y per block.
//   Q4_K, Q5_K, Q6_K (unsigned codes 0..63): the codes against Q8_K's signed quants; each sub-block
//     (32 elements; 16 for Q6_K) converted and multiplied by its lane's d · scale; the offsets (the
//     mins, dmin · Σ m · bsum, and Q6_K's −32 · d · Σ sc · bsum) in the integer domain with vpdpwssd
//     of per-lane int16 pairs against the X row's bsums; then d_Y per super-block.
//
// Packing: gathers of four bytes (vpgatherdd) from 16 rows for the quants, scalar unpacking for
// the K-quants' 6-bit scales. A chunk of 1,024 columns of 32 W rows (40-46 KB, on the stack, in
// L1/L2) is packed once and used by every X row of the call; the float results of successive
// chunks are added in Y. The integer sums are exact (|w| <= 128 with y + 128 <= 255, or codes
// <= 63 with |y| <= 127, at most 32 products per lane before conversion; the vpdpwssd offsets stay
// below 2^31); results differ from kernels/quant_dot.hpp's only in float rounding and summation order.
//
// One core of an Intel Xeon (pith_bench_kernels BM_qgemm_*, 512 x 2048 x 2048, GOP/s = 2 per
// multiply-add; the other core busy): Q8_0 88 -> 292, Q4_0 81 -> 281, Q4_K 99 -> 298, Q5_K 86 ->
// 310, Q6_K 96 -> 262, about 0.35 of that core's vpdpbusd peak (779 GOP/s, BM_int8_dot_peak).
// Types without a packed kernel (Q4_1, Q5_1, Q2_K, Q3_K, IQ4_NL, IQ4_XS) and products of fewer
// than min_rows X rows keep kernels/quant_dot.hpp's loops.
// `Rows` is kernels::quantized_rows (rows, cols, row(i) giving a kernels::activation_row);
// kernels/quant_packed.hpp says when these kernels run.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <utility>

#include "pith/core/dtype.hpp"
#include "pith/core/half.hpp"
#include "pith/core/quant.hpp"
#include "pith/core/tensor.hpp"
#include "pith/simd/simd.hpp"

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VNNI__) && defined(__F16C__)
#include "pith/simd/x86_intrinsics.hpp"
#define PITH_QUANT_PACKED 1

namespace pith::simd {
inline namespace PITH_ISA_NAMESPACE {  // compiled for the including unit's target (simd.hpp)
namespace quant_packed {

inline constexpr std::size_t lanes = 16;  // W rows per packed tile (one int32 lane each)
inline constexpr std::size_t tiles = 2;   // tiles per kernel step: 32 W rows
inline constexpr std::size_t x_rows = 4;  // X rows per kernel step

/// A unit is one block of the weight type (32 elements, or a K-quant super-block of 256). Bytes of
/// one packed unit of one tile: the 16 rows' quants as 512-bit vectors of 16 lanes x 4 (one per 4
/// elements), then per-lane data:
///   Q8_0 / Q4_0: d_W (16 floats), −128 Σ w (16 int32);
///   Q4_K / Q5_K: d · sc per sub-block of 32 (8 x 16 floats), (m, m) per sub-block as int16 pairs
///     (8 x 16 int32), dmin (16 floats);
///   Q6_K: d · sc per group of 16 (16 x 16 floats), (sc_2k, sc_2k+1) as int16 pairs (8 x 16
///     int32), d (16 floats).
template <dtype T>
inline constexpr std::size_t unit_elements = T == dtype::q8_0 || T == dtype::q4_0 ? quant::qk : quant::qk_k;
template <dtype T>
inline constexpr std::size_t value_bytes = unit_elements<T> / 4 * 64;
template <dtype T>
inline constexpr std::size_t tile_unit_bytes = T == dtype::q8_0 || T == dtype::q4_0 ? value_bytes<T> + 128
                                               : T == dtype::q6_k                   ? value_bytes<T> + 1024 + 512 + 64
                                                                                    : value_bytes<T> + 512 + 512 + 64;
/// Units per packed chunk: 32 blocks or 4 super-blocks (1,024 columns), 40-46 KB for both tiles.
template <dtype T>
inline constexpr std::size_t chunk_units = 1024 / unit_elements<T>;
inline constexpr std::size_t chunk_bytes = tiles * 4 * (value_bytes<dtype::q6_k> + 1024 + 512 + 64);
static_assert(tiles * chunk_units<dtype::q8_0> * tile_unit_bytes<dtype::q8_0> <= chunk_bytes &&
              tiles * chunk_units<dtype::q4_k> * tile_unit_bytes<dtype::q4_k> <= chunk_bytes);

inline __mmask16 lane_mask(std::size_t live) noexcept {
  return static_cast<__mmask16>(live >= lanes ? 0xFFFF : (1u << live) - 1);
}

/// 16 lanes of the 32-bit word at byte `offset` of each live row (zeros elsewhere).
inline __m512i gather(__mmask16 live, __m512i rows_index, const std::byte* p) noexcept {
  return _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), live, rows_index, p, 1);
}

/// The 4 bytes at p in every 32-bit lane (the activation quants one vpdpbusd step shares).
inline __m512i broadcast_four(const void* p) noexcept {
  std::int32_t four;
  std::memcpy(&four, p, sizeof four);
  return _mm512_set1_epi32(four);
}

/// Per-lane scalar data of the K-quants (scales, mins), written lane by lane.
template <dtype T>
inline void pack_k_scales(const std::byte* const* row, std::size_t live, std::size_t unit, std::byte* out) noexcept {
  float* scf = reinterpret_cast<float*>(out + value_bytes<T>);
  if constexpr (T == dtype::q6_k) {
    auto* pairs = reinterpret_cast<std::int32_t*>(out + value_bytes<T> + 1024);
    float* d = reinterpret_cast<float*>(out + value_bytes<T> + 1536);
    for (std::size_t l = 0; l < lanes; ++l) {
      if (l >= live) {
        for (std::size_t k = 0; k < 16; ++k) scf[16 * k + l] = 0.0f;
        for (std::size_t k = 0; k < 8; ++k) pairs[16 * k + l] = 0;
        d[l] = 0.0f;
        continue;
      }
      const quant::block_q6_k x = quant::load_block<T>(row[l], unit);
      const float dl = half_to_float(x.d);
      for (std::size_t k = 0; k < 16; ++k) scf[16 * k + l] = dl * static_cast<float>(x.scales[k]);
      for (std::size_t k = 0; k < 8; ++k)
        pairs[16 * k + l] = static_cast<std::int32_t>(static_cast<std::uint16_t>(x.scales[2 * k]) |
                                                      (static_cast<std::uint32_t>(static_cast<std::uint16_t>(x.scales[2 * k + 1])) << 16));
      d[l] = dl;
    }
  } else {
    auto* pairs = reinterpret_cast<std::int32_t*>(out + value_bytes<T> + 512);
    float* dmin = reinterpret_cast<float*>(out + value_bytes<T> + 1024);
    for (std::size_t l = 0; l < lanes; ++l) {
      if (l >= live) {
        for (std::size_t s = 0; s < 8; ++s) {
          scf[16 * s + l] = 0.0f;
          pairs[16 * s + l] = 0;
        }
        dmin[l] = 0.0f;
        continue;
      }
      const quant::block_t<T> x = quant::load_block<T>(row[l], unit);
      std::uint8_t sc[8], mn[8];
      quant::unpack_scales_k4(x.scales, sc, mn);
      const float dl = half_to_float(x.d);
      for (std::size_t s = 0; s < 8; ++s) {
        scf[16 * s + l] = dl * static_cast<float>(sc[s]);
        pairs[16 * s + l] = static_cast<std::int32_t>(mn[s] | (static_cast<std::uint32_t>(mn[s]) << 16));
      }
      dmin[l] = half_to_float(x.dmin);
    }
  }
}

/// Packs units [unit0, unit0 + nunits) of W rows [row0, row0 + rows) (rows <= 32; lanes past
/// `rows` hold zeros) into `dst` (64-byte aligned): unit j of tile t at (j · tiles + t) ·
/// tile_unit_bytes<T>. `index` holds the byte offsets of the 32 rows from row0.
template <dtype T>
inline void pack_chunk(const std::byte* base, const std::int32_t* index, std::size_t rows, std::size_t unit0,
                       std::size_t nunits, std::byte* dst) noexcept {
  using block = quant::block_t<T>;
  const __m512i low = _mm512_set1_epi8(0x0F);
  for (std::size_t t = 0; t < tiles; ++t) {
    const std::size_t first = t * lanes;
    const std::size_t live = rows > first ? rows - first : 0;
    const __mmask16 mask = lane_mask(live);
    const __m512i rows_index = _mm512_loadu_si512(index + first);
    const std::byte* row[lanes];
    for (std::size_t l = 0; l < lanes; ++l) row[l] = base + index[first + std::min(l, live ? live - 1 : 0)];
    for (std::size_t j = 0; j < nunits; ++j) {
      std::byte* out = dst + (j * tiles + t) * tile_unit_bytes<T>;
      const std::byte* b = base + (unit0 + j) * sizeof(block);
      const auto put = [&](std::size_t vector, __m512i value) { _mm512_store_si512(out + 64 * vector, value); };
      if constexpr (T == dtype::q8_0 || T == dtype::q4_0) {
        __m512i values[8];
        if constexpr (T == dtype::q8_0) {
          for (int g = 0; g < 8; ++g) values[g] = gather(mask, rows_index, b + 2 + 4 * g);
        } else {
          // Q4_0's codes become w = code − 8 (note §3.4); lanes past `rows` stay 0.
          const __m512i eight = _mm512_set1_epi8(8);
          for (int h = 0; h < 4; ++h) {
            const __m512i codes = gather(mask, rows_index, b + 2 + 4 * h);
            values[h] = _mm512_maskz_mov_epi32(mask, _mm512_sub_epi8(_mm512_and_si512(codes, low), eight));
            values[4 + h] =
                _mm512_maskz_mov_epi32(mask, _mm512_sub_epi8(_mm512_and_si512(_mm512_srli_epi32(codes, 4), low), eight));
          }
        }
        __m512i sum = _mm512_setzero_si512();
        for (int g = 0; g < 8; ++g) {
          put(static_cast<std::size_t>(g), values[g]);
          sum = _mm512_dpbusd_epi32(sum, _mm512_set1_epi8(1), values[g]);
        }
        _mm512_store_ps(out + 512, _mm512_cvtph_ps(_mm512_cvtepi32_epi16(gather(mask, rows_index, b))));
        _mm512_store_si512(out + 576, _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_slli_epi32(sum, 7)));
      } else if constexpr (T == dtype::q4_k || T == dtype::q5_k) {
        // Element 64c + 32h + 4g + i: nibble h of qs[32c + 4g + i] (+ 16 x bit 2c + h of qh[4g + i]
        // for Q5_K); vector 16c + 8h + g.
        for (std::size_t g = 0; g < 8; ++g) {
          __m512i high = _mm512_setzero_si512();
          if constexpr (T == dtype::q5_k) high = gather(mask, rows_index, b + offsetof(block, qh) + 4 * g);
          for (std::size_t c = 0; c < 4; ++c) {
            const __m512i codes = gather(mask, rows_index, b + offsetof(block, qs) + 32 * c + 4 * g);
            for (std::size_t h = 0; h < 2; ++h) {
              __m512i v = _mm512_and_si512(h ? _mm512_srli_epi32(codes, 4) : codes, low);
              if constexpr (T == dtype::q5_k)
                v = _mm512_or_si512(
                    v, _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(high, static_cast<unsigned>(2 * c + h)),
                                                          _mm512_set1_epi8(1)),
                                         4));
              put(16 * c + 8 * h + g, v);
            }
          }
        }
        pack_k_scales<T>(row, live, unit0 + j, out);
      } else {
        static_assert(T == dtype::q6_k);
        // Element 128n + 32g + 4m + i: low 4 bits from ql[64n + 32(g & 1) + 4m + i] (nibble g >> 1),
        // high 2 bits from qh[32n + 4m + i] >> 2g; vector 32n + 8g + m.
        const __m512i three = _mm512_set1_epi8(3);
        for (std::size_t n = 0; n < 2; ++n)
          for (std::size_t m = 0; m < 8; ++m) {
            const __m512i ql0 = gather(mask, rows_index, b + offsetof(block, ql) + 64 * n + 4 * m);
            const __m512i ql1 = gather(mask, rows_index, b + offsetof(block, ql) + 64 * n + 32 + 4 * m);
            const __m512i qh = gather(mask, rows_index, b + offsetof(block, qh) + 32 * n + 4 * m);
            for (std::size_t g = 0; g < 4; ++g) {
              const __m512i ql = (g & 1) ? ql1 : ql0;
              const __m512i lo = _mm512_and_si512(g >= 2 ? _mm512_srli_epi32(ql, 4) : ql, low);
              const __m512i hi = _mm512_and_si512(_mm512_srli_epi32(qh, static_cast<unsigned>(2 * g)), three);
              put(32 * n + 8 * g + m, _mm512_or_si512(lo, _mm512_slli_epi32(hi, 4)));
            }
          }
        pack_k_scales<T>(row, live, unit0 + j, out);
      }
    }
  }
}

/// acc[r][t] += the chunk's products for NX X rows and both tiles.
template <dtype T, std::size_t NX, class Row>
inline void chunk_product(const std::byte* packed, std::size_t nunits, const Row* a, std::size_t unit0,
                          __m512 (&acc)[NX][tiles]) noexcept {
  for (std::size_t j = 0; j < nunits; ++j) {
    const std::byte* p = packed + j * tiles * tile_unit_bytes<T>;
    const std::size_t unit = unit0 + j;
    if constexpr (T == dtype::q8_0 || T == dtype::q4_0) {
      // Σ (y + 128) w from lanes that start at −128 Σ w: Σ y w exactly.
      __m512i sums[NX][tiles];
      for (std::size_t t = 0; t < tiles; ++t) {
        const __m512i start = _mm512_load_si512(p + t * tile_unit_bytes<T> + 576);
        for (std::size_t r = 0; r < NX; ++r) sums[r][t] = start;
      }
      const std::uint8_t* y[NX];
      for (std::size_t r = 0; r < NX; ++r) y[r] = a[r].biased + unit * quant::qk;
#pragma GCC unroll 8
      for (std::size_t g = 0; g < 8; ++g) {
        __m512i w[tiles];
        for (std::size_t t = 0; t < tiles; ++t) w[t] = _mm512_load_si512(p + t * tile_unit_bytes<T> + 64 * g);
        for (std::size_t r = 0; r < NX; ++r) {
          const __m512i yv = broadcast_four(y[r] + 4 * g);
          for (std::size_t t = 0; t < tiles; ++t) sums[r][t] = _mm512_dpbusd_epi32(sums[r][t], yv, w[t]);
        }
      }
      for (std::size_t t = 0; t < tiles; ++t) {
        const __m512 dw = _mm512_load_ps(p + t * tile_unit_bytes<T> + 512);
        for (std::size_t r = 0; r < NX; ++r)
          acc[r][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sums[r][t]), _mm512_mul_ps(dw, _mm512_set1_ps(a[r].d[unit])),
                                      acc[r][t]);
      }
    } else {
      // Unsigned codes times signed activation quants (vpdpbusd's operand order); per group of
      // `span` elements one conversion and one multiply-add by the per-lane d · scale; the offset
      // (Q4_K / Q5_K mins, Q6_K's −32) through bsums with vpdpwssd in the integer domain.
      constexpr std::size_t span = T == dtype::q6_k ? 16 : 32, groups = quant::qk_k / span;
      __m512 f[NX][tiles];
      for (std::size_t r = 0; r < NX; ++r)
        for (std::size_t t = 0; t < tiles; ++t) f[r][t] = _mm512_setzero_ps();
      const std::int8_t* y[NX];
      for (std::size_t r = 0; r < NX; ++r) y[r] = a[r].q + unit * quant::qk_k;
      for (std::size_t k = 0; k < groups; ++k) {
        __m512i sums[NX][tiles];
        for (std::size_t r = 0; r < NX; ++r)
          for (std::size_t t = 0; t < tiles; ++t) sums[r][t] = _mm512_setzero_si512();
#pragma GCC unroll 8
        for (std::size_t g = 0; g < span / 4; ++g) {
          const std::size_t v = k * (span / 4) + g;
          __m512i w[tiles];
          for (std::size_t t = 0; t < tiles; ++t) w[t] = _mm512_load_si512(p + t * tile_unit_bytes<T> + 64 * v);
          for (std::size_t r = 0; r < NX; ++r) {
            const __m512i yv = broadcast_four(y[r] + 4 * v);
            for (std::size_t t = 0; t < tiles; ++t) sums[r][t] = _mm512_dpbusd_epi32(sums[r][t], w[t], yv);
          }
        }
        for (std::size_t t = 0; t < tiles; ++t) {
          const __m512 scale = _mm512_load_ps(p + t * tile_unit_bytes<T> + value_bytes<T> + 64 * k);
          for (std::size_t r = 0; r < NX; ++r) f[r][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sums[r][t]), scale, f[r][t]);
        }
      }
      // Offsets: Σ over pairs of (int16 per lane) x (bsums of the X row), 8 vpdpwssd.
      constexpr std::size_t pairs_at = value_bytes<T> + (T == dtype::q6_k ? 1024 : 512);
      constexpr std::size_t factor_at = pairs_at + 512;
      for (std::size_t r = 0; r < NX; ++r) {
        const std::int16_t* bsums = a[r].sums + unit * 16;
        __m512i offset[tiles];
        for (std::size_t t = 0; t < tiles; ++t) offset[t] = _mm512_setzero_si512();
        for (std::size_t k = 0; k < 8; ++k) {
          const __m512i pair = broadcast_four(bsums + 2 * k);
          for (std::size_t t = 0; t < tiles; ++t)
            offset[t] = _mm512_dpwssd_epi32(offset[t], _mm512_load_si512(p + t * tile_unit_bytes<T> + pairs_at + 64 * k),
                                            pair);
        }
        const __m512 dy = _mm512_set1_ps(a[r].d[unit]);
        for (std::size_t t = 0; t < tiles; ++t) {
          // Q4_K / Q5_K: d Σ sc q y − dmin Σ m bsum; Q6_K: d Σ sc q y − 32 d Σ sc bsum.
          __m512 factor = _mm512_load_ps(p + t * tile_unit_bytes<T> + factor_at);
          if constexpr (T == dtype::q6_k) factor = _mm512_mul_ps(factor, _mm512_set1_ps(32.0f));
          const __m512 total = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(offset[t]), factor, f[r][t]);
          acc[r][t] = _mm512_fmadd_ps(total, dy, acc[r][t]);
        }
      }
    }
  }
}

/// Rows [first, first + NX) of X against the packed chunk; Y (+)= the results for the `rows` live
/// W rows from column `o`.
template <dtype T, std::size_t NX, class Rows>
inline void chunk_rows(const std::byte* packed, std::size_t nunits, const Rows& xq, std::size_t first,
                       std::size_t unit0, std::size_t rows, std::size_t o, float* y, std::size_t y_stride,
                       bool add) noexcept {
  decltype(xq.row(0)) a[NX];
  for (std::size_t r = 0; r < NX; ++r) a[r] = xq.row(first + r);
  __m512 acc[NX][tiles];
  for (std::size_t r = 0; r < NX; ++r)
    for (std::size_t t = 0; t < tiles; ++t) acc[r][t] = _mm512_setzero_ps();
  chunk_product<T, NX>(packed, nunits, a, unit0, acc);
  for (std::size_t t = 0; t < tiles && t * lanes < rows; ++t) {
    const __mmask16 mask = lane_mask(rows - t * lanes);
    for (std::size_t r = 0; r < NX; ++r) {
      float* target = y + (first + r) * y_stride + o + t * lanes;
      const __m512 value = add ? _mm512_add_ps(_mm512_maskz_loadu_ps(mask, target), acc[r][t]) : acc[r][t];
      _mm512_mask_storeu_ps(target, mask, value);
    }
  }
}

/// The last `count` (< x_rows) rows from `first`, in one group of that many.
template <dtype T, class Rows, std::size_t... N>
inline void chunk_rows_tail(std::size_t count, const std::byte* packed, std::size_t nunits,
                            const Rows& xq, std::size_t first, std::size_t unit0, std::size_t rows,
                            std::size_t o, float* y, std::size_t y_stride, bool add, std::index_sequence<N...>) noexcept {
  ((count == N + 1 ? chunk_rows<T, N + 1, Rows>(packed, nunits, xq, first, unit0, rows, o, y, y_stride, add) : void()), ...);
}

/// Y[:, begin:end] (+)= X W[begin:end, :]^T through packed chunks. False (and nothing written)
/// when W's row offsets within a step do not fit the gathers' 32-bit indices.
template <dtype T, class Rows>
inline bool matmul_range(const Rows& xq, const tensor_view& w, std::size_t begin, std::size_t end,
                         float* y, std::size_t y_stride, bool accumulate) noexcept {
  constexpr std::size_t step = tiles * lanes;
  if (dtype_row_bytes(T, w.cols()) > static_cast<std::size_t>(INT32_MAX) / step) return false;
  alignas(64) std::byte packed[chunk_bytes];
  alignas(64) std::int32_t index[step];
  const std::size_t units = xq.cols / unit_elements<T>;
  for (std::size_t o = begin; o < end; o += step) {
    const std::size_t rows = std::min(step, end - o);
    const std::byte* base = w.row(o);
    for (std::size_t l = 0; l < step; ++l) index[l] = static_cast<std::int32_t>(l < rows ? w.row(o + l) - base : 0);
    for (std::size_t unit0 = 0; unit0 < units; unit0 += chunk_units<T>) {
      const std::size_t nunits = std::min(chunk_units<T>, units - unit0);
      pack_chunk<T>(base, index, rows, unit0, nunits, packed);
      const bool add = accumulate || unit0 > 0;
      std::size_t i = 0;
      for (; i + x_rows <= xq.rows; i += x_rows)
        chunk_rows<T, x_rows>(packed, nunits, xq, i, unit0, rows, o, y, y_stride, add);
      chunk_rows_tail<T>(xq.rows - i, packed, nunits, xq, i, unit0, rows, o, y, y_stride, add,
                         std::make_index_sequence<x_rows - 1>{});
    }
  }
  return true;
}

}  // namespace quant_packed
}  // namespace PITH_ISA_NAMESPACE
}  // namespace pith::simd
#endif  // PITH_QUANT_PACKED
