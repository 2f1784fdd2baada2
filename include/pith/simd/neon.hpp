// SPDX-License-Identifier: MIT
// NEON (AArch64 Advanced SIMD) primitive set: four float lanes.
#pragma once

#if defined(__ARM_NEON) && defined(__aarch64__)
#define PITH_SIMD_HAS_NEON 1

#include <arm_neon.h>

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace pith::simd::neon {

struct ops {
  using vec = float32x4_t;
  static constexpr std::size_t width = 4;
  static constexpr const char* name = "neon";
  static constexpr std::size_t registers = 32;

  static vec zero() noexcept { return vdupq_n_f32(0.0f); }
  static vec set1(float x) noexcept { return vdupq_n_f32(x); }
  static vec load(const float* p) noexcept { return vld1q_f32(p); }
  static void store(float* p, vec v) noexcept { vst1q_f32(p, v); }
  // NEON has no masked memory access: tails go through a small stack copy.
  static vec load_partial(const float* p, std::size_t count) noexcept {
    float lanes[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    for (std::size_t i = 0; i < count && i < 4; ++i) lanes[i] = p[i];
    return vld1q_f32(lanes);
  }
  static void store_partial(float* p, vec v, std::size_t count) noexcept {
    float lanes[4];
    vst1q_f32(lanes, v);
    for (std::size_t i = 0; i < count && i < 4; ++i) p[i] = lanes[i];
  }
  // Storage types: F16 through fcvtl (vcvt_f32_f16), BF16 widened with a shift into the upper half
  // (shll #16); both exact. AArch64 vector loads need no alignment beyond the element's.
  static vec load_f16(const std::uint16_t* p) noexcept { return f16_to_float(vld1_u16(p)); }
  static vec load_f16_partial(const std::uint16_t* p, std::size_t count) noexcept {
    return f16_to_float(load16_partial(p, count));
  }
  static vec load_bf16(const std::uint16_t* p) noexcept { return bf16_to_float(vld1_u16(p)); }
  static vec load_bf16_partial(const std::uint16_t* p, std::size_t count) noexcept {
    return bf16_to_float(load16_partial(p, count));
  }
  // int8: four bytes widened twice (sxtl) and converted (scvtf), exact.
  static vec load_s8(const std::int8_t* p) noexcept { return load_s8_partial(p, width); }
  static vec load_s8_partial(const std::int8_t* p, std::size_t count) noexcept {
    std::int32_t four = 0;
    std::memcpy(&four, p, count < width ? count : width);
    const int8x8_t bytes = vreinterpret_s8_s32(vdup_n_s32(four));
    return vcvtq_f32_s32(vmovl_s16(vget_low_s16(vmovl_s8(bytes))));
  }
  static vec load_unaligned(const void* p) noexcept {
    return vreinterpretq_f32_u8(vld1q_u8(static_cast<const std::uint8_t*>(p)));
  }
  static vec load_unaligned_partial(const void* p, std::size_t count) noexcept {
    float lanes[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    std::memcpy(lanes, p, (count < 4 ? count : 4) * sizeof(float));
    return vld1q_f32(lanes);
  }
  static vec add(vec a, vec b) noexcept { return vaddq_f32(a, b); }
  static vec sub(vec a, vec b) noexcept { return vsubq_f32(a, b); }
  static vec mul(vec a, vec b) noexcept { return vmulq_f32(a, b); }
  static vec fmadd(vec a, vec b, vec c) noexcept { return vfmaq_f32(c, a, b); }
  static vec max(vec a, vec b) noexcept { return vmaxq_f32(a, b); }
  static vec min(vec a, vec b) noexcept { return vminq_f32(a, b); }
  static float reduce_add(vec v) noexcept { return vaddvq_f32(v); }
  static float reduce_max(vec v) noexcept { return vmaxvq_f32(v); }
  static vec round(vec v) noexcept { return vrndnq_f32(v); }
  static vec pow2n(vec n) noexcept {
    const int32x4_t bits = vshlq_n_s32(vaddq_s32(vcvtnq_s32_f32(n), vdupq_n_s32(127)), 23);
    return vreinterpretq_f32_s32(bits);
  }
  static vec select_less(vec a, vec b, vec if_true, vec if_false) noexcept {
    return vbslq_f32(vcltq_f32(a, b), if_true, if_false);
  }
  static vec select_equal(vec a, vec b, vec if_true, vec if_false) noexcept {
    return vbslq_f32(vceqq_f32(a, b), if_true, if_false);
  }
  static vec select_nan(vec a, vec if_nan, vec otherwise) noexcept {
    return vbslq_f32(vceqq_f32(a, a), otherwise, if_nan);
  }
  // 4 x 4 transpose: trn1/trn2 on pairs of rows, then 64-bit halves recombined.
  static void transpose(vec (&rows)[4]) noexcept {
    const float32x4x2_t a = vtrnq_f32(rows[0], rows[1]);  // (r0_0 r1_0 r0_2 r1_2), (r0_1 r1_1 r0_3 r1_3)
    const float32x4x2_t b = vtrnq_f32(rows[2], rows[3]);
    rows[0] = vcombine_f32(vget_low_f32(a.val[0]), vget_low_f32(b.val[0]));
    rows[1] = vcombine_f32(vget_low_f32(a.val[1]), vget_low_f32(b.val[1]));
    rows[2] = vcombine_f32(vget_high_f32(a.val[0]), vget_high_f32(b.val[0]));
    rows[3] = vcombine_f32(vget_high_f32(a.val[1]), vget_high_f32(b.val[1]));
  }
  static vec lane_index() noexcept {
    const float lanes[4] = {0.0f, 1.0f, 2.0f, 3.0f};
    return vld1q_f32(lanes);
  }

 private:
  static uint16x4_t load16_partial(const std::uint16_t* p, std::size_t count) noexcept {
    std::uint16_t lanes[4] = {0, 0, 0, 0};
    std::memcpy(lanes, p, (count < 4 ? count : 4) * sizeof(std::uint16_t));
    return vld1_u16(lanes);
  }
  static vec f16_to_float(uint16x4_t halves) noexcept { return vcvt_f32_f16(vreinterpret_f16_u16(halves)); }
  static vec bf16_to_float(uint16x4_t halves) noexcept { return vreinterpretq_f32_u32(vshll_n_u16(halves, 16)); }
};

}  // namespace pith::simd::neon

#endif
