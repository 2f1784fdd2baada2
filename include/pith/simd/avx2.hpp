// SPDX-License-Identifier: MIT
// AVX2 + FMA primitive set: eight float lanes.
#pragma once

#if defined(__AVX2__) && defined(__FMA__)
#define PITH_SIMD_HAS_AVX2 1

#include "pith/simd/x86_intrinsics.hpp"

#include <cstddef>
#include <cstdint>
#include <cstring>

#if !defined(__F16C__)
#include "pith/core/half.hpp"
#endif

namespace pith::simd::avx2 {

struct ops {
  using vec = __m256;
  static constexpr std::size_t width = 8;
  static constexpr const char* name = "avx2";
  static constexpr std::size_t registers = 16;

  static vec zero() noexcept { return _mm256_setzero_ps(); }
  static vec set1(float x) noexcept { return _mm256_set1_ps(x); }
  static vec load(const float* p) noexcept { return _mm256_loadu_ps(p); }
  static void store(float* p, vec v) noexcept { _mm256_storeu_ps(p, v); }
  static __m256i tail_mask(std::size_t count) noexcept {
    const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(count)), lanes);
  }
  static vec load_partial(const float* p, std::size_t count) noexcept {
    return _mm256_maskload_ps(p, tail_mask(count));
  }
  static void store_partial(float* p, vec v, std::size_t count) noexcept {
    _mm256_maskstore_ps(p, tail_mask(count), v);
  }
  // Storage types. F16 through F16C's vcvtph2ps (exact; a portable conversion where the compiler
  // does not target F16C); BF16 zero-extended to 32 bits and shifted into the upper half (exact).
  // Partial loads copy `count` elements into zeroed lanes: AVX2 has no 16-bit masked load.
  static vec load_f16(const std::uint16_t* p) noexcept {
    return f16_to_float(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  }
  static vec load_f16_partial(const std::uint16_t* p, std::size_t count) noexcept {
    return f16_to_float(load16_partial(p, count));
  }
  static vec load_bf16(const std::uint16_t* p) noexcept {
    return bf16_to_float(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  }
  static vec load_bf16_partial(const std::uint16_t* p, std::size_t count) noexcept {
    return bf16_to_float(load16_partial(p, count));
  }
  // int8: eight bytes moved into a register as one 64-bit word, then sign-extended and converted
  // (exact); a vector built through memory from byte stores would stall on store forwarding.
  static vec load_s8(const std::int8_t* p) noexcept { return load_s8_partial(p, width); }
  static vec load_s8_partial(const std::int8_t* p, std::size_t count) noexcept {
    std::int64_t eight = 0;
    std::memcpy(&eight, p, count < width ? count : width);
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_cvtsi64_si128(eight)));
  }
  static vec load_unaligned(const void* p) noexcept { return _mm256_loadu_ps(static_cast<const float*>(p)); }
  static vec load_unaligned_partial(const void* p, std::size_t count) noexcept {
    return _mm256_maskload_ps(static_cast<const float*>(p), tail_mask(count));
  }
  static vec add(vec a, vec b) noexcept { return _mm256_add_ps(a, b); }
  static vec sub(vec a, vec b) noexcept { return _mm256_sub_ps(a, b); }
  static vec mul(vec a, vec b) noexcept { return _mm256_mul_ps(a, b); }
  static vec fmadd(vec a, vec b, vec c) noexcept { return _mm256_fmadd_ps(a, b, c); }
  static vec max(vec a, vec b) noexcept { return _mm256_max_ps(a, b); }
  static vec min(vec a, vec b) noexcept { return _mm256_min_ps(a, b); }
  static float reduce_add(vec v) noexcept {
    __m128 x = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    x = _mm_add_ps(x, _mm_movehl_ps(x, x));
    x = _mm_add_ss(x, _mm_movehdup_ps(x));
    return _mm_cvtss_f32(x);
  }
  static float reduce_max(vec v) noexcept {
    __m128 x = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    x = _mm_max_ps(x, _mm_movehl_ps(x, x));
    x = _mm_max_ss(x, _mm_movehdup_ps(x));
    return _mm_cvtss_f32(x);
  }
  static vec round(vec v) noexcept { return _mm256_round_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
  static vec pow2n(vec n) noexcept {
    const __m256i bits = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_castsi256_ps(bits);
  }
  static vec select_less(vec a, vec b, vec if_true, vec if_false) noexcept {
    return _mm256_blendv_ps(if_false, if_true, _mm256_cmp_ps(a, b, _CMP_LT_OQ));
  }
  static vec select_equal(vec a, vec b, vec if_true, vec if_false) noexcept {
    return _mm256_blendv_ps(if_false, if_true, _mm256_cmp_ps(a, b, _CMP_EQ_OQ));
  }
  static vec select_nan(vec a, vec if_nan, vec otherwise) noexcept {
    return _mm256_blendv_ps(otherwise, if_nan, _mm256_cmp_ps(a, a, _CMP_UNORD_Q));
  }
  // 8 x 8 transpose: pairs of rows interleaved, then pairs of pairs, then 128-bit halves swapped.
  static void transpose(vec (&rows)[8]) noexcept {
    vec t[8], u[8];
    for (int i = 0; i < 8; i += 2) {
      t[i] = _mm256_unpacklo_ps(rows[i], rows[i + 1]);
      t[i + 1] = _mm256_unpackhi_ps(rows[i], rows[i + 1]);
    }
    // u[4g + c], half h: column 4h + c of rows 4g .. 4g + 3.
    for (int g = 0; g < 8; g += 4) {
      u[g] = _mm256_shuffle_ps(t[g], t[g + 2], 0x44);
      u[g + 1] = _mm256_shuffle_ps(t[g], t[g + 2], 0xEE);
      u[g + 2] = _mm256_shuffle_ps(t[g + 1], t[g + 3], 0x44);
      u[g + 3] = _mm256_shuffle_ps(t[g + 1], t[g + 3], 0xEE);
    }
    for (int c = 0; c < 4; ++c) {
      rows[c] = _mm256_permute2f128_ps(u[c], u[4 + c], 0x20);
      rows[4 + c] = _mm256_permute2f128_ps(u[c], u[4 + c], 0x31);
    }
  }
  static vec lane_index() noexcept { return _mm256_setr_ps(0, 1, 2, 3, 4, 5, 6, 7); }

 private:
  static __m128i load16_partial(const std::uint16_t* p, std::size_t count) noexcept {
    std::uint16_t lanes[8] = {};
    std::memcpy(lanes, p, (count < 8 ? count : 8) * sizeof(std::uint16_t));
    return _mm_loadu_si128(reinterpret_cast<const __m128i*>(lanes));
  }
  static vec f16_to_float(__m128i halves) noexcept {
#if defined(__F16C__)
    return _mm256_cvtph_ps(halves);
#else
    alignas(16) std::uint16_t bits[8];
    _mm_store_si128(reinterpret_cast<__m128i*>(bits), halves);
    alignas(32) float lanes[8];
    for (int i = 0; i < 8; ++i) lanes[i] = half_to_float(bits[i]);
    return _mm256_load_ps(lanes);
#endif
  }
  static vec bf16_to_float(__m128i halves) noexcept {
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(halves), 16));
  }
};

}  // namespace pith::simd::avx2

#endif
