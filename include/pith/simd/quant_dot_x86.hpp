// SPDX-License-Identifier: MIT
// x86 integer kernels of the block-quantized dot products (kernels/quant_dot.hpp describes the
// activation formats, the arithmetic and the exactness argument; note §3.4, §3.5): AVX2
// maddubs / madd, or vpdpbusd with AVX512-VNNI, over one W row and NX activation rows. `Row` is
// kernels::activation_row (the fields q, d, s, sums, biased, minus8, q4x, start4x, d4x).
#pragma once

#include "pith/core/dtype.hpp"
#include "pith/core/half.hpp"
#include "pith/core/quant.hpp"
#include "pith/simd/simd.hpp"

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>

#if defined(PITH_SIMD_HAS_AVX2)
#include "pith/simd/x86_intrinsics.hpp"

namespace pith::simd {
inline namespace PITH_ISA_NAMESPACE {  // compiled for the including unit's target (simd.hpp)
namespace quant_x86 {

using quant::load_u16;
using quant::k4_scale_words;
using quant::unpack_scale_words_k4;

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
template <dtype T, bool Vnni, std::size_t NX, class Row>
inline void dot_rows(const std::byte* w, const Row* a, std::size_t cols, float* out) noexcept {
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

}  // namespace quant_x86
}  // namespace PITH_ISA_NAMESPACE
}  // namespace pith::simd
#endif
