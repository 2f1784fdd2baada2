// SPDX-License-Identifier: MIT
// Each primitive of each compiled ISA on every lane and every tail length.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "ops_types.hpp"

namespace {

template <class Ops>
class PrimitivesTest : public ::testing::Test {};
TYPED_TEST_SUITE(PrimitivesTest, pith::testing::compiled_ops, pith::testing::ops_name);

template <class Ops>
std::vector<float> lanes(typename Ops::vec v) {
  std::vector<float> out(Ops::width);
  Ops::store(out.data(), v);
  return out;
}

TYPED_TEST(PrimitivesTest, PartialLoadsAndStoresTouchOnlyTheirLanes) {
  PITH_SKIP_IF_CPU_LACKS(TypeParam);
  constexpr std::size_t W = TypeParam::width;
  std::vector<float> source(W);
  for (std::size_t i = 0; i < W; ++i) source[i] = static_cast<float>(i + 1);
  for (std::size_t count = 0; count < W; ++count) {
    const auto loaded = lanes<TypeParam>(TypeParam::load_partial(source.data(), count));
    for (std::size_t i = 0; i < W; ++i) EXPECT_EQ(loaded[i], i < count ? source[i] : 0.0f) << count;
    std::vector<float> target(W + 1, -7.0f);
    TypeParam::store_partial(target.data(), TypeParam::load(source.data()), count);
    for (std::size_t i = 0; i <= W; ++i) EXPECT_EQ(target[i], i < count ? source[i] : -7.0f) << count;
  }
}

TYPED_TEST(PrimitivesTest, ArithmeticAndReductions) {
  PITH_SKIP_IF_CPU_LACKS(TypeParam);
  constexpr std::size_t W = TypeParam::width;
  std::vector<float> a(W), b(W);
  float sum = 0.0f, best = -1e30f;
  for (std::size_t i = 0; i < W; ++i) {
    a[i] = static_cast<float>(i) * 0.5f - 1.0f;
    b[i] = 3.0f - static_cast<float>(i);
    sum += a[i];
    best = std::max(best, a[i]);
  }
  const auto va = TypeParam::load(a.data()), vb = TypeParam::load(b.data());
  const auto fma = lanes<TypeParam>(TypeParam::fmadd(va, vb, TypeParam::set1(2.0f)));
  const auto mx = lanes<TypeParam>(TypeParam::max(va, vb));
  const auto mn = lanes<TypeParam>(TypeParam::min(va, vb));
  const auto lt = lanes<TypeParam>(TypeParam::select_less(va, vb, TypeParam::set1(1.0f), TypeParam::set1(0.0f)));
  const auto index = lanes<TypeParam>(TypeParam::lane_index());
  for (std::size_t i = 0; i < W; ++i) {
    EXPECT_EQ(fma[i], a[i] * b[i] + 2.0f);
    EXPECT_EQ(mx[i], std::max(a[i], b[i]));
    EXPECT_EQ(mn[i], std::min(a[i], b[i]));
    EXPECT_EQ(lt[i], a[i] < b[i] ? 1.0f : 0.0f);
    EXPECT_EQ(index[i], static_cast<float>(i));
  }
  EXPECT_FLOAT_EQ(TypeParam::reduce_add(va), sum);
  EXPECT_EQ(TypeParam::reduce_max(va), best);
}

TYPED_TEST(PrimitivesTest, RoundAndPowersOfTwo) {
  PITH_SKIP_IF_CPU_LACKS(TypeParam);
  EXPECT_EQ(lanes<TypeParam>(TypeParam::round(TypeParam::set1(2.5f)))[0], 2.0f);
  EXPECT_EQ(lanes<TypeParam>(TypeParam::round(TypeParam::set1(-1.5f)))[0], -2.0f);
  EXPECT_EQ(lanes<TypeParam>(TypeParam::round(TypeParam::set1(0.7f)))[0], 1.0f);
  for (int e = -126; e <= 127; ++e)
    EXPECT_EQ(lanes<TypeParam>(TypeParam::pow2n(TypeParam::set1(static_cast<float>(e))))[0], std::ldexp(1.0f, e)) << e;
}

TYPED_TEST(PrimitivesTest, NanSelection) {
  PITH_SKIP_IF_CPU_LACKS(TypeParam);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const auto picked = lanes<TypeParam>(TypeParam::select_nan(TypeParam::set1(nan), TypeParam::set1(1.0f), TypeParam::set1(2.0f)));
  const auto kept = lanes<TypeParam>(TypeParam::select_nan(TypeParam::set1(0.0f), TypeParam::set1(1.0f), TypeParam::set1(2.0f)));
  EXPECT_EQ(picked[0], 1.0f);
  EXPECT_EQ(kept[0], 2.0f);
  // max/min keep a NaN second operand, which exp_approx relies on.
  EXPECT_TRUE(std::isnan(lanes<TypeParam>(TypeParam::max(TypeParam::set1(0.0f), TypeParam::set1(nan)))[0]));
  EXPECT_TRUE(std::isnan(lanes<TypeParam>(TypeParam::min(TypeParam::set1(0.0f), TypeParam::set1(nan)))[0]));
}

TYPED_TEST(PrimitivesTest, TransposeSwapsRowsAndLanes) {
  PITH_SKIP_IF_CPU_LACKS(TypeParam);
  constexpr std::size_t W = TypeParam::width;
  std::vector<float> block(W * W);
  for (std::size_t i = 0; i < W * W; ++i) block[i] = static_cast<float>(i);
  typename TypeParam::vec rows[W];
  for (std::size_t i = 0; i < W; ++i) rows[i] = TypeParam::load(block.data() + i * W);
  TypeParam::transpose(rows);
  for (std::size_t i = 0; i < W; ++i) {
    const auto row = lanes<TypeParam>(rows[i]);
    for (std::size_t j = 0; j < W; ++j) EXPECT_EQ(row[j], block[j * W + i]) << "row " << i << " lane " << j;
  }
}

}  // namespace
