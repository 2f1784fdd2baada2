// SPDX-License-Identifier: MIT
// softmax_importance reading keys and values stored as F16, BF16 or Q8_0, on every compiled ISA:
// bit for bit the F32 kernel on the dequantized rows, and within the type's rounding of the F32
// kernel on the original rows.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <pith/cache/kv_type.hpp>
#include <pith/core/aligned_buffer.hpp>
#include <pith/kernels/softmax_importance.hpp>

#include "isa_list.hpp"

namespace {

using pith::dtype;
using pith::kernels::softmax_importance_args;

// Relative rounding error of one element written as F16 / BF16 (round to nearest, half an ulp of
// an 11-bit / 8-bit significand).
constexpr double f16_relative_rounding = 0x1p-11;
constexpr double bf16_relative_rounding = 0x1p-8;
// Q8_0: half a quant step (d / 2, d = amax / 127) plus the rounding of d to f16, which moves
// q * d by at most 127 * d * 2^-11.
constexpr double q8_0_steps_of_error = 0.5 + 127.0 * 0x1p-11;
// Float arithmetic of the kernel itself (dot products over d <= 128, exp to 2 ulp, sums over a few
// hundred keys), as the F32 kernel's own test measures against a double reference.
constexpr double float_output_slack = 3e-5;             // absolute, outputs are O(1)
constexpr double float_importance_relative_slack = 2e-4;
constexpr double importance_absolute_floor = 1e-9;     // probabilities of 1e-9 carry no information
// The scalar set's fmadd is a * b + c, which the compiler may contract into one FMA in one
// instantiation of the kernel and not in the other: its results agree to a few float roundings
// (relative, of values that are O(1)) instead of bit for bit. The vector sets use FMA instructions.
constexpr float scalar_contraction_relative = 1e-5f;

void expect_same(const std::vector<float>& typed, const std::vector<float>& exact, bool bit_for_bit, const char* what) {
  ASSERT_EQ(typed.size(), exact.size());
  for (std::size_t i = 0; i < typed.size(); ++i) {
    if (bit_for_bit)
      ASSERT_EQ(typed[i], exact[i]) << what << " " << i;
    else
      ASSERT_NEAR(typed[i], exact[i], scalar_contraction_relative * std::max(1.0f, std::fabs(exact[i]))) << what << " " << i;
  }
}

struct shape {
  std::size_t m, n, d;
  bool causal;
  bool masked;
};

std::string describe(dtype t, const shape& s) {
  std::ostringstream o;
  o << pith::dtype_name(t) << " m=" << s.m << " n=" << s.n << " d=" << s.d << " causal=" << s.causal
    << " masked=" << s.masked;
  return o.str();
}

// Per-element bound of the error of writing x (a row of d floats) as t.
std::vector<double> element_error_bounds(dtype t, const float* x, std::size_t d) {
  std::vector<double> bound(d);
  for (std::size_t c = 0; c < d; ++c) {
    if (t == dtype::f16) bound[c] = std::fabs(x[c]) * f16_relative_rounding;
    if (t == dtype::bf16) bound[c] = std::fabs(x[c]) * bf16_relative_rounding;
  }
  if (t == dtype::q8_0)
    for (std::size_t b = 0; b < d; b += 32) {
      double amax = 0.0;
      for (std::size_t c = b; c < b + 32; ++c) amax = std::max(amax, static_cast<double>(std::fabs(x[c])));
      for (std::size_t c = b; c < b + 32; ++c) bound[c] = amax / 127.0 * q8_0_steps_of_error;
    }
  return bound;
}

struct stored_case {
  std::size_t m, n, d, stride;
  std::vector<float> q, k, v;                  // originals, rows `stride` apart
  std::vector<float> k_read, v_read;           // what the stored rows read back as
  std::vector<std::byte> k_stored, v_stored;   // rows of `stride` elements of the type
  std::vector<std::uint8_t> mask;
};

stored_case make_case(dtype t, const shape& s, unsigned seed) {
  stored_case c{s.m, s.n, s.d, s.d + (t == dtype::q8_0 ? 32 : 3), {}, {}, {}, {}, {}, {}, {}, {}};
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  c.q.resize(c.m * c.stride);
  c.k.resize(c.n * c.stride);
  c.v.resize(c.n * c.stride);
  for (auto& x : c.q) x = uniform(rng);
  for (auto& x : c.k) x = uniform(rng);
  for (auto& x : c.v) x = uniform(rng) * 2.0f;
  const std::size_t row = pith::kv_row_bytes(t, c.stride);
  c.k_stored.resize(c.n * row);
  c.v_stored.resize(c.n * row);
  c.k_read = c.k;
  c.v_read = c.v;
  for (std::size_t j = 0; j < c.n; ++j) {
    pith::kv_encode_row(t, c.k.data() + j * c.stride, c.stride, c.k_stored.data() + j * row);
    pith::kv_encode_row(t, c.v.data() + j * c.stride, c.stride, c.v_stored.data() + j * row);
    pith::kv_decode_row(t, c.k_stored.data() + j * row, c.stride, c.k_read.data() + j * c.stride);
    pith::kv_decode_row(t, c.v_stored.data() + j * row, c.stride, c.v_read.data() + j * c.stride);
  }
  if (s.masked) {
    c.mask.assign(c.n, 1);
    for (std::size_t j = 0; j < c.n; j += 3) c.mask[j] = 0;
    c.mask[c.n - 1] = 1;
  }
  return c;
}

struct outputs {
  std::vector<float> out, imp, sq, row_max, row_sum;
};

// One call: typed reads the stored rows, otherwise `keys`/`values` as floats.
outputs run(const pith::testing::compiled_isa& isa, const stored_case& c, const shape& s, dtype t,
            const std::vector<float>* keys, const std::vector<float>* values) {
  outputs o;
  o.out.assign(c.m * c.d, 0.0f);
  o.imp.assign(c.n, 0.0f);
  o.sq.assign(c.n, 0.0f);
  o.row_max.assign(c.m, 0.0f);
  o.row_sum.assign(c.m, 0.0f);
  softmax_importance_args a;
  a.queries = c.q.data();
  a.query_stride = c.stride;
  if (keys != nullptr) {
    a.keys = keys->data();
    a.values = values->data();
  } else {
    a.kv_type = t;
    a.key_data = c.k_stored.data();
    a.value_data = c.v_stored.data();
  }
  a.key_stride = c.stride;
  a.value_stride = c.stride;
  a.m = c.m;
  a.n = c.n;
  a.d = c.d;
  a.scale = 1.0f / std::sqrt(static_cast<float>(c.d));
  a.causal = s.causal;
  a.causal_offset = s.causal ? c.n - c.m : 0;
  a.key_mask = s.masked ? c.mask.data() : nullptr;
  a.output = o.out.data();
  a.output_stride = c.d;
  a.importance = o.imp.data();
  a.importance_squares = o.sq.data();
  a.row_max = o.row_max.data();
  a.row_sum = o.row_sum.data();
  EXPECT_EQ(pith::kernels::validate_softmax_importance(a), nullptr);
  pith::aligned_buffer<float> scratch(pith::kernels::softmax_importance_scratch_size(c.m, c.n, c.d));
  isa.softmax_importance(a, scratch.data());
  return o;
}

std::vector<shape> shapes(dtype t) {
  std::vector<shape> all;
  const std::vector<std::size_t> dims = t == dtype::q8_0 ? std::vector<std::size_t>{32, 64, 128}
                                                         : std::vector<std::size_t>{5, 16, 24, 64, 128};
  for (const std::size_t d : dims)
    for (const std::size_t m : {std::size_t{1}, std::size_t{3}, std::size_t{21}, std::size_t{70}})
      for (const std::size_t n : {std::size_t{1}, std::size_t{7}, std::size_t{100}, std::size_t{333}})
        for (const bool causal : {false, true}) {
          if (causal && n < m) continue;
          all.push_back({m, n, d, causal, n > 2 && m % 2 == 1});
        }
  return all;
}

constexpr dtype stored_types[] = {dtype::f16, dtype::bf16, dtype::q8_0};

TEST(KvTypeKernel, StoredRowsGiveTheF32KernelsResultsOnTheirDequantizedValuesBitForBit) {
  for (const auto& isa : pith::testing::compiled_isas()) {
    if (!isa.supported) continue;
    SCOPED_TRACE(isa.name);
    for (const dtype t : stored_types)
      for (const shape& s : shapes(t)) {
        SCOPED_TRACE(describe(t, s));
        const stored_case c = make_case(t, s, static_cast<unsigned>(s.m * 131 + s.n * 7 + s.d));
        const outputs typed = run(isa, c, s, t, nullptr, nullptr);
        const outputs exact = run(isa, c, s, t, &c.k_read, &c.v_read);
        const bool bit_for_bit = isa.name != "scalar";
        expect_same(typed.out, exact.out, bit_for_bit, "output");
        expect_same(typed.imp, exact.imp, bit_for_bit, "importance");
        expect_same(typed.sq, exact.sq, bit_for_bit, "importance_squares");
        expect_same(typed.row_max, exact.row_max, bit_for_bit, "row_max");
        expect_same(typed.row_sum, exact.row_sum, bit_for_bit, "row_sum");
        if (::testing::Test::HasFatalFailure()) return;
      }
  }
}

TEST(KvTypeKernel, OutputsAndImportanceStayWithinTheTypesRoundingOfTheF32Cache) {
  for (const auto& isa : pith::testing::compiled_isas()) {
    if (!isa.supported) continue;
    SCOPED_TRACE(isa.name);
    for (const dtype t : stored_types)
      for (const shape& s : shapes(t)) {
        SCOPED_TRACE(describe(t, s));
        const stored_case c = make_case(t, s, static_cast<unsigned>(s.m * 17 + s.n * 5 + s.d + 1));
        const outputs typed = run(isa, c, s, t, nullptr, nullptr);
        const outputs f32 = run(isa, c, s, t, &c.k, &c.v);
        // A key's error e moves a score by at most scale * sum_c |q_c| e_c; if every score moves by at
        // most delta, every probability moves by a factor within exp(+-2 delta).
        const double scale = 1.0 / std::sqrt(static_cast<double>(c.d));
        double delta = 0.0, value_error = 0.0, value_max = 0.0;
        for (std::size_t j = 0; j < c.n; ++j) {
          const auto key_bound = element_error_bounds(t, c.k.data() + j * c.stride, c.d);
          const auto value_bound = element_error_bounds(t, c.v.data() + j * c.stride, c.d);
          for (std::size_t ch = 0; ch < c.d; ++ch) {
            value_error = std::max(value_error, value_bound[ch]);
            value_max = std::max(value_max, static_cast<double>(std::fabs(c.v[j * c.stride + ch])));
          }
          for (std::size_t i = 0; i < c.m; ++i) {
            double moved = 0.0;
            for (std::size_t ch = 0; ch < c.d; ++ch) moved += std::fabs(c.q[i * c.stride + ch]) * key_bound[ch];
            delta = std::max(delta, scale * moved);
          }
        }
        const double probability_factor = std::expm1(2.0 * delta);
        const double output_tolerance = probability_factor * value_max + value_error + float_output_slack;
        const double importance_relative = probability_factor + float_importance_relative_slack;
        for (std::size_t x = 0; x < typed.out.size(); ++x)
          ASSERT_NEAR(typed.out[x], f32.out[x], output_tolerance) << "output " << x;
        for (std::size_t j = 0; j < c.n; ++j) {
          ASSERT_NEAR(typed.imp[j], f32.imp[j], importance_absolute_floor + importance_relative * f32.imp[j])
              << "importance " << j;
          ASSERT_NEAR(typed.sq[j], f32.sq[j], importance_absolute_floor + 2.0 * importance_relative * f32.sq[j])
              << "importance_squares " << j;
        }
        for (std::size_t i = 0; i < c.m; ++i)
          ASSERT_NEAR(typed.row_max[i], f32.row_max[i], delta + float_output_slack) << "row_max " << i;
      }
  }
}

TEST(KvTypeKernel, ValidationRefusesOtherTypesAndQ80RowsThatAreNotWholeBlocks) {
  std::vector<float> q(64, 0.0f), out(64);
  std::vector<std::byte> stored(4096);
  softmax_importance_args a;
  a.queries = q.data();
  a.query_stride = 24;
  a.key_data = stored.data();
  a.value_data = stored.data();
  a.key_stride = 24;
  a.value_stride = 24;
  a.m = 1;
  a.n = 2;
  a.d = 24;
  a.output = out.data();
  a.output_stride = 24;
  a.kv_type = dtype::f16;
  EXPECT_EQ(pith::kernels::validate_softmax_importance(a), nullptr);
  a.kv_type = dtype::q8_0;
  ASSERT_NE(pith::kernels::validate_softmax_importance(a), nullptr);
  EXPECT_NE(std::string(pith::kernels::validate_softmax_importance(a)).find("q8_0"), std::string::npos);
  a.kv_type = dtype::q4_k;
  ASSERT_NE(pith::kernels::validate_softmax_importance(a), nullptr);
  EXPECT_NE(std::string(pith::kernels::validate_softmax_importance(a)).find("kv_type"), std::string::npos);
  a.kv_type = dtype::bf16;
  a.key_data = nullptr;
  EXPECT_NE(pith::kernels::validate_softmax_importance(a), nullptr);
}

}  // namespace
