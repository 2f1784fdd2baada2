// SPDX-License-Identifier: MIT
// Tests of the F16/BF16 conversions: every bit pattern, subnormals, infinities, NaN, rounding.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>

#include <pith/io/half.hpp>

namespace {

std::uint32_t bits_of(float value) { return std::bit_cast<std::uint32_t>(value); }

// Independent reference: the binary16 value computed in double from its definition.
double half_reference(std::uint16_t half) {
  const int sign = (half >> 15) != 0 ? -1 : 1;
  const int exponent = (half >> 10) & 0x1f;
  const int mantissa = half & 0x3ff;
  if (exponent == 0) return sign * std::ldexp(mantissa, -24);
  return sign * std::ldexp(1024 + mantissa, exponent - 25);
}

TEST(Half, SpecialValuesAreExact) {
  EXPECT_EQ(bits_of(pith::half_to_float(0x0000)), 0x00000000u);
  EXPECT_EQ(bits_of(pith::half_to_float(0x8000)), 0x80000000u);  // -0 keeps its sign
  EXPECT_EQ(pith::half_to_float(0x3c00), 1.0f);
  EXPECT_EQ(pith::half_to_float(0xc000), -2.0f);
  EXPECT_EQ(pith::half_to_float(0x3555), 0.333251953125f);
  EXPECT_EQ(pith::half_to_float(0x7bff), 65504.0f);
  EXPECT_EQ(pith::half_to_float(0x0400), std::ldexp(1.0f, -14));  // smallest normal
  EXPECT_EQ(pith::half_to_float(0x0001), std::ldexp(1.0f, -24));  // smallest subnormal
  EXPECT_EQ(pith::half_to_float(0x03ff), std::ldexp(1023.0f, -24));
  EXPECT_EQ(pith::half_to_float(0x8001), -std::ldexp(1.0f, -24));
  EXPECT_EQ(pith::half_to_float(0x7c00), std::numeric_limits<float>::infinity());
  EXPECT_EQ(pith::half_to_float(0xfc00), -std::numeric_limits<float>::infinity());
  EXPECT_TRUE(std::isnan(pith::half_to_float(0x7e00)));
  EXPECT_EQ(bits_of(pith::half_to_float(0x7c01)), 0x7f802000u);  // signalling payload preserved
  EXPECT_EQ(bits_of(pith::half_to_float(0xfe00)), 0xffc00000u);
  static_assert(pith::half_to_float(0x3c00) == 1.0f, "usable in constant expressions");
}

TEST(Half, EveryBitPatternMatchesTheDefinitionAndRoundTrips) {
  for (std::uint32_t i = 0; i <= 0xffff; ++i) {
    const auto half = static_cast<std::uint16_t>(i);
    const float value = pith::half_to_float(half);
    const bool is_nan = (half & 0x7c00) == 0x7c00 && (half & 0x3ff) != 0;
    if (is_nan) {
      ASSERT_TRUE(std::isnan(value)) << i;
      ASSERT_TRUE(std::isnan(pith::half_to_float(pith::float_to_half(value)))) << i;
      continue;
    }
    if ((half & 0x7fff) == 0x7c00) {
      ASSERT_TRUE(std::isinf(value)) << i;
    } else {
      ASSERT_EQ(static_cast<double>(value), half_reference(half)) << i;
    }
    ASSERT_EQ(pith::float_to_half(value), half) << i;
  }
}

TEST(Half, FloatToHalfRoundsToNearestEven) {
  EXPECT_EQ(pith::float_to_half(1.0f + std::ldexp(1.0f, -11)), 0x3c00);      // tie, 1.0 is even
  EXPECT_EQ(pith::float_to_half(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3c02);  // tie, rounds up to even
  EXPECT_EQ(pith::float_to_half(std::nextafter(1.0f + std::ldexp(1.0f, -11), 2.0f)), 0x3c01);
  EXPECT_EQ(pith::float_to_half(65519.0f), 0x7bff);
  EXPECT_EQ(pith::float_to_half(65520.0f), 0x7c00);  // the tie above the largest half goes to inf
  EXPECT_EQ(pith::float_to_half(-1e10f), 0xfc00);
  EXPECT_EQ(pith::float_to_half(std::ldexp(1.0f, -25)), 0x0000);  // tie between 0 and 2^-24
  EXPECT_EQ(pith::float_to_half(std::nextafter(std::ldexp(1.0f, -25), 1.0f)), 0x0001);
  EXPECT_EQ(pith::float_to_half(3 * std::ldexp(1.0f, -25)), 0x0002);  // tie, rounds to even
  EXPECT_EQ(pith::float_to_half(std::ldexp(1.0f, -30)), 0x0000);
  EXPECT_EQ(pith::float_to_half(-std::ldexp(1.0f, -30)), 0x8000);
  // Largest subnormal plus half an ulp rounds up into the smallest normal.
  EXPECT_EQ(pith::float_to_half(std::ldexp(1023.5f, -24)), 0x0400);
  EXPECT_EQ(pith::float_to_half(std::numeric_limits<float>::denorm_min()), 0x0000);
}

TEST(BFloat16, EveryBitPatternIsTheUpperHalfOfAFloat) {
  for (std::uint32_t i = 0; i <= 0xffff; ++i) {
    const auto bf = static_cast<std::uint16_t>(i);
    const float value = pith::bfloat16_to_float(bf);
    ASSERT_EQ(bits_of(value), i << 16) << i;
    if (std::isnan(value)) {
      ASSERT_TRUE(std::isnan(pith::bfloat16_to_float(pith::float_to_bfloat16(value)))) << i;
    } else {
      ASSERT_EQ(pith::float_to_bfloat16(value), bf) << i;
    }
  }
  EXPECT_EQ(pith::bfloat16_to_float(0x0001), std::numeric_limits<float>::denorm_min() * 65536.0f);  // subnormal
  EXPECT_EQ(pith::bfloat16_to_float(0x7f80), std::numeric_limits<float>::infinity());
  EXPECT_EQ(pith::bfloat16_to_float(0xff80), -std::numeric_limits<float>::infinity());
}

TEST(BFloat16, FloatToBFloat16RoundsToNearestEven) {
  EXPECT_EQ(pith::float_to_bfloat16(std::bit_cast<float>(0x3f808000u)), 0x3f80);  // tie, even
  EXPECT_EQ(pith::float_to_bfloat16(std::bit_cast<float>(0x3f818000u)), 0x3f82);  // tie, up to even
  EXPECT_EQ(pith::float_to_bfloat16(std::bit_cast<float>(0x3f808001u)), 0x3f81);
  EXPECT_EQ(pith::float_to_bfloat16(std::bit_cast<float>(0x7f7fffffu)), 0x7f80);           // FLT_MAX rounds to inf
  EXPECT_EQ(pith::float_to_bfloat16(std::bit_cast<float>(0x7f800001u)) & 0x7fc0, 0x7fc0);  // NaN stays NaN
}

}  // namespace
