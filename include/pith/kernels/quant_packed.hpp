// SPDX-License-Identifier: MIT
// Prefill products of Q8_0 and Q4_0 weights with 512-bit VNNI: W repacked on the fly, a few
// rows at a time, so that one vpdpbusd multiplies four quants of sixteen W rows by the same four
// quants of one X row.
//
// quant_dot.hpp's prefill loop takes one W row against 8 X rows: each vpdpbusd covers one block
// of one (W row, X row) pair (32 multiply-adds in 256 bits), and the pair then needs its own int
// to float conversion and two float operations, so the float work (3 instructions per 32 products)
// and the activation loads bound it at about a quarter of the vpdpbusd peak. Here each int32 lane
// of a 512-bit vector belongs to one W row: a packed tile holds, per 32-element block, 8 vectors
// of 16 rows x 4 quants (group g: quants 4g..4g+3 of each row), the rows' 16 scales d_W and the
// 16 corrections −128 Σ w. A step broadcasts 4 biased activation bytes (y + 128, unsigned) of one
// X row to every lane and adds Σ (y + 128) w to lanes that start at −128 Σ w: exactly Σ y w (the
// identity of quant_dot.hpp's biased path). Per block, 2 tiles (32 W rows) x 4 X rows take 64
// vpdpbusd (4,096 products each of 64) against 8 conversions, 8 multiplies and 8 multiply-adds.
//
// Packing: gathers of four bytes (vpgatherdd) from 16 rows; Q4_0's codes become signed w = code −
// 8 (note §3.4), Q8_0's bytes are w. A chunk of 32 blocks of 32 W rows (40 KB, on the stack,
// in L1/L2) is packed once and used by every X row of the call; the float results of successive
// chunks are added in Y. The integer sums are exact (|w| <= 128, y + 128 <= 255, 32 products
// per lane per block); results differ from quant_dot.hpp's only in the rounding of d_W · d_Y (one
// product, then one multiply-add, as there) and the order of the block sums.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <utility>

#include "pith/core/dtype.hpp"
#include "pith/core/quant.hpp"
#include "pith/core/tensor.hpp"
#include "pith/kernels/quant_dot.hpp"

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VNNI__) && defined(__F16C__)
#include <immintrin.h>
#define PITH_QUANT_PACKED 1
#endif

namespace pith::kernels {
inline namespace PITH_ISA_NAMESPACE {
namespace quant_detail::packed {

/// Whether weights of type T have the packed prefill kernel in this unit.
template <dtype T>
inline constexpr bool has_packed_kernel =
#if defined(PITH_QUANT_PACKED)
    T == dtype::q8_0 || T == dtype::q4_0;
#else
    false;
#endif

/// X rows below this count go through quant_dot.hpp's row loop (packing would not pay).
inline constexpr std::size_t min_rows = 4;

#if defined(PITH_QUANT_PACKED)

inline constexpr std::size_t lanes = 16;         // W rows per packed tile (one int32 lane each)
inline constexpr std::size_t tiles = 2;          // tiles per kernel step: 32 W rows
inline constexpr std::size_t x_rows = 4;         // X rows per kernel step
inline constexpr std::size_t chunk_blocks = 32;  // 32-element blocks per packed chunk
inline constexpr std::size_t tile_block_bytes = 8 * 64 + 64 + 64;  // values, d_W, −128 Σ w
inline constexpr std::size_t chunk_bytes = tiles * chunk_blocks * tile_block_bytes;  // 40 KB

/// Packs blocks [block0, block0 + nblocks) of W rows [row0, row0 + rows) (rows <= 32; lanes past
/// `rows` are zeros, scale 0) into `dst` (64-byte aligned, chunk_bytes): for block j and tile t,
/// at (j · tiles + t) · tile_block_bytes, the 8 value vectors, the scales, the corrections.
/// `index` holds the byte offsets of the 32 rows from row0 (w.row(row0 + l) − w.row(row0)).
template <dtype T>
inline void pack_chunk(const std::byte* base, const std::int32_t* index, std::size_t rows, std::size_t block0,
                       std::size_t nblocks, std::byte* dst) noexcept {
  using block = quant::block_t<T>;
  const __m512i ones = _mm512_set1_epi8(1);
  for (std::size_t t = 0; t < tiles; ++t) {
    const std::size_t first = t * lanes;
    const __mmask16 live = rows > first ? static_cast<__mmask16>(rows - first >= lanes ? 0xFFFF : (1u << (rows - first)) - 1)
                                        : static_cast<__mmask16>(0);
    const __m512i rows_index = _mm512_loadu_si512(index + first);
    for (std::size_t j = 0; j < nblocks; ++j) {
      std::byte* out = dst + (j * tiles + t) * tile_block_bytes;
      const std::byte* b = base + (block0 + j) * sizeof(block);
      __m512i values[8];
      if constexpr (T == dtype::q8_0) {
        for (int g = 0; g < 8; ++g)
          values[g] = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), live, rows_index, b + 2 + 4 * g, 1);
      } else {
        const __m512i low = _mm512_set1_epi8(0x0F), eight = _mm512_set1_epi8(8);
        for (int h = 0; h < 4; ++h) {
          const __m512i codes = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), live, rows_index, b + 2 + 4 * h, 1);
          // Masked-off lanes stay 0 (not −8): their Σ w and their products are then 0.
          values[h] = _mm512_maskz_mov_epi32(live, _mm512_sub_epi8(_mm512_and_si512(codes, low), eight));
          values[4 + h] = _mm512_maskz_mov_epi32(live, _mm512_sub_epi8(_mm512_and_si512(_mm512_srli_epi32(codes, 4), low), eight));
        }
      }
      __m512i sum = _mm512_setzero_si512();
      for (int g = 0; g < 8; ++g) {
        _mm512_store_si512(out + 64 * g, values[g]);
        sum = _mm512_dpbusd_epi32(sum, ones, values[g]);
      }
      const __m512i d_bits = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), live, rows_index, b, 1);
      _mm512_store_ps(out + 512, _mm512_cvtph_ps(_mm512_cvtepi32_epi16(d_bits)));
      _mm512_store_si512(out + 576, _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_slli_epi32(sum, 7)));
    }
  }
}

/// acc[r][t] += Σ over the chunk's blocks of (Σ y w) · d_W · d_Y, for NX X rows and both tiles.
template <std::size_t NX>
inline void chunk_product(const std::byte* packed, std::size_t nblocks, const activation_row* a, std::size_t block0,
                          __m512 (&acc)[NX][tiles]) noexcept {
  for (std::size_t j = 0; j < nblocks; ++j) {
    const std::byte* p = packed + j * tiles * tile_block_bytes;
    __m512i sums[NX][tiles];
    for (std::size_t t = 0; t < tiles; ++t) {
      const __m512i start = _mm512_load_si512(p + t * tile_block_bytes + 576);
      for (std::size_t r = 0; r < NX; ++r) sums[r][t] = start;
    }
    const std::uint8_t* y[NX];
    for (std::size_t r = 0; r < NX; ++r) y[r] = a[r].biased + (block0 + j) * quant::qk;
#pragma GCC unroll 8
    for (std::size_t g = 0; g < 8; ++g) {
      __m512i w[tiles];
      for (std::size_t t = 0; t < tiles; ++t) w[t] = _mm512_load_si512(p + t * tile_block_bytes + 64 * g);
      for (std::size_t r = 0; r < NX; ++r) {
        std::int32_t four;
        std::memcpy(&four, y[r] + 4 * g, sizeof four);
        const __m512i yv = _mm512_set1_epi32(four);
        for (std::size_t t = 0; t < tiles; ++t) sums[r][t] = _mm512_dpbusd_epi32(sums[r][t], yv, w[t]);
      }
    }
    for (std::size_t t = 0; t < tiles; ++t) {
      const __m512 dw = _mm512_load_ps(p + t * tile_block_bytes + 512);
      for (std::size_t r = 0; r < NX; ++r)
        acc[r][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sums[r][t]), _mm512_mul_ps(dw, _mm512_set1_ps(a[r].d[block0 + j])),
                                    acc[r][t]);
    }
  }
}

/// Rows [first, first + NX) of X against the packed chunk; Y (+)= the results for the `rows` live
/// W rows from column `o`.
template <std::size_t NX>
inline void chunk_rows(const std::byte* packed, std::size_t nblocks, const quantized_rows& xq, std::size_t first,
                       std::size_t block0, std::size_t rows, std::size_t o, float* y, std::size_t y_stride,
                       bool add) noexcept {
  activation_row a[NX];
  for (std::size_t r = 0; r < NX; ++r) a[r] = xq.row(first + r);
  __m512 acc[NX][tiles];
  for (std::size_t r = 0; r < NX; ++r)
    for (std::size_t t = 0; t < tiles; ++t) acc[r][t] = _mm512_setzero_ps();
  chunk_product<NX>(packed, nblocks, a, block0, acc);
  for (std::size_t t = 0; t < tiles && t * lanes < rows; ++t) {
    const std::size_t live = std::min(lanes, rows - t * lanes);
    const __mmask16 mask = static_cast<__mmask16>(live == lanes ? 0xFFFF : (1u << live) - 1);
    for (std::size_t r = 0; r < NX; ++r) {
      float* target = y + (first + r) * y_stride + o + t * lanes;
      const __m512 value = add ? _mm512_add_ps(_mm512_maskz_loadu_ps(mask, target), acc[r][t]) : acc[r][t];
      _mm512_mask_storeu_ps(target, mask, value);
    }
  }
}

/// The last `count` (< x_rows) rows from `first`, in one group of that many.
template <std::size_t... N>
inline void chunk_rows_tail(std::size_t count, const std::byte* packed, std::size_t nblocks,
                            const quantized_rows& xq, std::size_t first, std::size_t block0, std::size_t rows,
                            std::size_t o, float* y, std::size_t y_stride, bool add, std::index_sequence<N...>) noexcept {
  ((count == N + 1 ? chunk_rows<N + 1>(packed, nblocks, xq, first, block0, rows, o, y, y_stride, add) : void()), ...);
}

/// Y[:, begin:end] (+)= X W[begin:end, :]^T for Q8_0 / Q4_0 W through packed chunks. False (and
/// nothing written) when W's row offsets within a step do not fit the gathers' 32-bit indices.
template <dtype T>
inline bool matmul_range(const quantized_rows& xq, const tensor_view& w, std::size_t begin, std::size_t end,
                         float* y, std::size_t y_stride, bool accumulate) noexcept {
  const std::size_t step = tiles * lanes;
  if (dtype_row_bytes(T, w.cols()) > static_cast<std::size_t>(INT32_MAX) / step) return false;
  alignas(64) std::byte packed[chunk_bytes];
  alignas(64) std::int32_t index[step];
  const std::size_t blocks = xq.cols / quant::qk;
  for (std::size_t o = begin; o < end; o += step) {
    const std::size_t rows = std::min(step, end - o);
    const std::byte* base = w.row(o);
    for (std::size_t l = 0; l < step; ++l)
      index[l] = static_cast<std::int32_t>(l < rows ? w.row(o + l) - base : 0);
    for (std::size_t block0 = 0; block0 < blocks; block0 += chunk_blocks) {
      const std::size_t nblocks = std::min(chunk_blocks, blocks - block0);
      pack_chunk<T>(base, index, rows, block0, nblocks, packed);
      const bool add = accumulate || block0 > 0;
      std::size_t i = 0;
      for (; i + x_rows <= xq.rows; i += x_rows)
        chunk_rows<x_rows>(packed, nblocks, xq, i, block0, rows, o, y, y_stride, add);
      chunk_rows_tail(xq.rows - i, packed, nblocks, xq, i, block0, rows, o, y, y_stride, add,
                      std::make_index_sequence<x_rows - 1>{});
    }
  }
  return true;
}

#endif  // PITH_QUANT_PACKED

}  // namespace quant_detail::packed
}  // namespace PITH_ISA_NAMESPACE
}  // namespace pith::kernels
