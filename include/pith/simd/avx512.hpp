// SPDX-License-Identifier: MIT
// AVX-512F primitive set: sixteen float lanes, masked loads and stores for tails.
#pragma once

#if defined(__AVX512F__)
#define PITH_SIMD_HAS_AVX512 1

#include "pith/simd/x86_intrinsics.hpp"

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>

namespace pith::simd::avx512 {

struct ops {
  using vec = __m512;
  static constexpr std::size_t width = 16;
  static constexpr const char* name = "avx512";
  static constexpr std::size_t registers = 32;

  static vec zero() noexcept { return _mm512_setzero_ps(); }
  static vec set1(float x) noexcept { return _mm512_set1_ps(x); }
  static vec load(const float* p) noexcept { return _mm512_loadu_ps(p); }
  static void store(float* p, vec v) noexcept { _mm512_storeu_ps(p, v); }
  static __mmask16 tail_mask(std::size_t count) noexcept {
    return static_cast<__mmask16>((1u << count) - 1u);
  }
  static vec load_partial(const float* p, std::size_t count) noexcept {
    return _mm512_maskz_loadu_ps(tail_mask(count), p);
  }
  static void store_partial(float* p, vec v, std::size_t count) noexcept {
    _mm512_mask_storeu_ps(p, tail_mask(count), v);
  }
  // Storage types: F16 through vcvtph2ps, BF16 zero-extended to 32 bits and shifted into the upper
  // half; both exact. Partial loads are masked (AVX512BW) or copy `count` elements into zeroed lanes.
  static vec load_f16(const std::uint16_t* p) noexcept {
    return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  }
  static vec load_f16_partial(const std::uint16_t* p, std::size_t count) noexcept {
    return _mm512_cvtph_ps(load16_partial(p, count));
  }
  static vec load_bf16(const std::uint16_t* p) noexcept {
    return bf16_to_float(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  }
  static vec load_bf16_partial(const std::uint16_t* p, std::size_t count) noexcept {
    return bf16_to_float(load16_partial(p, count));
  }
  // int8: sign-extended in registers (vpmovsxbd) and converted, exact; the partial load is masked.
  static vec load_s8(const std::int8_t* p) noexcept {
    return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))));
  }
  static vec load_s8_partial(const std::int8_t* p, std::size_t count) noexcept {
    return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(static_cast<__mmask16>((1u << count) - 1u), p)));
  }
  static vec load_unaligned(const void* p) noexcept { return _mm512_loadu_ps(p); }
  static vec load_unaligned_partial(const void* p, std::size_t count) noexcept {
    return _mm512_maskz_loadu_ps(tail_mask(count), p);
  }
  static vec add(vec a, vec b) noexcept { return _mm512_add_ps(a, b); }
  static vec sub(vec a, vec b) noexcept { return _mm512_sub_ps(a, b); }
  static vec mul(vec a, vec b) noexcept { return _mm512_mul_ps(a, b); }
  static vec fmadd(vec a, vec b, vec c) noexcept { return _mm512_fmadd_ps(a, b, c); }
  static vec max(vec a, vec b) noexcept { return _mm512_max_ps(a, b); }
  static vec min(vec a, vec b) noexcept { return _mm512_min_ps(a, b); }
  static float reduce_add(vec v) noexcept {
    const __m256 half = _mm256_add_ps(_mm512_castps512_ps256(v),
                                      _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
    __m128 x = _mm_add_ps(_mm256_castps256_ps128(half), _mm256_extractf128_ps(half, 1));
    x = _mm_add_ps(x, _mm_movehl_ps(x, x));
    x = _mm_add_ss(x, _mm_movehdup_ps(x));
    return _mm_cvtss_f32(x);
  }
  static float reduce_max(vec v) noexcept {
    const __m256 half = _mm256_max_ps(_mm512_castps512_ps256(v),
                                      _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
    __m128 x = _mm_max_ps(_mm256_castps256_ps128(half), _mm256_extractf128_ps(half, 1));
    x = _mm_max_ps(x, _mm_movehl_ps(x, x));
    x = _mm_max_ss(x, _mm_movehdup_ps(x));
    return _mm_cvtss_f32(x);
  }
  static vec round(vec v) noexcept { return _mm512_roundscale_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
  static vec pow2n(vec n) noexcept {
    const __m512i bits = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23);
    return _mm512_castsi512_ps(bits);
  }
  static vec select_less(vec a, vec b, vec if_true, vec if_false) noexcept {
    return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(a, b, _CMP_LT_OQ), if_false, if_true);
  }
  static vec select_equal(vec a, vec b, vec if_true, vec if_false) noexcept {
    return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(a, b, _CMP_EQ_OQ), if_false, if_true);
  }
  static vec select_nan(vec a, vec if_nan, vec otherwise) noexcept {
    return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(a, a, _CMP_UNORD_Q), otherwise, if_nan);
  }
  // 16 x 16 transpose: pairs of rows interleaved, then pairs of pairs (columns within 128-bit
  // lanes done), then two rounds of 128-bit lane shuffles.
  static void transpose(vec (&rows)[16]) noexcept {
    vec t[16], u[16];
    for (int i = 0; i < 16; i += 2) {
      t[i] = _mm512_unpacklo_ps(rows[i], rows[i + 1]);
      t[i + 1] = _mm512_unpackhi_ps(rows[i], rows[i + 1]);
    }
    // u[4g + c], 128-bit lane L: column 4L + c of rows 4g .. 4g + 3.
    for (int g = 0; g < 16; g += 4) {
      u[g] = _mm512_shuffle_ps(t[g], t[g + 2], 0x44);
      u[g + 1] = _mm512_shuffle_ps(t[g], t[g + 2], 0xEE);
      u[g + 2] = _mm512_shuffle_ps(t[g + 1], t[g + 3], 0x44);
      u[g + 3] = _mm512_shuffle_ps(t[g + 1], t[g + 3], 0xEE);
    }
    for (int c = 0; c < 4; ++c) {
      const vec even_low = _mm512_shuffle_f32x4(u[c], u[4 + c], 0x88);   // lanes 0, 2 of rows 0-3, 4-7
      const vec odd_low = _mm512_shuffle_f32x4(u[c], u[4 + c], 0xDD);    // lanes 1, 3
      const vec even_high = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0x88);
      const vec odd_high = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0xDD);
      rows[c] = _mm512_shuffle_f32x4(even_low, even_high, 0x88);
      rows[8 + c] = _mm512_shuffle_f32x4(even_low, even_high, 0xDD);
      rows[4 + c] = _mm512_shuffle_f32x4(odd_low, odd_high, 0x88);
      rows[12 + c] = _mm512_shuffle_f32x4(odd_low, odd_high, 0xDD);
    }
  }
  static vec lane_index() noexcept {
    return _mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  }

 private:
  static __m256i load16_partial(const std::uint16_t* p, std::size_t count) noexcept {
#if defined(__AVX512BW__) && defined(__AVX512VL__)
    return _mm256_maskz_loadu_epi16(tail_mask(count), p);
#else
    std::uint16_t lanes[16] = {};
    std::memcpy(lanes, p, (count < 16 ? count : 16) * sizeof(std::uint16_t));
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(lanes));
#endif
  }
  static vec bf16_to_float(__m256i halves) noexcept {
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(halves), 16));
  }
};

#if defined(__AVX512BF16__) && defined(__AVX512BW__)
#define PITH_SIMD_HAS_AVX512_BF16_DOT 1
/// AVX512_BF16's dot product of bfloat16 pairs (vdpbf16ps): 32 products per instruction, summed
/// in pairs into 16 float lanes. Products of two bfloat16 are exact in float; the instruction
/// treats subnormal inputs and outputs as zero and rounds to nearest even whatever MXCSR says.
struct bf16_dot {
  using pairs = __m512bh;  // 32 bfloat16, lanes 2i and 2i + 1 feed float lane i
  static constexpr std::size_t elements = 32;

  static pairs load(const std::uint16_t* p) noexcept { return to_pairs(_mm512_loadu_si512(p)); }
  /// The first `count` (< 32) elements, zero beyond.
  static pairs load_partial(const std::uint16_t* p, std::size_t count) noexcept {
    return to_pairs(_mm512_maskz_loadu_epi16(static_cast<__mmask32>((std::uint64_t{1} << count) - 1u), p));
  }
  /// Rounds (low, high) to 32 bfloat16, to nearest even: low gives elements 0-15, high 16-31.
  static pairs round(ops::vec low, ops::vec high) noexcept { return _mm512_cvtne2ps_pbh(high, low); }
  /// The 32 bfloat16 as two float vectors (exact): elements 0-15 and 16-31.
  static void widen(pairs p, ops::vec& low, ops::vec& high) noexcept {
    const __m512i bits = std::bit_cast<__m512i>(p);
    low = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm512_castsi512_si256(bits)), 16));
    high = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm512_extracti64x4_epi64(bits, 1)), 16));
  }
  static void store(std::uint16_t* p, pairs v) noexcept { _mm512_storeu_si512(p, std::bit_cast<__m512i>(v)); }
  /// acc[i] + a[2i] b[2i] + a[2i + 1] b[2i + 1].
  static ops::vec dot(ops::vec acc, pairs a, pairs b) noexcept { return _mm512_dpbf16_ps(acc, a, b); }

 private:
  static pairs to_pairs(__m512i bits) noexcept { return std::bit_cast<pairs>(bits); }
};
#endif

}  // namespace pith::simd::avx512

#endif
