// SPDX-License-Identifier: MIT
// AVX-512F primitive set: sixteen float lanes, masked loads and stores for tails.
#pragma once

#if defined(__AVX512F__)
#define PITH_SIMD_HAS_AVX512 1

#include "pith/simd/x86_intrinsics.hpp"

#include <cstddef>
#include <cstdint>

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
};

}  // namespace pith::simd::avx512

#endif
