// SPDX-License-Identifier: MIT
// softmax_importance on every compiled ISA against the double-precision reference: size and
// alignment sweeps, causal offsets, masks, column ranges, accumulation, extreme values, properties.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include <pith/core/aligned_buffer.hpp>
#include <pith/kernels/reference.hpp>
#include <pith/kernels/softmax_importance.hpp>

#include "isa_list.hpp"

namespace {

using pith::kernels::softmax_importance_args;

// Tolerances against the double-precision reference. Inputs are uniform in [-1, 1] with scale
// 1/sqrt(d), so scores are O(1) and outputs are convex combinations of values in [-1, 1].
// Float dot products over d <= 128 and exp (2 ulp) put each probability within ~1e-6 relative;
// sums over up to 4099 keys, accumulated lane-wise in float, add up to ~n/W * 6e-8 relative.
constexpr double output_tolerance = 3e-5;          // absolute, outputs are O(1)
constexpr double importance_relative_tolerance = 2e-4;
constexpr double importance_absolute_tolerance = 1e-9;  // probabilities of 1e-9 carry no information
constexpr double row_sum_relative_tolerance = 2e-4;
constexpr double row_max_tolerance = 1e-5;          // absolute, scores are O(1)

struct problem {
  std::size_t m = 1, n = 1, d = 8;
  std::size_t misalign = 0;  // floats added to every input and output pointer
  bool causal = false;
  std::size_t causal_offset = 0;
  bool with_mask = false;
  std::size_t importance_begin = 0, importance_end = pith::kernels::all_keys;
  bool accumulate = false;
  bool want_output = true, want_importance = true, want_squares = true, want_stats = true;
  bool weighted = false;  // importance_weights: query i counts (i % 5) + 1 times (no squares)
  float score_shift = 0.0f;  // added to every score of every row through an extra dimension
  unsigned seed = 1;

  std::string describe() const {
    std::ostringstream s;
    s << "m=" << m << " n=" << n << " d=" << d << " misalign=" << misalign << " causal=" << causal
      << " offset=" << causal_offset << " mask=" << with_mask << " range=[" << importance_begin << ","
      << (importance_end == pith::kernels::all_keys ? n : importance_end) << ") accumulate=" << accumulate
      << " shift=" << score_shift;
    return s.str();
  }
};

// Inputs and outputs of one call; every pointer is misaligned by `misalign` floats from 64 bytes.
struct case_data {
  pith::aligned_buffer<float> q, k, v, out, imp, sq, row_max, row_sum, weights;
  std::vector<std::uint8_t> mask;
  std::size_t ldq, ldk, ldv, ldo;

  softmax_importance_args args(const problem& p) {
    softmax_importance_args a;
    a.queries = q.data() + p.misalign;
    a.query_stride = ldq;
    a.keys = k.data() + p.misalign;
    a.key_stride = ldk;
    a.values = p.want_output ? v.data() + p.misalign : nullptr;
    a.value_stride = ldv;
    a.m = p.m;
    a.n = p.n;
    a.d = p.d;
    a.scale = 1.0f / std::sqrt(static_cast<float>(std::max<std::size_t>(p.d, 1)));
    a.causal = p.causal;
    a.causal_offset = p.causal_offset;
    a.key_mask = p.with_mask ? mask.data() : nullptr;
    a.output = p.want_output ? out.data() + p.misalign : nullptr;
    a.output_stride = ldo;
    a.importance = p.want_importance ? imp.data() + p.misalign : nullptr;
    a.importance_squares = p.want_squares ? sq.data() + p.misalign : nullptr;
    a.importance_weights = p.weighted ? weights.data() + p.misalign : nullptr;
    a.importance_begin = p.importance_begin;
    a.importance_end = p.importance_end;
    a.accumulate = p.accumulate;
    a.row_max = p.want_stats ? row_max.data() + p.misalign : nullptr;
    a.row_sum = p.want_stats ? row_sum.data() + p.misalign : nullptr;
    return a;
  }
};

case_data make_case(const problem& p) {
  case_data c;
  // Odd strides larger than d so rows are misaligned relative to each other too.
  c.ldq = p.d + 3;
  c.ldk = p.d + 1;
  c.ldv = p.d + 5;
  c.ldo = p.d + 2;
  const std::size_t pad = p.misalign + 16;
  c.q.resize(p.m * c.ldq + pad);
  c.k.resize(p.n * c.ldk + pad);
  c.v.resize(p.n * c.ldv + pad);
  c.out.resize(p.m * c.ldo + pad);
  c.imp.resize(p.n + pad);
  c.sq.resize(p.n + pad);
  c.row_max.resize(p.m + pad);
  c.row_sum.resize(p.m + pad);
  c.weights.resize(p.m + pad);
  for (std::size_t i = 0; i < p.m; ++i) c.weights[p.misalign + i] = static_cast<float>(i % 5 + 1);
  std::mt19937 rng(p.seed * 7919u + static_cast<unsigned>(p.m * 31 + p.n * 17 + p.d));
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  for (auto& x : c.q) x = uniform(rng);
  for (auto& x : c.k) x = uniform(rng);
  for (auto& x : c.v) x = uniform(rng);
  for (auto& x : c.imp) x = uniform(rng) * 0.5f + 0.5f;  // accumulation starts from these
  for (auto& x : c.sq) x = uniform(rng) * 0.5f + 0.5f;
  if (p.score_shift != 0.0f && p.d > 0) {
    // Last dimension: every key holds 1, every query holds shift/scale: all scores move by shift.
    const float scale = 1.0f / std::sqrt(static_cast<float>(p.d));
    for (std::size_t j = 0; j < p.n; ++j) c.k[p.misalign + j * c.ldk + p.d - 1] = 1.0f;
    for (std::size_t i = 0; i < p.m; ++i) c.q[p.misalign + i * c.ldq + p.d - 1] = p.score_shift / scale;
  }
  c.mask.resize(p.n);
  for (std::size_t j = 0; j < p.n; ++j) c.mask[j] = (j % 3 == 1) ? 0 : 1;
  if (p.with_mask) {
    // Hidden keys may hold anything: poison them.
    const float nan = std::numeric_limits<float>::quiet_NaN();
    for (std::size_t j = 0; j < p.n; ++j)
      if (c.mask[j] == 0)
        for (std::size_t i = 0; i < p.d; ++i) c.k[p.misalign + j * c.ldk + i] = nan, c.v[p.misalign + j * c.ldv + i] = nan;
  }
  return c;
}

bool close(double actual, double expected, double absolute, double relative) {
  if (std::isnan(expected)) return std::isnan(actual);
  if (std::isinf(expected)) return actual == expected;
  return std::abs(actual - expected) <= absolute + relative * std::abs(expected);
}

// Compares `count` floats; reports the first mismatch only.
void expect_all_close(const char* what, const float* actual, const float* expected, std::size_t count, double absolute,
                      double relative) {
  for (std::size_t i = 0; i < count; ++i) {
    if (!close(actual[i], expected[i], absolute, relative)) {
      ADD_FAILURE() << what << "[" << i << "] = " << actual[i] << ", reference " << expected[i];
      return;
    }
  }
}

// Runs the reference once and every compiled ISA the CPU supports on `p`; compares all outputs.
void check_case(const problem& p) {
  SCOPED_TRACE(p.describe());
  case_data expected = make_case(p);
  pith::kernels::reference::softmax_importance(expected.args(p));
  const std::size_t end = p.importance_end == pith::kernels::all_keys ? p.n : p.importance_end;
  pith::aligned_buffer<float> scratch(pith::kernels::softmax_importance_scratch_size(p.m, p.n, p.d));
  for (const auto& isa : pith::testing::compiled_isas()) {
    if (!isa.supported) continue;
    SCOPED_TRACE(isa.name);
    case_data actual = make_case(p);
    const auto args = actual.args(p);
    ASSERT_EQ(pith::kernels::validate_softmax_importance(args), nullptr);
    isa.softmax_importance(args, scratch.data());
    const std::size_t o = p.misalign;
    if (p.want_output)
      for (std::size_t i = 0; i < p.m; ++i)
        expect_all_close("output row", actual.out.data() + o + i * actual.ldo, expected.out.data() + o + i * expected.ldo,
                         p.d, output_tolerance, 0.0);
    if (p.want_importance)
      expect_all_close("importance", actual.imp.data() + o, expected.imp.data() + o, end - p.importance_begin,
                       importance_absolute_tolerance, importance_relative_tolerance);
    if (p.want_squares)
      expect_all_close("importance_squares", actual.sq.data() + o, expected.sq.data() + o, end - p.importance_begin,
                       importance_absolute_tolerance, importance_relative_tolerance);
    if (p.want_stats) {
      expect_all_close("row_max", actual.row_max.data() + o, expected.row_max.data() + o, p.m, row_max_tolerance, 1e-6);
      expect_all_close("row_sum", actual.row_sum.data() + o, expected.row_sum.data() + o, p.m, 0.0,
                       row_sum_relative_tolerance);
    }
    // Nothing is written past the outputs.
    if (p.want_importance) {
      EXPECT_EQ(actual.imp[o + end - p.importance_begin], expected.imp[o + end - p.importance_begin]);
    }
    if (p.want_stats) {
      EXPECT_EQ(actual.row_sum[o + p.m], expected.row_sum[o + p.m]);
    }
    if (::testing::Test::HasFailure()) return;
  }
}

// ------------------------------------------------------------------ the sweep
class SweepTest : public ::testing::TestWithParam<std::tuple<std::size_t, std::size_t>> {};

TEST_P(SweepTest, EveryKeyCountAndAlignmentMatchesTheReference) {
  const auto [m, d] = GetParam();
  const std::size_t W = pith::testing::widest_vector();
  std::vector<std::size_t> key_counts;
  for (std::size_t n = 0; n <= 3 * W + 1; ++n) key_counts.push_back(n);
  key_counts.push_back(1024);
  key_counts.push_back(4099);
  for (std::size_t n : key_counts) {
    for (std::size_t misalign : {std::size_t{0}, std::size_t{1}, W / 2}) {
      problem p;
      p.m = m;
      p.n = n;
      p.d = d;
      p.misalign = misalign;
      check_case(p);
      if (HasFailure()) return;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, SweepTest,
                         ::testing::Combine(::testing::Values(1, 2, 7, 32, 257), ::testing::Values(8, 16, 64, 80, 128)),
                         [](const auto& info) {
                           std::ostringstream name;
                           name << "m" << std::get<0>(info.param) << "_d" << std::get<1>(info.param);
                           return name.str();
                         });

// ------------------------------------------------------------------ masks and ranges
TEST(SoftmaxImportance, CausalOffsetsMatchTheReference) {
  for (std::size_t m : {1u, 5u, 17u, 40u, 100u})
    for (std::size_t offset : {0u, 3u, 37u, 200u})
      for (std::size_t d : {8u, 24u, 64u}) {
        problem p;
        p.m = m;
        p.n = offset + m;
        p.d = d;
        p.causal = true;
        p.causal_offset = offset;
        check_case(p);
        // Fewer keys than the queries would see, and queries that see none.
        p.n = offset + m / 2;
        check_case(p);
        if (HasFailure()) return;
      }
}

// FinchPress's per-query weights (attention_scoring::count_weighted): the row path (small m) and the
// blocked path, causal, with a mask and a column range, accumulated or not.
TEST(SoftmaxImportance, ImportanceWeightsMatchTheReference) {
  for (std::size_t m : {1u, 3u, 17u, 40u, 100u})
    for (const bool masked : {false, true}) {
      problem p;
      p.m = m;
      p.n = 37 + m;
      p.d = 24;
      p.causal = true;
      p.causal_offset = 37;
      p.with_mask = masked;
      p.want_squares = false;
      p.weighted = true;
      check_case(p);
      p.importance_end = 37;
      p.accumulate = true;
      check_case(p);
      if (HasFailure()) return;
    }
}

TEST(SoftmaxImportance, KeyMaskHidesPoisonedKeys) {
  for (std::size_t m : {1u, 3u, 33u, 70u})
    for (std::size_t n : {1u, 2u, 10u, 100u, 333u}) {
      problem p;
      p.m = m;
      p.n = n;
      p.d = 40;
      p.with_mask = true;
      check_case(p);
      p.causal = true;
      p.causal_offset = n / 2;
      check_case(p);
      if (HasFailure()) return;
    }
}

TEST(SoftmaxImportance, ColumnRangeAndAccumulation) {
  for (std::size_t m : {1u, 9u, 64u, 65u}) {
    problem p;
    p.m = m;
    p.n = 300;
    p.d = 32;
    p.importance_begin = 17;
    p.importance_end = 201;
    check_case(p);
    p.accumulate = true;
    check_case(p);
    p.importance_begin = 300;  // empty range
    p.importance_end = 300;
    check_case(p);
    p.importance_begin = 0;
    p.importance_end = 0;
    p.causal = true;
    p.causal_offset = 10;
    check_case(p);
    if (HasFailure()) return;
  }
}

TEST(SoftmaxImportance, EachOutputCanBeRequestedAlone) {
  for (std::size_t m : {1u, 50u}) {
    problem p;
    p.m = m;
    p.n = 77;
    p.d = 16;
    p.want_importance = p.want_squares = p.want_stats = false;
    check_case(p);
    p.want_output = false;
    p.want_importance = true;
    check_case(p);
    p.want_importance = false;
    p.want_stats = true;
    check_case(p);
    if (HasFailure()) return;
  }
}

TEST(SoftmaxImportance, EmptyInputs) {
  for (std::size_t m : {0u, 1u, 20u})
    for (std::size_t n : {0u, 5u})
      for (std::size_t d : {0u, 8u}) {
        problem p;
        p.m = m;
        p.n = n;
        p.d = d;
        check_case(p);
        if (HasFailure()) return;
      }
}

// ------------------------------------------------------------------ extreme values
TEST(SoftmaxImportance, HugeScoresDoNotOverflow) {
  // Scores in [90, 100]: exp(score) alone would overflow float.
  for (std::size_t m : {1u, 2u, 33u}) {
    problem p;
    p.m = m;
    p.n = 200;
    p.d = 64;
    p.score_shift = 95.0f;
    check_case(p);
    p.score_shift = -95.0f;
    check_case(p);
    if (HasFailure()) return;
  }
}

// Runs every ISA on hand-made inputs; returns (isa name, args outputs) for inspection.
struct manual_case {
  std::size_t m, n, d;
  std::vector<float> q, k, v;
  std::vector<std::uint8_t> mask;
};

struct manual_result {
  std::vector<float> out, imp, row_max, row_sum;
};

manual_result run_manual(const manual_case& c, const pith::testing::compiled_isa* isa) {
  manual_result r;
  r.out.assign(c.m * c.d, -1.0f);
  r.imp.assign(c.n, -1.0f);
  r.row_max.assign(c.m, -1.0f);
  r.row_sum.assign(c.m, -1.0f);
  softmax_importance_args a;
  a.queries = c.q.data();
  a.query_stride = c.d;
  a.keys = c.k.data();
  a.key_stride = c.d;
  a.values = c.v.data();
  a.value_stride = c.d;
  a.m = c.m;
  a.n = c.n;
  a.d = c.d;
  a.key_mask = c.mask.empty() ? nullptr : c.mask.data();
  a.output = r.out.data();
  a.output_stride = c.d;
  a.importance = r.imp.data();
  a.row_max = r.row_max.data();
  a.row_sum = r.row_sum.data();
  if (isa == nullptr) {
    pith::kernels::reference::softmax_importance(a);
  } else {
    pith::aligned_buffer<float> scratch(pith::kernels::softmax_importance_scratch_size(c.m, c.n, c.d));
    isa->softmax_importance(a, scratch.data());
  }
  return r;
}

TEST(SoftmaxImportance, InfiniteScoresShareTheMass) {
  // Key 3 scores +inf and key 5 -inf for every query (first query component is 1, keys 3 and 5 hold ±inf there).
  for (std::size_t m : {1u, 40u}) {
    manual_case c{m, 9, 4, {}, {}, {}, {}};
    c.q.assign(m * 4, 0.25f);
    for (std::size_t i = 0; i < m; ++i) c.q[i * 4] = 1.0f;
    c.k.assign(9 * 4, 0.0f);
    c.v.assign(9 * 4, 0.0f);
    for (std::size_t j = 0; j < 9; ++j)
      for (std::size_t x = 0; x < 4; ++x) c.v[j * 4 + x] = static_cast<float>(j * 10 + x);
    c.k[3 * 4] = std::numeric_limits<float>::infinity();
    c.k[5 * 4] = -std::numeric_limits<float>::infinity();
    for (const auto& isa : pith::testing::compiled_isas()) {
      if (!isa.supported) continue;
      SCOPED_TRACE(::testing::Message() << isa.name << " m=" << m);
      const auto r = run_manual(c, &isa);
      for (std::size_t i = 0; i < m; ++i) {
        for (std::size_t x = 0; x < 4; ++x) EXPECT_EQ(r.out[i * 4 + x], c.v[3 * 4 + x]);
        EXPECT_EQ(r.row_max[i], std::numeric_limits<float>::infinity());
        EXPECT_EQ(r.row_sum[i], 1.0f);
      }
      for (std::size_t j = 0; j < 9; ++j) EXPECT_FLOAT_EQ(r.imp[j], j == 3 ? 1.0f : 0.0f) << j;
    }
  }
}

TEST(SoftmaxImportance, NanInAQueryStaysInItsRow) {
  for (std::size_t m : {3u, 40u}) {
    manual_case c{m, 30, 8, {}, {}, {}, {}};
    std::mt19937 rng(5);
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    c.q.resize(m * 8);
    c.k.resize(30 * 8);
    c.v.resize(30 * 8);
    for (auto& x : c.q) x = u(rng);
    for (auto& x : c.k) x = u(rng);
    for (auto& x : c.v) x = u(rng);
    c.q[1 * 8 + 2] = std::numeric_limits<float>::quiet_NaN();
    for (const auto& isa : pith::testing::compiled_isas()) {
      if (!isa.supported) continue;
      SCOPED_TRACE(::testing::Message() << isa.name << " m=" << m);
      const auto r = run_manual(c, &isa);
      for (std::size_t i = 0; i < m; ++i)
        for (std::size_t x = 0; x < 8; ++x) EXPECT_EQ(std::isnan(r.out[i * 8 + x]), i == 1) << i << "," << x;
      EXPECT_TRUE(std::isnan(r.row_sum[1]));
      EXPECT_FALSE(std::isnan(r.row_sum[0]));
      for (float x : r.imp) EXPECT_TRUE(std::isnan(x));  // every key got a NaN contribution
    }
  }
}

TEST(SoftmaxImportance, NanInAVisibleValueReachesTheOutput) {
  manual_case c{4, 10, 8, {}, {}, {}, {}};
  c.q.assign(4 * 8, 0.1f);
  c.k.assign(10 * 8, 0.2f);
  c.v.assign(10 * 8, 1.0f);
  c.v[6 * 8 + 3] = std::numeric_limits<float>::quiet_NaN();
  for (const auto& isa : pith::testing::compiled_isas()) {
    if (!isa.supported) continue;
    SCOPED_TRACE(isa.name);
    const auto r = run_manual(c, &isa);
    for (std::size_t i = 0; i < 4; ++i) {
      EXPECT_TRUE(std::isnan(r.out[i * 8 + 3]));
      EXPECT_FLOAT_EQ(r.out[i * 8 + 2], 1.0f);
    }
  }
}

// ------------------------------------------------------------------ properties
TEST(SoftmaxImportance, ProbabilitiesSumToOneAndMaskedKeysGetZero) {
  for (std::size_t m : {1u, 6u, 64u, 129u}) {
    problem p;
    p.m = m;
    p.n = 513;
    p.d = 64;
    p.with_mask = true;
    case_data c = make_case(p);
    auto args = c.args(p);
    pith::aligned_buffer<float> scratch(pith::kernels::softmax_importance_scratch_size(p.m, p.n, p.d));
    for (const auto& isa : pith::testing::compiled_isas()) {
      if (!isa.supported) continue;
      SCOPED_TRACE(::testing::Message() << isa.name << " m=" << m);
      isa.softmax_importance(args, scratch.data());
      double total = 0.0;
      for (std::size_t j = 0; j < p.n; ++j) {
        total += args.importance[j];
        if (c.mask[j] == 0) {
          EXPECT_EQ(args.importance[j], 0.0f) << j;
        }
      }
      // The mean over queries of rows that each sum to one.
      EXPECT_NEAR(total, 1.0, 1e-5);
    }
  }
}

TEST(SoftmaxImportance, ShiftingEveryScoreChangesNothing) {
  for (std::size_t m : {1u, 48u}) {
    problem p;
    p.m = m;
    p.n = 130;
    p.d = 32;
    p.want_stats = false;
    case_data base = make_case(p);
    p.score_shift = 30.0f;
    case_data shifted = make_case(p);
    p.score_shift = 0.0f;
    // Same data except the last dimension: make base use the same keys with shift 0.
    for (std::size_t j = 0; j < p.n; ++j) base.k[j * base.ldk + p.d - 1] = 1.0f;
    for (std::size_t i = 0; i < p.m; ++i) base.q[i * base.ldq + p.d - 1] = 0.0f;
    pith::aligned_buffer<float> scratch(pith::kernels::softmax_importance_scratch_size(p.m, p.n, p.d));
    for (const auto& isa : pith::testing::compiled_isas()) {
      if (!isa.supported) continue;
      SCOPED_TRACE(::testing::Message() << isa.name << " m=" << m);
      const auto a = base.args(p);
      const auto b = shifted.args(p);
      isa.softmax_importance(a, scratch.data());
      isa.softmax_importance(b, scratch.data());
      expect_all_close("output", b.output, a.output, p.m * shifted.ldo, output_tolerance, 0.0);
      expect_all_close("importance", b.importance, a.importance, p.n, importance_absolute_tolerance,
                       importance_relative_tolerance);
    }
  }
}

TEST(SoftmaxImportance, ValidationNamesTheField) {
  softmax_importance_args a;
  a.m = 2;
  a.n = 3;
  a.d = 4;
  EXPECT_NE(std::string(pith::kernels::validate_softmax_importance(a)).find("queries"), std::string::npos);
  float q[8] = {}, k[12] = {};
  a.queries = q;
  a.query_stride = 4;
  a.keys = k;
  a.key_stride = 2;
  EXPECT_NE(std::string(pith::kernels::validate_softmax_importance(a)).find("key_stride"), std::string::npos);
  a.key_stride = 4;
  a.importance_begin = 2;
  a.importance_end = 5;
  EXPECT_NE(std::string(pith::kernels::validate_softmax_importance(a)).find("importance range"), std::string::npos);
  a.importance_end = 3;
  EXPECT_EQ(pith::kernels::validate_softmax_importance(a), nullptr);
}

}  // namespace
