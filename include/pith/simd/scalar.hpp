// SPDX-License-Identifier: MIT
// Scalar primitive set: one lane, always compiled; the baseline every other ISA is compared with.
#pragma once

#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "pith/core/half.hpp"

namespace pith::simd::scalar {

/// The primitive set shared by every ISA (see simd.hpp for the contract of each member).
struct ops {
  using vec = float;
  static constexpr std::size_t width = 1;
  static constexpr const char* name = "scalar";
  static constexpr std::size_t registers = 16;  // xmm0-15 on x86-64 (v0-31 on AArch64: 16 is the safe count)

  static vec zero() noexcept { return 0.0f; }
  static vec set1(float x) noexcept { return x; }
  static vec load(const float* p) noexcept { return *p; }
  static void store(float* p, vec v) noexcept { *p = v; }
  static vec load_partial(const float* p, std::size_t count) noexcept { return count > 0 ? *p : 0.0f; }
  static void store_partial(float* p, vec v, std::size_t count) noexcept {
    if (count > 0) *p = v;
  }
  // Storage types: bytes read with memcpy, so any address is fine.
  static vec load_f16(const std::uint16_t* p) noexcept { return half_to_float(bits16(p)); }
  static vec load_f16_partial(const std::uint16_t* p, std::size_t count) noexcept {
    return count > 0 ? load_f16(p) : 0.0f;
  }
  static vec load_bf16(const std::uint16_t* p) noexcept { return bfloat16_to_float(bits16(p)); }
  static vec load_bf16_partial(const std::uint16_t* p, std::size_t count) noexcept {
    return count > 0 ? load_bf16(p) : 0.0f;
  }
  static vec load_s8(const std::int8_t* p) noexcept { return static_cast<float>(*p); }
  static vec load_s8_partial(const std::int8_t* p, std::size_t count) noexcept {
    return count > 0 ? load_s8(p) : 0.0f;
  }
  static vec load_unaligned(const void* p) noexcept {
    float value;
    std::memcpy(&value, p, sizeof value);
    return value;
  }
  static vec load_unaligned_partial(const void* p, std::size_t count) noexcept {
    return count > 0 ? load_unaligned(p) : 0.0f;
  }
  static vec add(vec a, vec b) noexcept { return a + b; }
  static vec sub(vec a, vec b) noexcept { return a - b; }
  static vec mul(vec a, vec b) noexcept { return a * b; }
  // Written as a multiply and an add; compilers contract it to an FMA where the target has one.
  static vec fmadd(vec a, vec b, vec c) noexcept { return a * b + c; }
  static vec max(vec a, vec b) noexcept { return a > b ? a : b; }
  static vec min(vec a, vec b) noexcept { return a < b ? a : b; }
  static float reduce_add(vec v) noexcept { return v; }
  static float reduce_max(vec v) noexcept { return v; }
  static vec round(vec v) noexcept { return std::nearbyint(v); }
  /// 2^n for integral n in [-126, 127], built in the exponent field. NaN (exp_approx of NaN, whose
  /// lane it then replaces by NaN) gives 2^0: converting NaN to an integer is undefined in C++.
  static vec pow2n(vec n) noexcept {
    const float integral = n == n ? n : 0.0f;
    return std::bit_cast<float>(static_cast<std::uint32_t>(static_cast<std::int32_t>(integral) + 127) << 23);
  }
  static vec select_less(vec a, vec b, vec if_true, vec if_false) noexcept { return a < b ? if_true : if_false; }
  static vec select_equal(vec a, vec b, vec if_true, vec if_false) noexcept {
    return a == b ? if_true : if_false;
  }
  static vec select_nan(vec a, vec if_nan, vec otherwise) noexcept { return a != a ? if_nan : otherwise; }
  /// A width x width block: lane j of rows[i] swaps with lane i of rows[j] (nothing to do for one lane).
  static void transpose(vec (&rows)[1]) noexcept { (void)rows; }
  /// Lane i holds float(i).
  static vec lane_index() noexcept { return 0.0f; }

 private:
  static std::uint16_t bits16(const std::uint16_t* p) noexcept {
    std::uint16_t bits;
    std::memcpy(&bits, p, sizeof bits);
    return bits;
  }
};

}  // namespace pith::simd::scalar
