// SPDX-License-Identifier: MIT
// gemm_transposed on every compiled ISA and matmul_transposed (threads, small-row path) against the
// double-precision reference: shape sweep with tails on every dimension, accumulation, misaligned
// pointers and strides, output ranges, untouched neighbours, non-finite values, in = 0.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <pith/core/aligned_buffer.hpp>
#include <pith/core/parallel.hpp>
#include <pith/kernels/gemm.hpp>
#include <pith/kernels/matmul.hpp>
#include <pith/kernels/reference.hpp>

#include "isa_list.hpp"

namespace {

// A float sum of n terms with one rounding per addition (an FMA rounds once too) is within
// (n - 1) u sum |terms| of the exact sum, to first order, whatever the order of the additions
// (Higham, "Accuracy and Stability of Numerical Algorithms", 4.2), u = 2^-24. The kernel sums
// `in` products, plus Y when accumulating: in + 1 terms. Two more u cover products rounded before
// the addition (a set that does not contract to FMA) and the reference's own rounding to float,
// and one more the second-order terms. The bound is relative to sum |X W| (+ |Y|), so a single
// missing or doubled product (about 1/in of that sum) fails it for every size tested.
constexpr double unit_roundoff = 0x1p-24;
double tolerance(std::size_t in, double magnitude) {
  return static_cast<double>(in + 4) * unit_roundoff * magnitude;
}

constexpr float sentinel = 1234.5f;  // fills Y outside the written range; must survive every call

struct shape {
  std::size_t rows, in, out;
  bool accumulate;
  std::size_t misalign;  // floats added to every pointer (and to the strides)
  std::size_t out_begin = 0, out_end = 0;  // range written; 0, 0: all of [0, out)

  std::size_t x_stride() const { return in + misalign * 3; }
  std::size_t y_stride() const { return out + misalign * 5; }
  std::size_t begin() const { return out_end == 0 ? 0 : out_begin; }
  std::size_t end() const { return out_end == 0 ? out : out_end; }
  std::string describe() const {
    std::ostringstream s;
    s << "rows=" << rows << " in=" << in << " out=" << out << " range=[" << begin() << "," << end()
      << ") accumulate=" << accumulate << " misalign=" << misalign;
    return s.str();
  }
};

// Inputs, an initial Y (uniform, sentinel outside the written columns) and the reference. X and W
// are exactly as long as the kernel may read (std::vector: no rounding of the allocation), so
// AddressSanitizer catches any read past them.
struct case_data {
  std::vector<float> x, w;
  pith::aligned_buffer<float> y;
  std::vector<float> expected;
  std::vector<double> magnitude;

  const float* x_ptr(const shape& s) const { return x.data() + s.misalign; }
  const float* w_ptr(const shape& s) const { return w.data() + s.misalign; }
  float* y_ptr(const shape& s) { return y.data() + s.misalign; }
};

case_data make_case(const shape& s, unsigned seed = 1) {
  case_data c;
  c.x.resize(s.misalign + (s.rows == 0 ? 1 : (s.rows - 1) * s.x_stride() + std::max<std::size_t>(s.in, 1)));
  c.w.resize(s.misalign + std::max<std::size_t>(s.out * s.in, 1));
  c.y.resize(s.misalign + s.rows * s.y_stride() + 16);  // 16 floats of sentinel past the end
  std::mt19937 rng(seed * 7919u + static_cast<unsigned>(s.rows * 131 + s.in * 17 + s.out));
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  for (auto& v : c.x) v = uniform(rng);
  for (auto& v : c.w) v = uniform(rng);
  for (auto& v : c.y) v = sentinel;
  for (std::size_t i = 0; i < s.rows; ++i)
    for (std::size_t o = s.begin(); o < s.end(); ++o) c.y[s.misalign + i * s.y_stride() + o] = uniform(rng);
  // Reference over all outputs on a copy, then kept only inside the range.
  std::vector<float> full(c.y.begin(), c.y.end());
  c.magnitude.assign(full.size(), 0.0);
  pith::kernels::reference::matmul_transposed(c.x_ptr(s), s.rows, s.in, s.x_stride(), c.w_ptr(s), s.out,
                                              full.data() + s.misalign, s.y_stride(), s.accumulate,
                                              c.magnitude.data() + s.misalign);
  c.expected.assign(c.y.begin(), c.y.end());
  for (std::size_t i = 0; i < s.rows; ++i)
    for (std::size_t o = s.begin(); o < s.end(); ++o) {
      const std::size_t at = s.misalign + i * s.y_stride() + o;
      c.expected[at] = full[at];
    }
  return c;
}

// Every element of `actual` against the reference (first mismatch reported); outside the range,
// in the stride padding and past the end, exact equality with the sentinel.
void expect_matches(const shape& s, const case_data& c, const float* actual) {
  for (std::size_t at = 0; at < c.expected.size(); ++at) {
    const std::size_t local = at >= s.misalign ? at - s.misalign : 0;
    const std::size_t i = local / s.y_stride(), o = local % s.y_stride();
    const bool written = at >= s.misalign && i < s.rows && o >= s.begin() && o < s.end();
    if (!written) {
      if (actual[at] != c.expected[at]) {
        ADD_FAILURE() << "wrote outside its range at row " << i << " column " << o << ": " << actual[at];
        return;
      }
      continue;
    }
    const double error = std::abs(static_cast<double>(actual[at]) - static_cast<double>(c.expected[at]));
    if (!(error <= tolerance(s.in, c.magnitude[at]))) {
      ADD_FAILURE() << "Y[" << i << ", " << o << "] = " << actual[at] << ", reference " << c.expected[at]
                    << ", error " << error << " > " << tolerance(s.in, c.magnitude[at]);
      return;
    }
  }
}

// Scratch filled with NaN: the kernel must not depend on its contents.
pith::aligned_buffer<float> poisoned_scratch() {
  pith::aligned_buffer<float> scratch(pith::kernels::gemm_transposed_scratch_size());
  std::fill(scratch.begin(), scratch.end(), std::numeric_limits<float>::quiet_NaN());
  return scratch;
}

// The reference once, then every compiled ISA the CPU supports on a fresh copy of Y.
void check_every_isa(const shape& s) {
  SCOPED_TRACE(s.describe());
  const case_data c = make_case(s);
  auto scratch = poisoned_scratch();
  for (const auto& isa : pith::testing::compiled_isas()) {
    if (!isa.supported) continue;
    SCOPED_TRACE(isa.name);
    pith::aligned_buffer<float> y(c.y.size());
    std::copy(c.y.begin(), c.y.end(), y.begin());
    isa.gemm_transposed(c.x_ptr(s), s.rows, s.in, s.x_stride(), c.w_ptr(s), s.begin(), s.end(), y.data() + s.misalign,
                        s.y_stride(), s.accumulate, scratch.data());
    expect_matches(s, c, y.data());
    if (::testing::Test::HasFailure()) return;
  }
}

// ------------------------------------------------------------------ the sweep
class GemmSweepTest : public ::testing::TestWithParam<std::size_t> {};

// Every rows x in x out of the lists below: below, at and above every ISA's vector width (1 .. 16),
// tile height (6) and panel width (2 .. 64), and above the packed block depth for in = 512.
TEST_P(GemmSweepTest, EveryShapeMatchesTheReference) {
  const std::size_t rows = GetParam();
  for (std::size_t in : {1, 3, 16, 64, 100, 512})
    for (std::size_t out : {1, 7, 16, 63, 64, 65, 200})
      for (bool accumulate : {false, true})
        for (std::size_t misalign : {0, 1}) {
          check_every_isa({rows, in, out, accumulate, misalign});
          if (::testing::Test::HasFailure()) return;
        }
}

INSTANTIATE_TEST_SUITE_P(Rows, GemmSweepTest, ::testing::Values(1, 2, 5, 17, 64, 65, 130),
                         [](const auto& info) { return "rows" + std::to_string(info.param); });

// Several packed blocks along k with a partial last one on every ISA (the deepest block is 4096
// inputs, on the scalar set), odd misalignments.
TEST(GemmTest, DeepInputsSpanSeveralPackedBlocks) {
  for (std::size_t in : {129, 513, 1100, 4100})
    for (std::size_t misalign : {2, 3}) check_every_isa({7, in, 37, true, misalign});
}

// Sub-ranges of the output features, starting inside a vector and a panel; neighbours untouched.
TEST(GemmTest, OutputRangesWriteOnlyTheirColumns) {
  for (auto [begin, end] : std::vector<std::pair<std::size_t, std::size_t>>{{0, 64}, {5, 70}, {64, 128}, {17, 18}, {99, 200}, {30, 30}})
    for (bool accumulate : {false, true}) check_every_isa({13, 40, 200, accumulate, 1, begin, end});
}

TEST(GemmTest, NoInputsGivesZerosOrLeavesYUnchanged) {
  for (bool accumulate : {false, true}) check_every_isa({9, 0, 70, accumulate, 1});
  check_every_isa({0, 8, 70, false, 0});  // no rows: nothing written
}

// A NaN in X row r reaches row r of Y only; +inf in W row o reaches column o only (with the sign
// of the X values it meets, so NaN where they cancel). Padding lanes and zero-filled tails must not
// spread them.
TEST(GemmTest, NonFiniteValuesStayInTheirRowAndColumn) {
  const shape s{13, 37, 70, false, 0};
  case_data c = make_case(s);
  const std::size_t bad_row = 7, bad_column = 66, bad_k = 5;
  c.x[bad_row * s.x_stride() + bad_k] = std::numeric_limits<float>::quiet_NaN();
  c.w[bad_column * s.in + bad_k] = std::numeric_limits<float>::infinity();
  auto scratch = poisoned_scratch();
  for (const auto& isa : pith::testing::compiled_isas()) {
    if (!isa.supported) continue;
    SCOPED_TRACE(isa.name);
    pith::aligned_buffer<float> y(c.y.size());
    isa.gemm_transposed(c.x.data(), s.rows, s.in, s.x_stride(), c.w.data(), 0, s.out, y.data(), s.y_stride(), false,
                        scratch.data());
    for (std::size_t i = 0; i < s.rows; ++i)
      for (std::size_t o = 0; o < s.out; ++o) {
        const float v = y[i * s.y_stride() + o];
        if (i == bad_row)
          EXPECT_TRUE(std::isnan(v)) << i << "," << o;
        else if (o == bad_column)
          EXPECT_TRUE(std::isinf(v)) << i << "," << o;
        else
          EXPECT_TRUE(std::isfinite(v)) << i << "," << o;
      }
  }
}

// ------------------------------------------------------------------ matmul_transposed
// The entry point the model uses: Eigen below gemm_min_rows, the GEMM from there, output features
// split across the pool (1 and 2 threads), Y += X W^T through `accumulate`.
TEST(MatmulTransposedTest, EveryPathMatchesTheReference) {
  for (std::size_t threads : {1, 2}) {
    pith::set_num_threads(threads);
    for (std::size_t rows : {std::size_t{1}, pith::kernels::gemm_min_rows, std::size_t{3}, std::size_t{64}, std::size_t{130}})
      for (std::size_t out : {1, 65, 200, 300})
        for (bool accumulate : {false, true}) {
          const shape s{rows, 100, out, accumulate, 1};
          SCOPED_TRACE(s.describe() + " threads=" + std::to_string(threads));
          case_data c = make_case(s);
          pith::kernels::matmul_transposed(c.x_ptr(s), s.rows, s.in, s.x_stride(), c.w_ptr(s), s.out, c.y_ptr(s),
                                           s.y_stride(), s.accumulate);
          expect_matches(s, c, c.y.data());
          if (::testing::Test::HasFailure()) break;
        }
  }
  pith::set_num_threads(0);
}

}  // namespace
