// SPDX-License-Identifier: MIT
// matmul_transposed over F32, F16 and BF16 weights on every compiled ISA against a double-precision
// reference over the converted weights: the matrix-vector kernel (decode) and the GEMM over
// converted panels (prefill), shapes with tails, weights misaligned and strided, accumulation,
// the vdpbf16ps decode path, every F16 and BF16 bit pattern, and F32 results bit for bit as before.
#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <pith/core/aligned_buffer.hpp>
#include <pith/core/half.hpp>
#include <pith/core/parallel.hpp>
#include <pith/core/tensor.hpp>
#include <pith/kernels/gemm.hpp>
#include <pith/kernels/matmul.hpp>
#include <pith/kernels/typed_matmul.hpp>

#include "isa_list.hpp"

namespace {

using pith::dtype;
using pith::kernels::bf16_decode;

// A float sum of n terms rounded once per addition (or FMA) is within (n - 1) u sum |terms| of the
// exact sum, to first order, in any order (Higham, "Accuracy and Stability of Numerical
// Algorithms", 4.2), u = 2^-24. The kernels sum `in` products (exact: converted weights are exact
// floats, and an FMA rounds its product with the sum), plus Y when accumulating: in + 1 terms. Two
// more u cover the reference's rounding to float and a horizontal reduction's extra level, one
// more the second-order terms. Relative to sum |X W| (+ |Y|): a missing or doubled product
// (about 1/in of that sum) fails it.
constexpr double unit_roundoff = 0x1p-24;
double tolerance(std::size_t in, double magnitude) { return static_cast<double>(in + 4) * unit_roundoff * magnitude; }

// vdpbf16ps multiplies bfloat16: x enters as x_hi + x_lo, two bfloat16 of 8 significant bits each,
// so |x - x_hi - x_lo| <= 2^-8 |x - x_hi| <= 2^-16 |x| and each product is off by at most
// 2^-16 |X W| before summation: 2^-16 sum |X W| on top of the float bound.
constexpr double bf16_split_error = 0x1p-16;
double dot_tolerance(std::size_t in, double magnitude) {
  return tolerance(in, magnitude) + bf16_split_error * magnitude;
}

constexpr float sentinel = 1234.5f;  // Y outside [begin, end) and in the stride padding: never written

// W's layout in memory.
enum class layout {
  packed,      // rows back to back from an aligned address
  misaligned,  // packed, from an address 2 bytes past an aligned one (F32 rows then not 4-aligned)
  strided,     // rows 6 bytes further apart than a row is long (F32 rows at varying alignments)
};

struct shape {
  dtype type;
  std::size_t rows, in, out;
  bool accumulate;
  layout place;

  std::size_t x_stride() const { return in + 3; }
  std::size_t y_stride() const { return out + 5; }
  std::size_t row_bytes() const {
    return pith::dtype_row_bytes(type, in) + (place == layout::strided ? 6 : 0);
  }
  std::size_t offset() const { return place == layout::misaligned ? 2 : 0; }
  std::string describe() const {
    std::ostringstream s;
    s << pith::dtype_name(type) << " rows=" << rows << " in=" << in << " out=" << out << " accumulate=" << accumulate
      << " layout=" << (place == layout::packed ? "packed" : place == layout::misaligned ? "misaligned" : "strided");
    return s.str();
  }
};

// W's bytes (exactly as long as the rows need, so AddressSanitizer sees any read past them), X, an
// initial Y, the reference over the converted weights and the scale of each element's rounding.
struct case_data {
  std::vector<std::byte> w_bytes;  // w_bytes.data() + offset: W's first row
  std::vector<float> x;
  std::vector<float> y;
  std::vector<double> expected, magnitude;

  pith::tensor_view view(const shape& s) const {
    return {nullptr, w_bytes.data() + s.offset(), s.type, s.out, s.in, s.row_bytes()};
  }
};

void store_element(dtype type, std::byte* at, float value) {
  if (type == dtype::f32) {
    std::memcpy(at, &value, 4);
  } else {
    const std::uint16_t bits = type == dtype::f16 ? pith::float_to_half(value) : pith::float_to_bfloat16(value);
    std::memcpy(at, &bits, 2);
  }
}

case_data make_case(const shape& s) {
  case_data c;
  const std::size_t row = pith::dtype_row_bytes(s.type, s.in);
  c.w_bytes.assign(s.offset() + (s.out == 0 ? 0 : (s.out - 1) * s.row_bytes() + row), std::byte{0x7f});
  std::mt19937 rng(static_cast<unsigned>(s.rows * 131 + s.in * 17 + s.out * 3 + static_cast<unsigned>(s.type)));
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  std::vector<float> w(s.out * s.in);
  for (std::size_t o = 0; o < s.out; ++o)
    for (std::size_t k = 0; k < s.in; ++k) {
      std::byte* at = c.w_bytes.data() + s.offset() + o * s.row_bytes() + k * pith::dtype_block_bytes(s.type);
      store_element(s.type, at, uniform(rng));
      w[o * s.in + k] = pith::dtype_element(s.type, at, 0);  // the converted value
    }
  c.x.resize(s.rows * s.x_stride());
  for (auto& v : c.x) v = uniform(rng);
  c.y.assign(s.rows * s.y_stride() + 16, sentinel);
  c.expected.assign(c.y.size(), sentinel);
  c.magnitude.assign(c.y.size(), 0.0);
  for (std::size_t i = 0; i < s.rows; ++i)
    for (std::size_t o = 0; o < s.out; ++o) {
      const std::size_t at = i * s.y_stride() + o;
      c.y[at] = uniform(rng);
      double sum = s.accumulate ? c.y[at] : 0.0, magnitude = s.accumulate ? std::abs(c.y[at]) : 0.0;
      for (std::size_t k = 0; k < s.in; ++k) {
        const double product = static_cast<double>(c.x[i * s.x_stride() + k]) * w[o * s.in + k];
        sum += product;
        magnitude += std::abs(product);
      }
      c.expected[at] = sum;
      c.magnitude[at] = magnitude;
    }
  return c;
}

// Every element of `actual` against the reference (first mismatch reported); the sentinel exactly
// outside the outputs.
void expect_matches(const shape& s, const case_data& c, const std::vector<float>& actual, bool split_x) {
  for (std::size_t at = 0; at < actual.size(); ++at) {
    const std::size_t i = at / s.y_stride(), o = at % s.y_stride();
    if (i >= s.rows || o >= s.out) {
      if (actual[at] != sentinel) {
        ADD_FAILURE() << "wrote outside Y at row " << i << " column " << o << ": " << actual[at];
        return;
      }
      continue;
    }
    const double bound = split_x ? dot_tolerance(s.in, c.magnitude[at]) : tolerance(s.in, c.magnitude[at]);
    const double error = std::abs(static_cast<double>(actual[at]) - c.expected[at]);
    if (!(error <= bound)) {
      ADD_FAILURE() << "Y[" << i << ", " << o << "] = " << actual[at] << ", reference " << c.expected[at] << ", error "
                    << error << " > " << bound;
      return;
    }
  }
}

// The reference once, then every compiled ISA the CPU supports, with both BF16 decode kernels.
void check_every_isa(const shape& s) {
  SCOPED_TRACE(s.describe());
  const case_data c = make_case(s);
  const pith::tensor_view w = c.view(s);
  for (const auto& isa : pith::testing::compiled_isas()) {
    if (!isa.supported) continue;
    for (bf16_decode decode : {bf16_decode::shift_fma, bf16_decode::dot_pairs}) {
      const bool split_x = decode == bf16_decode::dot_pairs && isa.bf16_dot && s.type == dtype::bf16 &&
                           s.rows < pith::kernels::typed_gemm_min_rows;
      SCOPED_TRACE(isa.name + (split_x ? " (vdpbf16ps)" : ""));
      std::vector<float> y = c.y;
      isa.typed_matmul(c.x.data(), s.rows, s.x_stride(), w, 0, s.out, y.data(), s.y_stride(), s.accumulate, decode);
      expect_matches(s, c, y, split_x);
      if (::testing::Test::HasFailure()) return;
    }
  }
}

// ------------------------------------------------------------------ the sweep
class TypedMatmulSweepTest : public ::testing::TestWithParam<std::size_t> {};

// Every rows x in x out of the lists, every storage type and layout: in below, at and above every
// vector width (1 .. 16 floats, 32 for vdpbf16ps) and several vectors with a tail; out below, at
// and above the matrix-vector group (4) and the GEMM's tile and panel widths (6 rows; 2 .. 64).
TEST_P(TypedMatmulSweepTest, EveryShapeMatchesTheReference) {
  const std::size_t rows = GetParam();
  for (dtype type : {dtype::f32, dtype::f16, dtype::bf16})
    for (std::size_t in : {1, 3, 17, 33, 64, 100, 512})
      for (std::size_t out : {1, 3, 4, 7, 16, 65, 130})
        for (bool accumulate : {false, true})
          for (layout place : {layout::packed, layout::misaligned, layout::strided}) {
            check_every_isa({type, rows, in, out, accumulate, place});
            if (::testing::Test::HasFailure()) return;
          }
}

INSTANTIATE_TEST_SUITE_P(Rows, TypedMatmulSweepTest,
                         ::testing::Values(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 64, 130),
                         [](const auto& info) { return "rows" + std::to_string(info.param); });

// Deep rows: several of the GEMM's packed blocks along k, and long matrix-vector rows.
TEST(TypedMatmulTest, DeepInputs) {
  for (dtype type : {dtype::f16, dtype::bf16})
    for (std::size_t rows : {1, 7})
      for (std::size_t in : {1100, 4100}) check_every_isa({type, rows, in, 37, true, layout::strided});
}

TEST(TypedMatmulTest, NoInputsGivesZerosOrLeavesYUnchanged) {
  for (dtype type : {dtype::f32, dtype::f16, dtype::bf16})
    for (std::size_t rows : {1, 9})
      for (bool accumulate : {false, true}) check_every_isa({type, rows, 0, 70, accumulate, layout::packed});
}

// ------------------------------------------------------------------ conversions
// Every F16 bit pattern (normals, subnormals, ±0, ±inf, NaN) and every BF16 one through each ISA's
// load_f16 / load_bf16 and their partial variants on every lane: exactly half_to_float /
// bfloat16_to_float (NaN as NaN).
TEST(TypedMatmulTest, EveryHalfAndBfloat16ConvertsExactly) {
  std::vector<std::uint16_t> patterns(65536 + 16);
  for (std::size_t i = 0; i < patterns.size(); ++i) patterns[i] = static_cast<std::uint16_t>(i);
  for (const auto& isa : pith::testing::compiled_isas()) {
    if (!isa.supported) continue;
    SCOPED_TRACE(isa.name);
    std::vector<float> lanes(isa.width);
    std::size_t mismatches = 0;
    for (bool bf16 : {false, true})
      for (std::size_t count = 1; count <= isa.width; ++count)
        for (std::size_t i = 0; i < 65536; i += count) {
          (bf16 ? isa.load_bf16 : isa.load_f16)(patterns.data() + i, count, lanes.data());
          for (std::size_t lane = 0; lane < isa.width; ++lane) {
            const auto bits = static_cast<std::uint16_t>(i + lane);
            const float expected = lane >= count ? 0.0f : bf16 ? pith::bfloat16_to_float(bits) : pith::half_to_float(bits);
            const bool same = std::isnan(expected) ? std::isnan(lanes[lane])
                                                   : std::bit_cast<std::uint32_t>(lanes[lane]) ==
                                                         std::bit_cast<std::uint32_t>(expected);
            if (!same && mismatches++ < 5)
              ADD_FAILURE() << (bf16 ? "BF16 " : "F16 ") << std::hex << bits << " lane " << lane << " of " << count
                            << ": " << lanes[lane] << ", expected " << expected;
          }
        }
  }
}

// Every int8 value through each ISA's load_s8 / load_s8_partial on every lane and count: exactly the
// value, the lanes past `count` 0 (the Q8_0 KV cache's loads in the fused kernel).
TEST(TypedMatmulTest, EveryInt8ConvertsExactly) {
  std::vector<std::int8_t> patterns(256 + 64);
  for (std::size_t i = 0; i < patterns.size(); ++i) patterns[i] = static_cast<std::int8_t>(i - 128);
  for (const auto& isa : pith::testing::compiled_isas()) {
    if (!isa.supported) continue;
    SCOPED_TRACE(isa.name);
    std::vector<float> lanes(isa.width);
    std::size_t mismatches = 0;
    for (std::size_t count = 1; count <= isa.width; ++count)
      for (std::size_t i = 0; i < 256; ++i) {
        isa.load_s8(patterns.data() + i, count, lanes.data());
        for (std::size_t lane = 0; lane < isa.width; ++lane) {
          const float expected = lane >= count ? 0.0f : static_cast<float>(patterns[i + lane]);
          if (lanes[lane] != expected && mismatches++ < 5)
            ADD_FAILURE() << "int8 at " << i << " lane " << lane << " of " << count << ": " << lanes[lane]
                          << ", expected " << expected;
        }
      }
  }
}

// Through the products: W [65536, 1] holds every F16 (or BF16) pattern, x = 1, so Y is the converted
// weight itself (exact: one product and a zero) on the matrix-vector kernel and the GEMM; subnormals and
// the largest finite values included. NaN gives NaN, ±inf itself.
TEST(TypedMatmulTest, SubnormalAndSpecialHalvesReachTheOutputExactly) {
  for (dtype type : {dtype::f16, dtype::bf16}) {
    std::vector<std::uint16_t> w(65536);
    for (std::size_t i = 0; i < w.size(); ++i) w[i] = static_cast<std::uint16_t>(i);
    const auto view = pith::tensor_view::borrow(w.data(), type, w.size(), 1);
    for (const auto& isa : pith::testing::compiled_isas()) {
      if (!isa.supported) continue;
      for (std::size_t rows : {std::size_t{1}, pith::kernels::typed_gemm_min_rows}) {
        SCOPED_TRACE(isa.name + " " + std::string(pith::dtype_name(type)) + " rows=" + std::to_string(rows));
        const std::vector<float> x(rows, 1.0f);
        std::vector<float> y(rows * w.size());
        // shift_fma: vdpbf16ps treats subnormals as zero (see matvec.hpp).
        isa.typed_matmul(x.data(), rows, 1, view, 0, w.size(), y.data(), w.size(), false, bf16_decode::shift_fma);
        std::size_t mismatches = 0;
        for (std::size_t i = 0; i < rows; ++i)
          for (std::size_t o = 0; o < w.size(); ++o) {
            const auto bits = static_cast<std::uint16_t>(o);
            const float expected = type == dtype::f16 ? pith::half_to_float(bits) : pith::bfloat16_to_float(bits);
            const float actual = y[i * w.size() + o];
            const bool same = std::isnan(expected) ? std::isnan(actual) : actual == expected;
            if (!same && mismatches++ < 5) ADD_FAILURE() << std::hex << bits << ": " << actual << ", expected " << expected;
          }
      }
    }
  }
}

// ------------------------------------------------------------------ float32
// Packed, aligned F32 weights take matmul.hpp's float kernels: the typed entry point gives the
// float one's results bit for bit (Eigen for one row, the GEMM from gemm_min_rows, threads).
TEST(TypedMatmulTest, Float32EqualsTheFloatKernelBitForBit) {
  for (std::size_t threads : {1, 2}) {
    pith::set_num_threads(threads);
    for (std::size_t rows : {std::size_t{1}, pith::kernels::gemm_min_rows, std::size_t{7}, std::size_t{64}})
      for (std::size_t out : {1, 65, 300})
        for (bool accumulate : {false, true}) {
          const shape s{dtype::f32, rows, 100, out, accumulate, layout::packed};
          SCOPED_TRACE(s.describe() + " threads=" + std::to_string(threads));
          const case_data c = make_case(s);
          std::vector<float> w(out * s.in);
          std::memcpy(w.data(), c.w_bytes.data(), w.size() * sizeof(float));
          const auto view = pith::tensor_view::borrow(w.data(), out, s.in);
          ASSERT_NE(view.f32(), nullptr);
          std::vector<float> typed = c.y, plain = c.y;
          pith::kernels::matmul_transposed(c.x.data(), rows, s.x_stride(), view, typed.data(), s.y_stride(), accumulate);
          pith::kernels::matmul_transposed(c.x.data(), rows, s.in, s.x_stride(), w.data(), out, plain.data(),
                                           s.y_stride(), accumulate);
          for (std::size_t i = 0; i < typed.size(); ++i)
            ASSERT_EQ(std::bit_cast<std::uint32_t>(typed[i]), std::bit_cast<std::uint32_t>(plain[i])) << i;
        }
  }
  pith::set_num_threads(0);
}

// The GEMM over misaligned, strided F32 rows packs the same panels as over packed rows: same bits.
TEST(TypedMatmulTest, Float32GemmThroughTheRowSourceEqualsTheFloatGemm) {
  for (layout place : {layout::misaligned, layout::strided}) {
    const shape s{dtype::f32, 13, 100, 70, true, place};
    const case_data c = make_case(s);
    std::vector<float> w(s.out * s.in);
    for (std::size_t o = 0; o < s.out; ++o)
      std::memcpy(w.data() + o * s.in, c.w_bytes.data() + s.offset() + o * s.row_bytes(), s.in * sizeof(float));
    pith::aligned_buffer<float> scratch(pith::kernels::gemm_transposed_scratch_size());
    for (const auto& isa : pith::testing::compiled_isas()) {
      if (!isa.supported) continue;
      SCOPED_TRACE(isa.name + " " + s.describe());
      std::vector<float> typed = c.y, plain = c.y;
      isa.typed_matmul(c.x.data(), s.rows, s.x_stride(), c.view(s), 0, s.out, typed.data(), s.y_stride(), true,
                       bf16_decode::shift_fma);
      isa.gemm_transposed(c.x.data(), s.rows, s.in, s.x_stride(), w.data(), 0, s.out, plain.data(), s.y_stride(), true,
                          scratch.data());
      for (std::size_t i = 0; i < typed.size(); ++i)
        ASSERT_EQ(std::bit_cast<std::uint32_t>(typed[i]), std::bit_cast<std::uint32_t>(plain[i])) << i;
    }
  }
}

// ------------------------------------------------------------------ the entry point
// matmul_transposed over F16 and BF16: the pool's split of output features (1 and 2 threads),
// the matrix-vector path and the GEMM, with the native defaults.
TEST(TypedMatmulTest, EntryPointMatchesTheReferenceOnThreads) {
  for (std::size_t threads : {1, 2}) {
    pith::set_num_threads(threads);
    for (dtype type : {dtype::f16, dtype::bf16})
      for (std::size_t rows : {std::size_t{1}, pith::kernels::typed_gemm_min_rows - 1, pith::kernels::typed_gemm_min_rows, std::size_t{64}})
        for (bool accumulate : {false, true}) {
          const shape s{type, rows, 100, 300, accumulate, layout::misaligned};
          SCOPED_TRACE(s.describe() + " threads=" + std::to_string(threads));
          const case_data c = make_case(s);
          std::vector<float> y = c.y;
          pith::kernels::matmul_transposed(c.x.data(), rows, s.x_stride(), c.view(s), y.data(), s.y_stride(), accumulate);
          const bool split_x = type == dtype::bf16 && rows < pith::kernels::typed_gemm_min_rows &&
                               pith::kernels::default_bf16_decode<pith::simd::native::ops> == bf16_decode::dot_pairs;
          expect_matches(s, c, y, split_x);
        }
  }
  pith::set_num_threads(0);
}

TEST(TypedMatmulTest, EmbeddingRowIsTheConvertedRow) {
  for (dtype type : {dtype::f32, dtype::f16, dtype::bf16}) {
    const shape s{type, 1, 37, 5, false, layout::strided};
    const case_data c = make_case(s);
    std::vector<float> row(s.in);
    pith::kernels::embedding_row(c.view(s), 3, row.data());
    for (std::size_t k = 0; k < s.in; ++k)
      EXPECT_EQ(row[k], pith::dtype_element(type, c.w_bytes.data() + 3 * s.row_bytes(), k)) << k;
  }
}

}  // namespace
