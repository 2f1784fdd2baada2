// SPDX-License-Identifier: MIT
// Integer dot products of quantized weights (quant_dot.hpp, quant_matmul.hpp) on every compiled
// ISA: the activation quantizers, each kernel against a double-precision reference over the
// dequantized weights and dequantized activations, matmul_transposed over quantized W (shapes,
// strides, 2-byte aligned rows, accumulation), and the end-to-end error against float X.
#include <gtest/gtest.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include <pith/core/aligned_buffer.hpp>
#include <pith/core/half.hpp>
#include <pith/core/quant.hpp>
#include <pith/core/tensor.hpp>
#include <pith/kernels/quant_dot.hpp>
#include <pith/kernels/quant_matmul.hpp>
#include <pith/kernels/typed_matmul.hpp>

#include "isa_list.hpp"

namespace {

using pith::dtype;
using pith::kernels::activation_row;
using pith::kernels::activation_type;
namespace quant = pith::quant;

constexpr double unit_roundoff = 0x1p-24;

// The kernels and the reference sum the same exact integer block sums; they differ in float
// roundings only: the product of the two scales, its product with the block's integer sum (and
// the min term), and one addition per block into 8 or 16 lane accumulators, reduced at the end.
// With nb blocks, every term is rounded at most nb + 4 times, relative to the sum of magnitudes
// of the terms (|scale · code| and |min| per element, times |activation|). The reference's own
// dequantization rounds (d · sc) · q − dmin · m three times: three more. A missing or doubled
// block (about 1/nb of the magnitude) is far outside.
double dot_tolerance(std::size_t blocks, double magnitude) {
  return static_cast<double>(blocks + 8) * unit_roundoff * magnitude;
}

const dtype weight_types[] = {dtype::q4_0, dtype::q4_1, dtype::q5_0, dtype::q5_1, dtype::q8_0, dtype::iq4_nl,
                              dtype::q2_k, dtype::q3_k, dtype::q4_k, dtype::q5_k, dtype::q6_k, dtype::iq4_xs};

// ---- Per-ISA entry points -------------------------------------------------------------------

template <class Ops>
void dot_any(dtype t, const std::byte* w, const activation_row* a, std::size_t nx, std::size_t cols, float* out) {
  quant::visit_quantized(t, [&](auto type) {
    constexpr dtype T = decltype(type)::value;
    if constexpr (!pith::dtype_is_activation_only(T)) {
      switch (nx) {
        case 1: pith::kernels::quant_dot_rows<Ops, T, 1>(w, a, cols, out); break;
        case 2: pith::kernels::quant_dot_rows<Ops, T, 2>(w, a, cols, out); break;
        case 3: pith::kernels::quant_dot_rows<Ops, T, 3>(w, a, cols, out); break;
        default: pith::kernels::quant_dot_rows<Ops, T, 4>(w, a, cols, out); break;
      }
    }
  });
}

struct quant_isa {
  std::string name;
  bool supported;
  void (*dot)(dtype, const std::byte*, const activation_row*, std::size_t, std::size_t, float*);
  bool (*has_kernel)(dtype);
};

template <class Ops>
bool has_kernel_any(dtype t) {
  return quant::visit_quantized(t, [](auto type) { return pith::kernels::has_quant_kernel<Ops, decltype(type)::value>(); });
}

template <class Ops>
quant_isa make_quant_isa() {
  return {Ops::name, pith::simd::cpu_supports<Ops>(), &dot_any<Ops>, &has_kernel_any<Ops>};
}

std::vector<quant_isa> quant_isas() {
  std::vector<quant_isa> isas{make_quant_isa<pith::simd::scalar::ops>()};
#if defined(PITH_SIMD_HAS_AVX2) && !defined(PITH_DISABLE_SIMD)
  isas.push_back(make_quant_isa<pith::simd::avx2::ops>());
#endif
#if defined(PITH_SIMD_HAS_AVX512) && !defined(PITH_DISABLE_SIMD)
  isas.push_back(make_quant_isa<pith::simd::avx512::ops>());
#endif
#if defined(PITH_SIMD_HAS_NEON) && !defined(PITH_DISABLE_SIMD)
  isas.push_back(make_quant_isa<pith::simd::neon::ops>());
#endif
  return isas;
}

// ---- Random data ----------------------------------------------------------------------------

// A random finite f16 scale of magnitude 2^-9 ... 2^-3, either sign.
std::uint16_t random_scale(std::mt19937& rng) {
  std::uniform_real_distribution<float> exponent(-9.0f, -3.0f);
  const float v = std::exp2(exponent(rng)) * (rng() & 1 ? -1.0f : 1.0f);
  return pith::float_to_half(v);
}

// Random valid blocks: random bytes (every code and scale bit pattern) with finite f16 scales.
template <dtype T>
void randomize_block(std::byte* p, std::mt19937& rng) {
  quant::block_t<T> b;
  auto* bytes = reinterpret_cast<unsigned char*>(&b);
  for (std::size_t i = 0; i < sizeof(b); ++i) bytes[i] = static_cast<unsigned char>(rng());
  b.d = random_scale(rng);
  if constexpr (requires { b.m; }) b.m = random_scale(rng);
  if constexpr (requires { b.dmin; }) b.dmin = random_scale(rng);
  if constexpr (T == dtype::q8_0) {
    for (auto& q : b.qs)
      if (q == -128) q = -127;  // GGUF's quantizers never write −128 (note §3.5)
  }
  std::memcpy(p, &b, sizeof(b));
}

void randomize_row(dtype t, std::byte* row, std::size_t cols, std::mt19937& rng) {
  quant::visit_quantized(t, [&](auto type) {
    constexpr dtype T = decltype(type)::value;
    for (std::size_t b = 0; b < cols / pith::dtype_block_elements(T); ++b)
      randomize_block<T>(row + b * sizeof(quant::block_t<T>), rng);
  });
}

// Per element, the magnitude of the block's affine offset (|min| terms; 0 for symmetric types).
std::vector<double> element_offsets(dtype t, const std::byte* row, std::size_t cols) {
  std::vector<double> out(cols, 0.0);
  quant::visit_quantized(t, [&](auto type) {
    constexpr dtype T = decltype(type)::value;
    constexpr std::size_t n = pith::dtype_block_elements(T);
    for (std::size_t b = 0; b < cols / n; ++b) {
      const auto x = quant::load_block<T>(row, b);
      for (std::size_t e = 0; e < n; ++e) {
        double offset = 0.0;
        if constexpr (T == dtype::q4_1 || T == dtype::q5_1) {
          offset = pith::half_to_float(x.m);
        } else if constexpr (T == dtype::q4_k || T == dtype::q5_k) {
          std::uint8_t sc, m;
          quant::scale_min_k4(e >> 5, x.scales, sc, m);
          offset = static_cast<double>(pith::half_to_float(x.dmin)) * m;
        } else if constexpr (T == dtype::q2_k) {
          offset = static_cast<double>(pith::half_to_float(x.dmin)) * (x.scales[e >> 4] >> 4);
        }
        out[b * n + e] = std::fabs(offset);
      }
    }
  });
  return out;
}

std::vector<float> random_activations(std::size_t n, std::mt19937& rng) {
  // Values spread over several binades, so that the per-block scales differ.
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> x(n);
  for (std::size_t i = 0; i < n; ++i) x[i] = normal(rng) * (i / 64 % 3 == 0 ? 10.0f : 0.5f);
  return x;
}

struct quantized_activations {
  dtype type;
  std::size_t cols;
  pith::aligned_buffer<std::byte> bytes;
  activation_row view() const { return pith::kernels::activation_view(type, bytes.data(), cols); }
};

quantized_activations quantize(dtype act, const float* x, std::size_t cols) {
  quantized_activations q{act, cols, pith::aligned_buffer<std::byte>(pith::kernels::activation_row_bytes(act, cols))};
  pith::kernels::quantize_activation_row(act, x, cols, q.bytes.data());
  return q;
}

// The dequantized activation element k.
double activation_value(dtype act, const activation_row& a, std::size_t k) {
  const std::size_t block = act == dtype::q8_k ? quant::qk_k : quant::qk;
  return static_cast<double>(a.d[k / block]) * a.q[k];
}

// ---- (a) Activation quantizers --------------------------------------------------------------

// Q8_0 / Q8_1 keep d as an f16: |d_f16 − d| <= 2^-11 d, which moves d · q by up to 127 · 2^-11 d;
// the rounding of x · 127 / amax to an integer is half a step. A small float slack covers the
// roundings of amax / 127 and x · (127 / amax).
constexpr double half_step = 0.5;
constexpr double f16_scale_error_steps = 127.0 * 0x1p-11;
constexpr double float_slack_steps = 1e-4;

TEST(QuantActivations, WithinHalfAStepAndConsistent) {
  std::mt19937 rng(7);
  for (const dtype act : {dtype::q8_0, dtype::q8_1, dtype::q8_k}) {
    SCOPED_TRACE(std::string(pith::dtype_name(act)));
    const std::size_t cols = 1024;
    std::vector<float> x = random_activations(cols, rng);
    std::fill(x.begin() + 256, x.begin() + 512, 0.0f);  // an all-zero block (and super-block)
    const auto q = quantize(act, x.data(), cols);
    const activation_row a = q.view();
    const std::size_t block = act == dtype::q8_k ? quant::qk_k : quant::qk;
    for (std::size_t b = 0; b < cols / block; ++b) {
      float amax = 0.0f;
      for (std::size_t j = 0; j < block; ++j) amax = std::max(amax, std::fabs(x[b * block + j]));
      const double step = amax / 127.0;
      const double bound = step * (half_step + (act == dtype::q8_k ? 0.0 : f16_scale_error_steps) + float_slack_steps);
      int sum = 0, largest = 0;
      for (std::size_t j = 0; j < block; ++j) {
        const std::size_t k = b * block + j;
        ASSERT_LE(std::abs(static_cast<int>(a.q[k])), 127);
        if (act == dtype::q8_0) {
          ASSERT_EQ(static_cast<int>(a.biased[k]), a.q[k] + 128);
          if (k % 4 == 0) {
            ASSERT_EQ(a.minus8[k / 4], -8 * (a.q[k] + a.q[k + 1] + a.q[k + 2] + a.q[k + 3]));
          }
          // The interleaved copy for Q4_0 decode: element j of block 4g + m sits at byte
          // 16m + j (j < 16) or 64 + 16m + j - 16 of group g.
          const std::size_t g = k / 128, m = (k / 32) % 4, j = k % 32;
          ASSERT_EQ(a.q4x[g * 128 + (j < 16 ? 16 * m + j : 64 + 16 * m + j - 16)], a.q[k]);
          if (j < 16 && j % 4 == 0) {
            const std::size_t lane = g * 16 + 4 * m + j / 4;
            int lane_sum = 0;
            for (std::size_t i = 0; i < 4; ++i) lane_sum += a.q[k + i] + a.q[k + 16 + i];
            ASSERT_EQ(a.start4x[lane], -8 * lane_sum);
            ASSERT_EQ(a.d4x[lane], a.d[k / 32]);
          }
        }
        largest = std::max(largest, std::abs(static_cast<int>(a.q[k])));
        EXPECT_LE(std::fabs(activation_value(act, a, k) - x[k]), bound) << "element " << k;
        sum += a.q[k];
      }
      if (amax > 0.0f) {
        EXPECT_EQ(largest, 127) << "block " << b;  // the extreme value maps to ±127
      }
      if (act == dtype::q8_k) {
        for (std::size_t g = 0; g < 16; ++g) {
          int group = 0;
          for (std::size_t i = 0; i < 16; ++i) group += a.q[b * block + 16 * g + i];
          EXPECT_EQ(a.sums[b * 16 + g], group);
        }
      } else {
        EXPECT_EQ(a.sums[b], sum);
        EXPECT_EQ(a.d[b], pith::half_to_float(pith::float_to_half(amax / 127.0f)));
        if (act == dtype::q8_1) {
          EXPECT_EQ(a.s[b], pith::half_to_float(pith::float_to_half(amax / 127.0f * static_cast<float>(sum))));
        }
      }
    }
  }
}

TEST(QuantActivations, Q8KMapsTheSignedMaximumToMinus127) {
  std::vector<float> x(256, 0.25f);
  x[17] = 2.0f;
  x[40] = -1.0f;
  const auto q = quantize(dtype::q8_k, x.data(), x.size());
  const activation_row a = q.view();
  EXPECT_EQ(a.q[17], -127);
  EXPECT_FLOAT_EQ(a.d[0], -2.0f / 127.0f);
  EXPECT_EQ(a.q[40], 64);  // −1 · (−127 / 2) = 63.5, ties to even
  EXPECT_EQ(a.q[0], -16);  // 0.25 · (−63.5) = −15.875
}

// A NaN or an infinity in a block cannot be scaled to int8: the block becomes zeros with a NaN
// scale (the products are NaN, as in float arithmetic) and the other blocks are unaffected. A
// block whose magnitudes lie below 127/FLT_MAX (its inverse scale overflows) becomes zeros. Every
// quant stays within ±127 (an out-of-range float-to-int8 conversion is undefined behaviour).
TEST(QuantActivations, NonFiniteBlocksGiveNaNScalesAndTinyBlocksGiveZeros) {
  for (const dtype act : {dtype::q8_0, dtype::q8_1, dtype::q8_k}) {
    SCOPED_TRACE(std::string(pith::dtype_name(act)));
    const std::size_t block = act == dtype::q8_k ? quant::qk_k : quant::qk, cols = 4 * block;
    std::vector<float> x(cols, 0.5f);
    x[3] = std::numeric_limits<float>::quiet_NaN();                    // block 0
    x[block + 5] = std::numeric_limits<float>::infinity();             // block 1
    for (std::size_t j = 0; j < block; ++j) x[2 * block + j] = 1e-40f;  // block 2: subnormal
    const auto q = quantize(act, x.data(), cols);
    const activation_row a = q.view();
    for (std::size_t k = 0; k < cols; ++k) {
      ASSERT_LE(std::abs(static_cast<int>(a.q[k])), 127);
      if (k < 3 * block) {
        EXPECT_EQ(a.q[k], 0) << "element " << k;
      }
    }
    EXPECT_TRUE(std::isnan(a.d[0]));
    EXPECT_TRUE(std::isnan(a.d[1]));
    EXPECT_FALSE(std::isnan(a.d[2]));
    EXPECT_EQ(std::abs(static_cast<int>(a.q[3 * block])), 127);  // block 3 is quantized as usual
    // 0.5 is its block's maximum (code ±127); Q8_0 / Q8_1 keep the scale as an f16 (relative
    // rounding 2^-11).
    EXPECT_NEAR(activation_value(act, a, 3 * block + 1), 0.5, 0.5 * 0x1p-11);
  }
}

// ---- (b) Dot products per type and ISA ------------------------------------------------------

struct reference_dot {
  double value, magnitude;
};

// W's row dequantized (exactly as quant.hpp does) with its per-element offsets and, for Q4_1 /
// Q5_1, its block mins.
struct dequantized_row {
  std::vector<float> w;
  std::vector<double> offsets, mins;
};

dequantized_row dequantize(dtype t, const std::byte* row, std::size_t cols) {
  dequantized_row d{std::vector<float>(cols), element_offsets(t, row, cols), {}};
  quant::dequantize_row(t, row, cols, d.w.data());
  quant::visit_quantized(t, [&](auto type) {
    constexpr dtype T = decltype(type)::value;
    if constexpr (T == dtype::q4_1 || T == dtype::q5_1)
      for (std::size_t b = 0; b < cols / quant::qk; ++b) d.mins.push_back(pith::half_to_float(quant::load_block<T>(row, b).m));
  });
  return d;
}

reference_dot reference(const dequantized_row& w, dtype act, const activation_row& a, std::size_t cols) {
  reference_dot r{0.0, 0.0};
  for (std::size_t k = 0; k < cols; ++k) {
    const double y = activation_value(act, a, k);
    r.value += static_cast<double>(w.w[k]) * y;
    r.magnitude += (std::fabs(w.w[k]) + 2.0 * w.offsets[k]) * std::fabs(y);
  }
  // Q4_1 / Q5_1 (note §3.4): the min m multiplies the block's stored s = f16(d · Σ q), not the
  // sum of the dequantized activations d_f16 · Σ q: the format's own approximation, modelled.
  for (std::size_t b = 0; b < w.mins.size(); ++b) {
    r.value += w.mins[b] * (static_cast<double>(a.s[b]) - static_cast<double>(a.d[b]) * a.sums[b]);
    r.magnitude += std::fabs(w.mins[b] * a.s[b]);
  }
  return r;
}

TEST(QuantDot, EveryTypeAndIsaAgainstDoubleReference) {
  std::mt19937 rng(11);
  for (const dtype t : weight_types) {
    const dtype act = activation_type(t);
    const std::size_t n = pith::dtype_block_elements(t);
    // 5 blocks: one group of four and one left (Q4_0 decode with 512-bit VNNI takes four at a time).
    for (const std::size_t cols : {n, 3 * n, 5 * n, std::size_t{1024} + (n == 32 ? 96 : 0)}) {
      SCOPED_TRACE(std::string(pith::dtype_name(t)) + " cols " + std::to_string(cols));
      const std::size_t row_bytes = pith::dtype_row_bytes(t, cols);
      std::vector<std::byte> row(row_bytes);
      randomize_row(t, row.data(), cols, rng);
      const dequantized_row deq = dequantize(t, row.data(), cols);
      std::vector<quantized_activations> xs;
      std::vector<activation_row> views;
      for (int r = 0; r < 4; ++r) {
        const auto x = random_activations(cols, rng);
        xs.push_back(quantize(act, x.data(), cols));
      }
      for (const auto& q : xs) views.push_back(q.view());
      for (const auto& isa : quant_isas()) {
        if (!isa.supported) continue;
        SCOPED_TRACE(isa.name);
        for (std::size_t nx = 1; nx <= 4; ++nx) {
          float out[4];
          isa.dot(t, row.data(), views.data(), nx, cols, out);
          for (std::size_t r = 0; r < nx; ++r) {
            const reference_dot ref = reference(deq, act, views[r], cols);
            EXPECT_NEAR(out[r], ref.value, dot_tolerance(cols / n, ref.magnitude)) << "rows " << nx << " row " << r;
          }
        }
      }
    }
  }
}

// The sweep above tests the SIMD kernels only where they exist: x86 has one for every type, NEON
// for the types of the common files (Q8_0, Q4_0, Q4_K_M, Q5_K_M, Q6_K).
TEST(QuantDot, SimdSetsHaveTheirKernels) {
  for (const auto& isa : quant_isas()) {
    if (isa.name == "avx2" || isa.name == "avx512") {
      for (const dtype t : weight_types) EXPECT_TRUE(isa.has_kernel(t)) << isa.name << " " << pith::dtype_name(t);
    } else if (isa.name == "neon") {
      for (const dtype t : {dtype::q8_0, dtype::q4_0, dtype::q4_k, dtype::q5_k, dtype::q6_k})
        EXPECT_TRUE(isa.has_kernel(t)) << pith::dtype_name(t);
    } else {
      for (const dtype t : weight_types) EXPECT_FALSE(isa.has_kernel(t)) << isa.name << " " << pith::dtype_name(t);
    }
  }
}

// ---- (c) matmul_transposed over quantized W --------------------------------------------------

// A quantized W [out, cols] with rows `pad` bytes apart beyond their length, starting 2 bytes
// past a 64-byte boundary (rows then sit at even, not 4-byte aligned, addresses).
struct weights {
  pith::aligned_buffer<std::byte> bytes;
  pith::tensor_view view;
};

weights random_weights(dtype t, std::size_t out, std::size_t cols, std::size_t pad, std::mt19937& rng) {
  const std::size_t row_bytes = pith::dtype_row_bytes(t, cols) + pad;
  weights w{pith::aligned_buffer<std::byte>(out * row_bytes + 64), {}};
  std::byte* base = w.bytes.data() + 2;
  for (std::size_t o = 0; o < out; ++o) randomize_row(t, base + o * row_bytes, cols, rng);
  w.view = pith::tensor_view::borrow(base, t, out, cols, row_bytes);
  return w;
}

std::vector<dequantized_row> dequantized_rows(const weights& w) {
  std::vector<dequantized_row> rows;
  for (std::size_t o = 0; o < w.view.rows(); ++o) rows.push_back(dequantize(w.view.type(), w.view.row(o), w.view.cols()));
  return rows;
}

// Checks Y = X W^T (+ Y0 when accumulating) against the double reference over the dequantized
// weights and the quantized activations.
void expect_matmul(const weights& w, const std::vector<dequantized_row>& rows_of_w, const std::vector<float>& x,
                   std::size_t rows, std::size_t x_stride, const std::vector<float>& y, const std::vector<float>& y0,
                   std::size_t y_stride, bool accumulate) {
  const dtype t = w.view.type(), act = activation_type(t);
  const std::size_t cols = w.view.cols(), n = pith::dtype_block_elements(t);
  for (std::size_t i = 0; i < rows; ++i) {
    const auto q = quantize(act, x.data() + i * x_stride, cols);
    const activation_row a = q.view();
    for (std::size_t o = 0; o < w.view.rows(); ++o) {
      reference_dot ref = reference(rows_of_w[o], act, a, cols);
      if (accumulate) {
        ref.value += y0[i * y_stride + o];
        ref.magnitude += std::fabs(y0[i * y_stride + o]);
      }
      ASSERT_NEAR(y[i * y_stride + o], ref.value, dot_tolerance(cols / n + 1, ref.magnitude))
          << "row " << i << " output " << o;
    }
  }
}

TEST(QuantMatmul, ShapesStridesAlignmentOnEveryIsa) {
  std::mt19937 rng(13);
  const std::size_t row_counts[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 64, 130};
  for (const dtype t : weight_types) {
    SCOPED_TRACE(std::string(pith::dtype_name(t)));
    const std::size_t cols = 2 * pith::dtype_block_elements(t) + (pith::dtype_block_elements(t) == 32 ? 256 : 256);
    const std::size_t out = 37;
    const weights w = random_weights(t, out, cols, 6, rng);
    const std::vector<dequantized_row> rows_of_w = dequantized_rows(w);
    for (const std::size_t rows : row_counts) {
      SCOPED_TRACE("rows " + std::to_string(rows));
      const std::size_t x_stride = cols + 3, y_stride = out + 5;
      const auto x = random_activations(rows * x_stride, rng);
      std::vector<float> y0(rows * y_stride);
      for (auto& v : y0) v = std::uniform_real_distribution<float>(-1.0f, 1.0f)(rng);
      for (const bool accumulate : {false, true}) {
        std::vector<float> y = y0;
        pith::kernels::matmul_transposed(x.data(), rows, x_stride, w.view, y.data(), y_stride, accumulate);
        expect_matmul(w, rows_of_w, x, rows, x_stride, y, y0, y_stride, accumulate);
        if (rows > 13 && !accumulate) continue;  // the per-ISA sweep below covers the small shapes
        for (const auto& isa : pith::testing::compiled_isas()) {
          if (!isa.supported) continue;
          SCOPED_TRACE(isa.name);
          std::vector<float> yi = y0;
          // Two ranges, as two threads would take them.
          isa.typed_matmul(x.data(), rows, x_stride, w.view, 0, 20, yi.data(), y_stride, accumulate,
                           pith::kernels::bf16_decode::shift_fma);
          isa.typed_matmul(x.data(), rows, x_stride, w.view, 20, out, yi.data(), y_stride, accumulate,
                           pith::kernels::bf16_decode::shift_fma);
          expect_matmul(w, rows_of_w, x, rows, x_stride, yi, y0, y_stride, accumulate);
        }
      }
    }
  }
}

// Decode's prefetch distance is a setting (quant_prefetch_bytes: none by default on Zen 5, 8 KB
// elsewhere); every distance, including none and one beyond the last row, gives the same bits.
TEST(QuantMatmul, DecodeResultsDoNotDependOnThePrefetchDistance) {
  std::mt19937 rng(29);
  const std::size_t saved = pith::kernels::quant_prefetch_bytes();
  for (const dtype t : weight_types) {
    SCOPED_TRACE(std::string(pith::dtype_name(t)));
    const std::size_t cols = 4 * pith::dtype_block_elements(t), out = 45;
    const weights w = random_weights(t, out, cols, 6, rng);
    const auto x = random_activations(cols, rng);
    std::vector<std::vector<float>> results;
    for (const std::size_t bytes : {std::size_t{0}, std::size_t{64}, std::size_t{8192}, std::size_t{1} << 30}) {
      pith::kernels::set_quant_prefetch_bytes(bytes);
      ASSERT_EQ(pith::kernels::quant_prefetch_bytes(), bytes);
      std::vector<float> y(out);
      pith::kernels::matmul_transposed(x.data(), 1, cols, w.view, y.data(), out, false);
      results.push_back(y);
    }
    for (std::size_t i = 1; i < results.size(); ++i) EXPECT_EQ(results[i], results[0]) << "setting " << i;
    expect_matmul(w, dequantized_rows(w), x, 1, cols, results[0], std::vector<float>(out), out, false);
  }
  pith::kernels::set_quant_prefetch_bytes(saved);
}

// Prefill products long enough to cross the packed kernels' column chunks (quant_packed.hpp: 1,024
// columns per chunk, results of later chunks added in Y) and W row steps (32 rows, the last one
// partial), with X rows in groups of 4 and a tail; the row loop of quant_dot.hpp for types without
// a packed kernel. Rows of W sit at odd strides, as above.
TEST(QuantMatmul, PrefillAcrossColumnChunksAndRowSteps) {
  std::mt19937 rng(29);
  for (const dtype t : weight_types) {
    SCOPED_TRACE(std::string(pith::dtype_name(t)));
    const std::size_t cols = 2560, out = 70, rows = 9;  // 2.5 chunks, 2 steps + 6 rows, 2 groups + 1
    const weights w = random_weights(t, out, cols, 6, rng);
    const std::vector<dequantized_row> rows_of_w = dequantized_rows(w);
    const std::size_t x_stride = cols + 1, y_stride = out + 3;
    const auto x = random_activations(rows * x_stride, rng);
    std::vector<float> y0(rows * y_stride);
    for (auto& v : y0) v = std::uniform_real_distribution<float>(-1.0f, 1.0f)(rng);
    for (const bool accumulate : {false, true}) {
      std::vector<float> y = y0;
      pith::kernels::matmul_transposed(x.data(), rows, x_stride, w.view, y.data(), y_stride, accumulate);
      expect_matmul(w, rows_of_w, x, rows, x_stride, y, y0, y_stride, accumulate);
      for (std::size_t i = 0; i < rows; ++i)  // the padding between rows of Y is not written
        for (std::size_t o = out; o < y_stride; ++o) EXPECT_EQ(y[i * y_stride + o], y0[i * y_stride + o]);
    }
  }
}

// ---- (d) End to end against float X ---------------------------------------------------------

// X's 8-bit quantization moves each x[k] by at most half a step of its block (plus the f16
// rounding of Q8_0's scale, 127 · 2^-11 steps, and float slack), so |Y − X W^T| <= Σ_k |W[o, k]| ·
// that bound, plus the float roundings of dot_tolerance. Without the quantization (or with one
// block's activation wrong), the error would exceed it.
TEST(QuantMatmul, EndToEndWithinTheActivationQuantizationBound) {
  std::mt19937 rng(17);
  for (const dtype t : weight_types) {
    SCOPED_TRACE(std::string(pith::dtype_name(t)));
    const dtype act = activation_type(t);
    const std::size_t cols = 512, out = 16, rows = 5;
    const weights w = random_weights(t, out, cols, 0, rng);
    const auto x = random_activations(rows * cols, rng);
    std::vector<float> y(rows * out);
    pith::kernels::matmul_transposed(x.data(), rows, cols, w.view, y.data(), out);
    const std::size_t block = act == dtype::q8_k ? quant::qk_k : quant::qk;
    std::vector<float> wrow(cols);
    double worst = 0.0;
    for (std::size_t o = 0; o < out; ++o) {
      quant::dequantize_row(t, w.view.row(o), cols, wrow.data());
      for (std::size_t i = 0; i < rows; ++i) {
        double exact = 0.0, bound = 0.0, magnitude = 0.0;
        for (std::size_t b = 0; b < cols / block; ++b) {
          float amax = 0.0f;
          for (std::size_t j = 0; j < block; ++j) amax = std::max(amax, std::fabs(x[i * cols + b * block + j]));
          const double step = amax / 127.0;
          for (std::size_t j = 0; j < block; ++j) {
            const std::size_t k = b * block + j;
            exact += static_cast<double>(wrow[k]) * x[i * cols + k];
            bound += std::fabs(wrow[k]) * step *
                     (half_step + (act == dtype::q8_k ? 0.0 : f16_scale_error_steps) + float_slack_steps);
            magnitude += std::fabs(wrow[k]) * (std::fabs(x[i * cols + k]) + step);
          }
        }
        const double tolerance = bound + dot_tolerance(cols / 32 + 8, 3.0 * magnitude);
        const double error = std::fabs(y[i * out + o] - exact);
        EXPECT_LE(error, tolerance) << "row " << i << " output " << o;
        worst = std::max(worst, error / tolerance);
      }
    }
    EXPECT_GT(worst, 0.0);  // the activation quantization is visible: the test measures something
  }
}

}  // namespace
