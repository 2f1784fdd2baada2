// SPDX-License-Identifier: MIT
// exp_approx on every compiled ISA: error bound over its range, special values, every lane.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "ops_types.hpp"

namespace {

template <class Ops>
class ExpTest : public ::testing::Test {};
TYPED_TEST_SUITE(ExpTest, pith::testing::compiled_ops, pith::testing::ops_name);

template <class Ops>
std::vector<float> exp_of(const std::vector<float>& x) {
  std::vector<float> y(x.size());
  std::size_t i = 0;
  for (; i + Ops::width <= x.size(); i += Ops::width)
    Ops::store(y.data() + i, pith::simd::exp_approx<Ops>(Ops::load(x.data() + i)));
  if (i < x.size())
    Ops::store_partial(y.data() + i, pith::simd::exp_approx<Ops>(Ops::load_partial(x.data() + i, x.size() - i)),
                       x.size() - i);
  return y;
}

TYPED_TEST(ExpTest, RelativeErrorWithinTheDocumentedBoundOverTheWholeRange) {
  PITH_SKIP_IF_CPU_LACKS(TypeParam);
  std::vector<float> x;
  // A dense sweep of the range plus both ends exactly.
  constexpr int steps = 400000;
  for (int i = 0; i <= steps; ++i)
    x.push_back(pith::simd::exp_lower_bound +
                (pith::simd::exp_upper_bound - pith::simd::exp_lower_bound) * static_cast<float>(i) / steps);
  x.push_back(0.0f);
  x.push_back(-0.0f);
  x.push_back(1e-30f);
  const auto y = exp_of<TypeParam>(x);
  double worst = 0.0;
  float worst_x = 0.0f;
  for (std::size_t i = 0; i < x.size(); ++i) {
    const double exact = std::exp(static_cast<double>(x[i]));
    if (exact > std::numeric_limits<float>::max()) {
      EXPECT_EQ(y[i], std::numeric_limits<float>::infinity()) << x[i];
      continue;
    }
    const double error = std::abs(static_cast<double>(y[i]) - exact) / exact;
    if (error > worst) worst = error, worst_x = x[i];
  }
  EXPECT_LE(worst, pith::simd::exp_max_relative_error) << "worst at x = " << worst_x;
}

TYPED_TEST(ExpTest, SpecialValues) {
  PITH_SKIP_IF_CPU_LACKS(TypeParam);
  const float inf = std::numeric_limits<float>::infinity();
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const std::vector<float> x{-inf, inf, nan, -1000.0f, 1000.0f, -87.0f, 89.0f, 0.0f, -100.0f, 100.0f};
  const auto y = exp_of<TypeParam>(x);
  EXPECT_EQ(y[0], 0.0f);
  EXPECT_EQ(y[1], inf);
  EXPECT_TRUE(std::isnan(y[2]));
  EXPECT_EQ(y[3], 0.0f);
  EXPECT_EQ(y[4], inf);
  EXPECT_EQ(y[5], 0.0f) << "below exp_lower_bound results are flushed to zero";
  EXPECT_EQ(y[6], inf);
  EXPECT_EQ(y[7], 1.0f);
  EXPECT_EQ(y[8], 0.0f);
  EXPECT_EQ(y[9], inf);
}

TYPED_TEST(ExpTest, EveryLaneIsComputedIndependently) {
  PITH_SKIP_IF_CPU_LACKS(TypeParam);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  for (std::size_t lane = 0; lane < TypeParam::width; ++lane) {
    std::vector<float> x(TypeParam::width, 1.0f);
    x[lane] = nan;
    const auto y = exp_of<TypeParam>(x);
    for (std::size_t i = 0; i < x.size(); ++i) {
      if (i == lane) EXPECT_TRUE(std::isnan(y[i]));
      else EXPECT_NEAR(y[i], std::exp(1.0f), 2e-6f);
    }
  }
}

}  // namespace
